// Dispatchers for the training pointwise ops (pointwise.h): thread over rows, columns or
// elements and call the active ISA's kernel. The RoPE tables are interleaved here.
#include "train/pointwise.h"

#include <cstring>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {
namespace train {

namespace {
// Rows per chunk so that one chunk touches ~16K floats.
int64_t rows_grain(int64_t row_elems) {
    constexpr int64_t kChunk = 1 << 14;
    return row_elems >= kChunk ? 1 : kChunk / (row_elems > 0 ? row_elems : 1);
}
}  // namespace

void swiglu_fwd(const float* gu, float* h, int64_t N, int64_t F, int nthreads) {
    if (N <= 0 || F <= 0) return;
    parallel_for(N, rows_grain(3 * F), nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::swiglu_fwd, gu + b * 2 * F, h + b * F, e - b, F);
    });
}

void swiglu_bwd(const float* gu, const float* dh, float* dgu, int64_t N, int64_t F, int nthreads) {
    if (N <= 0 || F <= 0) return;
    parallel_for(N, rows_grain(5 * F), nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(train::swiglu_bwd, gu + b * 2 * F, dh + b * F, dgu + b * 2 * F, e - b, F);
    });
}

void rope(float* x, int64_t ld, int64_t N, int64_t T, int H, int D, const float* cos,
          const float* sin, bool inverse, int nthreads) {
    if (N <= 0 || H <= 0 || D <= 0) return;
    const int half = D / 2;
    // Interleaved tables, kept per thread across calls (a new 2 x T x D allocation per call
    // would be a fresh mmap for training contexts).
    thread_local std::vector<float> cos2, sin2;
    cos2.resize(static_cast<size_t>(T * D));
    sin2.resize(static_cast<size_t>(T * D));
    const float sg = inverse ? -1.0f : 1.0f;
    for (int64_t t = 0; t < T; ++t)
        for (int i = 0; i < half; ++i) {
            const float c = cos[t * half + i], s = sin[t * half + i] * sg;
            cos2[t * D + 2 * i] = cos2[t * D + 2 * i + 1] = c;
            sin2[t * D + 2 * i] = -s;
            sin2[t * D + 2 * i + 1] = s;
        }
    // NOTE: plain pointers into the caller's tables: inside the lambda, a worker thread naming
    // cos2 would see its own (empty) thread_local instance.
    const float* c2 = cos2.data();
    const float* s2 = sin2.data();
    parallel_for(N, rows_grain(static_cast<int64_t>(H) * D), nthreads,
                 [&](int64_t b, int64_t e, int) {
                     PYLM_DISPATCH(train::rope_rows, x + b * ld, ld, e - b, b, T, H, D, c2, s2);
                 });
}

void embedding_fwd(const int32_t* ids, const float* W, float* out, int64_t N, int64_t C,
                   int nthreads) {
    if (N <= 0 || C <= 0) return;
    parallel_for(N, rows_grain(C), nthreads, [&](int64_t b, int64_t e, int) {
        for (int64_t n = b; n < e; ++n)
            std::memcpy(out + n * C, W + static_cast<int64_t>(ids[n]) * C, C * sizeof(float));
    });
}

void embedding_bwd(const int32_t* ids, const float* dout, float* dW, int64_t N, int64_t C,
                   int nthreads) {
    if (N <= 0 || C <= 0) return;
    constexpr int64_t kCols = 64;  // a multiple of every vector width
    const int64_t nblk = (C + kCols - 1) / kCols;
    parallel_for(nblk, 1, nthreads, [&](int64_t b, int64_t e, int) {
        const int64_t c1 = e * kCols < C ? e * kCols : C;
        PYLM_DISPATCH(train::embedding_bwd_cols, ids, dout, dW, N, C, b * kCols, c1);
    });
}

void add(const float* a, const float* b, float* y, int64_t n, int nthreads) {
    if (n <= 0) return;
    parallel_for(n, 1 << 15, nthreads, [&](int64_t b0, int64_t e0, int) {
        PYLM_DISPATCH(train::add, a + b0, b + b0, y + b0, e0 - b0);
    });
}

double sq_err(const float* y, const float* t, float* dy, int64_t n) {
    // A loss over a handful of outputs (the worked examples): a scalar loop is plenty.
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const float d = y[i] - t[i];
        total += static_cast<double>(d) * d;
        dy[i] = 2.0f * d;
    }
    return total;
}

}  // namespace train
}  // namespace pylm
