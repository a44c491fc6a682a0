// Quantized dot products: one GGUF weight row against activation rows quantized to 8 bits.
//
// The scheme of llama.cpp's ggml-cpu: the activations x (float32) are quantized once per
// matmul call, then every weight block meets its activation block in integer arithmetic
// (AVX2 vpmaddubsw/vpmaddwd, AVX-512 VNNI vpdpbusd/vpdpwssd) and only the per-block result is
// scaled in float. Float weights (F32/F16/BF16) use float dot products with x as it is.
//
// Activation formats (ActFormat), chosen by the weight type:
//   F32  for F32/F16/BF16 weights: the float row itself, K floats.
//   Q8S  for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 (K % 32 == 0), one row, nb = K/32 blocks of 32:
//          int8_t qs[K];   q = round_half_away(x / d), |q| <= 127
//          float  d[nb];   d = max|x_block| / 127 (float32, not rounded to fp16)
//          float  s[nb];   s = d * sum(q_block)
//        NOTE: ggml uses block_q8_0 {fp16 d} and block_q8_1 {fp16 d, fp16 s}. Q8S keeps d and s
//        in float32 (no fp16 rounding of the scale) and stores the three parts as separate
//        arrays, so SIMD code loads 64 activations and two scales at once; one format serves
//        all five legacy weight types (s carries the Q4_0/Q5_0 zero-point and Q4_1/Q5_1 min).
//        qs is bit-identical to gguf's Q8_0 quantization of the same block.
//   Q8K  for Q2_K..Q6_K (K % 256 == 0): K/256 block_q8_K {float d; int8 qs[256];
//        int16 bsums[16]} with d = max|x| / 127 and bsums[j] = sum(qs[16j .. 16j+15]).
// Every ISA's quantizer produces the same bytes, and every weight type follows one canonical
// float evaluation order on every ISA (legacy and float weights: qdot_canon.h; K-quants:
// qdot_kquant_ref.cpp): scalar, AVX2 and AVX-512 results are bit-identical.
//
// Kernel contract (per weight type, per ISA):
//   vec_dot(K, w_row, act_row) -> float      sum_k dequant(w_row)[k] * x[k]
//   gemm(K, w [N rows, stride w_stride bytes], N, act [C rows, stride act_stride bytes], C,
//        y, ldy):  y[c * ldy + n] = vec_dot(K, w + n * w_stride, act + c * act_stride)
//   Bit-identical to vec_dot for every C (batch invariance). gemm passes
//   groups of activation rows (up to 8) over each weight row, so each
//   weight block is unpacked once per group and read from cache C/group times; at C = 1 the
//   AVX-512 legacy kernels take 4 weight rows at once instead.
#pragma once
#include <cstdint>

#include "quant/blocks.h"

namespace pylm {

enum class ActFormat : int { F32 = 0, Q8S = 1, Q8K = 2 };

using VecDotFn = float (*)(int64_t K, const void* w_row, const void* act_row);
using GemmFn = void (*)(int64_t K, const uint8_t* w, int64_t w_stride, int64_t N,
                        const uint8_t* act, int64_t act_stride, int64_t C, float* y, int64_t ldy);

struct QDotKernels {
    VecDotFn vec_dot;
    GemmFn gemm;
    GemmFn gemm_packed;  // gemm over rows in the packed layout below; nullptr: none on this ISA
};

// Packed legacy rows (Q4_0, Q4_1, Q8_0): the engine's copy of a weight for kernels that have
// gemm_packed, made once at load time. Same bytes per row as GGUF (so row strides, chunks and
// the result bits are unchanged); the row's nb = K / 32 blocks become
//   qs: nb * Q bytes (Q = 16 for Q4_0/Q4_1, 32 for Q8_0) in units of U blocks (U = 4 / 2):
//       a whole unit is 64 bytes whose dword l is dword l / U of the qs of block l % U of the
//       unit (the canonical lane order, qdot_canon.h); a last unit of nv < U blocks keeps only
//       its lanes with l % U < nv, in lane order (nv * Q bytes). Q8_0 bytes are stored as
//       q + 128 (the unsigned form the kernels feed to vpdpbusd).
//   d:  nb fp16 block scales, then (Q4_1) m: nb fp16 block mins.
// So a unit is one load with no permute, and 16 scales one load and one conversion.
// Rows [0, N) of W (GGUF layout, K % 32 == 0) into dst (N * qrow_bytes(t, K) bytes); t is a
// type whose kernels have gemm_packed (Q4_0, Q4_1, Q8_0).
void qdot_pack_rows(QType t, const uint8_t* src, int64_t N, int64_t K, uint8_t* dst);

// True when qmatmul has kernels for weight type `t` (F32, F16, BF16, Q4_0 .. Q6_K; not Q8_1/Q8_K).
bool qdot_supported(QType t);
// The activation format used with weight type `t` (t must be supported).
ActFormat act_format(QType t);
// Bytes of one quantized activation row of K values (rounded up to 64 for alignment).
int64_t act_row_bytes(ActFormat f, int64_t K);

// Q8S row accessors (see the layout above).
static inline const int8_t* q8s_qs(const void* row) {
    return static_cast<const int8_t*>(row);
}
static inline const float* q8s_d(const void* row, int64_t K) {
    return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + K);
}
static inline const float* q8s_s(const void* row, int64_t K) {
    return q8s_d(row, K) + K / 32;
}

// Per-ISA pieces. quantize_act_*: x [K] -> one activation row; kernels: nullptr if unsupported.
namespace ref {
void quantize_act_q8s(const float* x, int64_t K, void* row);
void quantize_act_q8k(const float* x, int64_t K, void* row);
const QDotKernels* qdot_kernels(QType t);
const QDotKernels* qdot_kernels_k(QType t);  // K-quant half (qdot_kquant_ref.cpp)
}  // namespace ref
namespace avx2 {
void quantize_act_q8s(const float* x, int64_t K, void* row);
void quantize_act_q8k(const float* x, int64_t K, void* row);
const QDotKernels* qdot_kernels(QType t);
const QDotKernels* qdot_kernels_k(QType t);  // K-quant half (qdot_kquant_avx2.cpp)
}  // namespace avx2
namespace avx512 {
const QDotKernels* qdot_kernels(QType t);
const QDotKernels* qdot_kernels_k(QType t);  // K-quant half (qdot_kquant_avx512.cpp)
}  // namespace avx512

// Dispatched on the active ISA.
// x [K] -> act row (F32: a copy of x). K must be valid for the format.
void quantize_act(ActFormat f, const float* x, int64_t K, void* row);
const QDotKernels* qdot_kernels(QType t);

}  // namespace pylm
