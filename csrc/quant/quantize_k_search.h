// Scale searches shared by the K-quant quantizers (quantize_k.cpp), after llama.cpp's
// ggml-quants.c: make_qkx2_quants (asymmetric, with a min), make_qx_quants (symmetric,
// weights x^2) and make_q3_quants (symmetric with coordinate descent). Baseline TUs only.
#pragma once
#include <cstdint>

#include "core/half.h"

namespace pylm {
namespace qk {

constexpr float kGroupMaxEps = 1e-15f;

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Round to nearest, ties to even, for |f| < 2^22: add 1.5 * 2^23 and read the mantissa.
static inline int nearest_int(float f) {
    const float v = f + 12582912.0f;
    return (int)(fp32_to_bits(v) & 0x007FFFFF) - 0x00400000;
}

// Asymmetric quantization of n values: x ~ scale * L - *the_min, L in [0, nmax]. Returns scale.
float make_qkx2_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
// Symmetric, weights x^2: x ~ scale * (L - nmax), L in [0, 2 nmax). Returns scale.
float make_qx_quants_x2(int n, int nmax, const float* x, int8_t* L);
// Symmetric with refinement (Q3_K): x ~ scale * (L - nmax). Returns scale.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L);

}  // namespace qk
}  // namespace pylm
