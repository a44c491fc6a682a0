// AVX2 quantized dot products, part 1: activation quantizers, legacy blocks (Q4_0 .. Q8_0) and
// float weights. K-quants: qdot_kquant_avx2.cpp. Contract and layouts: qdot.h.
//
// Legacy blocks and float weights follow the canonical evaluation order of qdot_canon.h (the
// natural order of the AVX-512 kernels), so results are bit-identical to AVX-512 and scalar:
// 16 float lanes as two __m256 (lanes 0-7, 8-15), the same fused multiply-adds, the same tree.
// Legacy units (4 blocks, Q8_0: 2) are transposed into canonical lane order with unpack /
// permute; vpmaddubsw + vpmaddwd give the exact int32 lane sums (no int16 saturation: Q4/Q5
// bytes are unsigned <= 31, Q8_0 is dotted as |w| x sign(a, w)).
// Packed rows (Q4_0, Q4_1, Q8_0; the engine's load-time copy, qdot.h) skip the scale gather and
// the unit transposes. Hot matvec, 1 thread, against the GGUF rows (K = 576 / 1536): C = 1
// 0.64-0.92 of the time, C = 2 0.77-0.99; SmolLM2 decode step 0.93, Gemma 3 0.97.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/half.h"
#include "core/scratch.h"
#include "kernels/vmath_avx2.h"
#include "quant/qdot.h"
#include "quant/qdot_common.h"
#include "quant/qdot_canon.h"

namespace pylm {
namespace avx2 {

namespace {

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

// Weight types (as in qdot_avx512.cpp): kUnit blocks per canonical unit (qdot_canon.h), qs at
// byte kQs, the 32-bit qh (Q5) at kQh (-1: none), kZero the zero point folded into the integer
// sums (0: the type has a float min m, fp16 in the high half of the block's first dword).
struct Q4_0 {
    static constexpr int kBytes = sizeof(block_q4_0), kUnit = 4, kQs = 2, kQh = -1, kZero = 8;
};
struct Q4_1 {
    static constexpr int kBytes = sizeof(block_q4_1), kUnit = 4, kQs = 4, kQh = -1, kZero = 0;
};
struct Q5_0 {
    static constexpr int kBytes = sizeof(block_q5_0), kUnit = 4, kQs = 6, kQh = 2, kZero = 16;
};
struct Q5_1 {
    static constexpr int kBytes = sizeof(block_q5_1), kUnit = 4, kQs = 8, kQh = 4, kZero = 0;
};
struct Q8_0 {
    static constexpr int kBytes = sizeof(block_q8_0), kUnit = 2, kQs = 2, kQh = -1, kZero = 128;
};

static inline __m256i bits_to_bytes(uint32_t h) {  // bit i -> 0x10 in byte i
    const __m256i shuf =
        _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

static inline __m128i ld128(const uint8_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// A unit of nv <= U blocks at p in canonical lane order, as two halves (lanes 0-7, 8-15):
// U = 4: x = low nibbles (+16 for Q5 high bits), y = high nibbles, unsigned;
// U = 2: x = the signed int8 weights (y unused).
template <class T>
static inline __attribute__((always_inline)) void unit_weights(const uint8_t* p, int nv,
                                                               __m256i* x, __m256i* y) {
    if constexpr (T::kUnit == 4) {
        __m128i q[4];
        for (int i = 0; i < 4; ++i)
            q[i] = i < nv ? ld128(p + i * T::kBytes + T::kQs) : _mm_setzero_si128();
        const __m256i q02 = _mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[2], 1);
        const __m256i q13 = _mm256_inserti128_si256(_mm256_castsi128_si256(q[1]), q[3], 1);
        const __m256i w01 = _mm256_permute4x64_epi64(_mm256_unpacklo_epi32(q02, q13), 0xD8);
        const __m256i w23 = _mm256_permute4x64_epi64(_mm256_unpackhi_epi32(q02, q13), 0xD8);
        const __m256i m = _mm256_set1_epi8(0x0F);
        x[0] = _mm256_and_si256(w01, m);
        x[1] = _mm256_and_si256(w23, m);
        y[0] = _mm256_and_si256(_mm256_srli_epi16(w01, 4), m);
        y[1] = _mm256_and_si256(_mm256_srli_epi16(w23, 4), m);
        if constexpr (T::kQh >= 0) {  // bit e of block i's qh -> byte 16 (e%16)/4*4 + 4i + e%4
            uint64_t ml = 0, mh = 0;
            for (int i = 0; i < nv; ++i) {
                uint32_t h;
                std::memcpy(&h, p + i * T::kBytes + T::kQh, 4);
                const uint64_t dep = 0x000F000F000F000FULL << (4 * i);
                ml |= _pdep_u64(h & 0xFFFF, dep);
                mh |= _pdep_u64(h >> 16, dep);
            }
            x[0] = _mm256_or_si256(x[0], bits_to_bytes((uint32_t)ml));
            x[1] = _mm256_or_si256(x[1], bits_to_bytes((uint32_t)(ml >> 32)));
            y[0] = _mm256_or_si256(y[0], bits_to_bytes((uint32_t)mh));
            y[1] = _mm256_or_si256(y[1], bits_to_bytes((uint32_t)(mh >> 32)));
        }
    } else {
        const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + T::kQs));
        const __m256i b1 =
            nv > 1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + T::kBytes + T::kQs))
                   : _mm256_setzero_si256();
        const __m256i lo = _mm256_unpacklo_epi32(b0, b1), hi = _mm256_unpackhi_epi32(b0, b1);
        x[0] = _mm256_permute2x128_si256(lo, hi, 0x20);
        x[1] = _mm256_permute2x128_si256(lo, hi, 0x31);
    }
}

// The same from a packed row's qs (qdot.h): a whole unit is two loads. A last unit of nv < U
// blocks stores its lanes l % U < nv in lane order, 8 nv / U dwords per half: each half is one
// masked load (nothing read past them) and one permute, its absent lanes zeroed. Q8_0 is stored
// as q + 128: the xor gives the signed weights back.
template <class T>
static inline __attribute__((always_inline)) void packed_unit_weights(const uint8_t* p, int nv,
                                                                      __m256i* x, __m256i* y) {
    constexpr int U = T::kUnit;
    __m256i q0, q1;
    if (nv == U) {
        q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    } else {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i slot = _mm256_and_si256(lane, _mm256_set1_epi32(U - 1));  // l % U
        const __m256i idx = _mm256_add_epi32(                                    // (l/U) nv + l%U
            _mm256_mullo_epi32(_mm256_srli_epi32(lane, U == 4 ? 2 : 1), _mm256_set1_epi32(nv)), slot);
        const __m256i present = _mm256_cmpgt_epi32(_mm256_set1_epi32(nv), slot);
        const int n = 8 * nv / U;  // dwords per half
        const __m256i load = lane_mask(n);
        const int* src = reinterpret_cast<const int*>(p);
        q0 = _mm256_and_si256(_mm256_permutevar8x32_epi32(_mm256_maskload_epi32(src, load), idx),
                              present);
        q1 = _mm256_and_si256(
            _mm256_permutevar8x32_epi32(_mm256_maskload_epi32(src + n, load), idx), present);
        if constexpr (U == 2) {  // absent lanes: weight 0, i.e. 0x80 before the xor below
            const __m256i s = _mm256_andnot_si256(present, _mm256_set1_epi8((char)0x80));
            q0 = _mm256_or_si256(q0, s);
            q1 = _mm256_or_si256(q1, s);
        }
    }
    if constexpr (T::kUnit == 4) {
        const __m256i m = _mm256_set1_epi8(0x0F);
        x[0] = _mm256_and_si256(q0, m);
        x[1] = _mm256_and_si256(q1, m);
        y[0] = _mm256_and_si256(_mm256_srli_epi16(q0, 4), m);
        y[1] = _mm256_and_si256(_mm256_srli_epi16(q1, 4), m);
    } else {
        const __m256i s = _mm256_set1_epi8((char)0x80);
        x[0] = _mm256_xor_si256(q0, s);
        x[1] = _mm256_xor_si256(q1, s);
    }
}

// fp16 values p[0 .. n) (n <= 8; zeros past n) as floats; nothing read past them.
static inline __m256 f16x8(const uint8_t* p, int n) {
    if (n == 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    if (n % 2 == 0)  // n / 2 whole dwords
        return _mm256_cvtph_ps(_mm_maskload_epi32(
            reinterpret_cast<const int*>(p),
            _mm_cmpgt_epi32(_mm_set1_epi32(n / 2), _mm_setr_epi32(0, 1, 2, 3))));
    alignas(16) uint8_t t[16] = {};
    std::memcpy(t, p, (size_t)(2 * n));
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
}

// The per-thread buffer of the activation copies (one per gemm call, i.e. per work item).
thread_local ScratchBuffer t_act_copy;

// Per-call copy of a Q8S row in canonical lane order (the layout of qdot_avx512.cpp's ActCopy):
// per unit the activation dwords facing x (and y), then for Q4_0/Q5_0 the int32 start values
// -kZero * sum(a over the lane). (Q8_0 is dotted signed here, its start values are unused.)
template <class T>
struct ActCopy {
    static constexpr int U = T::kUnit;
    static constexpr int kUnitBytes = (U == 4 ? 128 : 64) + (T::kZero ? 64 : 0);
    static void make(const int8_t* qs, int64_t nb, uint8_t* out) {
        const int64_t nu = (nb + U - 1) / U;
        for (int64_t u = 0; u < nu; ++u) {
            uint8_t* o = out + u * kUnitBytes;
            int32_t* corr = reinterpret_cast<int32_t*>(o + kUnitBytes - 64);
            for (int l = 0; l < 16; ++l) {
                const int64_t b = u * U + l % U;
                const int j = l / U;
                int8_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                if (b < nb) {
                    std::memcpy(v, qs + b * 32 + 4 * j, 4);
                    if (U == 4) std::memcpy(v + 4, qs + b * 32 + 16 + 4 * j, 4);
                }
                std::memcpy(o + 4 * l, v, 4);
                if (U == 4) std::memcpy(o + 64 + 4 * l, v + 4, 4);
                if (T::kZero != 0 && U == 4) {
                    int s = 0;
                    for (int t = 0; t < 8; ++t) s += v[t];
                    corr[l] = -T::kZero * s;
                }
            }
        }
    }
};

// y[c * ldy + n] = dot(W row n, act row c) for c < C (C <= 4), n < N, in the canonical order
// of qdot_canon.h with 16 lanes as two __m256 (lanes 0-7, 8-15). Blocks go in groups of 16: the
// weight scales are gathered 8 at a time, multiplied by the activation scales of each row
// (stored to sc[][] and re-read with broadcast loads), and the m_w s_x terms are one FMA per 8.
// P: rows in the packed layout (qdot.h): the scales are 8 fp16 per load and a unit is two
// loads (no gather, no unpack / permute); the same float operations, so the same bits.
template <class T, bool P = false>
struct LegacyRows {
    static constexpr int U = T::kUnit, kAU = ActCopy<T>::kUnitBytes;
    static constexpr bool kMin = T::kZero == 0;
    static constexpr int kStep = P ? 64 / U : T::kBytes;  // bytes per block along the units

    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    const uint8_t* const* acp, float* y, int64_t ldy) {
        const int64_t nb = K / 32;
        const float* ad[C];
        const float* as[C];
        for (int c = 0; c < C; ++c) {
            ad[c] = q8s_d(act[c], K);
            as[c] = q8s_s(act[c], K);
        }
        alignas(32) float sc[C][16];
        for (int64_t n = 0; n < N; ++n) {
            const uint8_t* wr = w + n * ws;
            prefetch_ahead(wr, ws);
            __m256 acc[C][2][2], accs[C][2];  // [row][even/odd unit][lanes 0-7 / 8-15]
            for (int c = 0; c < C; ++c)
                acc[c][0][0] = acc[c][0][1] = acc[c][1][0] = acc[c][1][1] = accs[c][0] =
                    accs[c][1] = _mm256_setzero_ps();
            for (int64_t b0 = 0; b0 < nb; b0 += 16) {
                const int nblk = nb - b0 < 16 ? (int)(nb - b0) : 16;
                const uint8_t* wb = wr + b0 * kStep;
                for (int h = 0; h < 2; ++h) {  // blocks b0 + 8h .. b0 + 8h + 7
                    const int nh = nblk - 8 * h < 8 ? nblk - 8 * h : 8;
                    if (nh <= 0) {
                        for (int c = 0; c < C; ++c) _mm256_store_ps(sc[c] + 8, _mm256_setzero_ps());
                        break;
                    }
                    __m256 dw, mw = _mm256_setzero_ps();
                    if constexpr (P) {
                        const uint8_t* d = wr + nb * kStep + 2 * (b0 + 8 * h);  // fp16 d[nb]
                        dw = f16x8(d, nh);
                        if (kMin) mw = f16x8(d + 2 * nb, nh);  // then m[nb]
                    } else {
                        const __m256i hd = head_f16(wb + 8 * h * T::kBytes, T::kBytes, nh);
                        dw = low_f16(hd);
                        if (kMin) mw = high_f16(hd);
                    }
                    const __m256i lm = lane_mask(nh);
                    for (int c = 0; c < C; ++c) {
                        const int64_t o = b0 + 8 * h;
                        const __m256 dx = nh == 8 ? _mm256_loadu_ps(ad[c] + o)
                                                  : _mm256_maskload_ps(ad[c] + o, lm);
                        _mm256_store_ps(sc[c] + 8 * h, _mm256_mul_ps(dw, dx));
                        if (kMin) {
                            const __m256 sx = nh == 8 ? _mm256_loadu_ps(as[c] + o)
                                                      : _mm256_maskload_ps(as[c] + o, lm);
                            accs[c][h] = _mm256_fmadd_ps(mw, sx, accs[c][h]);
                        }
                    }
                }
                const uint8_t* ab[C];
                for (int c = 0; c < C; ++c) ab[c] = acp[c] + (b0 / U) * kAU;
                const int nu = (nblk + U - 1) / U;
                for (int k = 0; k < nu; ++k) {
                    const int nv = nblk - k * U < U ? nblk - k * U : U;
                    unit<C>(wb, k, nv, ab, sc, acc, k & 1);
                }
            }
            for (int c = 0; c < C; ++c) {
                __m256 lo = _mm256_add_ps(acc[c][0][0], acc[c][1][0]);
                __m256 hi = _mm256_add_ps(acc[c][0][1], acc[c][1][1]);
                if (kMin) {
                    lo = _mm256_add_ps(lo, accs[c][0]);
                    hi = _mm256_add_ps(hi, accs[c][1]);
                }
                y[c * ldy + n] = vm_hsum(_mm256_add_ps(lo, hi));
            }
        }
    }

    // Unit k of the group at wb (nv blocks present) against the C rows: acc += float(P) * sc.
    template <int C>
    static inline __attribute__((always_inline)) void unit(const uint8_t* wb, int k, int nv,
                                                           const uint8_t* const* ab,
                                                           const float (*sc)[16],
                                                           __m256 (*acc)[2][2], int par) {
        __m256i x[2], y[2];
        if constexpr (P)
            packed_unit_weights<T>(wb + k * 64, nv, x, y);
        else
            unit_weights<T>(wb + k * U * T::kBytes, nv, x, y);
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i xs[2];
        if (U == 2)
            for (int h = 0; h < 2; ++h) xs[h] = _mm256_sign_epi8(x[h], x[h]);
        for (int c = 0; c < C; ++c) {
            const uint8_t* a = ab[c] + k * kAU;
            __m256 s;
            if constexpr (U == 4) {
                s = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(&sc[c][4 * k]));
            } else {
                double two;
                std::memcpy(&two, &sc[c][2 * k], 8);
                s = _mm256_castpd_ps(_mm256_set1_pd(two));
            }
            for (int h = 0; h < 2; ++h) {
                const __m256i a0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 32 * h));
                __m256i p;
                if constexpr (U == 4) {
                    const __m256i a1 =
                        _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 64 + 32 * h));
                    p = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(x[h], a0),
                                                           _mm256_maddubs_epi16(y[h], a1)),
                                          ones);
                    if (T::kZero)
                        p = _mm256_add_epi32(p, _mm256_load_si256(reinterpret_cast<const __m256i*>(
                                                    a + 128 + 32 * h)));
                } else {  // signed: |w| * sign(a, w), exact (<= 2 * 128 * 127 per pair)
                    p = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(xs[h], _mm256_sign_epi8(a0, x[h])), ones);
                }
                acc[c][par][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[c][par][h]);
            }
        }
    }

    using RunFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*,
                           const uint8_t* const*, float*, int64_t);

    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RunFn fns[4] = {run<1>, run<2>, run<3>, run<4>};
        const int64_t nb = K / 32;
        const int64_t rowb = (nb + U - 1) / U * kAU;
        uint8_t* buf = t_act_copy.get<uint8_t>((size_t)(C * rowb + 64));
        for (int64_t c = 0; c < C; ++c) ActCopy<T>::make(q8s_qs(act + c * as), nb, buf + c * rowb);
        for (int64_t c0 = 0; c0 < C; c0 += 4) {
            const int cn = C - c0 < 4 ? (int)(C - c0) : 4;
            const uint8_t* ap[4];
            const uint8_t* cp[4];
            for (int c = 0; c < cn; ++c) {
                ap[c] = act + (c0 + c) * as;
                cp[c] = buf + (c0 + c) * rowb;
            }
            fns[cn - 1](K, w, ws, N, ap, cp, y + c0 * ldy, ldy);
        }
    }
    static float vec_dot(int64_t K, const void* w, const void* act) {
        float y;
        gemm(K, static_cast<const uint8_t*>(w), 0, 1, static_cast<const uint8_t*>(act), 0, 1, &y,
             1);
        return y;
    }
};

// ---- float weights: 16 lanes as two __m256 per (weight row, activation row) ----------------

struct F32W {
    static constexpr int kBytes = 4;
    static inline __m256 load8(const uint8_t* w, int64_t k) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + k);
    }
    static inline float one(const uint8_t* w, int64_t k) {
        return reinterpret_cast<const float*>(w)[k];
    }
};
struct F16W {
    static constexpr int kBytes = 2;
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
    static constexpr int kBytes = 2;
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
    template <int R, int C>
    static inline __attribute__((always_inline)) void block(int64_t K, const uint8_t* w,
                                                            int64_t ws, const float* const* x,
                                                            float* y, int64_t ldy, bool pf,
                                                            bool pf2) {
        __m256 acc[R][C][2];
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            // The next block's rows, a line per row as this block's reads cross one.
            if (pf && (k * T::kBytes) % 64 == 0)
                for (int r = 0; r < R; ++r) {  // and the block after next into L2 (see avx512)
                    const uint8_t* p = w + (R + r) * ws + k * T::kBytes;
                    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
                    if (pf2) _mm_prefetch(reinterpret_cast<const char*>(p + R * ws), _MM_HINT_T1);
                }
            __m256 w0[R], w1[R];
            for (int r = 0; r < R; ++r) {
                w0[r] = T::load8(w + r * ws, k);
                w1[r] = T::load8(w + r * ws, k + 8);
            }
            for (int c = 0; c < C; ++c) {
                const __m256 x0 = _mm256_loadu_ps(x[c] + k), x1 = _mm256_loadu_ps(x[c] + k + 8);
                for (int r = 0; r < R; ++r) {
                    acc[r][c][0] = _mm256_fmadd_ps(w0[r], x0, acc[r][c][0]);
                    acc[r][c][1] = _mm256_fmadd_ps(w1[r], x1, acc[r][c][1]);
                }
            }
        }
        if (k < K) {  // tail: zero-padded copies of the last < 16 values
            alignas(32) float wt[R][16], xt[C][16];
            for (int l = 0; l < 16; ++l) {
                for (int r = 0; r < R; ++r) wt[r][l] = k + l < K ? T::one(w + r * ws, k + l) : 0.0f;
                for (int c = 0; c < C; ++c) xt[c][l] = k + l < K ? x[c][k + l] : 0.0f;
            }
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < C; ++c)
                    for (int h = 0; h < 2; ++h)
                        acc[r][c][h] = _mm256_fmadd_ps(_mm256_load_ps(wt[r] + 8 * h),
                                                       _mm256_load_ps(xt[c] + 8 * h), acc[r][c][h]);
        }
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c)
                y[c * ldy + r] = vm_hsum(_mm256_add_ps(acc[r][c][0], acc[r][c][1]));
    }

    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    float* y, int64_t ldy) {
        constexpr int R = C == 1 ? 4 : C == 2 ? 2 : 1;  // <= 8 accumulator pairs
        const float* x[C];
        for (int c = 0; c < C; ++c) x[c] = reinterpret_cast<const float*>(act[c]);
        int64_t n = 0;
        for (; n + R <= N; n += R)
            block<R, C>(K, w + n * ws, ws, x, y + n, ldy, n + 2 * R <= N, n + 3 * R <= N);
        for (; n < N; ++n) {
            prefetch_ahead(w + n * ws, ws);
            block<1, C>(K, w + n * ws, ws, x, y + n, ldy, false, false);
        }
    }

    using RowsFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*,
                            float*, int64_t);

    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RowsFn fns[4] = {run<1>, run<2>, run<3>, run<4>};
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
        run<1>(K, static_cast<const uint8_t*>(w), 0, 1, ap, &y, 1);
        return y;
    }
};

template <class R>
const QDotKernels kTable = {R::vec_dot, R::gemm};
template <class T>
const QDotKernels kLegacy = {LegacyRows<T>::vec_dot, LegacyRows<T>::gemm,
                             LegacyRows<T, true>::gemm};

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
            return &kLegacy<Q4_0>;
        case QType::Q4_1:
            return &kLegacy<Q4_1>;
        case QType::Q5_0:
            return &kTable<LegacyRows<Q5_0>>;
        case QType::Q5_1:
            return &kTable<LegacyRows<Q5_1>>;
        case QType::Q8_0:
            return &kLegacy<Q8_0>;
        default:
            return qdot_kernels_k(t);
    }
}

}  // namespace avx2
}  // namespace pylm
