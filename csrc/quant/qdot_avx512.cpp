// AVX-512 (F, BW, VL, DQ, VNNI) quantized dot products, part 1: legacy blocks (Q4_0 .. Q8_0)
// and float weights. K-quants: qdot_kquant_avx512.cpp. Contract and layouts: qdot.h.
//
// Evaluation order: qdot_canon.h (bit-identical to the scalar and AVX2 kernels).
// Legacy blocks x Q8S activations, one unit of 4 blocks (Q4/Q5) or 2 blocks (Q8_0) per 512-bit
// register: one vpermt2w puts the unit's qs in canonical lane order (lane 4j+i: dword j of block
// i), the nibbles become unsigned bytes (low / high: two chained vpdpbusd), and the activation
// row is copied once per call into the same order, with the zero point folded into the int32
// start values. Per unit and activation row: 1-2 vpdpbusd, vcvtdq2ps, one vfmadd whose scales
// [sc0 sc1 sc2 sc3] x4 come from one broadcast load. The fp16 block scales are picked 16
// blocks at a time from whole-register loads (one permute per register pair, Heads), converted,
// and multiplied by the 16 activation scales once per activation row. C <= 2 (decode, a draft's
// catch-up): 4 weight rows per pass share the activation loads and one combined reduction tree
// (tree16x4), each row with its own float operations.
// Q4_1/Q5_1 (dword-aligned qs) and Q8_0 (two 256-bit loads) gather a unit with vpermt2d.
// Packed rows (Q4_0, Q4_1, Q8_0; the engine's load-time copy, qdot.h): a unit is one load and 16
// scales one load + vcvtph2ps, with no convert pass; the same float operations, so the same bits.
// Hot matvec, 1 thread, against the GGUF rows: Q4_1 0.68-0.82 of the time, Q8_0 0.75-0.85,
// Q4_0 0.57-0.68 (K = 576 / 1536).
// Float weights: R weight rows x C activation rows per pass (each F16/BF16 vector converted
// once), one 16-lane accumulator per pair.
// NOTE: GCC 12 reports its own _mm512_undefined_* idiom (inside casts/broadcasts) as
// maybe-uninitialized; the lanes are always overwritten.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define PYLM_INLINE __attribute__((always_inline))
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/scratch.h"
#include "kernels/vmath_avx512.h"
#include "quant/qdot.h"
#include "quant/qdot_common.h"
#include "quant/qdot_canon.h"

namespace pylm {
namespace avx512 {

namespace {

static inline __mmask64 bytes_mask(int n) {  // the first n bytes (0 <= n)
    return n >= 64 ? ~(__mmask64)0 : _cvtu64_mask64((1ULL << n) - 1);
}

// The canonical 16-lane reduction tree (qdot_canon.h) is vmath's vm_hsum.
static inline float tree16(__m512 v) { return vm_hsum(v); }

// tree16 of four rows at once, y[0..3] = tree16(t0) .. tree16(t3): the same float additions,
// two rows' halves (then four rows' quarters) side by side in one register.
static inline void tree16x4(__m512 t0, __m512 t1, __m512 t2, __m512 t3, float* y) {
    // v[i] += v[i+8]: [r0 0-7 | r1 0-7], [r2 0-7 | r3 0-7]
    const __m512 a = _mm512_add_ps(_mm512_shuffle_f32x4(t0, t1, 0x44),
                                   _mm512_shuffle_f32x4(t0, t1, 0xEE));
    const __m512 b = _mm512_add_ps(_mm512_shuffle_f32x4(t2, t3, 0x44),
                                   _mm512_shuffle_f32x4(t2, t3, 0xEE));
    // v[i] += v[i+4]: [r0 0-3 | r1 0-3 | r2 0-3 | r3 0-3]
    const __m512 c = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88),
                                   _mm512_shuffle_f32x4(a, b, 0xDD));
    // v[i] += v[i+2], then v[0] += v[1], within each 128-bit lane
    const __m512 d = _mm512_add_ps(c, _mm512_permute_ps(c, 0x4E));
    const __m512 e = _mm512_add_ps(d, _mm512_movehdup_ps(d));
    // lanes 0, 4, 8, 12 to the bottom: a vpermps and a 16-byte store (a compress to memory is
    // microcoded, ~4 % of the Q4_1 matvec)
    const __m512 f = _mm512_permutexvar_ps(_mm512_castsi128_si512(_mm_setr_epi32(0, 4, 8, 12)), e);
    _mm_storeu_ps(y, _mm512_castps512_ps128(f));
}

// The heads of n <= 16 blocks at p (stride T::kBytes) without a gather (vpgatherdd is
// microcoded and slow: with its conversions, ~29 % of the perf samples of the Q4_1 matvec with
// K = 576; without it the matvec takes 0.90-0.94 of the time). The blocks' bytes come
// in as kRegs registers (masked past the n blocks); one permute per register pair picks the
// heads, and blends merge the pairs. Dword-aligned blocks (Q4_1, Q5_1): dword i = the first
// dword of block i (fp16 d low, fp16 m high). The others (Q4_0, Q5_0, Q8_0, no m): word i =
// the fp16 d of block i, in the low 256 bits.
template <class T>
struct Heads {
    static constexpr bool kDw = T::kBytes % 4 == 0;
    static constexpr int kElem = kDw ? 4 : 2;                                // bytes per lane
    static constexpr int kRegs = (15 * T::kBytes + kElem - 1) / 64 + 1;  // registers read
    static constexpr int kPairs = (kRegs + 1) / 2;
    static constexpr int kPerPair = 128 / kElem;  // lanes a pair of registers holds
    alignas(64) uint32_t idx[kPairs][16];  // kDw: dword indices; else word indices, packed
    uint32_t mask[kPairs];                 // heads whose lane comes from pair j
    Heads() {
        for (int j = 0; j < kPairs; ++j) {
            uint32_t d[16] = {};
            uint16_t w[32] = {};
            mask[j] = 0;
            for (int i = 0; i < 16; ++i) {
                const int e = i * T::kBytes / kElem - j * kPerPair;
                if (e < 0 || e >= kPerPair) continue;
                mask[j] |= 1u << i;
                d[i] = (uint32_t)e;
                w[i] = (uint16_t)e;
            }
            if (kDw)
                std::memcpy(idx[j], d, 64);
            else
                std::memcpy(idx[j], w, 64);
        }
    }
    static const Heads& get() {
        static const Heads h;
        return h;
    }
    static inline __attribute__((always_inline)) __m512i pick(const uint8_t* p, int n,
                                                              const __m512i* ix,
                                                              const uint32_t* mask) {
        __m512i r[2 * kPairs];
        const int bytes = n * T::kBytes;
        for (int k = 0; k < 2 * kPairs; ++k) {
            const int lim = bytes - 64 * k;
            r[k] = k >= kRegs || lim <= 0 ? _mm512_setzero_si512()
                   : lim >= 64            ? _mm512_loadu_si512(p + 64 * k)
                                          : _mm512_maskz_loadu_epi8(bytes_mask(lim), p + 64 * k);
        }
        __m512i h = _mm512_setzero_si512();
        for (int j = 0; j < kPairs; ++j) {
            if constexpr (kDw)
                h = _mm512_mask_blend_epi32((__mmask16)mask[j], h,
                                            _mm512_permutex2var_epi32(r[2 * j], ix[j], r[2 * j + 1]));
            else
                h = _mm512_mask_blend_epi16((__mmask32)mask[j], h,
                                            _mm512_permutex2var_epi16(r[2 * j], ix[j], r[2 * j + 1]));
        }
        return h;
    }
};
static inline __m512 low_f16(__m512i v) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}
static inline __m512 high_f16(__m512i v) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

// Weight types: kUnit blocks per 512-bit unit (qdot_canon.h), qs at byte kQs of a block, the
// 32-bit qh (Q5) at kQh (-1: none), kZero the zero point folded into the integer sums (0: the
// type has a float min m instead, fp16 in the high half of the block's first dword).
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

// Word indices that gather a unit's qs into canonical lane order: output dword l = dword l / U
// of block l % U (the unit's bytes: two registers, 0..63 and 64..127).
template <class T>
struct UnitShape {  // Q4_1 / Q5_1 qs are dword aligned: one vpermt2d instead of vpermt2w
    static constexpr bool kDword = T::kBytes % 4 == 0 && T::kQs % 4 == 0;
};
template <class T>
static inline __m512i unit_index() {
    alignas(64) uint16_t ix[32];
    alignas(64) uint32_t id[16];
    for (int l = 0; l < 16; ++l) {
        const int byte = (l % T::kUnit) * T::kBytes + T::kQs + 4 * (l / T::kUnit);
        ix[2 * l] = (uint16_t)(byte / 2);
        ix[2 * l + 1] = (uint16_t)(byte / 2 + 1);
        id[l] = (uint32_t)(byte / 4);
    }
    if (T::kUnit == 2)  // Q8_0: dword 2j+i <- dword j of block i's qs (two 256-bit loads)
        return _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    if (UnitShape<T>::kDword) return _mm512_load_si512(id);
    return _mm512_load_si512(ix);
}

// The unsigned weight bytes of a unit of nv <= U blocks at p, in canonical lane order:
// U = 4: w0 = low nibbles (+16 for Q5 high bits), w1 = high nibbles; U = 2: w0 = q + 128.
template <class T>
static inline __attribute__((always_inline)) void unit_weights(const uint8_t* p, int nv,
                                                               __m512i idx, __m512i* w0,
                                                               __m512i* w1) {
    if constexpr (T::kUnit == 2) {
        const __m512i b0 = _mm512_castsi256_si512(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + T::kQs)));
        const __m512i b1 = _mm512_castsi256_si512(
            nv > 1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + T::kBytes + T::kQs))
                   : _mm256_setzero_si256());
        *w0 = _mm512_xor_si512(_mm512_permutex2var_epi32(b0, idx, b1),
                               _mm512_set1_epi8((char)0x80));
    } else {
        const int bytes = nv * T::kBytes;
        const __m512i a =
            bytes >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(bytes_mask(bytes), p);
        const __m512i b = bytes > 64 ? _mm512_maskz_loadu_epi8(bytes_mask(bytes - 64), p + 64)
                                     : _mm512_setzero_si512();
        const __m512i q = UnitShape<T>::kDword ? _mm512_permutex2var_epi32(a, idx, b)
                                               : _mm512_permutex2var_epi16(a, idx, b);
        const __m512i m = _mm512_set1_epi8(0x0F);
        __m512i lo = _mm512_and_si512(q, m), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m);
        if constexpr (T::kQh >= 0) {  // bit e of block i's qh -> byte 16 (e%16)/4*4 + 4i + e%4
            uint64_t ml = 0, mh = 0;
            for (int i = 0; i < nv; ++i) {
                const uint32_t h = rd32(p + i * T::kBytes + T::kQh);
                const uint64_t dep = 0x000F000F000F000FULL << (4 * i);
                ml |= _pdep_u64(h & 0xFFFF, dep);
                mh |= _pdep_u64(h >> 16, dep);
            }
            const __m512i s = _mm512_set1_epi8(16);
            lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64(ml), lo, s);
            hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64(mh), hi, s);
        }
        *w0 = lo;
        *w1 = hi;
    }
}

// The same from a packed row's qs (qdot.h): a whole unit is one load, a last unit of nv < U
// blocks one expanding load into its lanes (l % U < nv); Q8_0 is stored as q + 128 already.
template <class T>
static inline __attribute__((always_inline)) void packed_unit_weights(const uint8_t* p, int nv,
                                                                      __m512i* w0, __m512i* w1) {
    __m512i q;
    if (nv == T::kUnit) {
        q = _mm512_loadu_si512(p);
    } else {
        const __mmask16 lanes = T::kUnit == 2 ? 0x5555 : (__mmask16)(0x1111 * ((1u << nv) - 1));
        q = _mm512_maskz_expandloadu_epi32(lanes, p);
    }
    if constexpr (T::kUnit == 2) {
        *w0 = q;
    } else {
        const __m512i m = _mm512_set1_epi8(0x0F);
        *w0 = _mm512_and_si512(q, m);
        *w1 = _mm512_and_si512(_mm512_srli_epi16(q, 4), m);
    }
}

// The per-thread buffer of the activation copies (one per gemm call, i.e. per work item).
thread_local ScratchBuffer t_act_copy;

// Per-call copy of a Q8S row in canonical lane order, per unit: the activation bytes facing w0
// (and w1), then for kZero types the int32 start values -kZero * sum(a over the lane)
// (U = 2: minus 128 times the lane's sum undoes the +128 of w0), so the vpdpbusd sums are the
// exact P of qdot_canon.h.
template <class T>
struct ActCopy {
    static constexpr int kUnitBytes = (T::kUnit == 4 ? 128 : 64) + (T::kZero ? 64 : 0);
    static void make(const int8_t* qs, int64_t nb, uint8_t* out) {
        const int64_t nu = (nb + T::kUnit - 1) / T::kUnit;
        const __m512i ones = _mm512_set1_epi8(1);
        for (int64_t u = 0; u < nu; ++u) {
            const int nv = nb - u * T::kUnit < T::kUnit ? (int)(nb - u * T::kUnit) : T::kUnit;
            const int8_t* src = qs + u * T::kUnit * 32;
            uint8_t* o = out + u * kUnitBytes;
            const int bytes = nv * 32;
            const __m512i z0 = bytes >= 64 ? _mm512_loadu_si512(src)
                                           : _mm512_maskz_loadu_epi8(bytes_mask(bytes), src);
            __m512i sum;
            if constexpr (T::kUnit == 4) {
                const __m512i z1 = bytes > 64
                                       ? _mm512_maskz_loadu_epi8(bytes_mask(bytes - 64), src + 64)
                                       : _mm512_setzero_si512();
                // lane 4j+i <- dword j (lo) / 4+j (hi) of block i = source dword 8i + j (+4)
                const __m512i il =
                    _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
                const __m512i lo = _mm512_permutex2var_epi32(z0, il, z1);
                const __m512i hi =
                    _mm512_permutex2var_epi32(z0, _mm512_add_epi32(il, _mm512_set1_epi32(4)), z1);
                _mm512_store_si512(o, lo);
                _mm512_store_si512(o + 64, hi);
                sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, lo),
                                          ones, hi);
            } else {
                // lane 2j+i <- dword j of block i = source dword 8i + j
                const __m512i il =
                    _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
                const __m512i v = _mm512_permutexvar_epi32(il, z0);
                _mm512_store_si512(o, v);
                sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, v);
            }
            if constexpr (T::kZero != 0)
                _mm512_store_si512(o + kUnitBytes - 64,
                                   _mm512_mullo_epi32(sum, _mm512_set1_epi32(-T::kZero)));
        }
    }
};

// Prefetch distances of a unit loop, in bytes (0: none): far = kPfChunks chunks ahead (the
// steady state), near = a few KiB ahead while the rows within `far` of the item's start stream
// in (nothing prefetched them: an item's first rows used to wait on DRAM, and with small decode
// items that was most of an item).
struct Pf {
    int64_t far = 0, near = 0;
};

// y[c * ldy + n] = dot(W row n, act row c) for c < C (C <= 8), n < N, in the canonical order.
// The fp16 scales of many rows are converted first, 16 blocks at a time across row boundaries
// (the rows of a chunk are contiguous), into dbuf / mbuf. Blocks then go in groups of 16: one
// multiply by the activation scales per row (kept in sc[][], re-read by the unit step with a
// broadcast load) and, for Q4_1/Q5_1, one FMA for the m_w s_x terms.
// P: rows in the packed layout (qdot.h): no convert pass (the scales are read where they are
// used, 16 per load) and no permute per unit (one load; a last partial unit: one expanding load).
template <class T, bool P = false>
struct LegacyRows {
    static constexpr int U = T::kUnit, kAU = ActCopy<T>::kUnitBytes;
    static constexpr bool kMin = T::kZero == 0;
    // Bytes per block along the walk over a row's units: GGUF blocks, or the packed qs.
    static constexpr int kStep = P ? 64 / U : T::kBytes;

    // d_w / m_w of 16 blocks of row r from b0 (masked): the convert pass's float buffers (rows
    // at stride nb floats), or the fp16 arrays of packed rows (rows at stride ws bytes).
    struct Scales {
        const uint8_t* d;
        const uint8_t* m;
        int64_t stride;  // bytes
        inline __m512 load(const uint8_t* base, int r, int64_t b0, __mmask16 km) const {
            const uint8_t* p = base + r * stride;
            if constexpr (P)
                return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(km, p + 2 * b0));
            else
                return _mm512_maskz_loadu_ps(km, reinterpret_cast<const float*>(p) + b0);
        }
        inline __m512 dw(int r, int64_t b0, __mmask16 km) const { return load(d, r, b0, km); }
        inline __m512 mw(int r, int64_t b0, __mmask16 km) const { return load(m, r, b0, km); }
        Scales shifted(int64_t b) const {  // blocks from b on
            const int64_t e = P ? 2 : 4;
            return {d + b * e, m + b * e, stride};
        }
    };
    // Row wr's packed scales (nb blocks).
    static Scales packed_scales(const uint8_t* wr, int64_t nb, int64_t ws) {
        const uint8_t* d = wr + nb * kStep;
        return {d, d + 2 * nb, ws};
    }
    // Blocks whose scales are converted at once: 9-17 KiB of weights, which the unit loop then
    // reads again from L1/L2.
    static constexpr int64_t kBuf = 512;
    // The unit loops prefetch the weights this many chunks ahead, into L2, one unit at a time:
    // the convert pass alone is too short to hide DRAM latency, so memory reads and the unit
    // loop's compute used to take turns. Q4_1 1536 x 576 matvec streamed from DRAM, A/B in one
    // process: 0.79-0.81 of the time (1 thread), 0.84-0.86 (2 threads); Q8_0 0.89. One chunk
    // ahead gained 4-6 %, into L1 (T0) 7-9 %; three or more chunks ahead run past a work item.
    static constexpr int64_t kPfChunks = 2;

    // d_w and m_w of `count` consecutive blocks at p. This pass is the first to touch the
    // weights, so it prefetches 8 KiB ahead (its loads alone would wait on DRAM each time).
    static void convert(const uint8_t* p, int64_t count, float* d, float* m) {
        using H = Heads<T>;
        const H& hd = H::get();
        __m512i ix[H::kPairs];
        for (int j = 0; j < H::kPairs; ++j) ix[j] = _mm512_load_si512(hd.idx[j]);
        for (int64_t i = 0; i < count; i += 16) {
            const int n = count - i < 16 ? (int)(count - i) : 16;
            const uint8_t* ahead = p + i * T::kBytes + 8192;
            for (int off = 0; off < 16 * T::kBytes; off += 64)
                _mm_prefetch(reinterpret_cast<const char*>(ahead + off), _MM_HINT_T0);
            const __m512i h = H::pick(p + i * T::kBytes, n, ix, hd.mask);
            const __mmask16 km = (__mmask16)((1u << n) - 1);
            if constexpr (H::kDw) {
                _mm512_mask_storeu_ps(d + i, km, low_f16(h));
                if (kMin) _mm512_mask_storeu_ps(m + i, km, high_f16(h));
            } else {
                static_assert(!kMin, "types with a min have dword-aligned blocks");
                _mm512_mask_storeu_ps(d + i, km, _mm512_cvtph_ps(_mm512_castsi512_si256(h)));
            }
        }
    }

    // act: the C Q8S rows (scales); acp: their canonical copies (ActCopy).
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
        const __m512i idx = unit_index<T>();
        alignas(64) float dbuf[P ? 1 : kBuf], mbuf[P ? 1 : kBuf];
        const Scales bufs{reinterpret_cast<const uint8_t*>(dbuf),
                          reinterpret_cast<const uint8_t*>(mbuf), nb * 4};
        // flat: chunks of whole rows whose scales one convert pass reads (packed rows: no pass,
        // but the same chunks, for the prefetch distance).
        const bool flat = (P || ws == nb * T::kBytes) && nb <= kBuf;
        const int64_t rows = flat ? kBuf / nb : 1;
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            const int64_t nr = N - n0 < rows ? N - n0 : rows;
            if (flat && !P) convert(w + n0 * ws, nr * nb, dbuf, mbuf);
            int64_t r = 0;
            // The rows two chunks ahead are prefetched into L2 while this chunk computes
            // (kPfChunks): bytes from a row here to the same row there, 0 past the end of W.
            const int64_t pf_rows = kPfChunks * rows;
            // near: >= 3 KiB and whole 4-row passes ahead (SmolLM2 Q4_1 draft step, 2 threads,
            // A/B in one process: 0.94 of the time).
            const int64_t near_rows = flat ? (3072 / ws / 4 + 1) * 4 : 0;
            auto pf_for = [&](int64_t i, int64_t n) -> Pf {  // rows i .. i+n of the chunk
                Pf p;
                if (!flat) return p;
                const int64_t row = n0 + i;
                if (row + n + pf_rows <= N) p.far = pf_rows * ws;
                if (row < pf_rows && row + n + near_rows <= N) p.near = near_rows * ws;
                return p;
            };
            auto scales = [&](int64_t i) -> Scales {  // row i of the chunk
                const uint8_t* wr = w + (n0 + i) * ws;
                return P ? packed_scales(wr, nb, ws) : bufs.shifted(flat ? i * nb : 0);
            };
            if (C <= 2 && flat)
                for (; r + 4 <= nr; r += 4)
                    rows4<C>(w + (n0 + r) * ws, ws, nb, scales(r), idx, ad, as, acp, y + n0 + r,
                             ldy, pf_for(r, 4));
            for (; r < nr; ++r) {
                const uint8_t* wr = w + (n0 + r) * ws;
                if (!flat) prefetch_ahead(wr, ws);
                __m512 acc0[C], acc1[C], accs[C];
                for (int c = 0; c < C; ++c) acc0[c] = acc1[c] = accs[c] = _mm512_setzero_ps();
                for (int64_t s0 = 0; s0 < nb; s0 += kBuf) {  // one segment unless K > 32 * kBuf
                    const int64_t sn = nb - s0 < kBuf ? nb - s0 : kBuf;
                    if (!flat && !P) convert(wr + s0 * T::kBytes, sn, dbuf, mbuf);
                    const Scales sc = P ? packed_scales(wr, nb, ws).shifted(s0) : scales(r);
                    segment<C>(wr, s0, sn, sc, idx, ad, as, acp, &acc0, &acc1, accs, pf_for(r, 1));
                }
                for (int c = 0; c < C; ++c) {
                    __m512 t = _mm512_add_ps(acc0[c], acc1[c]);
                    if (kMin) t = _mm512_add_ps(t, accs[c]);
                    y[c * ldy + n0 + r] = tree16(t);
                }
            }
        }
    }

    // The units of a group of nblk blocks in the canonical order: unit k adds into acc0 when k
    // is even, acc1 when odd (the last one may hold nv < U blocks); f(k, nv, acc). The tail
    // takes two explicit calls, not one with a selected pointer: that would keep both
    // accumulator arrays in memory, stored back after every unit.
    template <class A, class F>
    static inline __attribute__((always_inline)) void for_units(int nblk, A* acc0, A* acc1,
                                                                F&& f) {
        const int nfull = nblk / U;  // even unless this is the row's last group
        int k = 0;
        for (; k + 2 <= nfull; k += 2) {
            f(k, U, acc0);
            f(k + 1, U, acc1);
        }
        if (k < nfull) f(k++, U, acc0);
        if (nblk % U) {
            if (k & 1)
                f(k, nblk % U, acc1);
            else
                f(k, nblk % U, acc0);
        }
    }

    // Four weight rows wr .. wr+3 (stride ws, nb blocks, scales dw / mw at stride nb) against
    // C <= 2 activation rows at once, sharing each unit's weight conversion across the C rows
    // and each activation load and the reduction tree (tree16x4) across the four rows; every
    // (row, activation row) pair does the float operations of run<1> (qdot_canon.h), so the
    // results are the same bits. y[c * ldy + r]; pf: bytes from these rows to the rows to
    // prefetch (kPfChunks ahead; 0: none). C = 2 against one row per pass, 1 thread, A/B in one
    // process: Q4_1 1536 x 576 0.68 of the time, 576 x 1536 0.87, Q8_0 2048 x 576 0.77; the
    // SmolLM2 Q4_1 2-token step (a draft's catch-up) 6.1 -> 5.2 ms. C = 3, 4 with two rows per
    // pass did no better than one row.
    template <int C>
    static inline void rows4(const uint8_t* wr, int64_t ws, int64_t nb, const Scales& ss,
                             __m512i idx, const float* const* ad,
                             const float* const* as, const uint8_t* const* acp, float* y,
                             int64_t ldy, Pf pf) {
        constexpr int R = 4;
        __m512 acc0[R][C], acc1[R][C], accs[R][C];
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c)
                acc0[r][c] = acc1[r][c] = accs[r][c] = _mm512_setzero_ps();
        // The m_w s_x terms of group b0 (Q4_1/Q5_1): inside the unit loop for C = 1, in a pass
        // of their own for C = 2 (they would hold eight more registers there).
        auto min_terms = [&](int64_t b0, __mmask16 km) PYLM_INLINE {
            for (int c = 0; c < C; ++c) {
                const __m512 sx = _mm512_maskz_loadu_ps(km, as[c] + b0);
                for (int r = 0; r < R; ++r)
                    accs[r][c] = _mm512_fmadd_ps(ss.mw(r, b0, km), sx, accs[r][c]);
            }
        };
        alignas(64) float sc[R][C][16];
        for (int64_t b0 = 0; b0 < nb; b0 += 16) {
            const __mmask16 km = group_mask(nb - b0);
            for (int c = 0; c < C; ++c) {
                const __m512 dx = _mm512_maskz_loadu_ps(km, ad[c] + b0);
                for (int r = 0; r < R; ++r)
                    _mm512_store_ps(sc[r][c], _mm512_mul_ps(ss.dw(r, b0, km), dx));
            }
            if (kMin && C == 1) min_terms(b0, km);
            // NOTE: keeps GCC from forwarding sc[][] through registers: it would expand each
            // unit's scales with shuffles (port 5) instead of one broadcast load.
            __asm__ volatile("" : "+m"(sc));
            const uint8_t* wb = wr + b0 * kStep;
            const uint8_t* ab[C];
            for (int c = 0; c < C; ++c) ab[c] = acp[c] + (b0 / U) * kAU;
            const int nblk = nb - b0 < 16 ? (int)(nb - b0) : 16;
            for_units(nblk, acc0, acc1, [&](int k, int nv, __m512 (*acc)[C]) PYLM_INLINE {
                unit_rows<R, C>(wb, ws, k, nv, idx, ab, sc, acc, pf);
            });
        }
        if (kMin && C > 1)
            for (int64_t b0 = 0; b0 < nb; b0 += 16) min_terms(b0, group_mask(nb - b0));
        for (int c = 0; c < C; ++c) {
            __m512 t[R];
            for (int r = 0; r < R; ++r) {
                t[r] = _mm512_add_ps(acc0[r][c], acc1[r][c]);
                if (kMin) t[r] = _mm512_add_ps(t[r], accs[r][c]);
            }
            tree16x4(t[0], t[1], t[2], t[3], y + c * ldy);
        }
    }

    // The blocks of a 16-block group present when `left` blocks of the row remain.
    static inline __mmask16 group_mask(int64_t left) {
        return (__mmask16)((1u << (left < 16 ? (int)left : 16)) - 1);
    }

    // A unit of nv blocks at p into L2: the lines of its first and last byte. A unit of 68-96
    // bytes can touch a third line between them; that one is left to the hardware
    // prefetchers (a third prefetch per unit measured no better).
    static inline __attribute__((always_inline)) void prefetch_unit(const uint8_t* p, int nv) {
        _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(p + nv * kStep - 1), _MM_HINT_T1);
    }

    // Unit k of rows wb + r * ws (r < R) against the C activation rows. R > 1 loads each
    // activation vector once for the R rows; R = 1 (up to 8 rows of C) loads it where it is
    // used, as preloading would spill.
    template <int R, int C>
    static inline __attribute__((always_inline)) void unit_rows(
        const uint8_t* wb, int64_t ws, int k, int nv, __m512i idx, const uint8_t* const* ab,
        const float (*sc)[C][16], __m512 (*acc)[C], Pf pf) {
        __m512i a0[C], a1[C], p0[C];
        auto load = [&](int c) PYLM_INLINE {
            const uint8_t* a = ab[c] + k * kAU;
            a0[c] = _mm512_load_si512(a);
            a1[c] = U == 4 ? _mm512_load_si512(a + 64) : _mm512_setzero_si512();
            p0[c] = kMin ? _mm512_setzero_si512() : _mm512_load_si512(a + kAU - 64);
        };
        if constexpr (R > 1)
            for (int c = 0; c < C; ++c) load(c);
        for (int r = 0; r < R; ++r) {
            const uint8_t* q = wb + r * ws + k * U * kStep;
            if (pf.far) prefetch_unit(q + pf.far, nv);
            if (pf.near) prefetch_unit(q + pf.near, nv);
            __m512i w0, w1 = _mm512_setzero_si512();
            if constexpr (P)
                packed_unit_weights<T>(q, nv, &w0, &w1);
            else
                unit_weights<T>(q, nv, idx, &w0, &w1);
            for (int c = 0; c < C; ++c) {
                if constexpr (R == 1) load(c);
                __m512i p = _mm512_dpbusd_epi32(p0[c], w0, a0[c]);
                __m512 s;
                if constexpr (U == 4) {
                    p = _mm512_dpbusd_epi32(p, w1, a1[c]);
                    s = _mm512_broadcast_f32x4(_mm_load_ps(&sc[r][c][4 * k]));
                } else {
                    double two;
                    std::memcpy(&two, &sc[r][c][2 * k], 8);
                    s = _mm512_castpd_ps(_mm512_set1_pd(two));
                }
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[r][c]);
            }
        }
    }

    // Blocks s0 .. s0+sn (s0 % 16 == 0) of row wr, whose weight scales ss holds from block s0 on.
    template <int C>
    static inline __attribute__((always_inline)) void segment(
        const uint8_t* wr, int64_t s0, int64_t sn, const Scales& ss, __m512i idx,
        const float* const* ad, const float* const* as, const uint8_t* const* acp,
        __m512 (*acc0)[C], __m512 (*acc1)[C], __m512* accs, Pf pf) {
        alignas(64) float sc[1][C][16];  // unit_rows' layout, one weight row
        for (int64_t g = 0; g < sn; g += 16) {
            const int64_t b0 = s0 + g;
            const int nblk = sn - g < 16 ? (int)(sn - g) : 16;
            const __mmask16 km = (__mmask16)((1u << nblk) - 1);
            const __m512 d = ss.dw(0, g, km);
            for (int c = 0; c < C; ++c)
                _mm512_store_ps(sc[0][c], _mm512_mul_ps(d, _mm512_maskz_loadu_ps(km, ad[c] + b0)));
            if (kMin) {
                const __m512 m = ss.mw(0, g, km);
                for (int c = 0; c < C; ++c)
                    accs[c] = _mm512_fmadd_ps(m, _mm512_maskz_loadu_ps(km, as[c] + b0), accs[c]);
            }
            // NOTE: keeps GCC from forwarding sc[][] through registers: it would expand each
            // unit's scales with shuffles (port 5) instead of one broadcast load.
            __asm__ volatile("" : "+m"(sc));
            const uint8_t* wb = wr + b0 * kStep;
            const uint8_t* ab[C];
            for (int c = 0; c < C; ++c) ab[c] = acp[c] + (b0 / U) * kAU;
            for_units(nblk, acc0, acc1, [&](int k, int nv, __m512 (*acc)[C]) PYLM_INLINE {
                unit_rows<1, C>(wb, 0, k, nv, idx, ab, sc, acc, pf);
            });
        }
    }

    using RunFn = void (*)(int64_t, const uint8_t*, int64_t, int64_t, const uint8_t* const*,
                           const uint8_t* const*, float*, int64_t);

    static void gemm(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* act,
                     int64_t as, int64_t C, float* y, int64_t ldy) {
        static const RunFn fns[8] = {run<1>, run<2>, run<3>, run<4>,
                                     run<5>, run<6>, run<7>, run<8>};
        const int64_t nb = K / 32;
        const int64_t rowb = (nb + U - 1) / U * kAU;
        uint8_t* buf = t_act_copy.get<uint8_t>((size_t)(C * rowb + 64));
        for (int64_t c = 0; c < C; ++c) ActCopy<T>::make(q8s_qs(act + c * as), nb, buf + c * rowb);
        for (int64_t c0 = 0; c0 < C; c0 += 8) {  // groups of 8 activation rows, then the rest
            const int cn = C - c0 < 8 ? (int)(C - c0) : 8;
            const uint8_t* ap[8];
            const uint8_t* cp[8];
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

// ---- float weights: 16 at a time, masked tail, R weight rows x C activation rows -----------

struct F32W {
    static constexpr int kBytes = 4;
    static inline __m512 load(const uint8_t* w, int64_t k) {
        return _mm512_loadu_ps(reinterpret_cast<const float*>(w) + k);
    }
    static inline __m512 loadm(const uint8_t* w, int64_t k, __mmask16 m) {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + k);
    }
};
struct F16W {
    static constexpr int kBytes = 2;
    static inline __m512 load(const uint8_t* w, int64_t k) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * k)));
    }
    static inline __m512 loadm(const uint8_t* w, int64_t k, __mmask16 m) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + 2 * k));
    }
};
struct BF16W {
    static constexpr int kBytes = 2;
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

// The C >= 2 activation rows of a float-weight product interleaved per 16-float step,
// xi[(k / 16) * C + c] = x[c][k .. k + 15], 64-byte aligned and zero past K: one pointer with
// constant offsets instead of C pointers (which spilled into vector registers and cost a
// vmovq on an FMA port per use), and aligned loads (the engine's rows start 16-byte aligned,
// so each unaligned 64-byte load was split over two lines). The zero tail gives the masked
// loads' zeros: the same float operations as before.
struct Interleaved {
    ScratchBuffer buf;
    const float* fill(const float* const* x, int C, int64_t K) {
        const int64_t steps = (K + 15) / 16;
        float* ptr = buf.get<float>((size_t)(steps * C * 16));
        for (int64_t s = 0; s < steps; ++s) {
            const int64_t k = 16 * s;
            const __mmask16 m = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            for (int c = 0; c < C; ++c)
                _mm512_store_ps(ptr + (s * C + c) * 16, _mm512_maskz_loadu_ps(m, x[c] + k));
        }
        return ptr;
    }
};
thread_local Interleaved t_interleaved;

template <class T>
struct FloatRows {
    // Weight rows n .. n+R-1 against C activation rows: one accumulator per (row, x row), each
    // weight vector converted once per step and used C times. x: the row itself (C = 1), or
    // the Interleaved rows (C >= 2).
    template <int C>
    static inline __m512 xvec(const float* x, int64_t k, int c) {
        if constexpr (C == 1) return _mm512_loadu_ps(x + k);
        return _mm512_load_ps(x + (k / 16 * C + c) * 16);
    }

    template <int R, int C>
    static inline __attribute__((always_inline)) void block(int64_t K, const uint8_t* w,
                                                            int64_t ws, const float* x,
                                                            float* y, int64_t ldy, bool pf,
                                                            bool pf2) {
        __m512 acc[R][C];
        for (int r = 0; r < R; ++r)
            for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            // The next block's rows into L1 and the one after it into L2, one 64-byte line per
            // row as this block's reads cross one (spread over the loop: a burst of prefetches
            // before each block stalls it). The L2 stage: F16 SmolLM2 step -3..-8 %, 5-token
            // verification -6..-10 % (paired, 2 threads); farther or L1-only did worse.
            if (pf && (k * T::kBytes) % 64 == 0)
                for (int r = 0; r < R; ++r) {
                    const uint8_t* p = w + (R + r) * ws + k * T::kBytes;
                    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
                    if (pf2) _mm_prefetch(reinterpret_cast<const char*>(p + R * ws), _MM_HINT_T1);
                }
            __m512 wv[R];
            for (int r = 0; r < R; ++r) wv[r] = T::load(w + r * ws, k);
            for (int c = 0; c < C; ++c) {
                const __m512 xv = xvec<C>(x, k, c);
                for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
            }
        }
        if (k < K) {
            const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
            __m512 wv[R];
            for (int r = 0; r < R; ++r) wv[r] = T::loadm(w + r * ws, k, m);
            for (int c = 0; c < C; ++c) {
                const __m512 xv = C == 1 ? _mm512_maskz_loadu_ps(m, x + k) : xvec<C>(x, k, c);
                for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
            }
        }
        store_trees<R, C>(acc, y, ldy);
    }

    // y[c * ldy + r] = tree16(acc[r][c]), four accumulators per tree16x4 (same additions).
    template <int R, int C>
    static inline __attribute__((always_inline)) void store_trees(const __m512 (*acc)[C],
                                                                  float* y, int64_t ldy) {
        constexpr int kN = R * C, kQuads = kN / 4;
        alignas(16) float t[kQuads * 4 + 4];
        for (int q = 0; q < kQuads; ++q)
            tree16x4(acc[(4 * q) / C][(4 * q) % C], acc[(4 * q + 1) / C][(4 * q + 1) % C],
                     acc[(4 * q + 2) / C][(4 * q + 2) % C], acc[(4 * q + 3) / C][(4 * q + 3) % C],
                     t + 4 * q);
        for (int i = kQuads * 4; i < kN; ++i) t[i] = tree16(acc[i / C][i % C]);
        for (int i = 0; i < kN; ++i) y[(i % C) * ldy + i / C] = t[i];
    }

    template <int C>
    static void run(int64_t K, const uint8_t* w, int64_t ws, int64_t N, const uint8_t* const* act,
                    float* y, int64_t ldy) {
        // weight rows per block: <= 24 accumulators, and >= 8 independent FMA chains
        constexpr int R = C == 1 ? 8 : C == 2 ? 6 : C <= 6 ? 4 : 3;
        const float* x;
        if constexpr (C == 1) {
            x = reinterpret_cast<const float*>(act[0]);
        } else {
            const float* rows[C];
            for (int c = 0; c < C; ++c) rows[c] = reinterpret_cast<const float*>(act[c]);
            x = t_interleaved.fill(rows, C, K);
        }
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
        static const RowsFn fns[8] = {run<1>, run<2>, run<3>, run<4>,
                                      run<5>, run<6>, run<7>, run<8>};
        for (int64_t c0 = 0; c0 < C; c0 += 8) {  // groups of 8 activation rows, then the rest
            const int cn = C - c0 < 8 ? (int)(C - c0) : 8;
            const uint8_t* ap[8];
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

}  // namespace avx512
}  // namespace pylm
