// Per-(dtype, head dim) launchers behind flash_attn_fwd / paged_attn_decode (cuda/attention.cu
// and cuda/paged_attention.cu switch over them). Definitions: cuda/attention_flash.cuh
// (instantiated in cuda/instances/attn_fwd_*.cu), cuda/attention_f32.cu, cuda/paged_attention.cu.
#pragma once
#include "attention.cuh"

namespace pylm {
namespace cuda {
namespace attn {

// T = __half or __nv_bfloat16; D in {64, 128, 256}.
template <typename T, int D>
void launch_flash_fwd(const FlashAttnParams& p, cudaStream_t stream);
// The fp32 path (CUDA cores, exact expf), D in {64, 128, 256}.
template <int D>
void launch_flash_fwd_f32(const FlashAttnParams& p, cudaStream_t stream);

}  // namespace attn
}  // namespace cuda
}  // namespace pylm
