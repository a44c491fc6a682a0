// AVX-512 f32 matmul pieces: packing, a 14 x 32 register-tile microkernel (28 zmm
// accumulators, 2 B loads + 14 broadcasts per k), the macro-kernel that walks packed panels,
// and an unpacked small-M path for decode-sized products. The dispatcher is in matmul.cpp.
//
// Packed layouts (see matmul.h): Ap panels [kc][MR], Bp panels [kc][NR], zero padded.
#include <immintrin.h>

// GCC 12 flags the self-initialized "undefined" operand inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/matmul.h"

namespace pylm {
namespace avx512 {

namespace {

constexpr int MR = kGemmMR;  // 14
constexpr int NR = kGemmNR;  // 32

static inline __mmask16 tail_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

static inline float hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// C = acc + beta * C under mask (beta == 0: C is not read).
static inline void store_tile(float* c, __m512 acc, __mmask16 m, float beta) {
    if (beta == 0.0f) {
        _mm512_mask_storeu_ps(c, m, acc);
    } else {
        const __m512 old = _mm512_maskz_loadu_ps(m, c);
        _mm512_mask_storeu_ps(c, m, _mm512_fmadd_ps(_mm512_set1_ps(beta), old, acc));
    }
}

// Where a micro-tile goes. Passed by pointer and read only after the k loop, so that none of
// it occupies a register during the loop (28 accumulators + 3 operands leave one spare zmm).
struct TileOut {
    float* C;
    int64_t ldc, nvalid;
    float beta;
    const float* Bnext;  // the next B micro-panel to prefetch into L2 during the loop, or null
};

// C[0:ROWS, 0:nvalid] = Ap @ Bp + beta * C over kc steps. Ap rows are MR apart (packed
// stride), so one kernel per row count handles the M edge; masks handle the N edge.
template <int ROWS>
static void ukernel(int64_t kc, const float* Ap, const float* Bp, const TileOut* out) {
    {  // Start the C tile's read-for-ownership now: it lands during the k loop.
        const char* pc = reinterpret_cast<const char*>(out->C);
        const int64_t ld = out->ldc * static_cast<int64_t>(sizeof(float));
#pragma GCC unroll 14
        for (int i = 0; i < ROWS; ++i) {
            _mm_prefetch(pc + i * ld, _MM_HINT_T0);
            _mm_prefetch(pc + i * ld + 64, _MM_HINT_T0);
        }
    }
    __m512 c0[ROWS], c1[ROWS];
#pragma GCC unroll 14
    for (int i = 0; i < ROWS; ++i) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
    const char* bn = reinterpret_cast<const char*>(out->Bnext);
    for (int64_t k = 0; k < kc; ++k) {
        if (bn) {  // two lines (one k row of the next panel) per k
            _mm_prefetch(bn, _MM_HINT_T1);
            _mm_prefetch(bn + 64, _MM_HINT_T1);
            bn += NR * sizeof(float);
        }
        const __m512 b0 = _mm512_loadu_ps(Bp);
        const __m512 b1 = _mm512_loadu_ps(Bp + 16);
#pragma GCC unroll 14
        for (int i = 0; i < ROWS; ++i) {
            const __m512 a = _mm512_set1_ps(Ap[i]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
        Ap += MR;
        Bp += NR;
    }
    const int64_t nv = out->nvalid;
    const __mmask16 m0 = tail_mask(nv), m1 = tail_mask(nv - 16 > 0 ? nv - 16 : 0);
    float* c = out->C;
#pragma GCC unroll 14
    for (int i = 0; i < ROWS; ++i, c += out->ldc) {
        store_tile(c, c0[i], m0, out->beta);
        if (m1) store_tile(c + 16, c1[i], m1, out->beta);
    }
}

typedef void (*UkernelFn)(int64_t, const float*, const float*, const TileOut*);

static const UkernelFn kUkernels[MR + 1] = {
    nullptr,     ukernel<1>,  ukernel<2>,  ukernel<3>,  ukernel<4>,
    ukernel<5>,  ukernel<6>,  ukernel<7>,  ukernel<8>,  ukernel<9>,
    ukernel<10>, ukernel<11>, ukernel<12>, ukernel<13>, ukernel<14>,
};

// Small-M, B [K, N]: C[0:ROWS, n0:n0+64] from 4 zmm columns per row, B streamed once.
template <int ROWS>
static inline void small_nn(const GemmArgs& g, int64_t i0, int64_t n0, int64_t n1) {
    const float* A = g.A + i0 * g.lda;
    float* C = g.C + i0 * g.ldc;
    for (int64_t n = n0; n < n1; n += 64) {
        const int64_t w = n1 - n;
        __mmask16 mk[4];
        for (int v = 0; v < 4; ++v) mk[v] = tail_mask(w - 16 * v > 0 ? w - 16 * v : 0);
        __m512 acc[ROWS][4];
        for (int i = 0; i < ROWS; ++i)
            for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
        const float* b = g.B + n;
        for (int64_t k = 0; k < g.K; ++k, b += g.ldb) {
            __m512 bv[4];
            for (int v = 0; v < 4; ++v) bv[v] = _mm512_maskz_loadu_ps(mk[v], b + 16 * v);
            for (int i = 0; i < ROWS; ++i) {
                const __m512 a = _mm512_set1_ps(A[i * g.lda + k]);
                for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
            }
        }
        for (int i = 0; i < ROWS; ++i)
            for (int v = 0; v < 4; ++v)
                if (mk[v]) store_tile(C + i * g.ldc + n + 16 * v, acc[i][v], mk[v], g.beta);
    }
}

// Small-M, B [N, K]: dot products, 4 rows of B at a time, horizontal sums at the end.
template <int ROWS>
static inline void small_nt(const GemmArgs& g, int64_t i0, int64_t n0, int64_t n1) {
    const float* A = g.A + i0 * g.lda;
    float* C = g.C + i0 * g.ldc;
    const int64_t K = g.K;
    const __mmask16 kt = tail_mask(K % 16);
    const int64_t kfull = K - K % 16;
    for (int64_t n = n0; n < n1; n += 4) {
        const int nb = n1 - n >= 4 ? 4 : (int)(n1 - n);
        const float* brow[4];
        for (int j = 0; j < 4; ++j) brow[j] = g.B + (n + (j < nb ? j : 0)) * g.ldb;
        __m512 acc[ROWS][4];
        for (int i = 0; i < ROWS; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
        for (int64_t k = 0; k <= kfull; k += 16) {
            const __mmask16 m = k < kfull ? (__mmask16)0xFFFF : kt;
            if (!m) break;
            __m512 bv[4];
            for (int j = 0; j < 4; ++j) bv[j] = _mm512_maskz_loadu_ps(m, brow[j] + k);
            for (int i = 0; i < ROWS; ++i) {
                const __m512 a = _mm512_maskz_loadu_ps(m, A + i * g.lda + k);
                for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_fmadd_ps(a, bv[j], acc[i][j]);
            }
        }
        for (int i = 0; i < ROWS; ++i) {
            float* c = C + i * g.ldc + n;
            for (int j = 0; j < nb; ++j) {
                const float s = hsum(acc[i][j]);
                c[j] = g.beta == 0.0f ? s : s + g.beta * c[j];
            }
        }
    }
}

// In-register 16 x 16 transpose: r[i] holds row i on entry, column i on return (64 shuffles).
static inline void transpose16(__m512* r) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4i + j], 128-bit lane L: column 4L + j of rows 4i .. 4i + 3.
    for (int i = 0; i < 4; ++i) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    // Per j, a 4 x 4 transpose of 128-bit blocks across r[j], r[4 + j], r[8 + j], r[12 + j].
    for (int j = 0; j < 4; ++j) {
        const __m512 p0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        const __m512 p1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        const __m512 p2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        const __m512 p3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        t[j] = _mm512_shuffle_f32x4(p0, p2, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(p0, p2, 0xDD);
        t[4 + j] = _mm512_shuffle_f32x4(p1, p3, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(p1, p3, 0xDD);
    }
    for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// dst[k * dst_ld + i] = src[i * ld + k] for k < kc and the lanes i in store_mask; source rows
// i >= rows read as 0. Packs a row-major block as k-major panel columns.
static void pack_transposed(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                            int64_t dst_ld, __mmask16 store_mask) {
    for (int64_t k = 0; k < kc; k += 16) {
        const int64_t kn = kc - k < 16 ? kc - k : 16;
        const __mmask16 lm = tail_mask(kn);
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(lm, src + i * ld + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int64_t c = 0; c < kn; ++c)
            _mm512_mask_storeu_ps(dst + (k + c) * dst_ld, store_mask, r[c]);
    }
}

}  // namespace

void gemm_pack_a(const GemmArgs& g, int64_t m0, int64_t mlen, int64_t k0, int64_t kc,
                 int64_t ldp, float* Ap) {
    if (g.trans_a) {
        // A is [K, M]: a panel row (fixed k) is contiguous in A. Walk A row by row, each row
        // across every panel, so that reads stream (panel by panel, every k would be a new,
        // far-apart line that no prefetcher follows).
        const float* a = g.A + k0 * g.lda + m0;
        for (int64_t k = 0; k < kc; ++k, a += g.lda) {
            if (k + 8 < kc)  // rows are far apart: no hardware prefetcher follows them
                for (int64_t l = 0; l < mlen; l += 16)
                    _mm_prefetch(reinterpret_cast<const char*>(a + 8 * g.lda + l), _MM_HINT_T0);
            float* dst = Ap + k * MR;
            for (int64_t p = 0; p < mlen; p += MR, dst += MR * ldp) {
                const __mmask16 m = tail_mask(mlen - p < MR ? mlen - p : MR);
                _mm512_mask_storeu_ps(dst, 0x3FFF, _mm512_maskz_loadu_ps(m, a + p));
            }
        }
        return;
    }
    for (int64_t p = 0; p < mlen; p += MR, Ap += MR * ldp) {
        // A is [M, K]: transpose `rows` rows into the k-major panel.
        const int64_t rows = mlen - p < MR ? mlen - p : MR;
        pack_transposed(g.A + (m0 + p) * g.lda + k0, g.lda, rows, kc, Ap, MR, 0x3FFF);
    }
}

void gemm_pack_b(const GemmArgs& g, int64_t n0, int64_t nlen, int64_t k0, int64_t kc, float* Bp) {
    if (!g.trans_b) {
        // B is [K, N]: a panel row is 32 contiguous floats. Walk B row by row, each row across
        // every panel, so that reads stream through whole rows (panel by panel, each k would
        // touch two lines of a row far from the last: long K makes that a cache miss each).
        const float* b = g.B + k0 * g.ldb + n0;
        const int64_t full = nlen / NR * NR;
        const int64_t tail = nlen - full;
        const __mmask16 m0 = tail_mask(tail), m1 = tail_mask(tail > 16 ? tail - 16 : 0);
        for (int64_t k = 0; k < kc; ++k, b += g.ldb) {
            if (k + 4 < kc)
                for (int64_t l = 0; l < nlen; l += 16)
                    _mm_prefetch(reinterpret_cast<const char*>(b + 4 * g.ldb + l), _MM_HINT_T0);
            float* dst = Bp + k * NR;
            int64_t p = 0;
            for (; p < full; p += NR, dst += NR * kc) {
                _mm512_storeu_ps(dst, _mm512_loadu_ps(b + p));
                _mm512_storeu_ps(dst + 16, _mm512_loadu_ps(b + p + 16));
            }
            if (p < nlen) {
                _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(m0, b + p));
                _mm512_storeu_ps(dst + 16, _mm512_maskz_loadu_ps(m1, b + p + 16));
            }
        }
        return;
    }
    for (int64_t p = 0; p < nlen; p += NR, Bp += NR * kc) {
        const int64_t cols = nlen - p < NR ? nlen - p : NR;
        // B is [N, K]: transpose `cols` rows of B into the k-major panel, 16 at a time.
        const float* b = g.B + (n0 + p) * g.ldb + k0;
        pack_transposed(b, g.ldb, cols, kc, Bp, NR, 0xFFFF);
        pack_transposed(cols > 16 ? b + 16 * g.ldb : b, g.ldb, cols - 16, kc, Bp + 16, NR,
                        0xFFFF);
    }
}

void gemm_macro(int64_t mlen, int64_t nlen, int64_t kc, const float* Ap, const float* Bp, float* C,
                int64_t ldc, float beta) {
    // B micro-panel (kc x 32) stays in L1 while the A panels of this block stream from L2.
    for (int64_t j = 0; j < nlen; j += NR) {
        const float* bp = Bp + j * kc;
        for (int64_t i = 0; i < mlen; i += MR) {
            const int rows = mlen - i < MR ? (int)(mlen - i) : MR;
            // The first A panel's pass also brings the next B micro-panel into L2: half of the
            // packed B was packed by the other thread (its L2), and a first pass that waits on
            // those lines from L3 runs at a fraction of the FMA rate.
            const float* bnext = i == 0 && j + NR < nlen ? bp + NR * kc : nullptr;
            const TileOut out = {C + i * ldc + j, ldc, nlen - j, beta, bnext};
            kUkernels[rows](kc, Ap + i * kc, bp, &out);
        }
    }
}

void gemm_small_m(const GemmArgs& g, int64_t n0, int64_t n1) {
    // Contract: g.M <= kGemmSmallM and !g.trans_a (the dispatcher materializes op(A)).
    // Column blocks small enough that their B data stays in L2 while every 4-row block of A
    // passes over it.
    const int64_t NB = g.trans_b ? 32 : 128;
    for (int64_t nb = n0; nb < n1; nb += NB) {
        const int64_t ne = n1 - nb < NB ? n1 : nb + NB;
        for (int64_t i = 0; i < g.M; i += 4) {
            const int64_t rows = g.M - i < 4 ? g.M - i : 4;
            if (g.trans_b) {
                switch (rows) {
                case 1: small_nt<1>(g, i, nb, ne); break;
                case 2: small_nt<2>(g, i, nb, ne); break;
                case 3: small_nt<3>(g, i, nb, ne); break;
                default: small_nt<4>(g, i, nb, ne); break;
                }
            } else {
                switch (rows) {
                case 1: small_nn<1>(g, i, nb, ne); break;
                case 2: small_nn<2>(g, i, nb, ne); break;
                case 3: small_nn<3>(g, i, nb, ne); break;
                default: small_nn<4>(g, i, nb, ne); break;
                }
            }
        }
    }
}

}  // namespace avx512
}  // namespace pylm
