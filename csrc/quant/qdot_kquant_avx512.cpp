// AVX-512 VNNI quantized dot products, part 2: K-quant super-blocks (Q2_K .. Q6_K) x Q8K.
//
// A super-block of 256 weights is unpacked once into 4 registers of 64 unsigned bytes u in
// natural order (Q2: 0..3, Q3: 0..7, Q4: 0..15, Q5: 0..31, Q6: 0..63). Per activation row:
//   4 x vpdpbusd(u, a)     -> int32 sums of 4 weights (|.| <= 4*63*127 < 32768),
//   2 x vpackssdw          -> the same sums as int16 (exact),
//   2 x vpdpwssd(.., sc)   -> sum_j sc_j * dot_j in int32, sc = int16 sub-block scales placed
//                             per lane once per super-block (vpermw, see PairIdx),
// i.e. 6 multiply uops per 256 weights instead of 8 with vpmaddubsw + vpdpwssd. Zero points /
// mins go through the activation block sums (bsums) once per super-block, as in
// qdot_kquant_avx2.cpp. The float part per lane and the final reduction are the canonical order
// defined in qdot_kquant_ref.cpp (the scalar and AVX2 kernels reproduce these lanes bit for bit).
// NOTE: GCC 12 reports its own _mm512_undefined_* idiom (inside casts/broadcasts) as
// maybe-uninitialized; the lanes are always overwritten.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/vmath_avx512.h"
#include "quant/qdot.h"
#include "quant/qdot_common.h"

namespace pylm {
namespace avx512 {

namespace {

static inline __m512i bcast256(const uint8_t* p) {  // 32 bytes into both halves
    return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Per-64-bit-lane shift counts: a for the low 256 bits, b for the high 256 bits.
static inline __m512i counts(int a, int b) {
    return _mm512_inserti64x4(_mm512_set1_epi64(a), _mm256_set1_epi64x(b), 1);
}

// The canonical tree (qdot_kquant_ref.cpp): v[i] += v[i+8], v[i] += v[i+4], v[i] += v[i+2],
// v[0] + v[1] -- vmath's vm_hsum.
static inline float reduce16(__m512 v) { return vm_hsum(v); }

// Per super-block: int16 scales in the low lanes of sc (16 per-16 scales, or 8 per-32 scales
// for Q4_K/Q5_K), int16 mins / zero-point offsets per 16 weights (mins16), d and dmin.
struct KSb {
    __m512i sc;
    __m256i mins16;
};

// d (and dmin) of n <= 8 super-blocks in one gather: the dword at byte `off` of each block holds
// fp16 d in its low half and dmin in its high half, or (dhigh) d in its high half.
static inline void gather_d(const uint8_t* blk, int ts, int off, bool dhigh, int n, float* d,
                            float* dmin) {
    const __m256i idx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(ts));
    const __m256i v = _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(),
                                                   (__mmask8)((1u << n) - 1), idx, blk + off, 1);
    const __m256i hi = _mm256_srli_epi32(v, 16);
    const __m256i lo = dhigh ? hi : _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
    const __m256i h =
        _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);  // [d x8 | dmin x8]
    _mm256_store_ps(d, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
    _mm256_store_ps(dmin, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}

// vpermw indices for packs(D_2h, D_2h+1) (h = 0, 1), where D_i = vpdpbusd over chunk i (64
// weights, int32 lane t = weights 4t .. 4t+3). int16 lane g = 8L + p of the pack (L = 128-bit
// lane) holds weights 64 (2h + (p >= 4)) + 16 L + 4 (p & 3) .. +3, i.e. per-16 sub-block
// 8h + 4 (p >= 4) + L (per-32: half of it).
struct PairIdx {
    int16_t v[2][2][32];  // [per32][h][g]
};
static constexpr PairIdx make_pair_idx() {
    PairIdx t{};
    for (int per32 = 0; per32 < 2; ++per32)
        for (int h = 0; h < 2; ++h)
            for (int g = 0; g < 32; ++g) {
                const int s16 = 8 * h + 4 * ((g & 7) >= 4) + g / 8;
                t.v[per32][h][g] = (int16_t)(per32 ? s16 / 2 : s16);
            }
    return t;
}
alignas(64) static constexpr PairIdx kPairIdx = make_pair_idx();

static inline __m512i pair_scales(const KSb& S, int h, bool per32) {
    return _mm512_permutexvar_epi16(_mm512_load_si512(kPairIdx.v[per32][h]), S.sc);
}

// Q4_K / Q5_K: 12 bytes at s -> 8 six-bit scales and mins.
static inline KSb prepare_k4(const uint8_t* s) {
    const uint32_t u0 = rd32(s), u1 = rd32(s + 4), u2 = rd32(s + 8);
    const uint64_t sc = (uint64_t)(u0 & 0x3F3F3F3F) |
                        (uint64_t)((u2 & 0x0F0F0F0F) | (((u0 >> 6) & 0x03030303) << 4)) << 32;
    const uint64_t mn = (uint64_t)(u1 & 0x3F3F3F3F) |
                        (uint64_t)(((u2 >> 4) & 0x0F0F0F0F) | (((u1 >> 6) & 0x03030303) << 4))
                            << 32;
    KSb S;
    S.sc = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    const __m256i dup = _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    S.mins16 = _mm256_permutexvar_epi16(
        dup, _mm256_zextsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mn))));
    return S;
}

struct Q2K {
    static constexpr int kBytes = sizeof(block_q2_K);
    static constexpr int kDOff = 80;  // d, dmin
    static constexpr bool kDHigh = false;
    static constexpr bool kOffset = false, kPer32 = false;
    static inline KSb prepare(const uint8_t* b) {
        const block_q2_K* x = reinterpret_cast<const block_q2_K*>(b);
        const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales));
        const __m128i m4 = _mm_set1_epi8(0x0F);
        KSb S;
        S.sc = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(s, m4)));
        S.mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
        return S;
    }
    // chunk i: groups 2i, 2i+1 of 32 = (qs[32n + l] >> 2j) & 3 with n = i/2, j = 2(i&1) (+1)
    static inline __m512i quants(const uint8_t* b, int i) {
        const block_q2_K* x = reinterpret_cast<const block_q2_K*>(b);
        const int j = 2 * (i & 1);
        return _mm512_and_si512(
            _mm512_srlv_epi64(bcast256(x->qs + 32 * (i >> 1)), counts(2 * j, 2 * j + 2)),
            _mm512_set1_epi8(3));
    }
};

struct Q3K {
    static constexpr int kBytes = sizeof(block_q3_K);
    static constexpr int kDOff = 106;  // scales[10..11], d: stays inside the block
    static constexpr bool kDHigh = true;
    static constexpr bool kOffset = true, kPer32 = false;  // value = u - 4
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
        S.sc = _mm512_zextsi256_si512(sc16);
        S.mins16 = _mm256_slli_epi16(sc16, 2);
        return S;
    }
    static inline __m512i quants(const uint8_t* b,
                                 int i) {  // low 2 bits + 4 * hmask bit (2i, 2i+1)
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
    static constexpr int kDOff = 0;
    static constexpr bool kDHigh = false;
    static constexpr bool kOffset = false, kPer32 = true;
    static inline KSb prepare(const uint8_t* b) { return prepare_k4(b + 4); }
    static inline __m512i quants(const uint8_t* b, int i) {  // 32 bytes: low nibbles, high nibbles
        return _mm512_and_si512(_mm512_srlv_epi64(bcast256(b + 16 + 32 * i), counts(0, 4)),
                                _mm512_set1_epi8(0x0F));
    }
};

struct Q5K {
    static constexpr int kBytes = sizeof(block_q5_K);
    static constexpr int kDOff = 0;
    static constexpr bool kDHigh = false;
    static constexpr bool kOffset = false, kPer32 = true;
    static inline KSb prepare(const uint8_t* b) { return prepare_k4(b + 4); }
    static inline __m512i quants(const uint8_t* b, int i) {  // nibbles + 16 * qh bit (2i, 2i+1)
        const block_q5_K* x = reinterpret_cast<const block_q5_K*>(b);
        const __m512i lo = _mm512_and_si512(
            _mm512_srlv_epi64(bcast256(x->qs + 32 * i), counts(0, 4)), _mm512_set1_epi8(0x0F));
        const __m512i bit = _mm512_sllv_epi64(_mm512_set1_epi8(1), counts(2 * i, 2 * i + 1));
        const __mmask64 h = _mm512_test_epi8_mask(bcast256(x->qh), bit);
        return _mm512_mask_add_epi8(lo, h, lo, _mm512_set1_epi8(16));
    }
};

struct Q6K {
    static constexpr int kBytes = sizeof(block_q6_K);
    static constexpr int kDOff = 206;  // scales[14..15], d
    static constexpr bool kDHigh = true;
    static constexpr bool kOffset = true, kPer32 = false;  // value = u - 32
    static inline KSb prepare(const uint8_t* b) {
        const block_q6_K* x = reinterpret_cast<const block_q6_K*>(b);
        const __m256i sc16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales)));
        KSb S;
        S.sc = _mm512_zextsi256_si512(sc16);
        S.mins16 = _mm256_slli_epi16(sc16, 5);
        return S;
    }
    // chunk i = 2n + odd: ql[64n .. 64n+63] nibble (odd: high) | 2 bits of qh[32n + l] << 4:
    // even: bits 0-1 (low 256), 2-3 (high 256); odd: bits 4-5, 6-7.
    static inline __m512i quants(const uint8_t* b, int i) {
        const block_q6_K* x = reinterpret_cast<const block_q6_K*>(b);
        const int n = i >> 1;
        const __m512i l = _mm512_loadu_si512(x->ql + 64 * n);
        const __m512i h = bcast256(x->qh + 32 * n);
        const __m512i lo = (i & 1) ? _mm512_srli_epi16(l, 4) : l;
        const __m512i hb =
            (i & 1) ? _mm512_srlv_epi64(h, counts(0, 2)) : _mm512_sllv_epi64(h, counts(4, 2));
        // bits 0-3 from lo, 4-7 from hb (0xE4: c ? a : b), then keep 6 bits
        const __m512i v = _mm512_ternarylogic_epi32(lo, hb, _mm512_set1_epi8(0x0F), 0xE4);
        return _mm512_and_si512(v, _mm512_set1_epi8(0x3F));
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
        const __m512i zero = _mm512_setzero_si512();
        alignas(32) float dd[8], dm[8];
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            prefetch_ahead(wr, ws);
            __m512 acc[C];
            for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
            for (int64_t sb0 = 0; sb0 < nsb; sb0 += 8) {
                const int nj = nsb - sb0 < 8 ? (int)(nsb - sb0) : 8;
                gather_d(wr + sb0 * T::kBytes, T::kBytes, T::kDOff, T::kDHigh, nj, dd, dm);
                for (int j = 0; j < nj; ++j) {
                    const int64_t sb = sb0 + j;
                    const uint8_t* blk = wr + sb * T::kBytes;
                    const __m512 dv = _mm512_set1_ps(dd[j]), mv = _mm512_set1_ps(dm[j]);
                    const KSb S = T::prepare(blk);
                    const __m512i s0 = pair_scales(S, 0, T::kPer32),
                                  s1 = pair_scales(S, 1, T::kPer32);
                    const __m512i q0 = T::quants(blk, 0), q1 = T::quants(blk, 1);
                    const __m512i q2 = T::quants(blk, 2), q3 = T::quants(blk, 3);
                    for (int c = 0; c < C; ++c) {
                        const int8_t* aq = a[c][sb].qs;
                        const __m512i d0 = _mm512_dpbusd_epi32(zero, q0, _mm512_loadu_si512(aq));
                        const __m512i d1 =
                            _mm512_dpbusd_epi32(zero, q1, _mm512_loadu_si512(aq + 64));
                        const __m512i d2 =
                            _mm512_dpbusd_epi32(zero, q2, _mm512_loadu_si512(aq + 128));
                        const __m512i d3 =
                            _mm512_dpbusd_epi32(zero, q3, _mm512_loadu_si512(aq + 192));
                        // |D lanes| <= 4 * 63 * 127 < 32768: the int16 pack is exact
                        __m512i is = _mm512_dpwssd_epi32(zero, _mm512_packs_epi32(d0, d1), s0);
                        is = _mm512_dpwssd_epi32(is, _mm512_packs_epi32(d2, d3), s1);
                        const __m256i m = _mm256_madd_epi16(
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[c][sb].bsums)),
                            S.mins16);
                        __m512 t;
                        if (T::kOffset) {
                            t = _mm512_mul_ps(
                                _mm512_cvtepi32_ps(_mm512_sub_epi32(is, _mm512_zextsi256_si512(m))),
                                dv);
                        } else {  // mins in lanes 0-7 only (lanes 8-15 keep t as it is)
                            t = _mm512_mul_ps(_mm512_cvtepi32_ps(is), dv);
                            t = _mm512_mask3_fnmadd_ps(
                                _mm512_cvtepi32_ps(_mm512_zextsi256_si512(m)), mv, t, 0x00FF);
                        }
                        acc[c] = _mm512_fmadd_ps(t, _mm512_set1_ps(a[c][sb].d), acc[c]);
                    }
                }
            }
            for (int c = 0; c < C; ++c) y[c * ldy + n] = reduce16(acc[c]);
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

}  // namespace avx512
}  // namespace pylm
