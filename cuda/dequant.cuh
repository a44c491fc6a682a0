// Dequantization of GGUF tensors on the GPU (fp32 out), bit-exact with the CPU kernels and
// gguf.quants.dequantize: every float op is an explicitly rounded intrinsic (__fmul_rn, ...), so
// nvcc cannot contract a*b+c into an FMA.
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

}  // namespace cuda
}  // namespace pylm
