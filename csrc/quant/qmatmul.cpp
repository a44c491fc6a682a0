// qmatmul driver: activation quantization, work split over threads, per-ISA kernel calls.
#include "quant/qmatmul.h"

#include <stdexcept>
#include <string>

#include "core/isa.h"
#include "core/scratch.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

// Per-thread scratch for the quantized activations.
thread_local ScratchBuffer t_scratch;

constexpr int kGroup = 8;                   // activation rows per pass over a weight row (max)
constexpr int64_t kWeightChunk = 96 << 10;  // bytes of W per work item (stays in L2)
// One pass (M <= 8 on AVX-512, 4 elsewhere: decode, drafts, verifications of up to 7 drafted
// tokens) reads each weight from DRAM once: the kernels pass up to 8 activation rows over a
// weight row on AVX-512 (K-quants 4 then the rest, the second pass from L2, >= 1 MB on AVX-512
// parts) and 4 on AVX2, so L2 reuse does not bound the item: larger items mean fewer restarts of
// the kernels' prefetch stream and fewer claims. AVX-512 at 8 rather than 4, 2 threads, A/B in
// one process, time for M = 5 / 6 / 8: SmolLM2 F16 0.89 / 0.92 / 0.90, Q4_1 0.96 / 0.96 /
// 0.95, Gemma-3 Q4_K_M 0.97 / 0.94 / 0.96 (M <= 4 unchanged).
// Decode step, 2 threads, A/B in one process (x1 / x2 / x4 / x6 of kWeightChunk): Gemma-3
// Q4_K_M 13.6 / 12.9 / 12.4 / 12.5 ms (its 170 MB Q8_0 head), SmolLM2 Q4_1 5.0 / 4.6 / 4.5 /
// 4.4 ms, F16 11.8 / 11.4 / 11.2 / 11.3 ms. Small matrices stay split for balance (below).
constexpr int64_t kDecodeChunk = 384 << 10;
constexpr int64_t kActChunk = 256 << 10;    // bytes of activations per work item
constexpr int64_t kMinWork = 16 << 10;      // weight bytes (x row groups) worth waking a thread

}  // namespace

int64_t qrow_bytes(QType wt, int64_t K) {
    const QTypeInfo* info = qtype_info(wt);
    return K / info->block_size * info->type_size;
}

void qmatmul_quantize(const float* x, int64_t M, int64_t K, QType wt, uint8_t* act, int nthreads) {
    const ActFormat f = act_format(wt);
    const int64_t stride = act_row_bytes(f, K);
    const int64_t grain = K >= 16384 ? 1 : 16384 / K;  // ~16k values per task
    parallel_for(M, grain, nthreads, [&](int64_t m0, int64_t m1, int) {
        for (int64_t m = m0; m < m1; ++m) quantize_act(f, x + m * K, K, act + m * stride);
    });
}

namespace {

// One product's work split: M chunks of mc rows x N chunks of nc rows (items i = m * n_chunks + n),
// and the rows and kernel it runs on (the packed copy where the active ISA has packed kernels).
struct Split {
    const uint8_t* w;
    GemmFn gemm;
    int64_t wrow, mc, nc, m_chunks, n_chunks;
    int64_t items() const { return m_chunks * n_chunks; }
};

Split split_product(const QProduct& p, int64_t wrow, int64_t M, int nthreads) {
    Split s;
    const QDotKernels* kern = qdot_kernels(p.wt);
    const bool packed = p.w_packed && kern->gemm_packed;
    s.w = static_cast<const uint8_t*>(packed ? p.w_packed : p.w);
    s.gemm = packed ? kern->gemm_packed : kern->gemm;
    s.wrow = wrow;
    // M chunk: a multiple of the group size whose activations fit kActChunk.
    s.mc = M;
    if (M > kGroup) {
        s.mc = kActChunk / (p.act_stride > 0 ? p.act_stride : 1);
        s.mc = s.mc < kGroup ? kGroup : s.mc / kGroup * kGroup;
        if (s.mc > M) s.mc = M;
    }
    s.m_chunks = (M + s.mc - 1) / s.mc;
    // N chunk: fits kWeightChunk (kDecodeChunk for one pass of activation rows), and leaves
    // >= 4 items per thread for balance (>= 4 rows); decode: >= 1 item per thread. A decode
    // step's products are small (SmolLM2: 0.1-1.1 MB per region) and stream from DRAM, and an
    // item pays a ramp before its prefetches run ahead, so a thread's share is one item.
    // SmolLM2 step, 2 threads, A/B in one process: Q4_1 0.89-0.94 of the time and F16 0.96-0.98
    // (a draft and its target taking turns, from DRAM); Q4_1 alone 0.92-0.95 (1 and 2 items per
    // thread, and 4 with the threads' shares contiguous and stealing, measured in between).
    const bool one_pass = M <= (active_isa() == Isa::Avx512 ? 8 : 4);
    const int64_t chunk = one_pass ? kDecodeChunk : kWeightChunk;
    int64_t nc = chunk / (s.wrow > 0 ? s.wrow : 1);
    const int per_thread = one_pass ? 1 : 4;
    const int64_t balance =
        (p.N * s.m_chunks + per_thread * nthreads - 1) / (per_thread * nthreads);
    const int64_t want_nc = (balance + s.m_chunks - 1) / s.m_chunks;
    if (nc > want_nc) nc = want_nc;
    if (nc < 4) nc = 4;
    if (nc > p.N) nc = p.N;
    s.nc = nc;
    s.n_chunks = (p.N + nc - 1) / nc;
    return s;
}

void run_item(const QProduct& p, const Split& s, int64_t M, int64_t i) {
    const int64_t m0 = (i / s.n_chunks) * s.mc, n0 = (i % s.n_chunks) * s.nc;
    const int64_t mn = M - m0 < s.mc ? M - m0 : s.mc, nn = p.N - n0 < s.nc ? p.N - n0 : s.nc;
    s.gemm(p.K, s.w + n0 * s.wrow, s.wrow, nn, p.act + m0 * p.act_stride, p.act_stride, mn,
           p.y + m0 * p.ldy + n0, p.ldy);
}

}  // namespace

void qmatmul_preq_many(const QProduct* products, int count, int64_t M, int nthreads) {
    if (count > kMaxProducts)
        throw std::invalid_argument("qmatmul_preq_many: " + std::to_string(count) +
                                    " products, at most " + std::to_string(kMaxProducts));
    if (M <= 0 || count <= 0) return;
    if (nthreads <= 0) nthreads = default_threads();
    // Small products (decode of narrow matrices) finish before a worker would wake up.
    int64_t wrow[kMaxProducts], work = 0;
    for (int j = 0; j < count; ++j) {
        wrow[j] = qrow_bytes(products[j].wt, products[j].K);
        work += products[j].N * wrow[j] * ((M + kGroup - 1) / kGroup);
    }
    if (work / kMinWork < nthreads) nthreads = work / kMinWork > 1 ? (int)(work / kMinWork) : 1;

    Split splits[kMaxProducts] = {};
    int64_t first[kMaxProducts + 1] = {0};  // items of product j: [first[j], first[j + 1])
    for (int j = 0; j < count; ++j) {
        const bool empty = products[j].N <= 0;
        if (!empty) splits[j] = split_product(products[j], wrow[j], M, nthreads);
        first[j + 1] = first[j] + (empty ? 0 : splits[j].items());
    }
    parallel_for(first[count], 1, nthreads, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            int j = 0;
            while (i >= first[j + 1]) ++j;
            run_item(products[j], splits[j], M, i - first[j]);
        }
    });
}

void qmatmul_preq(const uint8_t* act, int64_t act_stride, int64_t M, const void* w, QType wt,
                  int64_t N, int64_t K, float* y, int64_t ldy, int nthreads,
                  const void* w_packed) {
    if (N <= 0) return;
    const QProduct p{act, act_stride, w, wt, N, K, y, ldy, w_packed};
    qmatmul_preq_many(&p, 1, M, nthreads);
}

void qmatmul(const float* x, int64_t M, const void* w, QType wt, int64_t N, int64_t K, float* y,
             int64_t ldy, int nthreads, const void* w_packed) {
    if (M <= 0 || N <= 0) return;
    const ActFormat f = act_format(wt);
    if (f == ActFormat::F32) {  // float weights: the kernels read x directly
        qmatmul_preq(reinterpret_cast<const uint8_t*>(x), K * 4, M, w, wt, N, K, y, ldy, nthreads);
        return;
    }
    const int64_t stride = act_row_bytes(f, K);
    uint8_t* act = t_scratch.get<uint8_t>((size_t)(M * stride));
    qmatmul_quantize(x, M, K, wt, act, nthreads);
    qmatmul_preq(act, stride, M, w, wt, N, K, y, ldy, nthreads, w_packed);
}

}  // namespace pylm
