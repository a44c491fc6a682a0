// Quantization of float32 rows into GGUF block formats (scalar, threaded over blocks).
//
// Legacy formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and F16/BF16 are bit-exact with
// gguf.quants.quantize (gguf-py's numpy code: truncation after +0.5 / +8.5 / +16.5 offsets,
// round-half-away for Q8_0, the first absmax element for the sign of d). Q8_1 follows ggml.
// K-quants (Q2_K..Q6_K, Q8_K) follow llama.cpp's reference quantizers without an importance
// matrix (quantize_row_q*_K_ref: make_qkx2_quants for Q2_K/Q4_K/Q5_K, make_q3_quants for
// Q3_K, make_qx_quants for Q6_K), re-derived here.
//
// Shapes: src is float32[nrows, n_per_row]; dst receives nrows * row_bytes bytes where
// row_bytes = n_per_row / block_size * type_size. n_per_row % block_size == 0 (unchecked).
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"

namespace pylm {

// True when quantize() can produce `t`.
bool can_quantize(QType t);

// Quantizes n values (n % block_size == 0) on the calling thread. Returns bytes written.
size_t quantize_row(QType t, const float* src, void* dst, int64_t n);

// Whole tensor, blocks split over up to `nthreads` threads (<= 0: default). Returns bytes.
size_t quantize(QType t, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                int nthreads);

namespace qk {
// K-quant block quantizers (quantize_k.cpp); nb = number of 256-value super-blocks.
void quantize_q2_K(const float* x, block_q2_K* y, int64_t nb);
void quantize_q3_K(const float* x, block_q3_K* y, int64_t nb);
void quantize_q4_K(const float* x, block_q4_K* y, int64_t nb);
void quantize_q5_K(const float* x, block_q5_K* y, int64_t nb);
void quantize_q6_K(const float* x, block_q6_K* y, int64_t nb);
void quantize_q8_K(const float* x, block_q8_K* y, int64_t nb);
}  // namespace qk

}  // namespace pylm
