// AVX2 quantized dot products, part 1: activation quantizers, legacy blocks (Q4_0 .. Q8_0) and
// float weights. K-quants: qdot_kquant_avx2.cpp. Contract and layouts: qdot.h.
//
// Legacy block x Q8S activations, 32 weights per block (cf. ggml_vec_dot_q4_1_q8_1):
//   weights unpacked to unsigned bytes u (Q4: 0..15, Q5: 0..31), one vpmaddubsw(u, a) +
//   vpmaddwd(.., 1) gives 8 int32 partial sums; the block adds d_w*d_x*sum(u*a) + c_w*s_x, where
//   s_x = d_x*sum(a) and c_w is the zero point (-8 d_w, -16 d_w) or the min m_w of the block.
//   Q8_0 weights are signed: |w| x sign(a, w) (vpmaddubsw needs one unsigned operand).
// The fp16 scales of 8 blocks come in one vpgatherdd, so the per-block float work is one
// vcvtdq2ps and one FMA per activation row. Each weight block is unpacked once and dotted with
// up to 4 activation rows.
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "quant/qdot.h"

namespace pylm {
namespace avx2 {

namespace {

// Software prefetch of the row about 8 KiB (whole rows) ahead: a lone core streaming W from
// DRAM otherwise stalls between the hardware prefetcher's requests (matvec is memory bound).
static inline void prefetch_ahead(const uint8_t* row, int64_t ws) {
    if (ws <= 0) return;
    const uint8_t* p = row + (ws >= 8192 ? ws : (8192 / ws + 1) * ws);
    for (int64_t off = 0; off < ws; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

// round(x * id) with ties away from zero, as int32: t = trunc(v); t + trunc(2 * (v - t)).
static inline __m256i round_away(__m256 x, __m256 id) {
    const __m256 v = _mm256_mul_ps(x, id);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(v, t);
    const __m256 r = _mm256_add_ps(
        t, _mm256_round_ps(_mm256_add_ps(f, f), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
    return _mm256_cvtps_epi32(r);
}

static inline float absmax32(const float* x) {  // max |x[0..31]|
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    for (int j = 8; j < 32; j += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 32 floats -> 32 int8 at q; returns sum(q).
static inline int quant32(const float* x, float id, int8_t* q) {
    const __m256 idv = _mm256_set1_ps(id);
    const __m256i i0 = round_away(_mm256_loadu_ps(x), idv);
    const __m256i i1 = round_away(_mm256_loadu_ps(x + 8), idv);
    const __m256i i2 = round_away(_mm256_loadu_ps(x + 16), idv);
    const __m256i i3 = round_away(_mm256_loadu_ps(x + 24), idv);
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    const __m256i b = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), b);
    return hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
}

// ---- legacy weight blocks -> unsigned bytes, scale d, s-coefficient c ----------------------

static inline __m256i nibbles(const uint8_t* qs) {  // 16 bytes -> 32 values: low, then high
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

static inline __m256i high_bits(const uint8_t* qh) {  // bit i of the 32-bit qh -> 0x10 in byte i
    uint32_t h;
    std::memcpy(&h, qh, 4);
    const __m256i shuf =
        _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

static inline __m256i lane_mask(int n) {  // lanes < n set (maskload / mask gather)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The dwords at the start of n <= 8 blocks (stride ts): fp16 d in the low half and, for
// Q4_1/Q5_1, fp16 m in the high half. Returns [d0..d7 | m0..m7] as 16 fp16 values.
static inline __m256i head_f16(const uint8_t* p, int ts, int n) {
    const __m256i idx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(ts));
    const int* base = reinterpret_cast<const int*>(p);
    const __m256i v =
        n == 8 ? _mm256_i32gather_epi32(base, idx, 1)
               : _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), base, idx, lane_mask(n), 1);
    const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
    const __m256i hi = _mm256_srli_epi32(v, 16);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
}
static inline __m256 low_f16(__m256i h) {
    return _mm256_cvtph_ps(_mm256_castsi256_si128(h));
}
static inline __m256 high_f16(__m256i h) {
    return _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

// Per type: quants(block) -> 32 bytes (unsigned 0..31, or the signed Q8_0 weights), and
// scales(first block, n) -> d_w and the s_x coefficient c_w of n <= 8 blocks.
struct Q4_0 {
    static constexpr int kBytes = sizeof(block_q4_0);
    static constexpr bool kSigned = false;
    static inline __m256i quants(const uint8_t* b) { return nibbles(b + 2); }
    static inline void scales(const uint8_t* b, int n, __m256* d, __m256* c) {
        *d = low_f16(head_f16(b, kBytes, n));
        *c = _mm256_mul_ps(*d, _mm256_set1_ps(-8.0f));
    }
};
struct Q4_1 {
    static constexpr int kBytes = sizeof(block_q4_1);
    static constexpr bool kSigned = false;
    static inline __m256i quants(const uint8_t* b) { return nibbles(b + 4); }
    static inline void scales(const uint8_t* b, int n, __m256* d, __m256* c) {
        const __m256i h = head_f16(b, kBytes, n);
        *d = low_f16(h);
        *c = high_f16(h);
    }
};
struct Q5_0 {
    static constexpr int kBytes = sizeof(block_q5_0);
    static constexpr bool kSigned = false;
    static inline __m256i quants(const uint8_t* b) {
        return _mm256_or_si256(nibbles(b + 6), high_bits(b + 2));
    }
    static inline void scales(const uint8_t* b, int n, __m256* d, __m256* c) {
        *d = low_f16(head_f16(b, kBytes, n));
        *c = _mm256_mul_ps(*d, _mm256_set1_ps(-16.0f));
    }
};
struct Q5_1 {
    static constexpr int kBytes = sizeof(block_q5_1);
    static constexpr bool kSigned = false;
    static inline __m256i quants(const uint8_t* b) {
        return _mm256_or_si256(nibbles(b + 8), high_bits(b + 4));
    }
    static inline void scales(const uint8_t* b, int n, __m256* d, __m256* c) {
        const __m256i h = head_f16(b, kBytes, n);
        *d = low_f16(h);
        *c = high_f16(h);
    }
};
struct Q8_0 {
    static constexpr int kBytes = sizeof(block_q8_0);
    static constexpr bool kSigned = true;
    static inline __m256i quants(const uint8_t* b) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    }
    static inline void scales(const uint8_t* b, int n, __m256* d, __m256* c) {
        *d = low_f16(head_f16(b, kBytes, n));
        *c = _mm256_setzero_ps();
    }
};

// y[c * ldy + n] = dot(W row n, act row c) for c < C (C <= 4), n < N. Blocks go in groups of 8:
// the 8 weight scales are gathered once, multiplied by the 8 activation scales of each row
// (stored to sc[][] and re-read with vbroadcastss) and the s_x terms are one FMA per group.
template <class T>
struct LegacyRows {
    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    float* y, int64_t ldy) {
        const int64_t nb = K / 32;
        const int8_t* aq[C];
        const float* ad[C];
        const float* as[C];
        for (int c = 0; c < C; ++c) {
            aq[c] = q8s_qs(act[c]);
            ad[c] = q8s_d(act[c], K);
            as[c] = q8s_s(act[c], K);
        }
        const __m256i ones = _mm256_set1_epi16(1);
        alignas(32) float sc[C][8];
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            prefetch_ahead(wr, ws);
            // acc1 takes the odd blocks when C == 1, to hide the FMA latency
            __m256 acc0[C], acc1[C], accs[C];
            for (int c = 0; c < C; ++c) acc0[c] = acc1[c] = accs[c] = _mm256_setzero_ps();
            for (int64_t b0 = 0; b0 < nb; b0 += 8) {
                const int nblk = nb - b0 < 8 ? (int)(nb - b0) : 8;
                const uint8_t* wb = wr + b0 * T::kBytes;
                __m256 dw, cw;
                T::scales(wb, nblk, &dw, &cw);
                const __m256i lm = lane_mask(nblk);
                for (int c = 0; c < C; ++c) {
                    const __m256 dx = nblk == 8 ? _mm256_loadu_ps(ad[c] + b0)
                                                : _mm256_maskload_ps(ad[c] + b0, lm);
                    _mm256_store_ps(sc[c], _mm256_mul_ps(dw, dx));
                    if (!T::kSigned) {
                        const __m256 sx = nblk == 8 ? _mm256_loadu_ps(as[c] + b0)
                                                    : _mm256_maskload_ps(as[c] + b0, lm);
                        accs[c] = _mm256_fmadd_ps(cw, sx, accs[c]);
                    }
                }
                int j = 0;
                for (; j + 2 <= nblk; j += 2) {
                    block<C>(wb, j, aq, b0, sc, ones, acc0);
                    block<C>(wb, j + 1, aq, b0, sc, ones, C == 1 ? acc1 : acc0);
                }
                if (j < nblk) block<C>(wb, j, aq, b0, sc, ones, acc0);
            }
            for (int c = 0; c < C; ++c)
                y[c * ldy + n] = hsum_ps(_mm256_add_ps(accs[c], _mm256_add_ps(acc0[c], acc1[c])));
        }
    }

    // Block j of the group at wb against the C activation rows: acc += d_w d_x * dot(u, a).
    template <int C>
    static inline __attribute__((always_inline)) void block(const uint8_t* wb, int j,
                                                            const int8_t* const* aq, int64_t b0,
                                                            const float (*sc)[8], __m256i ones,
                                                            __m256* acc) {
        const __m256i q = T::quants(wb + j * T::kBytes);
        const __m256i qa = T::kSigned ? _mm256_sign_epi8(q, q) : q;
        for (int c = 0; c < C; ++c) {
            __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq[c] + (b0 + j) * 32));
            if (T::kSigned) a = _mm256_sign_epi8(a, q);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, a), ones);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&sc[c][j]), acc[c]);
        }
    }
};

// ---- float weights: 8 at a time, two accumulators per activation row ----------------------

struct F32W {
    static inline __m256 load8(const uint8_t* w, int64_t k) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + k);
    }
    static inline float one(const uint8_t* w, int64_t k) {
        return reinterpret_cast<const float*>(w)[k];
    }
};
struct F16W {
    static inline __m256 load8(const uint8_t* w, int64_t k) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * k)));
    }
    static inline float one(const uint8_t* w, int64_t k) {
        uint16_t h;
        std::memcpy(&h, w + 2 * k, 2);
        return fp16_to_fp32(h);
    }
};
struct BF16W {
    static inline __m256 load8(const uint8_t* w, int64_t k) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    static inline float one(const uint8_t* w, int64_t k) {
        uint16_t h;
        std::memcpy(&h, w + 2 * k, 2);
        return bf16_to_fp32(h);
    }
};

template <class T>
struct FloatRows {
    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    float* y, int64_t ldy) {
        const float* x[C];
        for (int c = 0; c < C; ++c) x[c] = reinterpret_cast<const float*>(act[c]);
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            prefetch_ahead(wr, ws);
            __m256 acc0[C], acc1[C];
            for (int c = 0; c < C; ++c) acc0[c] = acc1[c] = _mm256_setzero_ps();
            int64_t k = 0;
            for (; k + 16 <= K; k += 16) {
                const __m256 w0 = T::load8(wr, k), w1 = T::load8(wr, k + 8);
                for (int c = 0; c < C; ++c) {
                    acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[c] + k), acc0[c]);
                    acc1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[c] + k + 8), acc1[c]);
                }
            }
            for (; k + 8 <= K; k += 8) {
                const __m256 w0 = T::load8(wr, k);
                for (int c = 0; c < C; ++c)
                    acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[c] + k), acc0[c]);
            }
            for (int c = 0; c < C; ++c) {
                float s = hsum_ps(_mm256_add_ps(acc0[c], acc1[c]));
                for (int64_t t = k; t < K; ++t) s += T::one(wr, t) * x[c][t];
                y[c * ldy + n] = s;
            }
        }
    }
};

// ---- gemm over groups of up to 4 activation rows -------------------------------------------

using RowsFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*, float*,
                        int64_t);

static void gemm_groups(const RowsFn* fns, int64_t K, const uint8_t* w, int64_t ws, int64_t N,
                        const uint8_t* act, int64_t as, int64_t C, float* y, int64_t ldy) {
    for (int64_t c0 = 0; c0 < C; c0 += 4) {
        const int cn = C - c0 < 4 ? (int)(C - c0) : 4;
        const uint8_t* ap[4];
        for (int c = 0; c < cn; ++c) ap[c] = act + (c0 + c) * as;
        fns[cn - 1](K, w, ws, N, ap, y + c0 * ldy, ldy);
    }
}

// R::run<C> for C = 1..4 -> the vec_dot / gemm pair of qdot.h.
template <class R>
struct Kern {
    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RowsFn fns[4] = {R::template run<1>, R::template run<2>, R::template run<3>,
                                      R::template run<4>};
        gemm_groups(fns, K, w, ws, N, act, as, C, y, ldy);
    }
    static float vec_dot(int64_t K, const void* w, const void* act) {
        const uint8_t* ap[1] = {static_cast<const uint8_t*>(act)};
        float y;
        R::template run<1>(K, static_cast<const uint8_t*>(w), 0, 1, ap, &y, 1);
        return y;
    }
};
template <class R>
const QDotKernels kTable = {Kern<R>::vec_dot, Kern<R>::gemm};

}  // namespace

void quantize_act_q8s(const float* x, int64_t K, void* row) {
    int8_t* qs = static_cast<int8_t*>(row);
    float* d = reinterpret_cast<float*>(static_cast<uint8_t*>(row) + K);
    float* s = d + K / 32;
    for (int64_t b = 0; b < K / 32; ++b) {
        const float db = absmax32(x + b * 32) / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        const int sum = quant32(x + b * 32, id, qs + b * 32);
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

void quantize_act_q8k(const float* x, int64_t K, void* row) {
    block_q8_K* y = static_cast<block_q8_K*>(row);
    for (int64_t b = 0; b < K / QK_K; ++b) {
        const float* xb = x + b * QK_K;
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j += 32) {
            const float m = absmax32(xb + j);
            amax = m > amax ? m : amax;
        }
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        for (int j = 0; j < QK_K; j += 32) quant32(xb + j, id, y[b].qs + j);
        for (int j = 0; j < 16; ++j) {  // bsums: 16 sums of 16
            const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(y[b].qs + 16 * j));
            const __m128i s16 = _mm_maddubs_epi16(_mm_set1_epi8(1), q);
            const __m128i s32 = _mm_madd_epi16(s16, _mm_set1_epi16(1));
            __m128i t = _mm_add_epi32(s32, _mm_unpackhi_epi64(s32, s32));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 1));
            y[b].bsums[j] = (int16_t)_mm_cvtsi128_si32(t);
        }
        y[b].d = db;
    }
}

const QDotKernels* qdot_kernels(QType t) {
    switch (t) {
        case QType::F32:
            return &kTable<FloatRows<F32W>>;
        case QType::F16:
            return &kTable<FloatRows<F16W>>;
        case QType::BF16:
            return &kTable<FloatRows<BF16W>>;
        case QType::Q4_0:
            return &kTable<LegacyRows<Q4_0>>;
        case QType::Q4_1:
            return &kTable<LegacyRows<Q4_1>>;
        case QType::Q5_0:
            return &kTable<LegacyRows<Q5_0>>;
        case QType::Q5_1:
            return &kTable<LegacyRows<Q5_1>>;
        case QType::Q8_0:
            return &kTable<LegacyRows<Q8_0>>;
        default:
            return qdot_kernels_k(t);
    }
}

}  // namespace avx2
}  // namespace pylm
