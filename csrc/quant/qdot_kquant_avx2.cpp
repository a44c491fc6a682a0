// AVX2 quantized dot products, part 2: K-quant super-blocks (Q2_K .. Q6_K) x Q8K activations.
//
// Bit-identical to the scalar reference and the AVX-512 kernel: the canonical order of
// qdot_kquant_ref.cpp has 16 float lanes per row (AVX-512's), emulated here as two __m256
// (lanes 0-7, 8-15) with the same integers, the same float operations and the same final tree.
//
// A super-block of 256 weights is walked in 8 chunks of 32 (chunk i = weights 32i .. 32i+31),
// unpacked to unsigned bytes u (Q2: 0..3, Q3: 0..7, Q4: 0..15, Q5: 0..31, Q6: 0..63). Chunks i
// and i+2 (i = 0, 1, 4, 5) meet the activations together:
//   vpmaddubsw(u, a) x 2   -> int16 sums of 2 weights (<= 2*63*127 = 16002, no saturation),
//   vphaddw                -> int16 sums of 4 weights (<= 32004, exact), int16 lane
//                             [c0 b3 b2] per 128-bit half (c0: which chunk, b3 b2: bits of w),
//   vpmaddwd(.., sc)       -> int32 lane [L0 c0 b3] = the canonical lane 8 (i & 1) + that,
// so each int32 lane holds exactly the weights of its AVX-512 lane. The zero point / min goes
// through the activation block sums (block_q8_K.bsums) in lanes 0-7 once per super-block.
#include <immintrin.h>

#include <cstring>

#include "kernels/vmath_avx2.h"
#include "quant/qdot.h"
#include "quant/qdot_common.h"

namespace pylm {
namespace avx2 {

namespace {

// The canonical tree (qdot_kquant_ref.cpp) over lanes lo = 0-7, hi = 8-15.
static inline float reduce16(__m256 lo, __m256 hi) { return vm_hsum(_mm256_add_ps(lo, hi)); }

static inline float h2f(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return _cvtsh_ss(v);
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

// Scales for the vphaddw of chunks i, i+2 (i = 0, 1, 4, 5): int16 lane [c0 b3 b2] of 128-bit
// half L0 has sub-block 2 (i + 2 c0) + L0, i.e. [s_2i x4 | s_2i+4 x4 | s_2i+1 x4 | s_2i+5 x4],
// taken from sc_lo (i < 4) or sc_hi (i >= 4) at local index k = 2 (i & 1) (+4, +1, +5).
struct PairPat {
    uint8_t v[2][32];  // [i & 1][byte]
};
static constexpr PairPat make_pair_pat() {
    PairPat t{};
    for (int odd = 0; odd < 2; ++odd)
        for (int g = 0; g < 16; ++g) {  // int16 lane g = 8 L0 + 4 c0 + (b3 b2)
            const int sub = 2 * odd + 4 * ((g >> 2) & 1) + (g >> 3);
            t.v[odd][2 * g] = (uint8_t)(2 * sub);
            t.v[odd][2 * g + 1] = (uint8_t)(2 * sub + 1);
        }
    return t;
}
alignas(32) static constexpr PairPat kPairPat = make_pair_pat();

static inline __m256i pair_scales(const KSb& S, int i) {
    const __m256i pat = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPairPat.v[i & 1]));
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

// The canonical int32 lanes of one activation row for chunks (i, i+2) and (i+4, i+6), i = 0
// (lanes 0-7) or 1 (lanes 8-15); q: the 8 unpacked chunks, sc: the 4 pair scale vectors.
static inline __m256i half_lanes(const __m256i* q, const __m256i* sc, const int8_t* aq, int i) {
    const __m256i a0 = _mm256_maddubs_epi16(q[i], ld256(aq + 32 * i));
    const __m256i a1 = _mm256_maddubs_epi16(q[i + 2], ld256(aq + 32 * i + 64));
    const __m256i b0 = _mm256_maddubs_epi16(q[i + 4], ld256(aq + 32 * i + 128));
    const __m256i b1 = _mm256_maddubs_epi16(q[i + 6], ld256(aq + 32 * i + 192));
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_hadd_epi16(a0, a1), sc[i]),
                            _mm256_madd_epi16(_mm256_hadd_epi16(b0, b1), sc[i + 2]));
}

template <class T>
struct KRows {
    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    float* y, int64_t ldy) {
        const int64_t nsb = K / QK_K;
        const block_q8_K* a[C];
        for (int c = 0; c < C; ++c) a[c] = reinterpret_cast<const block_q8_K*>(act[c]);
        // Unpacked codes and pair scales of the current super-block: kept in L1 rather than
        // registers, so the rows' accumulators stay in registers.
        __m256i q[8], sc[4];
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            prefetch_ahead(wr, ws);
            __m256 acc_lo[C], acc_hi[C];  // canonical float lanes 0-7, 8-15
            for (int c = 0; c < C; ++c) acc_lo[c] = acc_hi[c] = _mm256_setzero_ps();
            for (int64_t sb = 0; sb < nsb; ++sb) {
                const uint8_t* blk = wr + sb * T::kBytes;
                const KSb S = T::prepare(blk);
                for (int i = 0; i < 8; ++i) q[i] = T::quants(blk, i);
                for (int p = 0; p < 4; ++p) sc[p] = pair_scales(S, (p & 1) + 4 * (p >> 1));
                const __m256 dv = _mm256_set1_ps(S.d), mv = _mm256_set1_ps(S.dmin);
                for (int c = 0; c < C; ++c) {
                    const int8_t* aq = a[c][sb].qs;
                    const __m256i il = half_lanes(q, sc, aq, 0), ih = half_lanes(q, sc, aq, 1);
                    const __m256i m = _mm256_madd_epi16(ld256(a[c][sb].bsums), S.mins16);
                    const __m256 dx = _mm256_broadcast_ss(&a[c][sb].d);
                    __m256 tl;
                    if (T::kOffset) {
                        tl = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(il, m)), dv);
                    } else {
                        tl = _mm256_mul_ps(_mm256_cvtepi32_ps(il), dv);
                        tl = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), mv, tl);
                    }
                    const __m256 th = _mm256_mul_ps(_mm256_cvtepi32_ps(ih), dv);
                    acc_lo[c] = _mm256_fmadd_ps(tl, dx, acc_lo[c]);
                    acc_hi[c] = _mm256_fmadd_ps(th, dx, acc_hi[c]);
                }
            }
            for (int c = 0; c < C; ++c) y[c * ldy + n] = reduce16(acc_lo[c], acc_hi[c]);
        }
    }
};

using RowsFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*, float*,
                        int64_t);

template <class R>
struct Kern {
    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RowsFn fns[8] = {R::template run<1>, R::template run<2>,
                                      R::template run<3>, R::template run<4>,
                                      R::template run<4>, R::template run<4>,
                                      R::template run<4>, R::template run<8>};
        for (int64_t c0 = 0; c0 < C;) {  // groups of 8 activation rows, then 4, then the rest
            const int64_t rem = C - c0;
            const int cn = rem >= 8 ? 8 : rem >= 4 ? 4 : (int)rem;
            const uint8_t* ap[8];
            for (int c = 0; c < cn; ++c) ap[c] = act + (c0 + c) * as;
            fns[cn - 1](K, w, ws, N, ap, y + c0 * ldy, ldy);
            c0 += cn;
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
