// Dequantization of GGUF tensors to float32.
//
// Reference: the block layouts of ggml (blocks.h) and gguf-py's numpy dequantizers
// (gguf/quants.py), which define the exact float operation order we reproduce:
//   Q4_0/Q5_0/Q8_0/Q8_1/Q8_K:  y = d * q                       (one rounding)
//   Q4_1/Q5_1:                 y = (d * q) + m                 (two roundings, never an FMA)
//   Q2_K/Q4_K/Q5_K:            y = (dl * q) - ml, dl = d * sc, ml = dmin * m  (float32 each)
//   Q3_K/Q6_K:                 y = dl * q,        dl = d * sc
// Every variant below is bit-exact with gguf.quants.dequantize (NaN payloads aside).
//
// Shapes: `src` holds n / block_size blocks of type_size bytes (contiguous, any alignment);
// `dst` is float32[n]. n must be a multiple of the type's block size (F32/F16/BF16: 1).
#pragma once
#include <cstdint>

#include "quant/blocks.h"

namespace pylm {

// True when dequantize_row / dequantize accept `t`.
bool can_dequantize(QType t);

// Dequantizes n values (n % block_size == 0) on the calling thread with the active ISA.
// Contract (unchecked): can_dequantize(t), n a multiple of the block size.
void dequantize_row(QType t, const void* src, float* dst, int64_t n);

// Whole tensor, split over blocks on up to `nthreads` threads (<= 0: the default).
void dequantize(QType t, const void* src, float* dst, int64_t n, int nthreads);

// Per-ISA kernels (same contract as dequantize_row).
namespace ref {
void dequantize_row(QType t, const void* src, float* dst, int64_t n);
}
namespace avx2 {
void dequantize_row(QType t, const void* src, float* dst, int64_t n);
}
namespace avx512 {
void dequantize_row(QType t, const void* src, float* dst, int64_t n);
}

}  // namespace pylm
