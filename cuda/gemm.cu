// pylm::cuda::gemm — validates the contract of cuda/gemm.cuh and picks a kernel:
//   F32 operands                                  -> simt (FFMA), or skinny for decode shapes
//   F16/BF16, M <= 16, !trans_a, trans_b, aligned -> skinny (bandwidth-bound decode)
//   F16/BF16, 16-byte aligned A/B and lda, ldb % 8 -> mma.sync tensor-core pipeline
//   F16/BF16 otherwise                            -> simt (correct for any strides, slower)
#include <stdexcept>
#include <string>

#include "gemm.cuh"
#include "gemm_kernels.cuh"

namespace pylm {
namespace cuda {

namespace {

using gemm_detail::GemmParams;

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

std::string i2s(int64_t v) { return std::to_string(v); }

void check_ld(const char* name, int64_t ld, int64_t need) {
    if (ld < need || ld < 1)
        throw std::invalid_argument("gemm: " + std::string(name) + "=" + i2s(ld) +
                                    " is smaller than the row length " + i2s(need));
}

template <typename T>
void run(const GemmParams& p, int elem, cudaStream_t stream) {
    const int vec = 16 / elem;  // elements per 16-byte load
    const bool a_vec = aligned16(p.A) && p.lda % vec == 0;
    const bool b_vec = aligned16(p.B) && p.ldb % vec == 0;
    if (p.M <= gemm_detail::kSkinnyMaxM && !p.trans_a && p.trans_b && a_vec && b_vec &&
        p.K % vec == 0 && p.K > 0) {
        gemm_detail::launch_skinny<T>(p, stream);
    } else if constexpr (sizeof(T) == 2) {
        if (a_vec && b_vec) gemm_detail::launch_mma<T>(p, stream);
        else                gemm_detail::launch_simt<T>(p, stream);
    } else {
        gemm_detail::launch_simt<T>(p, stream);
    }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, DType ab,
          const void* A, int64_t lda, const void* B, int64_t ldb, float beta, DType c, void* C,
          int64_t ldc, cudaStream_t stream) {
    if (ab != DType::F32 && ab != DType::F16 && ab != DType::BF16)
        throw std::invalid_argument(std::string("gemm: A/B dtype ") + dtype_name(ab) +
                                    " is not supported (float32, float16, bfloat16)");
    if (c != DType::F32 && c != ab)
        throw std::invalid_argument(std::string("gemm: C dtype ") + dtype_name(c) +
                                    " must be float32 or the A/B dtype " + dtype_name(ab));
    if (M < 0 || N < 0 || K < 0)
        throw std::invalid_argument("gemm: negative size M=" + i2s(M) + " N=" + i2s(N) +
                                    " K=" + i2s(K));
    if (M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff)
        throw std::invalid_argument("gemm: sizes must fit in int32, got M=" + i2s(M) + " N=" +
                                    i2s(N) + " K=" + i2s(K));
    if (M == 0 || N == 0) return;
    if (K > 0) {
        check_ld("lda", lda, trans_a ? M : K);
        check_ld("ldb", ldb, trans_b ? K : N);
    }
    check_ld("ldc", ldc, N);

    GemmParams p;
    p.M = (int)M;
    p.N = (int)N;
    p.K = (int)K;
    p.A = A;
    p.lda = lda;
    p.B = B;
    p.ldb = ldb;
    p.C = C;
    p.ldc = ldc;
    p.alpha = alpha;
    p.beta = beta;
    p.c_f32 = c == DType::F32;
    const int csize = dtype_size(c);
    p.c_pair = ldc % 2 == 0 && reinterpret_cast<uintptr_t>(C) % (2 * csize) == 0;
    p.trans_a = trans_a;
    p.trans_b = trans_b;
    switch (ab) {
        case DType::F32: return run<float>(p, 4, stream);
        case DType::F16: return run<__half>(p, 2, stream);
        case DType::BF16: return run<__nv_bfloat16>(p, 2, stream);
        default: break;
    }
}

}  // namespace cuda
}  // namespace pylm
