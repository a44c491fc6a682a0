// AVX-512 VNNI quantized dot products, part 2: K-quant super-blocks (Q2_K .. Q6_K) x Q8K.
//
// A super-block of 256 weights is walked in 4 chunks of 64, each unpacked once to unsigned
// bytes u in natural order (Q2: 0..3, Q3: 0..7, Q4: 0..15, Q5: 0..31, Q6: 0..63). Per
// activation row a chunk costs two instructions: vpmaddubsw(u, a) -> 32 int16 pair sums (no
// saturation: 2*63*127 < 32767), then vpdpwssd with the int16 sub-block scales (one per 16
// weights, expanded with vpermw) accumulating in int32. Zero points / mins go through the
// activation block sums (bsums) once per super-block, as in qdot_kquant_avx2.cpp.
// NOTE: GCC 12 reports its own _mm512_undefined_* idiom (inside casts/broadcasts) as
// maybe-uninitialized; the lanes are always overwritten.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>

#include "quant/qdot.h"

namespace pylm {
namespace avx512 {

namespace {

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

static inline __m512i bcast256(const uint8_t* p) {  // 32 bytes into both halves
    return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Per-64-bit-lane shift counts: a for the low 256 bits, b for the high 256 bits.
static inline __m512i counts(int a, int b) {
    return _mm512_inserti64x4(_mm512_set1_epi64(a), _mm256_set1_epi64x(b), 1);
}

// Per super-block: 16 int16 scales (one per 16 weights) in the low half of sc16, int16
// mins / offsets per 16 weights (mins16), float scales.
struct KSb {
    __m512i sc16;
    __m256i mins16;
    float d, dmin;
};

// Chunk i (weights 64i .. 64i+63 = sub-blocks 4i .. 4i+3): int16 lane l gets scale 4i + l/8.
static inline __m512i chunk_scales(const KSb& S, int i) {
    const __m512i idx = _mm512_add_epi16(
        _mm512_set1_epi16((short)(4 * i)),
        _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
            _mm256_setr_epi16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), 1));
    return _mm512_permutexvar_epi16(idx, S.sc16);
}

static inline void scales_k4(const uint8_t* s, KSb* S) {  // Q4_K / Q5_K packed 6-bit scales
    const uint32_t u0 = rd32(s), u1 = rd32(s + 4), u2 = rd32(s + 8);
    const uint32_t sc03 = u0 & 0x3F3F3F3F;
    const uint32_t sc47 = (u2 & 0x0F0F0F0F) | (((u0 >> 6) & 0x03030303) << 4);
    const uint32_t m03 = u1 & 0x3F3F3F3F;
    const uint32_t m47 = ((u2 >> 4) & 0x0F0F0F0F) | (((u1 >> 6) & 0x03030303) << 4);
    const __m128i sc8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc47, (int)sc03));
    const __m128i m8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)m47, (int)m03));
    const __m256i sc16 = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_unpacklo_epi16(sc8, sc8)), _mm_unpackhi_epi16(sc8, sc8), 1);
    S->sc16 = _mm512_zextsi256_si512(sc16);
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
        S.sc16 = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(s, m4)));
        S.mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
        S.d = h2f(reinterpret_cast<const uint8_t*>(&x->d));
        S.dmin = h2f(reinterpret_cast<const uint8_t*>(&x->dmin));
        return S;
    }
    // chunk i: groups 2i, 2i+1 of 32 = (qs[32n + l] >> 2j) & 3 with n = i/2, j = 2(i&1) (+1)
    static inline __m512i quants(const uint8_t* b, int i) {
        const block_q2_K* x = reinterpret_cast<const block_q2_K*>(b);
        const int j = 2 * (i & 1);
        return _mm512_and_si512(_mm512_srlv_epi64(bcast256(x->qs + 32 * (i >> 1)), counts(2 * j, 2 * j + 2)),
                                _mm512_set1_epi8(3));
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
        const __m128i s6 = _mm_sub_epi8(_mm_set_epi32((int)s3, (int)s2, (int)s1, (int)s0),
                                        _mm_set1_epi8(32));
        const __m256i sc16 = _mm256_cvtepi8_epi16(s6);
        KSb S;
        S.sc16 = _mm512_zextsi256_si512(sc16);
        S.mins16 = _mm256_slli_epi16(sc16, 2);
        S.d = h2f(reinterpret_cast<const uint8_t*>(&x->d));
        S.dmin = 0.0f;
        return S;
    }
    static inline __m512i quants(const uint8_t* b, int i) {  // low 2 bits + 4 * hmask bit (2i, 2i+1)
        const block_q3_K* x = reinterpret_cast<const block_q3_K*>(b);
        const int j = 2 * (i & 1);
        const __m512i lo = _mm512_and_si512(
            _mm512_srlv_epi64(bcast256(x->qs + 32 * (i >> 1)), counts(2 * j, 2 * j + 2)),
            _mm512_set1_epi8(3));
        const __m512i bit = _mm512_sllv_epi64(_mm512_set1_epi8(1), counts(2 * i, 2 * i + 1));
        const __mmask64 h = _mm512_test_epi8_mask(bcast256(x->hmask), bit);
        return _mm512_mask_add_epi8(lo, h, lo, _mm512_set1_epi8(4));
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
    static inline __m512i quants(const uint8_t* b, int i) {  // 32 bytes: low nibbles, high nibbles
        return _mm512_and_si512(_mm512_srlv_epi64(bcast256(b + 16 + 32 * i), counts(0, 4)),
                                _mm512_set1_epi8(0x0F));
    }
};

struct Q5K {
    static constexpr int kBytes = sizeof(block_q5_K);
    static constexpr bool kOffset = false;
    static inline KSb prepare(const uint8_t* b) { return Q4K::prepare(b); }
    static inline __m512i quants(const uint8_t* b, int i) {  // nibbles + 16 * qh bit (2i, 2i+1)
        const block_q5_K* x = reinterpret_cast<const block_q5_K*>(b);
        const __m512i lo = _mm512_and_si512(_mm512_srlv_epi64(bcast256(x->qs + 32 * i), counts(0, 4)),
                                            _mm512_set1_epi8(0x0F));
        const __m512i bit = _mm512_sllv_epi64(_mm512_set1_epi8(1), counts(2 * i, 2 * i + 1));
        const __mmask64 h = _mm512_test_epi8_mask(bcast256(x->qh), bit);
        return _mm512_mask_add_epi8(lo, h, lo, _mm512_set1_epi8(16));
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
        S.sc16 = _mm512_zextsi256_si512(sc16);
        S.mins16 = _mm256_slli_epi16(sc16, 5);
        S.d = h2f(reinterpret_cast<const uint8_t*>(&x->d));
        S.dmin = 0.0f;
        return S;
    }
    // chunk i = 2n + odd: 64 bytes ql[64n ..] (odd: high nibbles) | 2 bits of qh[32n + l] << 4:
    // even: bits 0-1 (low half), 2-3 (high half); odd: bits 4-5, 6-7.
    static inline __m512i quants(const uint8_t* b, int i) {
        const block_q6_K* x = reinterpret_cast<const block_q6_K*>(b);
        const int n = i >> 1;
        __m512i lo = _mm512_loadu_si512(x->ql + 64 * n);
        const __m512i h = bcast256(x->qh + 32 * n);
        __m512i hb;
        if (i & 1) {
            lo = _mm512_srli_epi16(lo, 4);
            hb = _mm512_srlv_epi64(h, counts(0, 2));
        } else {
            hb = _mm512_sllv_epi64(h, counts(4, 2));
        }
        return _mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi8(0x0F)),
                               _mm512_and_si512(hb, _mm512_set1_epi8(0x30)));
    }
};

template <class T>
struct KRows {
    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N,
                    const uint8_t* const* act, float* y, int64_t ldy) {
        const int64_t nsb = K / QK_K;
        const block_q8_K* a[C];
        for (int c = 0; c < C; ++c) a[c] = reinterpret_cast<const block_q8_K*>(act[c]);
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            __m512 acc[C];
            for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
            for (int64_t sb = 0; sb < nsb; ++sb) {
                const uint8_t* blk = wr + sb * T::kBytes;
                const KSb S = T::prepare(blk);
                __m512i is0[C], is1[C];  // even / odd chunks: two dependency chains
                for (int c = 0; c < C; ++c) is0[c] = is1[c] = _mm512_setzero_si512();
                for (int i = 0; i < 4; ++i) {
                    const __m512i q = T::quants(blk, i);
                    const __m512i sc = chunk_scales(S, i);
                    for (int c = 0; c < C; ++c) {
                        const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(a[c][sb].qs + 64 * i));
                        if (i & 1)
                            is1[c] = _mm512_dpwssd_epi32(is1[c], p, sc);
                        else
                            is0[c] = _mm512_dpwssd_epi32(is0[c], p, sc);
                    }
                }
                const __m512 dv = _mm512_set1_ps(S.d), mv = _mm512_set1_ps(S.dmin);
                for (int c = 0; c < C; ++c) {
                    const __m256i m = _mm256_madd_epi16(
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[c][sb].bsums)), S.mins16);
                    const __m512 dx = _mm512_set1_ps(a[c][sb].d);
                    __m512i is = _mm512_add_epi32(is0[c], is1[c]);
                    if (T::kOffset) {
                        is = _mm512_sub_epi32(is, _mm512_zextsi256_si512(m));
                        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(dv, dx), acc[c]);
                    } else {
                        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(dv, dx), acc[c]);
                        acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(m)),
                                                  _mm512_mul_ps(mv, dx), acc[c]);
                    }
                }
            }
            for (int c = 0; c < C; ++c) y[c * ldy + n] = _mm512_reduce_add_ps(acc[c]);
        }
    }
};

using RowsFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*, float*,
                        int64_t);

template <class R>
struct Kern {
    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RowsFn fns[4] = {R::template run<1>, R::template run<2>,
                                      R::template run<3>, R::template run<4>};
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
    case QType::Q2_K: return &kTable<KRows<Q2K>>;
    case QType::Q3_K: return &kTable<KRows<Q3K>>;
    case QType::Q4_K: return &kTable<KRows<Q4K>>;
    case QType::Q5_K: return &kTable<KRows<Q5K>>;
    case QType::Q6_K: return &kTable<KRows<Q6K>>;
    default: return nullptr;
    }
}

}  // namespace avx512
}  // namespace pylm
