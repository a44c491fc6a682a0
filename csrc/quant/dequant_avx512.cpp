// AVX-512 dequantization (16 floats per vector; 32 quants per 256-bit byte vector, with
// AVX512BW/VL mask registers for the scattered high bits of Q5_x / Q3_K / Q5_K).
// Same element order and float operations as dequant_ref.cpp (mul, then add/sub; no FMA),
// so results are bit-identical with gguf-py.
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "quant/dequant.h"

// GCC 12 flags its own AVX-512 headers (-Wmaybe-uninitialized on the masked builtins).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace pylm {
namespace avx512 {
namespace {

static inline __m512 u8x16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
static inline __m512 i8x16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }
static inline __m128i lo128(__m256i v) { return _mm256_castsi256_si128(v); }
static inline __m128i hi128(__m256i v) { return _mm256_extracti128_si256(v, 1); }
static inline __m256i load256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }

static inline void affine16(__m128i q, float dl, float ml, float* y) {
    _mm512_storeu_ps(
        y, _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl), u8x16(q)), _mm512_set1_ps(ml)));
}
static inline void scale16(__m128i q, float dl, float* y) {
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_set1_ps(dl), i8x16(q)));
}
static inline void offset16(__m128i q, float dl, float ml, float* y) {
    _mm512_storeu_ps(
        y, _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(dl), u8x16(q)), _mm512_set1_ps(ml)));
}

static inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void deq_f16(const uint8_t* s, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(load256(s + 2 * i)));
    for (; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        y[i] = fp16_to_fp32(h);
    }
}

static void deq_bf16(const uint8_t* s, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i w = _mm512_cvtepu16_epi32(load256(s + 2 * i));
        _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    for (; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        y[i] = bf16_to_fp32(h);
    }
}

// Legacy blocks: the 16 low nibbles are values 0..15, the 16 high nibbles values 16..31.
static inline void nibbles(const uint8_t* qs, __m128i* lo, __m128i* hi) {
    const __m128i q = _mm_loadu_si128((const __m128i*)qs), m4 = _mm_set1_epi8(0x0F);
    *lo = _mm_and_si128(q, m4);
    *hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
}

static void deq_q4_0(const block_q4_0* x, float* y, int64_t nb) {
    const __m128i k8 = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        __m128i lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        const float d = fp16_to_fp32(x[i].d);
        scale16(_mm_sub_epi8(lo, k8), d, y);
        scale16(_mm_sub_epi8(hi, k8), d, y + 16);
    }
}

static void deq_q4_1(const block_q4_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        __m128i lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        offset16(lo, d, m, y);
        offset16(hi, d, m, y + 16);
    }
}

// 5-bit legacy quants: bit j of qh is the fifth bit of value j (a ready-made byte mask);
// the nibble has bit 4 clear, so a masked add of 16 sets it.
static inline void fifth_bits(const uint8_t* qh_bytes, const uint8_t* qs, __m128i* lo,
                              __m128i* hi) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, 4);
    nibbles(qs, lo, hi);
    const __m128i k16 = _mm_set1_epi8(16);
    *lo = _mm_mask_add_epi8(*lo, (__mmask16)(qh & 0xFFFF), *lo, k16);
    *hi = _mm_mask_add_epi8(*hi, (__mmask16)(qh >> 16), *hi, k16);
}

static void deq_q5_0(const block_q5_0* x, float* y, int64_t nb) {
    const __m128i k16 = _mm_set1_epi8(16);
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        __m128i lo, hi;
        fifth_bits(x[i].qh, x[i].qs, &lo, &hi);
        const float d = fp16_to_fp32(x[i].d);
        scale16(_mm_sub_epi8(lo, k16), d, y);
        scale16(_mm_sub_epi8(hi, k16), d, y + 16);
    }
}

static void deq_q5_1(const block_q5_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        __m128i lo, hi;
        fifth_bits(x[i].qh, x[i].qs, &lo, &hi);
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        offset16(lo, d, m, y);
        offset16(hi, d, m, y + 16);
    }
}

static void deq_q8(const uint8_t* s, int stride, int hdr, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, s += stride, y += 32) {
        uint16_t dh;
        std::memcpy(&dh, s, 2);
        const __m512 d = _mm512_set1_ps(fp16_to_fp32(dh));
        const __m256i q = load256(s + hdr);
        _mm512_storeu_ps(y, _mm512_mul_ps(d, i8x16(lo128(q))));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, i8x16(hi128(q))));
    }
}

static void deq_q2_K(const block_q2_K* x, float* y, int64_t nb) {
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load256(x[i].qs + 32 * h);
            for (int s = 0; s < 4; ++s, y += 32) {
                const __m256i v =
                    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * s)), m3);
                const uint8_t sa = x[i].scales[8 * h + 2 * s], sb = x[i].scales[8 * h + 2 * s + 1];
                affine16(lo128(v), d * (float)(sa & 0xF), dmin * (float)(sa >> 4), y);
                affine16(hi128(v), d * (float)(sb & 0xF), dmin * (float)(sb >> 4), y + 16);
            }
        }
    }
}

static void deq_q3_K(const block_q3_K* x, float* y, int64_t nb) {
    const __m256i m3 = _mm256_set1_epi8(3), k4 = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const uint8_t* sb = x[i].scales;
        float dl[16];
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? (sb[j] & 0xF) : (sb[j - 8] >> 4);
            const int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
            dl[j] = d * (float)((lo | (hi << 4)) - 32);
        }
        const __m256i hm = load256(x[i].hmask);
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load256(x[i].qs + 32 * h);
            for (int s = 0; s < 4; ++s, y += 32) {
                // q = low2 - (hbit ? 0 : 4): subtract 4 where the hmask bit is clear.
                const __mmask32 clear =
                    _mm256_testn_epi8_mask(hm, _mm256_set1_epi8((char)(1 << (4 * h + s))));
                __m256i v = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * s)), m3);
                v = _mm256_mask_sub_epi8(v, clear, v, k4);
                scale16(lo128(v), dl[8 * h + 2 * s], y);
                scale16(hi128(v), dl[8 * h + 2 * s + 1], y + 16);
            }
        }
    }
}

// Q4_K / Q5_K (qh == nullptr for Q4_K): sub-block b = 2c + k is nibble k of qs[32c .. 32c+32).
static void deq_qk45(const uint8_t* dm, const uint8_t* scales, const uint8_t* qh, const uint8_t* qs,
                     float* y) {
    uint16_t dh, mh;
    std::memcpy(&dh, dm, 2);
    std::memcpy(&mh, dm + 2, 2);
    const float d = fp16_to_fp32(dh), dmin = fp16_to_fp32(mh);
    const __m256i m4 = _mm256_set1_epi8(0x0F), k16 = _mm256_set1_epi8(0x10);
    const __m256i hv = qh ? load256(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
        const __m256i q = load256(qs + 32 * c);
        for (int k = 0; k < 2; ++k, y += 32) {
            const int b = 2 * c + k;
            uint8_t sc, m;
            scale_min_k4(b, scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            __m256i v = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(4 * k)), m4);
            if (qh)
                v = _mm256_mask_add_epi8(
                    v, _mm256_test_epi8_mask(hv, _mm256_set1_epi8((char)(1 << b))), v, k16);
            affine16(lo128(v), dl, ml, y);
            affine16(hi128(v), dl, ml, y + 16);
        }
    }
}

static void deq_q6_K(const block_q6_K* x, float* y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int h = 0; h < 2; ++h) {
            const __m256i qh = load256(x[i].qh + 32 * h);
            for (int t = 0; t < 4; ++t, y += 32) {
                const __m256i l = load256(x[i].ql + 64 * h + 32 * (t % 2));
                const __m256i lo =
                    _mm256_and_si256(_mm256_srl_epi16(l, _mm_cvtsi32_si128(4 * (t / 2))), m4);
                const __m256i hi =
                    _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * t)), m3);
                const __m256i v =
                    _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), k32);
                const int is = 8 * h + 2 * t;
                scale16(lo128(v), d * (float)x[i].scales[is], y);
                scale16(hi128(v), d * (float)x[i].scales[is + 1], y + 16);
            }
        }
    }
}

static void deq_q8_K(const block_q8_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK_K) {
        const __m512 d = _mm512_set1_ps(x[i].d);
        for (int k = 0; k < QK_K; k += 16)
            _mm512_storeu_ps(
                y + k, _mm512_mul_ps(d, i8x16(_mm_loadu_si128((const __m128i*)(x[i].qs + k)))));
    }
}

}  // namespace

void dequantize_row(QType t, const void* src, float* y, int64_t n) {
    const uint8_t* s = static_cast<const uint8_t*>(src);
    switch (t) {
    case QType::F32:
        std::memcpy(y, s, (size_t)n * 4);
        break;
    case QType::F16:
        deq_f16(s, y, n);
        break;
    case QType::BF16:
        deq_bf16(s, y, n);
        break;
    case QType::Q4_0:
        deq_q4_0((const block_q4_0*)s, y, n / 32);
        break;
    case QType::Q4_1:
        deq_q4_1((const block_q4_1*)s, y, n / 32);
        break;
    case QType::Q5_0:
        deq_q5_0((const block_q5_0*)s, y, n / 32);
        break;
    case QType::Q5_1:
        deq_q5_1((const block_q5_1*)s, y, n / 32);
        break;
    case QType::Q8_0:
        deq_q8(s, sizeof(block_q8_0), 2, y, n / 32);
        break;
    case QType::Q8_1:
        deq_q8(s, sizeof(block_q8_1), 4, y, n / 32);
        break;
    case QType::Q2_K:
        deq_q2_K((const block_q2_K*)s, y, n / QK_K);
        break;
    case QType::Q3_K:
        deq_q3_K((const block_q3_K*)s, y, n / QK_K);
        break;
    case QType::Q4_K:
        for (int64_t i = 0; i < n / QK_K; ++i, s += sizeof(block_q4_K), y += QK_K)
            deq_qk45(s, s + 4, nullptr, s + 16, y);
        break;
    case QType::Q5_K:
        for (int64_t i = 0; i < n / QK_K; ++i, s += sizeof(block_q5_K), y += QK_K)
            deq_qk45(s, s + 4, s + 16, s + 48, y);
        break;
    case QType::Q6_K:
        deq_q6_K((const block_q6_K*)s, y, n / QK_K);
        break;
    case QType::Q8_K:
        deq_q8_K((const block_q8_K*)s, y, n / QK_K);
        break;
    }
}

}  // namespace avx512
}  // namespace pylm
