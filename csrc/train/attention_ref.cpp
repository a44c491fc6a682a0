// Scalar reference of the training attention (attention.h): one query row at a time, scores
// and sums in double. The oracle for the SIMD kernels and the fallback.
#include <cmath>

#include "train/attention.h"

namespace pylm {
namespace ref {
namespace train {

using pylm::train::AttnShape;

static double dot(const float* a, const float* b, int D) {
    double acc = 0.0;
    for (int d = 0; d < D; ++d) acc += static_cast<double>(a[d]) * b[d];
    return acc;
}

void attn_fwd_head(const AttnShape& s, const float* q, const float* k, const float* v, float* o,
                   float* lse, float* scratch) {
    const int D = s.D;
    float* srow = scratch;  // [T] scores of one query row
    for (int64_t i = 0; i < s.T; ++i) {
        const float* qi = q + i * s.ld;
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; ++j) {
            srow[j] = static_cast<float>(s.scale * dot(qi, k + j * s.ld, D));
            mx = srow[j] > mx ? srow[j] : mx;
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(srow[j] - mx);
        float* oi = o + i * s.ldo;
        for (int d = 0; d < D; ++d) {
            double acc = 0.0;
            for (int64_t j = 0; j <= i; ++j) acc += std::exp(srow[j] - mx) * v[j * s.ld + d];
            oi[d] = static_cast<float>(acc / sum);
        }
        lse[i] = static_cast<float>(mx + std::log(sum));
    }
}

void attn_bwd_kv(const AttnShape& s, int G, const float* q, const float* k, const float* v,
                 const float* o, const float* lse, const float* dout, float* dq, float* dk,
                 float* dv, float* scratch) {
    const int D = s.D;
    const int64_t T = s.T;
    for (int64_t j = 0; j < T; ++j)
        for (int d = 0; d < D; ++d) dk[j * s.ld + d] = dv[j * s.ld + d] = 0.0f;
    float* ds = scratch;  // [T] dS of one query row
    for (int g = 0; g < G; ++g) {
        const float* qg = q + g * D;
        const float* og = o + g * D;
        const float* dog = dout + g * D;
        float* dqg = dq + g * D;
        const float* lg = lse + g * T;
        for (int64_t i = 0; i < T; ++i) {
            const float* qi = qg + i * s.ld;
            const float* doi = dog + i * s.ldo;
            const double delta = dot(doi, og + i * s.ldo, D);
            for (int64_t j = 0; j <= i; ++j) {
                const double p = std::exp(s.scale * dot(qi, k + j * s.ld, D) - lg[i]);
                const double dp = dot(doi, v + j * s.ld, D);
                ds[j] = static_cast<float>(p * (dp - delta) * s.scale);
                for (int d = 0; d < D; ++d) dv[j * s.ld + d] += static_cast<float>(p * doi[d]);
            }
            for (int d = 0; d < D; ++d) {
                double acc = 0.0;
                for (int64_t j = 0; j <= i; ++j)
                    acc += static_cast<double>(ds[j]) * k[j * s.ld + d];
                dqg[i * s.ld + d] = static_cast<float>(acc);
            }
            for (int64_t j = 0; j <= i; ++j)
                for (int d = 0; d < D; ++d) dk[j * s.ld + d] += ds[j] * qi[d];
        }
    }
}

}  // namespace train
}  // namespace ref
}  // namespace pylm
