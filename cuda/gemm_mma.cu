// Tensor-core GEMM: mma.sync.m16n8k16 (f16/bf16 in, f32 accumulate), ldmatrix fragment loads and a
// 4-stage cp.async global->shared pipeline. Runs on sm_80, sm_89 and sm_90.
//
// CTA tile 128x128x32, 8 warps as 2 (M) x 4 (N), each warp a 64x32 tile = 4x4 mma tiles.
// Shared-memory tiles keep the operand's contiguous global dimension contiguous:
//   op(A) tile: !trans_a -> [BM][BK+8] (k contiguous), trans_a -> [BK][BM+8] (m contiguous)
//   op(B) tile:  trans_b -> [BN][BK+8] (k contiguous), !trans_b -> [BK][BN+8] (n contiguous)
// so every global load is a 16-byte cp.async. The +8 element pad makes a row 80 or 272 bytes:
// the 8 rows one ldmatrix phase reads fall in 8 distinct 16-byte bank groups (no conflicts).
// The k-contiguous tiles feed ldmatrix, the m/n-contiguous ones ldmatrix.trans.
// Edges: rows past M/N/K are zero-filled by cp.async's src-size operand (a chunk that straddles
// the end of a row copies only its valid bytes), so partial tiles need no separate path.
#include <stdexcept>
#include <string>

#include "gemm_kernels.cuh"

namespace pylm {
namespace cuda {
namespace gemm_detail {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 4, THREADS = 256, PAD = 8;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; bytes < 16 copies that many and zero-fills the rest (bytes == 0: zeros).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

template <typename T>
__device__ __forceinline__ void mma16816(float* d, const uint32_t* a, const uint32_t* b);
template <>
__device__ __forceinline__ void mma16816<__half>(float* d, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float* d, const uint32_t* a,
                                                        const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Copies a ROWS x COLS tile whose COLS dimension is contiguous in global memory (row stride ld)
// into shared memory with row stride COLS+PAD. Global rows r0.. are valid below row_lim, columns
// c0.. below col_lim; everything else becomes zero.
template <int ROWS, int COLS, typename T>
__device__ __forceinline__ void load_tile(T* s, const T* g, int64_t ld, int r0, int c0,
                                          int row_lim, int col_lim) {
    constexpr int CH = COLS / 8;  // 16-byte chunks per row
    constexpr int TOTAL = ROWS * CH;
    static_assert(TOTAL % THREADS == 0, "tile must split evenly over the CTA");
#pragma unroll
    for (int it = 0; it < TOTAL / THREADS; ++it) {
        const int i = threadIdx.x + it * THREADS;
        const int r = i / CH, c = (i % CH) * 8;
        const int gr = r0 + r, gc = c0 + c;
        int bytes = 0;
        const T* src = g;  // any valid address when nothing is read
        if (gr < row_lim) {
            const int rem = col_lim - gc;
            bytes = rem >= 8 ? 16 : (rem > 0 ? rem * 2 : 0);
            if (bytes) src = g + (int64_t)gr * ld + gc;
        }
        cp_async16(s + r * (COLS + PAD) + c, src, bytes);
    }
}

template <typename T, bool TA, bool TB>
struct Tiles {
    static constexpr int A_ELEMS = TA ? BK * (BM + PAD) : BM * (BK + PAD);
    static constexpr int B_ELEMS = TB ? BN * (BK + PAD) : BK * (BN + PAD);
    static constexpr int STAGE = A_ELEMS + B_ELEMS;
    static constexpr size_t SMEM = (size_t)STAGES * STAGE * sizeof(T);
    static_assert((A_ELEMS * sizeof(T)) % 16 == 0 && (STAGE * sizeof(T)) % 16 == 0, "alignment");
};

template <typename T, bool TA, bool TB>
__global__ void __launch_bounds__(THREADS, 2) mma_gemm_kernel(const GemmParams p) {
    using Tl = Tiles<T, TA, TB>;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    const T* A = static_cast<const T*>(p.A);
    const T* B = static_cast<const T*>(p.B);

    // Grouped rasterization: 8 tile-rows sweep the N tiles together, so A and B tiles are
    // reused from L2 by neighbouring CTAs.
    const int tiles_m = (p.M + BM - 1) / BM, tiles_n = (p.N + BN - 1) / BN;
    constexpr int GROUP = 8;
    const int pid = blockIdx.x;
    const int first_m = (pid / (GROUP * tiles_n)) * GROUP;
    const int gsize = min(tiles_m - first_m, GROUP);
    const int in_group = pid % (GROUP * tiles_n);
    const int m0 = (first_m + in_group % gsize) * BM;
    const int n0 = (in_group / gsize) * BN;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;

    auto load_stage = [&](int stage, int kt) {
        T* sA = smem + stage * Tl::STAGE;
        T* sB = sA + Tl::A_ELEMS;
        const int k0 = kt * BK;
        if (TA) load_tile<BK, BM>(sA, A, p.lda, k0, m0, p.K, p.M);  // A is [K, M]
        else    load_tile<BM, BK>(sA, A, p.lda, m0, k0, p.M, p.K);  // A is [M, K]
        if (TB) load_tile<BN, BK>(sB, B, p.ldb, n0, k0, p.N, p.K);  // B is [N, K]
        else    load_tile<BK, BN>(sB, B, p.ldb, k0, n0, p.K, p.N);  // B is [K, N]
    };

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    const int KT = (p.K + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load_stage(s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; ++kt) {
        // Groups committed so far: kt + STAGES-1; allowing STAGES-2 pending completes tile kt.
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // tile kt visible to all; stage (kt-1)%STAGES no longer being read
        const int nk = kt + STAGES - 1;
        if (nk < KT) load_stage(nk % STAGES, nk);
        cp_async_commit();

        const T* sA = smem + (kt % STAGES) * Tl::STAGE;
        const T* sB = sA + Tl::A_ELEMS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint32_t af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if (TA) {  // [BK][BM+PAD]: rows are k
                    const int k = kk + (lane & 7) + (lane >> 4) * 8;
                    const int m = wm + i * 16 + ((lane >> 3) & 1) * 8;
                    ldmatrix_x4_trans(af[i], sA + k * (BM + PAD) + m);
                } else {   // [BM][BK+PAD]: rows are m
                    const int m = wm + i * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                    const int k = kk + (lane >> 4) * 8;
                    ldmatrix_x4(af[i], sA + m * (BK + PAD) + k);
                }
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                uint32_t r[4];
                if (TB) {  // [BN][BK+PAD]: rows are n
                    const int n = wn + j * 16 + (lane & 7) + (lane >> 4) * 8;
                    const int k = kk + ((lane >> 3) & 1) * 8;
                    ldmatrix_x4(r, sB + n * (BK + PAD) + k);
                } else {   // [BK][BN+PAD]: rows are k
                    const int k = kk + (lane & 7) + ((lane >> 3) & 1) * 8;
                    const int n = wn + j * 16 + (lane >> 4) * 8;
                    ldmatrix_x4_trans(r, sB + k * (BN + PAD) + n);
                }
                bf[2 * j][0] = r[0];
                bf[2 * j][1] = r[1];
                bf[2 * j + 1][0] = r[2];
                bf[2 * j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma16816<T>(acc[i][j], af[i], bf[j]);
        }
    }
    cp_async_wait<0>();

    // Accumulator (i, j, r): row wm + 16i + lane/4 (+8 for r >= 2), col wn + 8j + 2(lane%4) + r%2.
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                store_c2<T>(p, m0 + wm + i * 16 + g + h * 8, n0 + wn + j * 8 + 2 * t,
                            acc[i][j][2 * h], acc[i][j][2 * h + 1]);
}

template <typename T, bool TA, bool TB>
void launch_tn(const GemmParams& p, cudaStream_t stream) {
    using Tl = Tiles<T, TA, TB>;
    auto kernel = mma_gemm_kernel<T, TA, TB>;
    PYLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)Tl::SMEM));
    const int64_t tiles = (int64_t)ceil_div(p.M, BM) * ceil_div(p.N, BN);
    if (tiles > 0x7fffffff) throw std::invalid_argument("gemm: too many tiles");
    kernel<<<(unsigned)tiles, THREADS, Tl::SMEM, stream>>>(p);
    PYLM_CUDA_CHECK_LAUNCH("gemm (mma)");
}

}  // namespace

template <typename T>
void launch_mma(const GemmParams& p, cudaStream_t stream) {
    if (p.trans_a) {
        if (p.trans_b) launch_tn<T, true, true>(p, stream);
        else           launch_tn<T, true, false>(p, stream);
    } else {
        if (p.trans_b) launch_tn<T, false, true>(p, stream);
        else           launch_tn<T, false, false>(p, stream);
    }
}

template void launch_mma<__half>(const GemmParams&, cudaStream_t);
template void launch_mma<__nv_bfloat16>(const GemmParams&, cudaStream_t);

}  // namespace gemm_detail
}  // namespace cuda
}  // namespace pylm
