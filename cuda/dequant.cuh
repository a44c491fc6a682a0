// Dequantization of GGUF tensors on the GPU, bit-exact with the CPU kernels and
// gguf.quants.dequantize (fp32 out; fp16 out is that fp32 value rounded to nearest even).
// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
// Per-element decoders for other kernels: dequant_blocks.cuh.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace pylm {
namespace cuda {

// True when `ggml_type` (GGUF type id) has a GPU dequantizer.
bool dequant_supported(int ggml_type);

// src: device pointer to n_elements/block_size blocks; dst: device float[n_elements].
// n_elements must be a multiple of the type's block size (the caller validates).
void dequantize(int ggml_type, const void* src, float* dst, int64_t n_elements, cudaStream_t stream);
// Same, dst: device __half[n_elements] (round to nearest even; out-of-range values become inf).
void dequantize_f16(int ggml_type, const void* src, void* dst, int64_t n_elements,
                    cudaStream_t stream);

}  // namespace cuda
}  // namespace pylm
