// AVX-512 (F, BW, VL, DQ, VNNI) quantized dot products, part 1: legacy blocks (Q4_0 .. Q8_0)
// and float weights. K-quants: qdot_kquant_avx512.cpp. Contract and layouts: qdot.h.
//
// Legacy blocks x Q8S activations, two 32-weight blocks per 512-bit register:
//   the weights become unsigned bytes u (Q4: 0..15, Q5: 0..31, Q8_0: w + 128) and one
//   vpdpbusd(u, a) gives 16 int32 partial sums (lanes 0-7: first block, 8-15: second);
//   the zero point / min enters per block as c_w * s_x with s_x = d_x * sum(a) (qdot.h), where
//   c_w = -8 d_w (Q4_0), -16 d_w (Q5_0), -128 d_w (Q8_0, from the +128 shift) or m_w (Q4_1, Q5_1).
// The fp16 block scales are gathered 16 blocks at a time (one vpgatherdd + vpmovdw + vcvtph2ps)
// and multiplied by the 16 activation scales once per activation row, so the per-pair cost per
// activation row is vpdpbusd, vcvtdq2ps, a masked vbroadcastss and vfmadd.
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

// Software prefetch of the row about 8 KiB (whole rows) ahead: a lone core streaming W from
// DRAM otherwise stalls between the hardware prefetcher's requests (matvec is memory bound).
static inline void prefetch_ahead(const uint8_t* row, int64_t ws) {
    if (ws <= 0) return;
    const uint8_t* p = row + (ws >= 8192 ? ws : (8192 / ws + 1) * ws);
    for (int64_t off = 0; off < ws; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

static inline __m512i ld512(const void* p) {
    return _mm512_loadu_si512(p);
}

static inline __m512i bcast128x2(const uint8_t* p0, const uint8_t* p1) {  // [p0, p0, p1, p1]
    const __m256i a =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0)));
    const __m256i b =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

// Two Q4 blocks' 16-byte qs -> 64 values (each block: low nibbles, then high nibbles).
static inline __m512i nibbles2(const uint8_t* qs0, const uint8_t* qs1) {
    const __m512i sh = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    return _mm512_and_si512(_mm512_srlv_epi64(bcast128x2(qs0, qs1), sh), _mm512_set1_epi8(0x0F));
}
static inline __m256i nibbles1(const uint8_t* qs) {
    const __m256i v =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(0x0F));
}

static inline uint32_t rd32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Adds 16 to the bytes whose bit is set in the block's 32-bit qh (Q5 high bit).
static inline __m512i add_hbits2(__m512i q, const uint8_t* qh0, const uint8_t* qh1) {
    const __mmask64 k = _cvtu64_mask64((uint64_t)rd32(qh0) | ((uint64_t)rd32(qh1) << 32));
    return _mm512_mask_add_epi8(q, k, q, _mm512_set1_epi8(16));
}
static inline __m256i add_hbits1(__m256i q, const uint8_t* qh) {
    return _mm256_mask_add_epi8(q, _cvtu32_mask32(rd32(qh)), q, _mm256_set1_epi8(16));
}

// The dwords at the start of n <= 16 blocks (stride ts): fp16 d in the low half, and for
// Q4_1/Q5_1 fp16 m in the high half.
static inline __m512i head_dwords(const uint8_t* p, int ts, int n) {
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(ts));
    if (n == 16) return _mm512_i32gather_epi32(idx, p, 1);
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), (__mmask16)((1u << n) - 1), idx, p,
                                       1);
}
static inline __m512 low_f16(__m512i v) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}
static inline __m512 high_f16(__m512i v) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

struct Q4_0 {
    static constexpr int kBytes = sizeof(block_q4_0);
    static inline __m512i pair(const uint8_t* b) { return nibbles2(b + 2, b + kBytes + 2); }
    static inline __m256i one(const uint8_t* b) { return nibbles1(b + 2); }
    static inline void scales(const uint8_t* b, int n, __m512* d, __m512* c) {
        *d = low_f16(head_dwords(b, kBytes, n));
        *c = _mm512_mul_ps(*d, _mm512_set1_ps(-8.0f));
    }
};
struct Q4_1 {
    static constexpr int kBytes = sizeof(block_q4_1);
    static inline __m512i pair(const uint8_t* b) { return nibbles2(b + 4, b + kBytes + 4); }
    static inline __m256i one(const uint8_t* b) { return nibbles1(b + 4); }
    static inline void scales(const uint8_t* b, int n, __m512* d, __m512* c) {
        const __m512i v = head_dwords(b, kBytes, n);
        *d = low_f16(v);
        *c = high_f16(v);
    }
};
struct Q5_0 {
    static constexpr int kBytes = sizeof(block_q5_0);
    static inline __m512i pair(const uint8_t* b) {
        return add_hbits2(nibbles2(b + 6, b + kBytes + 6), b + 2, b + kBytes + 2);
    }
    static inline __m256i one(const uint8_t* b) { return add_hbits1(nibbles1(b + 6), b + 2); }
    static inline void scales(const uint8_t* b, int n, __m512* d, __m512* c) {
        *d = low_f16(head_dwords(b, kBytes, n));
        *c = _mm512_mul_ps(*d, _mm512_set1_ps(-16.0f));
    }
};
struct Q5_1 {
    static constexpr int kBytes = sizeof(block_q5_1);
    static inline __m512i pair(const uint8_t* b) {
        return add_hbits2(nibbles2(b + 8, b + kBytes + 8), b + 4, b + kBytes + 4);
    }
    static inline __m256i one(const uint8_t* b) { return add_hbits1(nibbles1(b + 8), b + 4); }
    static inline void scales(const uint8_t* b, int n, __m512* d, __m512* c) {
        const __m512i v = head_dwords(b, kBytes, n);
        *d = low_f16(v);
        *c = high_f16(v);
    }
};
struct Q8_0 {  // signed weights shifted to unsigned: u = w + 128, zero point -128
    static constexpr int kBytes = sizeof(block_q8_0);
    static inline __m512i pair(const uint8_t* b) {
        const __m512i v = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2))),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kBytes + 2)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    static inline __m256i one(const uint8_t* b) {
        return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)),
                                _mm256_set1_epi8((char)0x80));
    }
    static inline void scales(const uint8_t* b, int n, __m512* d, __m512* c) {
        *d = low_f16(head_dwords(b, kBytes, n));
        *c = _mm512_mul_ps(*d, _mm512_set1_ps(-128.0f));
    }
};

// y[c * ldy + n] = dot(W row n, act row c) for c < C (C <= 8), n < N.
// The fp16 scales of many rows are converted first, 16 blocks per gather across row boundaries
// (the rows of a chunk are contiguous), into dbuf / cbuf. Blocks then go in groups of 16: one
// multiply by the activation scales per row (kept in sc[][], re-read by the pair step with a
// masked vbroadcastss) and one FMA for the s_x terms.
template <class T>
struct LegacyRows {
    static constexpr int64_t kBuf = 2048;  // blocks whose scales are converted at once

    // d_w and c_w of `count` consecutive blocks at p.
    static void convert(const uint8_t* p, int64_t count, float* d, float* c) {
        for (int64_t i = 0; i < count; i += 16) {
            const int n = count - i < 16 ? (int)(count - i) : 16;
            __m512 dv, cv;
            T::scales(p + i * T::kBytes, n, &dv, &cv);
            const __mmask16 km = (__mmask16)((1u << n) - 1);
            _mm512_mask_storeu_ps(d + i, km, dv);
            _mm512_mask_storeu_ps(c + i, km, cv);
        }
    }

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
        alignas(64) float dbuf[kBuf], cbuf[kBuf];
        const bool flat = ws == nb * T::kBytes && nb <= kBuf;
        const int64_t rows = flat ? kBuf / nb : 1;
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            const int64_t nr = N - n0 < rows ? N - n0 : rows;
            if (flat) convert(w + n0 * ws, nr * nb, dbuf, cbuf);
            for (int64_t r = 0; r < nr; ++r) {
                const uint8_t* wr = w + (n0 + r) * ws;
                prefetch_ahead(wr, ws);
                // acc1 takes the odd pairs when C == 1, to hide the FMA latency
                __m512 acc0[C], acc1[C], accs[C];
                for (int c = 0; c < C; ++c) acc0[c] = acc1[c] = accs[c] = _mm512_setzero_ps();
                for (int64_t s0 = 0; s0 < nb; s0 += kBuf) {  // one segment unless K > 32 * kBuf
                    const int64_t sn = nb - s0 < kBuf ? nb - s0 : kBuf;
                    if (!flat) convert(wr + s0 * T::kBytes, sn, dbuf, cbuf);
                    const int64_t off = flat ? r * nb : 0;
                    segment<C>(wr, s0, sn, dbuf + off, cbuf + off, aq, ad, as, acc0, acc1, accs);
                }
                for (int c = 0; c < C; ++c)
                    y[c * ldy + n0 + r] = _mm512_reduce_add_ps(
                        _mm512_add_ps(accs[c], _mm512_add_ps(acc0[c], acc1[c])));
            }
        }
    }

    // Blocks s0 .. s0+sn of row wr, whose weight scales are dw[0..sn), cw[0..sn).
    template <int C>
    static inline __attribute__((always_inline)) void segment(
        const uint8_t* wr, int64_t s0, int64_t sn, const float* dw, const float* cw,
        const int8_t* const* aq, const float* const* ad, const float* const* as, __m512* acc0,
        __m512* acc1, __m512* accs) {
        alignas(64) float sc[C][16];
        for (int64_t g = 0; g < sn; g += 16) {
            const int64_t b0 = s0 + g;
            const int nblk = sn - g < 16 ? (int)(sn - g) : 16;
            const __mmask16 km = (__mmask16)((1u << nblk) - 1);
            const __m512 d = _mm512_maskz_loadu_ps(km, dw + g),
                         cf = _mm512_maskz_loadu_ps(km, cw + g);
            for (int c = 0; c < C; ++c) {
                _mm512_store_ps(sc[c], _mm512_mul_ps(d, _mm512_maskz_loadu_ps(km, ad[c] + b0)));
                accs[c] = _mm512_fmadd_ps(cf, _mm512_maskz_loadu_ps(km, as[c] + b0), accs[c]);
            }
            // NOTE: keeps GCC from forwarding sc[][] through registers: it would expand each
            // pair's scales with 4-5 shuffles (port 5) instead of one masked broadcast load.
            __asm__ volatile("" : : "r"(&sc[0][0]) : "memory");
            const uint8_t* wb = wr + b0 * T::kBytes;
            const int8_t* ab[C];
            for (int c = 0; c < C; ++c) ab[c] = aq[c] + b0 * 32;
            const int npair = nblk / 2;
            int j = 0;
            for (; j + 2 <= npair; j += 2) {
                pair<C>(wb, j, ab, sc, acc0);
                pair<C>(wb, j + 1, ab, sc, C == 1 ? acc1 : acc0);
            }
            if (j < npair) pair<C>(wb, j, ab, sc, acc0);
            if (nblk & 1) {  // last block alone: 256-bit VNNI, upper lanes zero
                const int k = nblk - 1;
                const __m256i q = T::one(wb + k * T::kBytes);
                for (int c = 0; c < C; ++c) {
                    const __m256i a =
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[c] + k * 32));
                    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, a);
                    acc0[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(p)),
                                              _mm512_set1_ps(sc[c][k]), acc0[c]);
                }
            }
        }
    }

    // Blocks 2j, 2j+1 of the group at wb: lanes 0-7 of the vpdpbusd sums belong to block 2j,
    // lanes 8-15 to block 2j+1, scaled by [sc[2j] x8 | sc[2j+1] x8].
    template <int C>
    static inline __attribute__((always_inline)) void pair(const uint8_t* wb, int j,
                                                           const int8_t* const* ab,
                                                           const float (*sc)[16], __m512* acc) {
        const __m512i q = T::pair(wb + 2 * j * T::kBytes);
        for (int c = 0; c < C; ++c) {
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, ld512(ab[c] + 64 * j));
            const __m512 s = _mm512_mask_broadcastss_ps(_mm512_set1_ps(sc[c][2 * j]), 0xFF00,
                                                        _mm_load_ss(&sc[c][2 * j + 1]));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[c]);
        }
    }
};

// ---- float weights: 16 at a time, masked tail -----------------------------------------------

struct F32W {
    static inline __m512 load(const uint8_t* w, int64_t k) {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(w) + k);
    }
    static inline __m512 loadm(const uint8_t* w, int64_t k, __mmask16 m) {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + k);
    }
};
struct F16W {
    static inline __m512 load(const uint8_t* w, int64_t k) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * k)));
    }
    static inline __m512 loadm(const uint8_t* w, int64_t k, __mmask16 m) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + 2 * k));
    }
};
struct BF16W {
    static inline __m512 widen(__m256i h) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    static inline __m512 load(const uint8_t* w, int64_t k) {
        return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * k)));
    }
    static inline __m512 loadm(const uint8_t* w, int64_t k, __mmask16 m) {
        return widen(_mm256_maskz_loadu_epi16(m, w + 2 * k));
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
            __m512 acc0[C], acc1[C];
            for (int c = 0; c < C; ++c) acc0[c] = acc1[c] = _mm512_setzero_ps();
            int64_t k = 0;
            for (; k + 32 <= K; k += 32) {
                const __m512 w0 = T::load(wr, k), w1 = T::load(wr, k + 16);
                for (int c = 0; c < C; ++c) {
                    acc0[c] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[c] + k), acc0[c]);
                    acc1[c] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[c] + k + 16), acc1[c]);
                }
            }
            for (; k < K; k += 16) {
                const __mmask16 m =
                    K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
                const __m512 w0 = T::loadm(wr, k, m);
                for (int c = 0; c < C; ++c)
                    acc0[c] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x[c] + k), acc0[c]);
            }
            for (int c = 0; c < C; ++c)
                y[c * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[c], acc1[c]));
        }
    }
};

// ---- gemm over groups of up to 4 activation rows -------------------------------------------

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

}  // namespace avx512
}  // namespace pylm
