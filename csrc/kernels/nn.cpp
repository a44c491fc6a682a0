// Dispatchers for RMSNorm / RoPE / softmax (nn.h): thread over rows (tokens for RoPE) and call
// the active ISA's kernel. RoPE's angle tables are built here, in double. Baseline TU.
#include "kernels/nn.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

// Rows per chunk so that a chunk touches ~16K floats: decode-sized calls stay on one thread.
int64_t rows_grain(int64_t row_elems) {
    constexpr int64_t kChunkElems = 1 << 14;
    return row_elems >= kChunkElems ? 1 : kChunkElems / (row_elems > 0 ? row_elems : 1);
}

// RoPE: exact cos/sin of the offset angles k * theta_i, k < kRopeAnchor, per (n_dims, base,
// freq_scale), built once and shared by every call (decode would otherwise pay for a second
// cos/sin per channel pair). A few entries: one per distinct RoPE of the loaded models.
constexpr int kRopeAnchor = 64;

struct RopeOffsets {
    int n_dims;
    float base, freq_scale;
    std::vector<double> cs;  // [2][kRopeAnchor][n_dims / 2]: cos, then sin
};

std::shared_ptr<const RopeOffsets> rope_offsets(int n_dims, float base, float freq_scale,
                                                const std::vector<double>& inv_freq) {
    static std::mutex mu;
    static std::vector<std::shared_ptr<const RopeOffsets>> cache;  // most recent last
    {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& e : cache)
            if (e->n_dims == n_dims && e->base == base && e->freq_scale == freq_scale) return e;
    }
    auto e = std::make_shared<RopeOffsets>();
    e->n_dims = n_dims;
    e->base = base;
    e->freq_scale = freq_scale;
    const int half = n_dims / 2;
    e->cs.resize(static_cast<size_t>(2) * kRopeAnchor * half);
    for (int k = 0; k < kRopeAnchor; ++k)
        for (int i = 0; i < half; ++i) {
            const double ang = static_cast<double>(k) * inv_freq[i];
            e->cs[k * half + i] = std::cos(ang);
            e->cs[(kRopeAnchor + k) * half + i] = std::sin(ang);
        }
    std::lock_guard<std::mutex> lock(mu);
    if (cache.size() >= 8) cache.erase(cache.begin());
    cache.push_back(e);
    return e;
}

}  // namespace

void rmsnorm_f32(const float* x, const float* w, float* y, int64_t R, int64_t C, float eps,
                 int nthreads) {
    if (R <= 0 || C <= 0) return;
    parallel_for(R, rows_grain(C), nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(rmsnorm_f32, x + b * C, w, y + b * C, e - b, C, eps);
    });
}

void softmax_f32(const float* x, float* y, int64_t R, int64_t C, float scale, int nthreads) {
    if (R <= 0 || C <= 0) return;
    parallel_for(R, rows_grain(C), nthreads, [&](int64_t b, int64_t e, int) {
        PYLM_DISPATCH(softmax_f32, x + b * C, y + b * C, e - b, C, scale);
    });
}

void rope_tables(const int32_t* pos, int64_t T, int n_dims, float base, float freq_scale, int mode,
                 float* cos2, float* sin2, int nthreads) {
    if (n_dims <= 0 || n_dims % 2 != 0)
        throw std::invalid_argument("rope: n_dims=" + std::to_string(n_dims) + " must be even and > 0");
    if (mode != kRopeNormal && mode != kRopeNeox)
        throw std::invalid_argument("rope: mode=" + std::to_string(mode) +
                                    " (expected 0 = normal or 2 = neox)");
    if (T <= 0) return;
    const int half = n_dims / 2;
    // theta_i = pos * base^(-2i/n_dims) * freq_scale, all in double: at pos = 32768 a float
    // angle would be off by up to ~2e-3 rad.
    std::vector<double> inv_freq(half);
    for (int i = 0; i < half; ++i)
        inv_freq[i] = static_cast<double>(freq_scale) *
                      std::pow(static_cast<double>(base), -2.0 * i / n_dims);
    // The cos/sin of position p are a pure function of p (never of the batch, the thread split
    // or the ISA: batch invariance and cross-ISA determinism): with a = p - p mod kRopeAnchor
    // and k = p mod kRopeAnchor, (cos, sin)(p theta) = exact(a) if k == 0, else exact(a)
    // rotated by exact(k) in double. exact(k), k < kRopeAnchor, comes from a cache shared by
    // all calls with the same (n_dims, base, freq_scale); consecutive tokens share exact(a).
    auto exact = [&](int64_t p, int i, double& c, double& s) {
        const double ang = static_cast<double>(p) * inv_freq[i];
        c = std::cos(ang);
        s = std::sin(ang);
    };
    const std::shared_ptr<const RopeOffsets> offs = rope_offsets(n_dims, base, freq_scale, inv_freq);
    const double* kc = offs->cs.data();                       // [kRopeAnchor][half]
    const double* ks = offs->cs.data() + kRopeAnchor * half;  // [kRopeAnchor][half]
    parallel_for(T, rows_grain(16 * n_dims), nthreads, [&](int64_t b, int64_t e, int) {
        std::vector<double> ac(half), as(half);  // exact(anchor)
        int64_t anchor = INT64_MIN;
        for (int64_t t = b; t < e; ++t) {
            const int64_t p = pos[t];
            const int64_t k = ((p % kRopeAnchor) + kRopeAnchor) % kRopeAnchor;
            if (p - k != anchor) {
                anchor = p - k;
                for (int i = 0; i < half; ++i) exact(anchor, i, ac[i], as[i]);
            }
            float* c2 = cos2 + t * n_dims;
            float* s2 = sin2 + t * n_dims;
            for (int i = 0; i < half; ++i) {
                double c = ac[i], s = as[i];
                if (k != 0) {
                    const double dc = kc[k * half + i], ds = ks[k * half + i];
                    c = ac[i] * dc - as[i] * ds;
                    s = as[i] * dc + ac[i] * ds;
                }
                const float cf = static_cast<float>(c), sf = static_cast<float>(s);
                if (mode == kRopeNeox) {
                    c2[i] = cf;
                    s2[i] = sf;
                } else {
                    c2[2 * i] = c2[2 * i + 1] = cf;
                    s2[2 * i] = -sf;
                    s2[2 * i + 1] = sf;
                }
            }
        }
    });
}

void rope_apply_f32(float* x, const float* cos2, const float* sin2, int64_t T, int H, int D,
                    int n_dims, int mode, int nthreads) {
    if (n_dims <= 0 || n_dims % 2 != 0 || n_dims > D)
        throw std::invalid_argument("rope: n_dims=" + std::to_string(n_dims) +
                                    " must be even and in [2, D=" + std::to_string(D) + "]");
    if (T <= 0 || H <= 0) return;
    const int64_t token_elems = static_cast<int64_t>(H) * D;
    parallel_for(T, rows_grain(token_elems), nthreads, [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t)
            PYLM_DISPATCH(rope_rotate_f32, x + t * token_elems, cos2 + t * n_dims,
                          sin2 + t * n_dims, H, D, n_dims, mode);
    });
}

void rope_f32(float* x, const int32_t* pos, int64_t T, int H, int D, int n_dims, float base,
              float freq_scale, int mode, int nthreads) {
    if (n_dims <= 0 || n_dims % 2 != 0 || n_dims > D)
        throw std::invalid_argument("rope: n_dims=" + std::to_string(n_dims) +
                                    " must be even and in [2, D=" + std::to_string(D) + "]");
    const int64_t rows = T > 0 && H > 0 ? T : 0;
    std::vector<float> cos2(static_cast<size_t>(rows) * n_dims), sin2(cos2.size());
    rope_tables(pos, rows, n_dims, base, freq_scale, mode, cos2.data(), sin2.data(), nthreads);
    rope_apply_f32(x, cos2.data(), sin2.data(), rows, H, D, n_dims, mode, nthreads);
}

}  // namespace pylm
