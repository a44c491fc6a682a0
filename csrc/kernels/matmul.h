// f32 matrix multiply: C = op(A) @ op(B) (+ beta * C), blocked and multi-threaded.
//
// The layout follows BLIS / GotoBLAS: for each (NC x KC) block of op(B) and (M x KC) block of
// op(A), both are packed into micro-panels (A: MR rows, B: NR columns, k-major) and an
// MR x NR register-tile microkernel walks them. Packing absorbs the transposes, so one
// microkernel serves A @ B, A @ B^T and A^T @ B. Small M (decode, short chunks: M <= 16) skips
// packing and streams B directly, a few rows of A at a time.
//
// Shapes (all row-major, unit column stride):
//   op(A) is [M, K]: A is [M, K] with row stride lda, or [K, M] (lda) when trans_a
//   op(B) is [K, N]: B is [K, N] with row stride ldb, or [N, K] (ldb) when trans_b
//   C     is [M, N] with row stride ldc
// Results do not depend on the thread count: the K blocking and the summation order of every
// output element are fixed by the shape and the ISA alone.
#pragma once
#include <cstdint>

namespace pylm {

struct GemmArgs {
    const float* A;  // op(A) [M, K]
    const float* B;  // op(B) [K, N]
    float* C;        // [M, N]
    int64_t M, N, K;
    int64_t lda, ldb, ldc;
    bool trans_a, trans_b;
    float beta;  // C = op(A) op(B) + beta * C; beta == 0 never reads C (NaN-safe)
};

// C = A @ B, or A @ B^T with trans_b. nthreads <= 0: the global default.
void matmul_f32(const float* A /*[M,K] lda*/, const float* B /*[K,N] ldb, or [N,K] if trans_b*/,
                float* C /*[M,N] ldc*/, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                int64_t ldc, bool trans_b, int nthreads);

// The general form (transposes on both sides, beta). Contract: M, N, K >= 0, leading
// dimensions >= the row length they describe; A/B/C do not alias.
void gemm_f32(const GemmArgs& g, int nthreads);

// ---- per-ISA pieces, called by the dispatcher in matmul.cpp ----

namespace ref {
// Plain triple loop over rows [m0, m1) of C. The oracle and the scalar fallback.
void gemm_rows(const GemmArgs& g, int64_t m0, int64_t m1);
}  // namespace ref

// Each SIMD ISA provides the same four functions around its own MR x NR microkernel.
//   pack_a: op(A)[m0:m0+mlen, k0:k0+kc] -> ceil(mlen/MR) panels of [ldp][MR], MR * ldp floats
//           apart, k row k at k * MR (rows past mlen: 0). ldp == kc packs whole panels; a
//           k sub-range [k0, k0+kc) of a wider block passes that block's kc as ldp and Ap
//           offset by the sub-range's first k row.
//   pack_b: op(B)[k0:k0+kc, n0:n0+nlen] -> ceil(nlen/NR) panels of [kc][NR] (cols past nlen: 0)
//   macro : C[0:mlen, 0:nlen] = Ap @ Bp + beta * C, with Ap/Bp as packed above
//   small_m: direct (unpacked) C[:, n0:n1] for M <= kGemmSmallM
// Up to this many rows the unpacked path wins: packing B costs as much as the product itself.
constexpr int kGemmSmallM = 16;

namespace avx2 {
constexpr int kGemmMR = 6, kGemmNR = 16;  // 12 ymm accumulators
void gemm_pack_a(const GemmArgs& g, int64_t m0, int64_t mlen, int64_t k0, int64_t kc,
                 int64_t ldp, float* Ap);
void gemm_pack_b(const GemmArgs& g, int64_t n0, int64_t nlen, int64_t k0, int64_t kc, float* Bp);
void gemm_macro(int64_t mlen, int64_t nlen, int64_t kc, const float* Ap, const float* Bp, float* C,
                int64_t ldc, float beta);
void gemm_small_m(const GemmArgs& g, int64_t n0, int64_t n1);
}  // namespace avx2

namespace avx512 {
constexpr int kGemmMR = 14, kGemmNR = 32;  // 28 zmm accumulators
void gemm_pack_a(const GemmArgs& g, int64_t m0, int64_t mlen, int64_t k0, int64_t kc,
                 int64_t ldp, float* Ap);
void gemm_pack_b(const GemmArgs& g, int64_t n0, int64_t nlen, int64_t k0, int64_t kc, float* Bp);
void gemm_macro(int64_t mlen, int64_t nlen, int64_t kc, const float* Ap, const float* Bp, float* C,
                int64_t ldc, float beta);
void gemm_small_m(const GemmArgs& g, int64_t n0, int64_t n1);
}  // namespace avx512

}  // namespace pylm
