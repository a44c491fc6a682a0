// Internal to the attention backward (attn_bwd.cu, attn_bwd_tc.cu): the bf16 tensor-core main
// kernel. Returns false (nothing launched) when the inputs do not fit it (dtype other than
// bf16, D not 64 / 128, strides or pointers not 16-byte aligned, too little shared memory);
// the caller then runs the SIMT kernel.
#pragma once
#include "train/train_ops.cuh"

namespace pylm {
namespace cuda {
namespace train {

bool attention_bwd_main_tc(const AttnBwdParams& p, const float* delta, float* dq_acc,
                           cudaStream_t stream);

}  // namespace train
}  // namespace cuda
}  // namespace pylm
