// Small ops on the GPU — launcher contracts (owner: cuda/elementwise*.cu). All asynchronous on
// `stream`, rows contiguous, fp32 math whatever the storage dtype (F32, F16, BF16).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace pylm {
namespace cuda {

// y[R,C] = x[R,C] / sqrt(mean(x^2) + eps) * w[C]   (w f32; x and y same dtype; may alias)
void rmsnorm(DType dt, const void* x, const float* w, void* y, int64_t R, int64_t C, float eps,
             cudaStream_t stream);
// In place on x[T, H, D]: rotates the first rot_dim dims of every head by pos[t] * theta_i,
// theta_i = freq_scale * base^(-2i/rot_dim). neox=false: pairs (2i, 2i+1) (llama.cpp "normal");
// neox=true: pairs (i, i + rot_dim/2). pos is int32 [T]. row_stride = elements between tokens.
void rope(DType dt, void* x, const int32_t* pos, int64_t T, int64_t H, int64_t D,
          int64_t row_stride, int rot_dim, float base, float freq_scale, bool neox,
          cudaStream_t stream);
// y[R,C] = softmax(x[R,C] * scale) along C (f32 result; x and y may alias when both are f32)
void softmax(DType dt, const void* x, float* y, int64_t R, int64_t C, float scale,
             cudaStream_t stream);
// out[R,F] = act(gate[R,F]) * up[R,F]; act = SiLU (swiglu) or tanh-GELU (geglu).
// gate/up rows may be halves of one [R, 2F] tensor: ld = elements between rows.
void swiglu(DType dt, const void* gate, const void* up, int64_t ld_in, void* out, int64_t R,
            int64_t F, cudaStream_t stream);
void geglu(DType dt, const void* gate, const void* up, int64_t ld_in, void* out, int64_t R,
           int64_t F, cudaStream_t stream);
// out[n, C] = table[ids[n], :] * scale, table given as GGUF bytes of type qtype (any type the
// dequantizer supports, incl. F32/F16); ids int32 [n], checked on the host side by the caller.
void embedding(int qtype, const void* table, int64_t C, const int32_t* ids, int64_t n,
               float scale, DType out_dt, void* out, cudaStream_t stream);
// y[n] = a[n] + b[n]  (residual add; y may alias a)
void add(DType dt, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream);

}  // namespace cuda
}  // namespace pylm
