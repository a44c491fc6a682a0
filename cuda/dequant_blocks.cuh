// Per-element GGUF block decoders for device code (shared by dequant.cu and the embedding
// lookup). dq_elem<TYPE>(base, i) returns element i of a tensor whose blocks start at `base`,
// bit-exact with csrc/quant/dequant_ref.cpp and gguf.quants.dequantize: every float op is an
// explicitly rounded intrinsic, so nvcc cannot contract a*b+c into an FMA.
//
// Layouts (csrc/quant/blocks.h, ggml-common.h); legacy blocks hold 32 values, K-quant
// super-blocks 256 (QK_K). Element e of a K-quant super-block, in the order of the reference:
//   Q2_K: e = 128h + 32s + 16k + l: 2 bits (qs[32h+16k+l] >> 2s), scale byte scales[8h+2s+k]
//   Q3_K: e = 128h + 32s + l:       2 bits (qs[32h+l] >> 2s), high bit (hmask[l] >> 4h+s),
//                                   6-bit signed scale j = e / 16
//   Q4_K: e = 32b + l:              nibble b&1 of qs[32(b/2)+l], 6-bit scale/min b
//   Q5_K: e = 32b + l:              Q4_K plus bit b of qh[l]
//   Q6_K: e = 128h + r:             nibble r/64 of ql[64h + r%64], 2 bits r/32 of qh[32h + r%32]
// Fields are read byte-wise: blocks are packed, so multi-byte fields are not aligned.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "quant/blocks.h"

namespace pylm {
namespace cuda {
namespace dq {

__device__ __forceinline__ float h2f(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

// Unaligned little-endian reads.
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
__device__ __forceinline__ uint32_t ld32(const uint8_t* p) {
    return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
}

// Q4_K / Q5_K 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes at s.
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

template <int TYPE>
__device__ __forceinline__ float dq_elem(const uint8_t* __restrict__ src, int64_t i) {
    if constexpr (TYPE == (int)QType::F32) {
        return __uint_as_float(ld32(src + 4 * i));
    } else if constexpr (TYPE == (int)QType::F16) {
        return h2f(ld16(src + 2 * i));
    } else if constexpr (TYPE == (int)QType::BF16) {
        return __uint_as_float((uint32_t)ld16(src + 2 * i) << 16);
    } else if constexpr (TYPE == (int)QType::Q4_0) {
        const uint8_t* b = src + (i / 32) * sizeof(block_q4_0);
        const int j = (int)(i % 32);
        const uint8_t byte = b[2 + (j & 15)];
        const int q = (j < 16 ? (byte & 0xF) : (byte >> 4)) - 8;
        return __fmul_rn(h2f(ld16(b)), (float)q);
    } else if constexpr (TYPE == (int)QType::Q4_1) {
        const uint8_t* b = src + (i / 32) * sizeof(block_q4_1);
        const int j = (int)(i % 32);
        const uint8_t byte = b[4 + (j & 15)];
        const int q = j < 16 ? (byte & 0xF) : (byte >> 4);
        return __fadd_rn(__fmul_rn(h2f(ld16(b)), (float)q), h2f(ld16(b + 2)));
    } else if constexpr (TYPE == (int)QType::Q5_0 || TYPE == (int)QType::Q5_1) {
        constexpr bool has_min = TYPE == (int)QType::Q5_1;
        constexpr int bsz = has_min ? sizeof(block_q5_1) : sizeof(block_q5_0);
        constexpr int qh_off = has_min ? 4 : 2;
        const uint8_t* b = src + (i / 32) * bsz;
        const int j = (int)(i % 32);
        const uint32_t qh = ld32(b + qh_off);
        const uint8_t byte = b[qh_off + 4 + (j & 15)];
        const int q = (j < 16 ? (byte & 0xF) : (byte >> 4)) | (((qh >> j) & 1) << 4);
        if constexpr (has_min)
            return __fadd_rn(__fmul_rn(h2f(ld16(b)), (float)q), h2f(ld16(b + 2)));
        else
            return __fmul_rn(h2f(ld16(b)), (float)(q - 16));
    } else if constexpr (TYPE == (int)QType::Q8_0) {
        const uint8_t* b = src + (i / 32) * sizeof(block_q8_0);
        return __fmul_rn(h2f(ld16(b)), (float)(int8_t)b[2 + i % 32]);
    } else if constexpr (TYPE == (int)QType::Q2_K) {
        const uint8_t* b = src + (i / QK_K) * sizeof(block_q2_K);  // scales, qs, d, dmin
        const int e = (int)(i % QK_K), h = e / 128, s = (e % 128) / 32, k = (e % 32) / 16;
        const int l = e % 16;
        const uint8_t sc = b[8 * h + 2 * s + k];
        const int q = (b[16 + 32 * h + 16 * k + l] >> (2 * s)) & 3;
        const float dl = __fmul_rn(h2f(ld16(b + 80)), (float)(sc & 0xF));
        const float ml = __fmul_rn(h2f(ld16(b + 82)), (float)(sc >> 4));
        return __fsub_rn(__fmul_rn(dl, (float)q), ml);
    } else if constexpr (TYPE == (int)QType::Q3_K) {
        const uint8_t* b = src + (i / QK_K) * sizeof(block_q3_K);  // hmask, qs, scales, d
        const int e = (int)(i % QK_K), h = e / 128, s = (e % 128) / 32, l = e % 32;
        const uint8_t* sb = b + 96;
        const int j = e / 16;  // == 8h + 2s + l/16
        const int lo4 = j < 8 ? (sb[j] & 0xF) : (sb[j - 8] >> 4);
        const int hi2 = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
        const float dl = __fmul_rn(h2f(ld16(b + 108)), (float)((lo4 | (hi2 << 4)) - 32));
        const int lo = (b[32 + 32 * h + l] >> (2 * s)) & 3;
        const int hb = (b[l] >> (4 * h + s)) & 1;
        return __fmul_rn(dl, (float)(lo - (hb ? 0 : 4)));
    } else if constexpr (TYPE == (int)QType::Q4_K || TYPE == (int)QType::Q5_K) {
        constexpr bool q5 = TYPE == (int)QType::Q5_K;
        const uint8_t* b = src + (i / QK_K) * (q5 ? sizeof(block_q5_K) : sizeof(block_q4_K));
        const int e = (int)(i % QK_K), sub = e / 32, l = e % 32;
        int sc, m;
        scale_min_k4(sub, b + 4, sc, m);
        const uint8_t byte = b[(q5 ? 48 : 16) + (sub / 2) * 32 + l];
        int q = (sub & 1) ? (byte >> 4) : (byte & 0xF);
        if constexpr (q5) q |= ((b[16 + l] >> sub) & 1) << 4;
        const float d = __fmul_rn(h2f(ld16(b)), (float)sc);
        const float dm = __fmul_rn(h2f(ld16(b + 2)), (float)m);
        return __fsub_rn(__fmul_rn(d, (float)q), dm);
    } else if constexpr (TYPE == (int)QType::Q6_K) {
        const uint8_t* b = src + (i / QK_K) * sizeof(block_q6_K);  // ql, qh, scales, d
        const int e = (int)(i % QK_K), h = e / 128, r = e % 128;
        const int lo = (b[64 * h + r % 64] >> (4 * (r / 64))) & 0xF;
        const int hi = (b[128 + 32 * h + r % 32] >> (2 * (r / 32))) & 3;
        const int q = (lo | (hi << 4)) - 32;
        const float d = __fmul_rn(h2f(ld16(b + 208)), (float)(int8_t)b[192 + e / 16]);
        return __fmul_rn(d, (float)q);
    } else {
        static_assert(TYPE < 0, "dq_elem: unsupported GGUF type");
        return 0.f;
    }
}

// Calls f.template operator()<TYPE>() for the runtime type id t; returns false when unsupported.
// One switch shared by every kernel family that decodes GGUF blocks.
template <typename F>
bool visit_qtype(int t, F&& f) {
    switch ((QType)t) {
    case QType::F32: f.template operator()<(int)QType::F32>(); return true;
    case QType::F16: f.template operator()<(int)QType::F16>(); return true;
    case QType::BF16: f.template operator()<(int)QType::BF16>(); return true;
    case QType::Q4_0: f.template operator()<(int)QType::Q4_0>(); return true;
    case QType::Q4_1: f.template operator()<(int)QType::Q4_1>(); return true;
    case QType::Q5_0: f.template operator()<(int)QType::Q5_0>(); return true;
    case QType::Q5_1: f.template operator()<(int)QType::Q5_1>(); return true;
    case QType::Q8_0: f.template operator()<(int)QType::Q8_0>(); return true;
    case QType::Q2_K: f.template operator()<(int)QType::Q2_K>(); return true;
    case QType::Q3_K: f.template operator()<(int)QType::Q3_K>(); return true;
    case QType::Q4_K: f.template operator()<(int)QType::Q4_K>(); return true;
    case QType::Q5_K: f.template operator()<(int)QType::Q5_K>(); return true;
    case QType::Q6_K: f.template operator()<(int)QType::Q6_K>(); return true;
    default: return false;
    }
}

}  // namespace dq
}  // namespace cuda
}  // namespace pylm
