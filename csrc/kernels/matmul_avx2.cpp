// AVX2 + FMA f32 matmul pieces: packing, a 6 x 16 register-tile microkernel (12 ymm
// accumulators, 2 B loads + 6 broadcasts per k), the macro-kernel that walks packed panels,
// and an unpacked small-M path for decode-sized products. The dispatcher is in matmul.cpp.
//
// Packed layouts (see matmul.h): Ap panels [kc][MR], Bp panels [kc][NR], zero padded.
#include <immintrin.h>

#include "kernels/matmul.h"

namespace pylm {
namespace avx2 {

namespace {

constexpr int MR = kGemmMR;  // 6
constexpr int NR = kGemmNR;  // 16

// Lane mask for the first n (clamped to 0..8) lanes, for maskload / maskstore.
static inline __m256i lane_mask(int64_t n) {
    const int c = n <= 0 ? 0 : (n >= 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// C = acc + beta * C on the first n lanes (beta == 0: C is not read).
static inline void store_part(float* c, __m256 acc, int64_t n, float beta) {
    if (n >= 8) {
        if (beta != 0.0f) acc = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), acc);
        _mm256_storeu_ps(c, acc);
    } else if (n > 0) {
        const __m256i m = lane_mask(n);
        if (beta != 0.0f)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_maskload_ps(c, m), acc);
        _mm256_maskstore_ps(c, m, acc);
    }
}

static inline __m256 load_part(const float* p, int64_t n) {
    if (n >= 8) return _mm256_loadu_ps(p);
    if (n <= 0) return _mm256_setzero_ps();
    return _mm256_maskload_ps(p, lane_mask(n));
}

// C[0:ROWS, 0:nvalid] = Ap @ Bp + beta * C over kc steps (Ap rows MR apart). Bnext (or null):
// the next B micro-panel, prefetched into L2 one line per k.
template <int ROWS>
static inline void ukernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                           int64_t nvalid, float beta, const float* Bnext) {
    __m256 c0[ROWS], c1[ROWS];
#pragma GCC unroll 6
    for (int i = 0; i < ROWS; ++i) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
        _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; ++k) {
        if (Bnext) {
            _mm_prefetch(reinterpret_cast<const char*>(Bnext), _MM_HINT_T1);
            Bnext += NR;
        }
        const __m256 b0 = _mm256_loadu_ps(Bp);
        const __m256 b1 = _mm256_loadu_ps(Bp + 8);
#pragma GCC unroll 6
        for (int i = 0; i < ROWS; ++i) {
            const __m256 a = _mm256_broadcast_ss(Ap + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
        Ap += MR;
        Bp += NR;
    }
#pragma GCC unroll 6
    for (int i = 0; i < ROWS; ++i) {
        store_part(C + i * ldc, c0[i], nvalid, beta);
        store_part(C + i * ldc + 8, c1[i], nvalid - 8, beta);
    }
}

typedef void (*UkernelFn)(int64_t, const float*, const float*, float*, int64_t, int64_t, float,
                          const float*);

static const UkernelFn kUkernels[MR + 1] = {
    nullptr, ukernel<1>, ukernel<2>, ukernel<3>, ukernel<4>, ukernel<5>, ukernel<6>,
};

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Small-M, B [K, N]: C[0:ROWS, n:n+32] from 4 ymm columns per row, B streamed once.
template <int ROWS>
static inline void small_nn(const GemmArgs& g, int64_t i0, int64_t n0, int64_t n1) {
    const float* A = g.A + i0 * g.lda;
    float* C = g.C + i0 * g.ldc;
    for (int64_t n = n0; n < n1; n += 32) {
        const int64_t w = n1 - n;
        __m256 acc[ROWS][4];
        for (int i = 0; i < ROWS; ++i)
            for (int v = 0; v < 4; ++v) acc[i][v] = _mm256_setzero_ps();
        const float* b = g.B + n;
        for (int64_t k = 0; k < g.K; ++k, b += g.ldb) {
            __m256 bv[4];
            for (int v = 0; v < 4; ++v) bv[v] = load_part(b + 8 * v, w - 8 * v);
            for (int i = 0; i < ROWS; ++i) {
                const __m256 a = _mm256_set1_ps(A[i * g.lda + k]);
                for (int v = 0; v < 4; ++v) acc[i][v] = _mm256_fmadd_ps(a, bv[v], acc[i][v]);
            }
        }
        for (int i = 0; i < ROWS; ++i)
            for (int v = 0; v < 4; ++v)
                store_part(C + i * g.ldc + n + 8 * v, acc[i][v], w - 8 * v, g.beta);
    }
}

// Small-M, B [N, K]: dot products, 4 rows of B at a time, horizontal sums at the end.
template <int ROWS>
static inline void small_nt(const GemmArgs& g, int64_t i0, int64_t n0, int64_t n1) {
    const float* A = g.A + i0 * g.lda;
    float* C = g.C + i0 * g.ldc;
    const int64_t K = g.K;
    for (int64_t n = n0; n < n1; n += 4) {
        const int nb = n1 - n >= 4 ? 4 : (int)(n1 - n);
        const float* brow[4];
        for (int j = 0; j < 4; ++j) brow[j] = g.B + (n + (j < nb ? j : 0)) * g.ldb;
        __m256 acc[ROWS][4];
        for (int i = 0; i < ROWS; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 8) {
            const int64_t w = K - k;
            __m256 bv[4];
            for (int j = 0; j < 4; ++j) bv[j] = load_part(brow[j] + k, w);
            for (int i = 0; i < ROWS; ++i) {
                const __m256 a = load_part(A + i * g.lda + k, w);
                for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_fmadd_ps(a, bv[j], acc[i][j]);
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

// In-register 8 x 8 transpose: r[i] holds row i on entry, column i on return (24 shuffles).
static inline void transpose8(__m256* r) {
    __m256 t[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + j], 128-bit half L: column 4L + j of rows 4i .. 4i + 3.
    __m256 u[8];
    for (int i = 0; i < 2; ++i) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

// dst[k * dst_ld + i] = src[i * ld + k] for k < kc and i < store_lanes (<= 8); source rows
// i >= rows read as 0. Packs a row-major block as k-major panel columns.
static void pack_transposed(const float* src, int64_t ld, int64_t rows, int64_t kc, float* dst,
                            int64_t dst_ld, int store_lanes) {
    const __m256i sm = lane_mask(store_lanes);
    for (int64_t k = 0; k < kc; k += 8) {
        const int64_t kn = kc - k < 8 ? kc - k : 8;
        __m256 r[8];
        for (int i = 0; i < 8; ++i)
            r[i] = i < rows ? load_part(src + i * ld + k, kn) : _mm256_setzero_ps();
        transpose8(r);
        for (int64_t c = 0; c < kn; ++c) {
            if (store_lanes == 8)
                _mm256_storeu_ps(dst + (k + c) * dst_ld, r[c]);
            else
                _mm256_maskstore_ps(dst + (k + c) * dst_ld, sm, r[c]);
        }
    }
}

}  // namespace

void gemm_pack_a(const GemmArgs& g, int64_t m0, int64_t mlen, int64_t k0, int64_t kc,
                 int64_t ldp, float* Ap) {
    const __m256i six = lane_mask(MR);
    if (g.trans_a) {
        // A is [K, M]: a panel row (fixed k) is contiguous in A. Row by row across every
        // panel, so that reads stream (see the AVX-512 twin).
        const float* a = g.A + k0 * g.lda + m0;
        for (int64_t k = 0; k < kc; ++k, a += g.lda) {
            if (k + 8 < kc)  // rows are far apart: no hardware prefetcher follows them
                for (int64_t l = 0; l < mlen; l += 16)
                    _mm_prefetch(reinterpret_cast<const char*>(a + 8 * g.lda + l), _MM_HINT_T0);
            float* dst = Ap + k * MR;
            for (int64_t p = 0; p < mlen; p += MR, dst += MR * ldp)
                _mm256_maskstore_ps(dst, six, load_part(a + p, mlen - p < MR ? mlen - p : MR));
        }
        return;
    }
    for (int64_t p = 0; p < mlen; p += MR, Ap += MR * ldp) {
        // A is [M, K]: transpose `rows` rows into the k-major panel.
        const int64_t rows = mlen - p < MR ? mlen - p : MR;
        pack_transposed(g.A + (m0 + p) * g.lda + k0, g.lda, rows, kc, Ap, MR, MR);
    }
}

void gemm_pack_b(const GemmArgs& g, int64_t n0, int64_t nlen, int64_t k0, int64_t kc, float* Bp) {
    for (int64_t p = 0; p < nlen; p += NR, Bp += NR * kc) {
        const int64_t cols = nlen - p < NR ? nlen - p : NR;
        if (!g.trans_b) {
            // B is [K, N]: a panel row is 16 contiguous floats.
            const float* b = g.B + k0 * g.ldb + n0 + p;
            for (int64_t k = 0; k < kc; ++k, b += g.ldb) {
                _mm256_storeu_ps(Bp + k * NR, load_part(b, cols));
                _mm256_storeu_ps(Bp + k * NR + 8, load_part(b + 8, cols - 8));
            }
        } else {
            // B is [N, K]: transpose `cols` rows of B into the k-major panel, 8 at a time.
            const float* b = g.B + (n0 + p) * g.ldb + k0;
            pack_transposed(b, g.ldb, cols, kc, Bp, NR, 8);
            pack_transposed(cols > 8 ? b + 8 * g.ldb : b, g.ldb, cols - 8, kc, Bp + 8, NR, 8);
        }
    }
}

void gemm_macro(int64_t mlen, int64_t nlen, int64_t kc, const float* Ap, const float* Bp, float* C,
                int64_t ldc, float beta) {
    // B micro-panel (kc x 16) stays in L1 while the A panels of this block stream from L2.
    for (int64_t j = 0; j < nlen; j += NR) {
        const float* bp = Bp + j * kc;
        for (int64_t i = 0; i < mlen; i += MR) {
            const int rows = mlen - i < MR ? (int)(mlen - i) : MR;
            // the first A panel's pass brings the next B micro-panel into L2 (see avx512)
            const float* bnext = i == 0 && j + NR < nlen ? bp + NR * kc : nullptr;
            kUkernels[rows](kc, Ap + i * kc, bp, C + i * ldc + j, ldc, nlen - j, beta, bnext);
        }
    }
}

void gemm_small_m(const GemmArgs& g, int64_t n0, int64_t n1) {
    // Contract: g.M <= kGemmSmallM and !g.trans_a (the dispatcher materializes op(A)).
    // Column blocks small enough that their B data stays in L2 while every 2-row block of A
    // passes over it (2 rows x 4 vectors of accumulators fit the 16 ymm registers).
    const int64_t NB = g.trans_b ? 32 : 128;
    for (int64_t nb = n0; nb < n1; nb += NB) {
        const int64_t ne = n1 - nb < NB ? n1 : nb + NB;
        for (int64_t i = 0; i < g.M; i += 2) {
            const bool two = g.M - i >= 2;
            if (g.trans_b) {
                if (two)
                    small_nt<2>(g, i, nb, ne);
                else
                    small_nt<1>(g, i, nb, ne);
            } else {
                if (two)
                    small_nn<2>(g, i, nb, ne);
                else
                    small_nn<1>(g, i, nb, ne);
            }
        }
    }
}

}  // namespace avx2
}  // namespace pylm
