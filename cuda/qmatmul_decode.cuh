// GGUF weight decoding for the quantized matmul kernels (internal to cuda/qmatmul*.cu).
//
// A weight row of K values is split into "units" of UNIT consecutive values; Fmt<QT>::decode
// writes the UNIT float values of unit u of a row. Units are what one thread decodes at a time:
//   Q4_0 / Q4_1 / Q5_0 / Q8_0: one 32-value block
//   Q4_K / Q5_K: 64 values = the two sub-blocks that share a 32-byte run of qs (4 per super-block)
//   Q6_K: 32 values = one (half h, quarter t) run that shares ql/qh bytes (8 per super-block)
// Layouts as in csrc/quant/blocks.h (ggml-common.h) and cuda/dequant.cu. Loads use each format's
// natural alignment: 2 bytes (Q4_0, Q5_0, Q8_0, Q6_K: 18/22/34/210-byte blocks), 4 bytes (Q4_1),
// 16 bytes (Q4_K, Q5_K: 144/176-byte super-blocks), given a 16-byte aligned tensor base.
// Host-callable too, so the decoders can be checked against gguf on a machine without a GPU.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "quant/blocks.h"

namespace pylm {
namespace cuda {
namespace qdec {

__host__ __device__ __forceinline__ float h2f(uint32_t bits) {
    return __half2float(__ushort_as_half((unsigned short)(bits & 0xffffu)));
}
__host__ __device__ __forceinline__ uint32_t ld16(const uint8_t* p) {
    return *reinterpret_cast<const uint16_t*>(p);
}
__host__ __device__ __forceinline__ uint32_t ld32(const uint8_t* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}
__host__ __device__ __forceinline__ uint4 ld128(const uint8_t* p) {
    return *reinterpret_cast<const uint4*>(p);
}
// Byte i (0..15) of a 16-byte vector, i known only at run time, without a local-memory array.
__host__ __device__ __forceinline__ uint32_t byte_of(const uint4& v, int i) {
    const uint32_t w = i < 4 ? v.x : (i < 8 ? v.y : (i < 12 ? v.z : v.w));
    return (w >> (8 * (i & 3))) & 0xffu;
}
// Q4_K / Q5_K 6-bit scale and min of sub-block j (0..7); `h` is the super-block's first 16 bytes
// (d, dmin, scales[12]), so scales[i] is byte 4 + i of h.
__host__ __device__ __forceinline__ void scale_min_k4(const uint4& h, int j, float* sc, float* mn) {
    if (j < 4) {
        *sc = (float)(byte_of(h, 4 + j) & 63);
        *mn = (float)(byte_of(h, 8 + j) & 63);
    } else {
        *sc = (float)((byte_of(h, 8 + j) & 0xF) | ((byte_of(h, j) >> 6) << 4));
        *mn = (float)((byte_of(h, 8 + j) >> 4) | ((byte_of(h, 4 + j) >> 6) << 4));
    }
}

template <int QT>
struct Fmt;

template <>
struct Fmt<(int)QType::Q4_0> {  // x = (q - 8) * d
    static constexpr int UNIT = 32, UNIT_BYTES = 18;
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)u * UNIT_BYTES;
        const float d = h2f(ld16(p));
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t v = ld16(p + 2 + 2 * i);
#pragma unroll
            for (int b = 0; b < 2; ++b) {
                const uint32_t q = (v >> (8 * b)) & 0xff;
                w[2 * i + b] = d * (float)((int)(q & 15) - 8);
                w[2 * i + b + 16] = d * (float)((int)(q >> 4) - 8);
            }
        }
    }
};

template <>
struct Fmt<(int)QType::Q4_1> {  // x = q * d + m
    static constexpr int UNIT = 32, UNIT_BYTES = 20;
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)u * UNIT_BYTES;
        const uint32_t dm = ld32(p);
        const float d = h2f(dm), m = h2f(dm >> 16);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t v = ld32(p + 4 + 4 * i);
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                const uint32_t q = (v >> (8 * b)) & 0xff;
                w[4 * i + b] = d * (float)(q & 15) + m;
                w[4 * i + b + 16] = d * (float)(q >> 4) + m;
            }
        }
    }
};

template <>
struct Fmt<(int)QType::Q5_0> {  // x = (q - 16) * d, bit 4 of value j is bit j of qh
    static constexpr int UNIT = 32, UNIT_BYTES = 22;
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)u * UNIT_BYTES;
        const float d = h2f(ld16(p));
        const uint32_t qh = ld16(p + 2) | (ld16(p + 4) << 16);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t v = ld16(p + 6 + 2 * i);
#pragma unroll
            for (int b = 0; b < 2; ++b) {
                const int j = 2 * i + b;
                const uint32_t q = (v >> (8 * b)) & 0xff;
                const int lo = (int)((q & 15) | (((qh >> j) & 1) << 4));
                const int hi = (int)((q >> 4) | (((qh >> (j + 16)) & 1) << 4));
                w[j] = d * (float)(lo - 16);
                w[j + 16] = d * (float)(hi - 16);
            }
        }
    }
};

template <>
struct Fmt<(int)QType::Q8_0> {  // x = q * d
    static constexpr int UNIT = 32, UNIT_BYTES = 34;
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)u * UNIT_BYTES;
        const float d = h2f(ld16(p));
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const uint32_t v = ld16(p + 2 + 2 * i);
            w[2 * i] = d * (float)(int8_t)(v & 0xff);
            w[2 * i + 1] = d * (float)(int8_t)(v >> 8);
        }
    }
};

template <>
struct Fmt<(int)QType::Q4_K> {  // x = d*sc*q - dmin*m; sub-block j: qs[32(j/2) + l], nibble j%2
    static constexpr int UNIT = 64;
    static constexpr int SB_BYTES = 144;
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)(u >> 2) * SB_BYTES;
        const int c = u & 3;
        const uint4 h = ld128(p);
        const float d = h2f(h.x), dmin = h2f(h.x >> 16);
        float sc0, m0, sc1, m1;
        scale_min_k4(h, 2 * c, &sc0, &m0);
        scale_min_k4(h, 2 * c + 1, &sc1, &m1);
        const float d0 = d * sc0, d1 = d * sc1, b0 = dmin * m0, b1 = dmin * m1;
        const uint4 q4[2] = {ld128(p + 16 + 32 * c), ld128(p + 32 + 32 * c)};
        const uint8_t* q = reinterpret_cast<const uint8_t*>(q4);
#pragma unroll
        for (int l = 0; l < 32; ++l) {
            w[l] = d0 * (float)(q[l] & 15) - b0;
            w[32 + l] = d1 * (float)(q[l] >> 4) - b1;
        }
    }
};

template <>
struct Fmt<(int)QType::Q5_K> {  // Q4_K plus a fifth bit: bit j of qh[l] belongs to sub-block j
    static constexpr int UNIT = 64;
    static constexpr int SB_BYTES = 176;
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)(u >> 2) * SB_BYTES;
        const int c = u & 3;
        const uint4 h = ld128(p);
        const float d = h2f(h.x), dmin = h2f(h.x >> 16);
        float sc0, m0, sc1, m1;
        scale_min_k4(h, 2 * c, &sc0, &m0);
        scale_min_k4(h, 2 * c + 1, &sc1, &m1);
        const float d0 = d * sc0, d1 = d * sc1, b0 = dmin * m0, b1 = dmin * m1;
        const uint4 qh4[2] = {ld128(p + 16), ld128(p + 32)};
        const uint4 q4[2] = {ld128(p + 48 + 32 * c), ld128(p + 64 + 32 * c)};
        const uint8_t* qh = reinterpret_cast<const uint8_t*>(qh4);
        const uint8_t* q = reinterpret_cast<const uint8_t*>(q4);
#pragma unroll
        for (int l = 0; l < 32; ++l) {
            const int lo = (q[l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4);
            const int hi = (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
            w[l] = d0 * (float)lo - b0;
            w[32 + l] = d1 * (float)hi - b1;
        }
    }
};

template <>
struct Fmt<(int)QType::Q6_K> {  // x = d * scales[e/16] * (q - 32)
    static constexpr int UNIT = 32;
    static constexpr int SB_BYTES = 210;
    // Value e = 128h + 32t + l of a super-block: low 4 bits = nibble t/2 of ql[64h + 32(t%2) + l],
    // high 2 bits = bits 2t..2t+1 of qh[32h + l].
    __host__ __device__ static void decode(const uint8_t* row, int u, float* w) {
        const uint8_t* p = row + (int64_t)(u >> 3) * SB_BYTES;
        const int h = (u >> 2) & 1, t = u & 3;
        const uint8_t* ql = p + 64 * h + 32 * (t & 1);
        const uint8_t* qh = p + 128 + 32 * h;
        const int lshift = 4 * (t >> 1), hshift = 2 * t;
        const float d = h2f(ld16(p + 208));
        const float s0 = d * (float)(int8_t)p[192 + 8 * h + 2 * t];
        const float s1 = d * (float)(int8_t)p[192 + 8 * h + 2 * t + 1];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const uint32_t vl = ld16(ql + 2 * i), vh = ld16(qh + 2 * i);
#pragma unroll
            for (int b = 0; b < 2; ++b) {
                const int l = 2 * i + b;
                const int lo = (int)((vl >> (8 * b + lshift)) & 15);
                const int hi = (int)((vh >> (8 * b + hshift)) & 3);
                w[l] = (l < 16 ? s0 : s1) * (float)((lo | (hi << 4)) - 32);
            }
        }
    }
};

}  // namespace qdec
}  // namespace cuda
}  // namespace pylm
