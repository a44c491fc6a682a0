// Scalar reference for the quantized dot products (the oracle and the fallback).
//
// Each weight block is decoded to small integers plus float scales, following ggml-quants.c
// dequantize_row_* (x = d * q + m for legacy blocks; x = d * sc_j * q - dmin * m_j for K-quants),
// then dotted with the int8 activations in exact integer arithmetic; only the per-block result
// is scaled in float. Activation layouts: see qdot.h. Legacy and float weights follow the
// canonical evaluation order of qdot_canon.h (bit-identical to the AVX2 / AVX-512 kernels).
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/qdot.h"
#include "quant/qdot_ref_common.h"
#include "quant/qdot_canon.h"

namespace pylm {
namespace ref {

namespace {

using qref::gemm_rows;
using qref::h2f;
using qref::tree16;

// ---- legacy blocks: q[32] signed integers, x = d * q[i] + m --------------------------------

void dec_q4_0(const uint8_t* b, int* q, float* d, float* m) {
    const block_q4_0* x = reinterpret_cast<const block_q4_0*>(b);
    for (int j = 0; j < 16; ++j) {
        q[j] = (x->qs[j] & 0x0F) - 8;
        q[j + 16] = (x->qs[j] >> 4) - 8;
    }
    *d = h2f(b);
    *m = 0.0f;
}

void dec_q4_1(const uint8_t* b, int* q, float* d, float* m) {
    const block_q4_1* x = reinterpret_cast<const block_q4_1*>(b);
    for (int j = 0; j < 16; ++j) {
        q[j] = x->qs[j] & 0x0F;
        q[j + 16] = x->qs[j] >> 4;
    }
    *d = h2f(b);
    *m = h2f(b + 2);
}

void dec_q5_0(const uint8_t* b, int* q, float* d, float* m) {
    const block_q5_0* x = reinterpret_cast<const block_q5_0*>(b);
    uint32_t qh;
    std::memcpy(&qh, x->qh, 4);
    for (int j = 0; j < 16; ++j) {
        q[j] = ((x->qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - 16;
        q[j + 16] = ((x->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
    }
    *d = h2f(b);
    *m = 0.0f;
}

void dec_q5_1(const uint8_t* b, int* q, float* d, float* m) {
    const block_q5_1* x = reinterpret_cast<const block_q5_1*>(b);
    uint32_t qh;
    std::memcpy(&qh, x->qh, 4);
    for (int j = 0; j < 16; ++j) {
        q[j] = (x->qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
        q[j + 16] = (x->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    }
    *d = h2f(b);
    *m = h2f(b + 2);
}

void dec_q8_0(const uint8_t* b, int* q, float* d, float* m) {
    const block_q8_0* x = reinterpret_cast<const block_q8_0*>(b);
    for (int j = 0; j < 32; ++j) q[j] = x->qs[j];
    *d = h2f(b);
    *m = 0.0f;
}

using LegacyDec = void (*)(const uint8_t*, int*, float*, float*);

// act: Q8S row. sum_b d_w*d_x*sum(q*a) + m_w*s_x (s_x = d_x * sum(a)), evaluated in the
// canonical order of qdot_canon.h: U blocks per unit, lane U*j + i <- block i, positions G_j,
// units alternating between two 16-lane accumulators; the m_w*s_x terms in lane b % 16.
template <LegacyDec DEC, int TS, int U, bool MIN>
float dot_legacy(int64_t K, const void* w, const void* act) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const int8_t* a = q8s_qs(act);
    const float* ad = q8s_d(act, K);
    const float* as = q8s_s(act, K);
    float acc[2][16] = {}, accs[16] = {};
    int q[32];
    for (int64_t b = 0; b < K / 32; ++b) {
        float d, m;
        DEC(wb + b * TS, q, &d, &m);
        const int8_t* ab = a + b * 32;
        const float sc = d * ad[b];
        float* lanes = acc[(b / U) & 1];
        const int i = (int)(b % U);
        for (int j = 0; j < 16 / U; ++j) {
            int p = 0;
            for (int t = 0; t < 4; ++t) p += q[4 * j + t] * ab[4 * j + t];
            if (U == 4)
                for (int t = 0; t < 4; ++t) p += q[16 + 4 * j + t] * ab[16 + 4 * j + t];
            lanes[U * j + i] = std::fmaf((float)p, sc, lanes[U * j + i]);
        }
        if (MIN) accs[b % 16] = std::fmaf(m, as[b], accs[b % 16]);
    }
    float v[16];
    for (int l = 0; l < 16; ++l) {
        v[l] = acc[0][l] + acc[1][l];
        if (MIN) v[l] += accs[l];
    }
    return tree16(v);
}

// ---- float weights: act is the float row, 16 lanes (qdot_canon.h) ---------------------------

float ld_f32(const void* w, int64_t k) {
    return static_cast<const float*>(w)[k];
}
float ld_f16(const void* w, int64_t k) {
    return fp16_to_fp32(static_cast<const uint16_t*>(w)[k]);
}
float ld_bf16(const void* w, int64_t k) {
    return bf16_to_fp32(static_cast<const uint16_t*>(w)[k]);
}

template <float (*LD)(const void*, int64_t)>
float dot_float(int64_t K, const void* w, const void* act) {
    const float* x = static_cast<const float*>(act);
    float acc[16] = {};
    for (int64_t k = 0; k < K; ++k) acc[k % 16] = std::fmaf(LD(w, k), x[k], acc[k % 16]);
    return tree16(acc);
}

#define PYLM_KERNELS(name, fn) const QDotKernels name = {fn, gemm_rows<fn>}
PYLM_KERNELS(kF32, dot_float<ld_f32>);
PYLM_KERNELS(kF16, dot_float<ld_f16>);
PYLM_KERNELS(kBF16, dot_float<ld_bf16>);
PYLM_KERNELS(kQ4_0, (dot_legacy<dec_q4_0, sizeof(block_q4_0), 4, false>));
PYLM_KERNELS(kQ4_1, (dot_legacy<dec_q4_1, sizeof(block_q4_1), 4, true>));
PYLM_KERNELS(kQ5_0, (dot_legacy<dec_q5_0, sizeof(block_q5_0), 4, false>));
PYLM_KERNELS(kQ5_1, (dot_legacy<dec_q5_1, sizeof(block_q5_1), 4, true>));
PYLM_KERNELS(kQ8_0, (dot_legacy<dec_q8_0, sizeof(block_q8_0), 2, false>));
#undef PYLM_KERNELS

}  // namespace

// round(x) with ties away from zero (C roundf; gguf's np_roundf): SIMD versions match it.
void quantize_act_q8s(const float* x, int64_t K, void* row) {
    int8_t* qs = static_cast<int8_t*>(row);
    float* d = reinterpret_cast<float*>(static_cast<uint8_t*>(row) + K);
    float* s = d + K / 32;
    for (int64_t b = 0; b < K / 32; ++b) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b * 32 + j]));
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            const int q = (int)std::round(x[b * 32 + j] * id);
            qs[b * 32 + j] = (int8_t)q;
            sum += q;
        }
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

void quantize_act_q8k(const float* x, int64_t K, void* row) {
    block_q8_K* y = static_cast<block_q8_K*>(row);
    for (int64_t b = 0; b < K / QK_K; ++b) {
        const float* xb = x + b * QK_K;
        float amax = 0.0f;
        for (int j = 0; j < QK_K; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        for (int j = 0; j < QK_K; ++j) y[b].qs[j] = (int8_t)(int)std::round(xb[j] * id);
        for (int j = 0; j < 16; ++j) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += y[b].qs[16 * j + l];
            y[b].bsums[j] = (int16_t)sum;
        }
        y[b].d = db;
    }
}

const QDotKernels* qdot_kernels(QType t) {
    switch (t) {
        case QType::F32:
            return &kF32;
        case QType::F16:
            return &kF16;
        case QType::BF16:
            return &kBF16;
        case QType::Q4_0:
            return &kQ4_0;
        case QType::Q4_1:
            return &kQ4_1;
        case QType::Q5_0:
            return &kQ5_0;
        case QType::Q5_1:
            return &kQ5_1;
        case QType::Q8_0:
            return &kQ8_0;
        default:
            return qdot_kernels_k(t);  // K-quants: qdot_kquant_ref.cpp
    }
}

}  // namespace ref
}  // namespace pylm
