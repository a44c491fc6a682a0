// Scalar fp16 / bf16 <-> fp32 conversions (IEEE-exact, round-to-nearest-even).
//
// NOTE: every function here is `static inline` on purpose. This header is included by the
// per-ISA translation units; internal linkage gives each TU its own copy, so the linker can
// never pick an AVX-512-compiled copy for code that runs on an AVX2-only CPU.
#pragma once
#include <cstdint>
#include <cstring>

namespace pylm {

static inline float fp32_from_bits(uint32_t w) {
    float f;
    std::memcpy(&f, &w, 4);
    return f;
}
static inline uint32_t fp32_to_bits(float f) {
    uint32_t w;
    std::memcpy(&w, &f, 4);
    return w;
}

// fp16 -> fp32, exact for every input (normals, subnormals, inf, NaN).
static inline float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalize
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return fp32_from_bits(bits);
}

// fp32 -> fp16, round to nearest even (matches numpy's astype(float16)).
static inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = fp32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7FFFFFFF;
    if (absx >= 0x7F800000) {  // inf or nan
        return (uint16_t)(sign | 0x7C00 | (absx > 0x7F800000 ? 0x200 | ((absx >> 13) & 0x3FF) : 0));
    }
    if (absx >= 0x477FF000) return (uint16_t)(sign | 0x7C00);  // rounds to >= 65520 -> inf
    if (absx < 0x38800000) {                                    // result subnormal or zero
        if (absx < 0x33000000) return (uint16_t)sign;           // < 2^-25: rounds to 0
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7FFFFF) | 0x800000;
        const uint32_t shift = 126 - e;  // 14 + (113 - e)
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000;  // rebias exponent 127 -> 15
    const uint32_t rem = r & 0x1FFF;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
    return (uint16_t)(sign | r);
}

static inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits((uint32_t)h << 16); }

// fp32 -> bf16, round to nearest even; NaN stays NaN.
static inline uint16_t fp32_to_bf16(float f) {
    uint32_t x = fp32_to_bits(f);
    if ((x & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

}  // namespace pylm
