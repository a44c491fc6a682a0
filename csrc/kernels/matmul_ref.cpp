// Scalar reference f32 matmul: the oracle for the SIMD kernels and the fallback on CPUs
// without AVX2. Plain loops; the dispatcher threads it over rows of C.
//
// op(A) is [M, K], op(B) is [K, N], C is [M, N] (see matmul.h for strides and transposes).
#include <cstddef>
#include <vector>

#include "kernels/matmul.h"

namespace pylm {
namespace ref {

void gemm_rows(const GemmArgs& g, int64_t m0, int64_t m1) {
    const int64_t N = g.N, K = g.K;
    std::vector<float> acc(static_cast<size_t>(N));  // one row of op(A) op(B)
    for (int64_t i = m0; i < m1; ++i) {
        for (int64_t j = 0; j < N; ++j) acc[j] = 0.0f;
        if (g.trans_b) {
            // B is [N, K]: each output is a dot product of two contiguous rows (when !trans_a).
            for (int64_t j = 0; j < N; ++j) {
                const float* b = g.B + j * g.ldb;
                float s = 0.0f;
                for (int64_t k = 0; k < K; ++k) {
                    const float a = g.trans_a ? g.A[k * g.lda + i] : g.A[i * g.lda + k];
                    s += a * b[k];
                }
                acc[j] = s;
            }
        } else {
            // B is [K, N]: accumulate a_ik * B[k, :] into the row, k ascending.
            for (int64_t k = 0; k < K; ++k) {
                const float a = g.trans_a ? g.A[k * g.lda + i] : g.A[i * g.lda + k];
                const float* b = g.B + k * g.ldb;
                for (int64_t j = 0; j < N; ++j) acc[j] += a * b[j];
            }
        }
        float* c = g.C + i * g.ldc;
        if (g.beta == 0.0f) {
            for (int64_t j = 0; j < N; ++j) c[j] = acc[j];
        } else {
            for (int64_t j = 0; j < N; ++j) c[j] = acc[j] + g.beta * c[j];
        }
    }
}

}  // namespace ref
}  // namespace pylm
