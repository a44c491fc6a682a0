// qmatmul driver: activation quantization, work split over threads, per-ISA kernel calls.
#include "quant/qmatmul.h"

#include "core/scratch.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

// Per-thread scratch for the quantized activations.
thread_local ScratchBuffer t_scratch;

constexpr int kGroup = 8;                   // activation rows per pass over a weight row (max)
constexpr int64_t kWeightChunk = 96 << 10;  // bytes of W per work item (stays in L2)
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

void qmatmul_preq(const uint8_t* act, int64_t act_stride, int64_t M, const void* w, QType wt,
                  int64_t N, int64_t K, float* y, int64_t ldy, int nthreads) {
    if (M <= 0 || N <= 0) return;
    const QDotKernels* kern = qdot_kernels(wt);
    const int64_t wrow = qrow_bytes(wt, K);
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    if (nthreads <= 0) nthreads = default_threads();
    // Small products (decode of a narrow matrix) finish before a worker would wake up.
    const int64_t work = N * wrow * ((M + kGroup - 1) / kGroup);
    if (work / kMinWork < nthreads) nthreads = work / kMinWork > 1 ? (int)(work / kMinWork) : 1;

    // M chunk: a multiple of the group size whose activations fit kActChunk.
    int64_t mc = M;
    if (M > kGroup) {
        mc = kActChunk / (act_stride > 0 ? act_stride : 1);
        mc = mc < kGroup ? kGroup : mc / kGroup * kGroup;
        if (mc > M) mc = M;
    }
    const int64_t m_chunks = (M + mc - 1) / mc;
    // N chunk: fits kWeightChunk, and leaves >= 4 items per thread for balance (>= 4 rows).
    int64_t nc = kWeightChunk / (wrow > 0 ? wrow : 1);
    const int64_t balance = (N * m_chunks + 4 * nthreads - 1) / (4 * nthreads);
    const int64_t want_nc = (balance + m_chunks - 1) / m_chunks;
    if (nc > want_nc) nc = want_nc;
    if (nc < 4) nc = 4;
    if (nc > N) nc = N;
    const int64_t n_chunks = (N + nc - 1) / nc;

    parallel_for(m_chunks * n_chunks, 1, nthreads, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t m0 = (i / n_chunks) * mc, n0 = (i % n_chunks) * nc;
            const int64_t mn = M - m0 < mc ? M - m0 : mc, nn = N - n0 < nc ? N - n0 : nc;
            kern->gemm(K, wb + n0 * wrow, wrow, nn, act + m0 * act_stride, act_stride, mn,
                       y + m0 * ldy + n0, ldy);
        }
    });
}

void qmatmul(const float* x, int64_t M, const void* w, QType wt, int64_t N, int64_t K, float* y,
             int64_t ldy, int nthreads) {
    if (M <= 0 || N <= 0) return;
    const ActFormat f = act_format(wt);
    if (f == ActFormat::F32) {  // float weights: the kernels read x directly
        qmatmul_preq(reinterpret_cast<const uint8_t*>(x), K * 4, M, w, wt, N, K, y, ldy, nthreads);
        return;
    }
    const int64_t stride = act_row_bytes(f, K);
    uint8_t* act = t_scratch.get<uint8_t>((size_t)(M * stride));
    qmatmul_quantize(x, M, K, wt, act, nthreads);
    qmatmul_preq(act, stride, M, w, wt, N, K, y, ldy, nthreads);
}

}  // namespace pylm
