// Helpers shared by the scalar quantized-dot references (qdot_ref.cpp, qdot_kquant_ref.cpp).
// Baseline TUs only: never include this from an *_avx2.cpp / *_avx512.cpp file.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "quant/qdot.h"

namespace pylm {
namespace ref {
namespace qref {

// fp16 at p (unaligned) -> float.
static inline float h2f(const void* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return fp16_to_fp32(v);
}

// The canonical 16-lane tree of every quantized dot product (qdot_canon.h); v is overwritten:
// v[i] += v[i+8], v[i] += v[i+4], v[i] += v[i+2], v[0] + v[1].
static inline float tree16(float* v) {
    for (int i = 0; i < 8; ++i) v[i] += v[i + 8];
    for (int i = 0; i < 4; ++i) v[i] += v[i + 4];
    for (int i = 0; i < 2; ++i) v[i] += v[i + 2];
    return v[0] + v[1];
}

// gemm from vec_dot: y[c * ldy + n] = DOT(W row n, act row c) (the references are batch
// invariant by construction).
template <VecDotFn DOT>
void gemm_rows(int64_t K, const uint8_t* w, int64_t w_stride, int64_t N, const uint8_t* act,
               int64_t act_stride, int64_t C, float* y, int64_t ldy) {
    for (int64_t c = 0; c < C; ++c)
        for (int64_t n = 0; n < N; ++n)
            y[c * ldy + n] = DOT(K, w + n * w_stride, act + c * act_stride);
}

}  // namespace qref
}  // namespace ref
}  // namespace pylm
