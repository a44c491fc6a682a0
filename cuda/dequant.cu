// GGUF block dequantization kernels: one thread per output element (the decoders are in
// dequant_blocks.cuh), fp32 or fp16 out. Layouts as in csrc/quant/blocks.h (ggml-common.h).
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "common.cuh"
#include "dequant.cuh"
#include "dequant_blocks.cuh"

namespace pylm {
namespace cuda {

namespace {

// src: n / block_size blocks; dst: [n] float or __half.
template <int TYPE, typename OutT>
__global__ void dequant_kernel(const uint8_t* __restrict__ src, OutT* __restrict__ dst, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = dq::dq_elem<TYPE>(src, i);
    if constexpr (sizeof(OutT) == 4)
        dst[i] = v;
    else
        dst[i] = __float2half_rn(v);
}

template <typename OutT>
struct Launch {
    const void* src;
    OutT* dst;
    int64_t n;
    cudaStream_t stream;
    template <int TYPE>
    void operator()() const {
        constexpr int threads = 256;
        const int64_t blocks = ceil_div<int64_t>(n, threads);
        dequant_kernel<TYPE, OutT><<<(unsigned)blocks, threads, 0, stream>>>(
            static_cast<const uint8_t*>(src), dst, n);
        PYLM_CUDA_CHECK_LAUNCH("dequantize");
    }
};

template <typename OutT>
void run(int t, const void* src, OutT* dst, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (ceil_div<int64_t>(n, 256) > 0x7fffffff)
        throw std::invalid_argument("CUDA dequantize: n=" + std::to_string(n) + " is too large");
    if (!dq::visit_qtype(t, Launch<OutT>{src, dst, n, stream}))
        throw std::invalid_argument("CUDA dequantize: unsupported GGUF type id " + std::to_string(t));
}

}  // namespace

bool dequant_supported(int t) {
    switch ((QType)t) {
    case QType::F32: case QType::F16: case QType::BF16: case QType::Q4_0: case QType::Q4_1:
    case QType::Q5_0: case QType::Q5_1: case QType::Q8_0: case QType::Q2_K: case QType::Q3_K:
    case QType::Q4_K: case QType::Q5_K: case QType::Q6_K: return true;
    default: return false;
    }
}

void dequantize(int t, const void* src, float* dst, int64_t n, cudaStream_t stream) {
    run<float>(t, src, dst, n, stream);
}

void dequantize_f16(int t, const void* src, void* dst, int64_t n, cudaStream_t stream) {
    run<__half>(t, src, static_cast<__half*>(dst), n, stream);
}

}  // namespace cuda
}  // namespace pylm
