// AVX2 dequantization (8 floats per vector). Same element order and float operations as
// dequant_ref.cpp: one mul (plus one add/sub where the format has an offset), never an FMA,
// so results are bit-identical with gguf-py. Quants are widened u8/i8 -> i32 -> f32 exactly.
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "quant/dequant.h"

namespace pylm {
namespace avx2 {
namespace {

// 8 bytes at p (unsigned / signed) -> 8 floats.
static inline __m256 u8x8(const void* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}
static inline __m256 i8x8(const void* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}
// Low / high 8 bytes of a 128-bit vector -> 8 floats (signed bytes).
static inline __m256 i8lo(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
static inline __m256 i8hi(__m128i v) { return i8lo(_mm_srli_si128(v, 8)); }
static inline __m256 u8lo(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 u8hi(__m128i v) { return u8lo(_mm_srli_si128(v, 8)); }

// 16 unsigned byte quants -> y[0..16) = dl * q - ml.
static inline void affine16(__m128i q, float dl, float ml, float* y) {
    const __m256 d = _mm256_set1_ps(dl), m = _mm256_set1_ps(ml);
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, u8lo(q)), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, u8hi(q)), m));
}
// 16 signed byte quants -> y[0..16) = dl * q.
static inline void scale16(__m128i q, float dl, float* y) {
    const __m256 d = _mm256_set1_ps(dl);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, i8lo(q)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, i8hi(q)));
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
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(s + 2 * i))));
    for (; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        y[i] = fp16_to_fp32(h);
    }
}

static void deq_bf16(const uint8_t* s, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(s + 2 * i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        y[i] = bf16_to_fp32(h);
    }
}

// Legacy 32-value blocks: nibbles (+ optional 5th bit), scale d, optional offset m.
// lo/hi: the 16 low / high nibbles (values 0..15 / 16..31) as bytes.
static inline void nibbles(const uint8_t* qs, __m128i* lo, __m128i* hi) {
    const __m128i q = _mm_loadu_si128((const __m128i*)qs), m4 = _mm_set1_epi8(0x0F);
    *lo = _mm_and_si128(q, m4);
    *hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
}

// Adds bit (16*half + j) of qh, shifted to bit 4, to byte j of v (j = 0..15).
static inline __m128i add_high_bits(__m128i v, uint32_t qh, int half) {
    // Spread the 16 bits over 16 bytes, then test each byte against its own bit.
    const uint32_t bits = (qh >> (16 * half)) & 0xFFFF;
    const __m128i rep =
        _mm_shuffle_epi8(_mm_cvtsi32_si128((int)bits),
                         _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    const __m128i sel = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    const __m128i set = _mm_cmpeq_epi8(_mm_and_si128(rep, sel), sel);
    return _mm_or_si128(v, _mm_and_si128(set, _mm_set1_epi8(0x10)));
}

static inline void store32_scaled(__m128i lo, __m128i hi, float df, float* y) {
    scale16(lo, df, y);
    scale16(hi, df, y + 16);
}
static inline void store32_offset(__m128i lo, __m128i hi, float df, float mf, float* y) {
    const __m256 d = _mm256_set1_ps(df), m = _mm256_set1_ps(mf);
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(d, u8lo(lo)), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(d, u8hi(lo)), m));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(d, u8lo(hi)), m));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(d, u8hi(hi)), m));
}

static void deq_q4_0(const block_q4_0* x, float* y, int64_t nb) {
    const __m128i k8 = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        __m128i lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        store32_scaled(_mm_sub_epi8(lo, k8), _mm_sub_epi8(hi, k8), fp16_to_fp32(x[i].d), y);
    }
}

static void deq_q4_1(const block_q4_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        __m128i lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        store32_offset(lo, hi, fp16_to_fp32(x[i].d), fp16_to_fp32(x[i].m), y);
    }
}

static void deq_q5_0(const block_q5_0* x, float* y, int64_t nb) {
    const __m128i k16 = _mm_set1_epi8(16);
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        __m128i lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        lo = _mm_sub_epi8(add_high_bits(lo, qh, 0), k16);
        hi = _mm_sub_epi8(add_high_bits(hi, qh, 1), k16);
        store32_scaled(lo, hi, fp16_to_fp32(x[i].d), y);
    }
}

static void deq_q5_1(const block_q5_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += 32) {
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        __m128i lo, hi;
        nibbles(x[i].qs, &lo, &hi);
        store32_offset(add_high_bits(lo, qh, 0), add_high_bits(hi, qh, 1), fp16_to_fp32(x[i].d),
                       fp16_to_fp32(x[i].m), y);
    }
}

// Q8_0 / Q8_1 share the layout of their quants: 32 int8 after the header.
static void deq_q8(const uint8_t* s, int stride, int hdr, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, s += stride, y += 32) {
        uint16_t dh;
        std::memcpy(&dh, s, 2);
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(dh));
        for (int k = 0; k < 4; ++k)
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, i8x8(s + hdr + 8 * k)));
    }
}

static void deq_q2_K(const block_q2_K* x, float* y, int64_t nb) {
    const __m128i m3 = _mm_set1_epi8(3);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int h = 0; h < 2; ++h) {
            const __m128i q0 = _mm_loadu_si128((const __m128i*)(x[i].qs + 32 * h));
            const __m128i q1 = _mm_loadu_si128((const __m128i*)(x[i].qs + 32 * h + 16));
            for (int s = 0; s < 4; ++s, y += 32) {
                const __m128i sh = _mm_cvtsi32_si128(2 * s);
                const uint8_t sa = x[i].scales[8 * h + 2 * s], sb = x[i].scales[8 * h + 2 * s + 1];
                affine16(_mm_and_si128(_mm_srl_epi16(q0, sh), m3), d * (float)(sa & 0xF),
                         dmin * (float)(sa >> 4), y);
                affine16(_mm_and_si128(_mm_srl_epi16(q1, sh), m3), d * (float)(sb & 0xF),
                         dmin * (float)(sb >> 4), y + 16);
            }
        }
    }
}

static void deq_q3_K(const block_q3_K* x, float* y, int64_t nb) {
    const __m128i m3 = _mm_set1_epi8(3), k4 = _mm_set1_epi8(4);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const uint8_t* sb = x[i].scales;
        float dl[16];
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? (sb[j] & 0xF) : (sb[j - 8] >> 4);
            const int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
            dl[j] = d * (float)((lo | (hi << 4)) - 32);
        }
        const __m128i hm0 = _mm_loadu_si128((const __m128i*)x[i].hmask);
        const __m128i hm1 = _mm_loadu_si128((const __m128i*)(x[i].hmask + 16));
        for (int h = 0; h < 2; ++h) {
            const __m128i q0 = _mm_loadu_si128((const __m128i*)(x[i].qs + 32 * h));
            const __m128i q1 = _mm_loadu_si128((const __m128i*)(x[i].qs + 32 * h + 16));
            for (int s = 0; s < 4; ++s, y += 32) {
                const __m128i sh = _mm_cvtsi32_si128(2 * s);
                const __m128i bit = _mm_set1_epi8((char)(1 << (4 * h + s)));
                // q = low2 - 4 + 4 * hbit
                const __m128i h0 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hm0, bit), bit), k4);
                const __m128i h1 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hm1, bit), bit), k4);
                const __m128i v0 =
                    _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srl_epi16(q0, sh), m3), h0), k4);
                const __m128i v1 =
                    _mm_sub_epi8(_mm_or_si128(_mm_and_si128(_mm_srl_epi16(q1, sh), m3), h1), k4);
                scale16(v0, dl[8 * h + 2 * s], y);
                scale16(v1, dl[8 * h + 2 * s + 1], y + 16);
            }
        }
    }
}

// Q4_K / Q5_K: qh == nullptr for Q4_K.
static void deq_qk45(const uint8_t* dm, const uint8_t* scales, const uint8_t* qh, const uint8_t* qs,
                     float* y) {
    uint16_t dh, mh;
    std::memcpy(&dh, dm, 2);
    std::memcpy(&mh, dm + 2, 2);
    const float d = fp16_to_fp32(dh), dmin = fp16_to_fp32(mh);
    const __m128i m4 = _mm_set1_epi8(0x0F), k16 = _mm_set1_epi8(0x10);
    __m128i h0 = _mm_setzero_si128(), h1 = _mm_setzero_si128();
    if (qh) {
        h0 = _mm_loadu_si128((const __m128i*)qh);
        h1 = _mm_loadu_si128((const __m128i*)(qh + 16));
    }
    for (int c = 0; c < 4; ++c) {
        const __m128i q0 = _mm_loadu_si128((const __m128i*)(qs + 32 * c));
        const __m128i q1 = _mm_loadu_si128((const __m128i*)(qs + 32 * c + 16));
        for (int k = 0; k < 2; ++k, y += 32) {
            const int b = 2 * c + k;
            uint8_t sc, m;
            scale_min_k4(b, scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const __m128i sh = _mm_cvtsi32_si128(4 * k);
            __m128i v0 = _mm_and_si128(_mm_srl_epi16(q0, sh), m4);
            __m128i v1 = _mm_and_si128(_mm_srl_epi16(q1, sh), m4);
            if (qh) {
                const __m128i bit = _mm_set1_epi8((char)(1 << b));
                v0 = _mm_or_si128(v0,
                                  _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(h0, bit), bit), k16));
                v1 = _mm_or_si128(v1,
                                  _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(h1, bit), bit), k16));
            }
            affine16(v0, dl, ml, y);
            affine16(v1, dl, ml, y + 16);
        }
    }
}

static void deq_q6_K(const block_q6_K* x, float* y, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(0x0F), m3 = _mm_set1_epi8(3), k32 = _mm_set1_epi8(32);
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[i].ql + 64 * h;
            const __m128i qh0 = _mm_loadu_si128((const __m128i*)(x[i].qh + 32 * h));
            const __m128i qh1 = _mm_loadu_si128((const __m128i*)(x[i].qh + 32 * h + 16));
            for (int t = 0; t < 4; ++t, y += 32) {
                const __m128i l0 = _mm_loadu_si128((const __m128i*)(ql + 32 * (t % 2)));
                const __m128i l1 = _mm_loadu_si128((const __m128i*)(ql + 32 * (t % 2) + 16));
                const __m128i sl = _mm_cvtsi32_si128(4 * (t / 2)), shh = _mm_cvtsi32_si128(2 * t);
                const __m128i v0 =
                    _mm_or_si128(_mm_and_si128(_mm_srl_epi16(l0, sl), m4),
                                 _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh0, shh), m3), 4));
                const __m128i v1 =
                    _mm_or_si128(_mm_and_si128(_mm_srl_epi16(l1, sl), m4),
                                 _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh1, shh), m3), 4));
                const int is = 8 * h + 2 * t;
                scale16(_mm_sub_epi8(v0, k32), d * (float)x[i].scales[is], y);
                scale16(_mm_sub_epi8(v1, k32), d * (float)x[i].scales[is + 1], y + 16);
            }
        }
    }
}

static void deq_q8_K(const block_q8_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK_K) {
        const __m256 d = _mm256_set1_ps(x[i].d);
        for (int k = 0; k < QK_K; k += 8)
            _mm256_storeu_ps(y + k, _mm256_mul_ps(d, i8x8(x[i].qs + k)));
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

}  // namespace avx2
}  // namespace pylm
