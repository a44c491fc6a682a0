// AVX2 quantized dot products, part 2: K-quant super-blocks (Q2_K .. Q6_K) x Q8K activations.
//
// A super-block of 256 weights is walked in 8 chunks of 32. Each chunk is unpacked to unsigned
// bytes u (Q2: 0..3, Q3: 0..7, Q4: 0..15, Q5: 0..31, Q6: 0..63) and meets the activations with
// vpmaddubsw(u, a) (int16 pair sums, no saturation: 2*63*127 < 32767) then vpmaddwd with the
// sub-block scales (int16, one per 16 weights), so a whole super-block sums in int32.
// The zero point / min is applied once per super-block through the activation block sums
// (block_q8_K.bsums, one per 16): Q3_K/Q6_K subtract 4*sc_j*bsum_j / 32*sc_j*bsum_j in integers,
// Q2_K/Q4_K/Q5_K subtract dmin * d_x * sum_j m_j*bsum_j in float (cf. ggml_vec_dot_q4_K_q8_K).
#include <immintrin.h>

#include <cstring>

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

static inline float h2f(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return _cvtsh_ss(v);
}

static inline uint32_t rd32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

static inline __m256i ld256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

static inline __m256i srl16(__m256i v, int n) {
    return _mm256_srl_epi16(v, _mm_cvtsi32_si128(n));
}

// Per super-block: int16 scales per 16 weights as two 128-bit halves broadcast to both lanes
// (sc_lo = sub-blocks 0..7, sc_hi = 8..15), int16 mins/offsets per 16 weights, float scales.
struct KSb {
    __m256i sc_lo, sc_hi, mins16;
    float d, dmin;
};

static inline void set_scales(KSb* S, __m256i sc16) {
    S->sc_lo = _mm256_permute4x64_epi64(sc16, 0x44);
    S->sc_hi = _mm256_permute4x64_epi64(sc16, 0xEE);
}

// Chunk i (32 weights = sub-blocks 2i, 2i+1): [s_2i x8 | s_2i+1 x8] as int16.
static inline __m256i chunk_scales(const KSb& S, int i) {
    const int k = i & 3;
    const __m128i lo = _mm_set1_epi16((short)((4 * k) | ((4 * k + 1) << 8)));
    const __m128i hi = _mm_set1_epi16((short)((4 * k + 2) | ((4 * k + 3) << 8)));
    const __m256i pat = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    return _mm256_shuffle_epi8(i < 4 ? S.sc_lo : S.sc_hi, pat);
}

// 8 scales (bytes 0..7) and 8 mins (bytes 8..15) of Q4_K/Q5_K -> per-16 int16 vectors.
static inline void scales_k4(const uint8_t* s, KSb* S) {
    const uint32_t u0 = rd32(s), u1 = rd32(s + 4), u2 = rd32(s + 8);
    const uint32_t sc03 = u0 & 0x3F3F3F3F;
    const uint32_t sc47 = (u2 & 0x0F0F0F0F) | (((u0 >> 6) & 0x03030303) << 4);
    const uint32_t m03 = u1 & 0x3F3F3F3F;
    const uint32_t m47 = ((u2 >> 4) & 0x0F0F0F0F) | (((u1 >> 6) & 0x03030303) << 4);
    const __m128i sc8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc47, (int)sc03));
    const __m128i m8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)m47, (int)m03));
    const __m256i sc16 = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_unpacklo_epi16(sc8, sc8)), _mm_unpackhi_epi16(sc8, sc8), 1);
    set_scales(S, sc16);
    S->mins16 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(m8, m8)),
                                        _mm_unpackhi_epi16(m8, m8), 1);
}

struct Q2K {
    static constexpr int kBytes = sizeof(block_q2_K);
    static constexpr bool kOffset = false;
    static inline KSb prepare(const uint8_t* b) {
        const block_q2_K* x = reinterpret_cast<const block_q2_K*>(b);
        const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales));
        const __m128i m4 = _mm_set1_epi8(0x0F);
        KSb S;
        set_scales(&S, _mm256_cvtepu8_epi16(_mm_and_si128(s, m4)));
        S.mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
        S.d = h2f(reinterpret_cast<const uint8_t*>(&x->d));
        S.dmin = h2f(reinterpret_cast<const uint8_t*>(&x->dmin));
        return S;
    }
    static inline __m256i quants(const uint8_t* b, int i) {  // i = 4n + j: (qs[32n+l] >> 2j) & 3
        const block_q2_K* x = reinterpret_cast<const block_q2_K*>(b);
        return _mm256_and_si256(srl16(ld256(x->qs + 32 * (i >> 2)), 2 * (i & 3)),
                                _mm256_set1_epi8(3));
    }
};

struct Q3K {
    static constexpr int kBytes = sizeof(block_q3_K);
    static constexpr bool kOffset = true;  // value = u - 4
    static inline KSb prepare(const uint8_t* b) {
        const block_q3_K* x = reinterpret_cast<const block_q3_K*>(b);
        const uint32_t a0 = rd32(x->scales), a1 = rd32(x->scales + 4), a2 = rd32(x->scales + 8);
        const uint32_t s0 = (a0 & 0x0F0F0F0F) | ((a2 & 0x03030303) << 4);
        const uint32_t s1 = (a1 & 0x0F0F0F0F) | (((a2 >> 2) & 0x03030303) << 4);
        const uint32_t s2 = ((a0 >> 4) & 0x0F0F0F0F) | (((a2 >> 4) & 0x03030303) << 4);
        const uint32_t s3 = ((a1 >> 4) & 0x0F0F0F0F) | (((a2 >> 6) & 0x03030303) << 4);
        const __m128i s6 =
            _mm_sub_epi8(_mm_set_epi32((int)s3, (int)s2, (int)s1, (int)s0), _mm_set1_epi8(32));
        const __m256i sc16 = _mm256_cvtepi8_epi16(s6);
        KSb S;
        set_scales(&S, sc16);
        S.mins16 = _mm256_slli_epi16(sc16, 2);
        S.d = h2f(reinterpret_cast<const uint8_t*>(&x->d));
        S.dmin = 0.0f;
        return S;
    }
    static inline __m256i quants(const uint8_t* b, int i) {  // low 2 bits + 4 * hmask bit i
        const block_q3_K* x = reinterpret_cast<const block_q3_K*>(b);
        const __m256i lo =
            _mm256_and_si256(srl16(ld256(x->qs + 32 * (i >> 2)), 2 * (i & 3)), _mm256_set1_epi8(3));
        const __m256i h = _mm256_and_si256(srl16(ld256(x->hmask), i), _mm256_set1_epi8(1));
        return _mm256_or_si256(lo, _mm256_slli_epi16(h, 2));
    }
};

struct Q4K {
    static constexpr int kBytes = sizeof(block_q4_K);
    static constexpr bool kOffset = false;
    static inline KSb prepare(const uint8_t* b) {
        KSb S;
        scales_k4(b + 4, &S);
        S.d = h2f(b);
        S.dmin = h2f(b + 2);
        return S;
    }
    static inline __m256i quants(const uint8_t* b, int i) {  // i = 2j (+1): low (high) nibbles
        const __m256i v = ld256(b + 16 + 32 * (i >> 1));
        return _mm256_and_si256(srl16(v, 4 * (i & 1)), _mm256_set1_epi8(0x0F));
    }
};

struct Q5K {
    static constexpr int kBytes = sizeof(block_q5_K);
    static constexpr bool kOffset = false;
    static inline KSb prepare(const uint8_t* b) {
        KSb S;
        scales_k4(b + 4, &S);
        S.d = h2f(b);
        S.dmin = h2f(b + 2);
        return S;
    }
    static inline __m256i quants(const uint8_t* b, int i) {  // nibbles + 16 * (qh bit i)
        const block_q5_K* x = reinterpret_cast<const block_q5_K*>(b);
        const __m256i v = ld256(x->qs + 32 * (i >> 1));
        const __m256i lo = _mm256_and_si256(srl16(v, 4 * (i & 1)), _mm256_set1_epi8(0x0F));
        const __m256i h = _mm256_and_si256(srl16(ld256(x->qh), i), _mm256_set1_epi8(1));
        return _mm256_or_si256(lo, _mm256_slli_epi16(h, 4));
    }
};

struct Q6K {
    static constexpr int kBytes = sizeof(block_q6_K);
    static constexpr bool kOffset = true;  // value = u - 32
    static inline KSb prepare(const uint8_t* b) {
        const block_q6_K* x = reinterpret_cast<const block_q6_K*>(b);
        const __m256i sc16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales)));
        KSb S;
        set_scales(&S, sc16);
        S.mins16 = _mm256_slli_epi16(sc16, 5);
        S.d = h2f(reinterpret_cast<const uint8_t*>(&x->d));
        S.dmin = 0.0f;
        return S;
    }
    // i = 4n + g: ql[64n + 32(g&1) + l] nibble (g>>1) | ((qh[32n + l] >> 2g) & 3) << 4
    static inline __m256i quants(const uint8_t* b, int i) {
        const block_q6_K* x = reinterpret_cast<const block_q6_K*>(b);
        const int n = i >> 2, g = i & 3;
        const __m256i v = ld256(x->ql + 64 * n + 32 * (g & 1));
        const __m256i lo = _mm256_and_si256(srl16(v, 4 * (g >> 1)), _mm256_set1_epi8(0x0F));
        const __m256i h =
            _mm256_and_si256(srl16(ld256(x->qh + 32 * n), 2 * g), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(h, 4));
    }
};

template <class T>
struct KRows {
    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    float* y, int64_t ldy) {
        const int64_t nsb = K / QK_K;
        const block_q8_K* a[C];
        for (int c = 0; c < C; ++c) a[c] = reinterpret_cast<const block_q8_K*>(act[c]);
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            prefetch_ahead(wr, ws);
            __m256 acc[C];
            for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
            for (int64_t sb = 0; sb < nsb; ++sb) {
                const uint8_t* blk = wr + sb * T::kBytes;
                const KSb S = T::prepare(blk);
                __m256i isum[C];
                for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
                for (int i = 0; i < 8; ++i) {
                    const __m256i q = T::quants(blk, i);
                    const __m256i sc = chunk_scales(S, i);
                    for (int c = 0; c < C; ++c) {
                        const __m256i p = _mm256_maddubs_epi16(q, ld256(a[c][sb].qs + 32 * i));
                        isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p, sc));
                    }
                }
                const __m256 dv = _mm256_set1_ps(S.d), mv = _mm256_set1_ps(S.dmin);
                for (int c = 0; c < C; ++c) {
                    const __m256i m = _mm256_madd_epi16(ld256(a[c][sb].bsums), S.mins16);
                    const __m256 dx = _mm256_broadcast_ss(&a[c][sb].d);
                    if (T::kOffset) {
                        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[c], m)),
                                                 _mm256_mul_ps(dv, dx), acc[c]);
                    } else {
                        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dv, dx),
                                                 acc[c]);
                        acc[c] =
                            _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(mv, dx), acc[c]);
                    }
                }
            }
            for (int c = 0; c < C; ++c) y[c * ldy + n] = hsum_ps(acc[c]);
        }
    }
};

using RowsFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*, float*,
                        int64_t);

template <class R>
struct Kern {
    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RowsFn fns[4] = {R::template run<1>, R::template run<2>, R::template run<3>,
                                      R::template run<4>};
        for (int64_t c0 = 0; c0 < C; c0 += 4) {
            const int cn = C - c0 < 4 ? (int)(C - c0) : 4;
            const uint8_t* ap[4];
            for (int c = 0; c < cn; ++c) ap[c] = act + (c0 + c) * as;
            fns[cn - 1](K, w, ws, N, ap, y + c0 * ldy, ldy);
        }
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

const QDotKernels* qdot_kernels_k(QType t) {
    switch (t) {
        case QType::Q2_K:
            return &kTable<KRows<Q2K>>;
        case QType::Q3_K:
            return &kTable<KRows<Q3K>>;
        case QType::Q4_K:
            return &kTable<KRows<Q4K>>;
        case QType::Q5_K:
            return &kTable<KRows<Q5K>>;
        case QType::Q6_K:
            return &kTable<KRows<Q6K>>;
        default:
            return nullptr;
    }
}

}  // namespace avx2
}  // namespace pylm
