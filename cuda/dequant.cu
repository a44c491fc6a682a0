// GGUF block dequantization kernels. One thread per output element for the legacy 32-element
// blocks and per element of a 256-element super-block for the K-quants; layouts as in
// csrc/quant/blocks.h (ggml-common.h).
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "common.cuh"
#include "dequant.cuh"
#include "quant/blocks.h"

namespace pylm {
namespace cuda {

namespace {

__device__ __forceinline__ float h2f(uint16_t bits) {
    return __half2float(__ushort_as_half(bits));
}

// Unaligned little-endian u16 read (blocks are packed, so fields are not 2-byte aligned).
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

template <int TYPE>
__global__ void dequant_kernel(const uint8_t* __restrict__ src, float* __restrict__ dst, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if constexpr (TYPE == (int)QType::F16) {
        dst[i] = h2f(ld16(src + 2 * i));
    } else if constexpr (TYPE == (int)QType::BF16) {
        dst[i] = __uint_as_float((uint32_t)ld16(src + 2 * i) << 16);
    } else if constexpr (TYPE == (int)QType::Q4_0) {
        const uint8_t* b = src + (i / 32) * sizeof(block_q4_0);
        const int j = i % 32;
        const uint8_t byte = b[2 + (j & 15)];
        const int q = (j < 16 ? (byte & 0xF) : (byte >> 4)) - 8;
        dst[i] = __fmul_rn(h2f(ld16(b)), (float)q);
    } else if constexpr (TYPE == (int)QType::Q4_1) {
        const uint8_t* b = src + (i / 32) * sizeof(block_q4_1);
        const int j = i % 32;
        const uint8_t byte = b[4 + (j & 15)];
        const int q = j < 16 ? (byte & 0xF) : (byte >> 4);
        dst[i] = __fadd_rn(__fmul_rn(h2f(ld16(b)), (float)q), h2f(ld16(b + 2)));
    } else if constexpr (TYPE == (int)QType::Q5_0 || TYPE == (int)QType::Q5_1) {
        constexpr bool has_min = TYPE == (int)QType::Q5_1;
        constexpr int bsz = has_min ? sizeof(block_q5_1) : sizeof(block_q5_0);
        constexpr int qh_off = has_min ? 4 : 2;
        const uint8_t* b = src + (i / 32) * bsz;
        const int j = i % 32;
        const uint32_t qh = b[qh_off] | (b[qh_off + 1] << 8) | (b[qh_off + 2] << 16) | ((uint32_t)b[qh_off + 3] << 24);
        const uint8_t byte = b[qh_off + 4 + (j & 15)];
        const int q = (j < 16 ? (byte & 0xF) : (byte >> 4)) | (((qh >> j) & 1) << 4);
        if constexpr (has_min)
            dst[i] = __fadd_rn(__fmul_rn(h2f(ld16(b)), (float)q), h2f(ld16(b + 2)));
        else
            dst[i] = __fmul_rn(h2f(ld16(b)), (float)(q - 16));
    } else if constexpr (TYPE == (int)QType::Q8_0) {
        const uint8_t* b = src + (i / 32) * sizeof(block_q8_0);
        dst[i] = __fmul_rn((float)(int8_t)b[2 + i % 32], h2f(ld16(b)));
    } else if constexpr (TYPE == (int)QType::Q4_K) {
        const uint8_t* b = src + (i / QK_K) * sizeof(block_q4_K);
        const int e = i % QK_K, sub = e / 32, l = e % 32;
        const uint8_t* s = b + 4;
        int sc, m;
        if (sub < 4) {
            sc = s[sub] & 63;
            m = s[sub + 4] & 63;
        } else {
            sc = (s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4);
            m = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
        }
        const uint8_t byte = b[16 + (sub / 2) * 32 + l];
        const int q = (sub & 1) ? (byte >> 4) : (byte & 0xF);
        const float d = __fmul_rn(h2f(ld16(b)), (float)sc);
        const float dm = __fmul_rn(h2f(ld16(b + 2)), (float)m);
        dst[i] = __fsub_rn(__fmul_rn(d, (float)q), dm);
    } else if constexpr (TYPE == (int)QType::Q6_K) {
        const uint8_t* b = src + (i / QK_K) * sizeof(block_q6_K);
        const int e = i % QK_K, h = e / 128, r = e % 128;
        const uint8_t* ql = b;
        const uint8_t* qh = b + 128;
        const int8_t* scales = (const int8_t*)(b + 192);
        const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0xF;
        const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        const int q = (lo | (hi << 4)) - 32;
        const float d = __fmul_rn(h2f(ld16(b + 208)), (float)scales[e / 16]);
        dst[i] = __fmul_rn(d, (float)q);
    }
}

template <int TYPE>
void launch(const void* src, float* dst, int64_t n, cudaStream_t stream) {
    const int threads = 256;
    const int64_t blocks = (n + threads - 1) / threads;
    dequant_kernel<TYPE><<<(unsigned)blocks, threads, 0, stream>>>((const uint8_t*)src, dst, n);
    PYLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool dequant_supported(int t) {
    switch ((QType)t) {
    case QType::F16: case QType::BF16: case QType::Q4_0: case QType::Q4_1: case QType::Q5_0:
    case QType::Q5_1: case QType::Q8_0: case QType::Q4_K: case QType::Q6_K: return true;
    default: return false;
    }
}

void dequantize(int t, const void* src, float* dst, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    switch ((QType)t) {
    case QType::F16: return launch<(int)QType::F16>(src, dst, n, stream);
    case QType::BF16: return launch<(int)QType::BF16>(src, dst, n, stream);
    case QType::Q4_0: return launch<(int)QType::Q4_0>(src, dst, n, stream);
    case QType::Q4_1: return launch<(int)QType::Q4_1>(src, dst, n, stream);
    case QType::Q5_0: return launch<(int)QType::Q5_0>(src, dst, n, stream);
    case QType::Q5_1: return launch<(int)QType::Q5_1>(src, dst, n, stream);
    case QType::Q8_0: return launch<(int)QType::Q8_0>(src, dst, n, stream);
    case QType::Q4_K: return launch<(int)QType::Q4_K>(src, dst, n, stream);
    case QType::Q6_K: return launch<(int)QType::Q6_K>(src, dst, n, stream);
    default:
        throw std::invalid_argument("CUDA dequantize: unsupported GGUF type id " + std::to_string(t));
    }
}

}  // namespace cuda
}  // namespace pylm
