// Quantization: float formats, legacy 32-value blocks (bit-exact with gguf-py's numpy
// quantizers) and the threaded dispatcher. K-quants live in quantize_k.cpp.
//
// NOTE: gguf-py rounds with np.trunc(v * id + 8.5) (Q4_0), trunc((v - min) * id + 0.5)
// (Q4_1/Q5_1), trunc(v * id + 16.5) (Q5_0) and round-half-away-from-zero (Q8_0), each a
// float32 multiply then a float32 add. With -ffp-contract=off the C expressions below round
// identically, and an int cast truncates like np.trunc for these small non-negative values.
// The absmax element is the first one of largest |v| (np.argmax).
#include "quant/quantize.h"

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/thread_pool.h"

namespace pylm {
namespace {

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Signed value of largest magnitude (first one on ties), as np.take_along_axis(argmax(|x|)).
inline float absmax_signed(const float* x, int n) {
    float amax = std::fabs(x[0]), max = x[0];
    for (int j = 1; j < n; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

inline float inverse_or_zero(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

// roundf (half away from zero) without a libm call; exact: a - trunc(a) is representable.
inline int round_half_away(float v) {
    const float a = std::fabs(v);
    int r = (int)a;
    if (a - (float)r >= 0.5f) ++r;
    return v < 0 ? -r : r;
}

void min_max(const float* x, int n, float* mn, float* mx) {
    *mn = *mx = x[0];
    for (int j = 1; j < n; ++j) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

// 32 quants (0..15) -> 16 bytes: low nibble = value j, high nibble = value j + 16.
inline void pack_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int j = 0; j < 16; ++j) qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}
// Fifth bits of 32 quants (0..31), bit j = value j.
inline void pack_fifth_bits(const uint8_t* q, uint8_t* qh4) {
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= (uint32_t)((q[j] >> 4) & 1) << j;
    std::memcpy(qh4, &qh, 4);
}

void quantize_q4_0(const float* x, block_q4_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 32) {
        const float d = absmax_signed(x, 32) / -8.0f;
        const float id = inverse_or_zero(d);
        uint8_t q[32];
        for (int j = 0; j < 32; ++j) q[j] = (uint8_t)clampi((int)(x[j] * id + 8.5f), 0, 15);
        y[i].d = fp32_to_fp16(d);
        pack_nibbles(q, y[i].qs);
    }
}

void quantize_q4_1(const float* x, block_q4_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 32) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = inverse_or_zero(d);
        uint8_t q[32];
        for (int j = 0; j < 32; ++j) q[j] = (uint8_t)clampi((int)((x[j] - mn) * id + 0.5f), 0, 15);
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(mn);
        pack_nibbles(q, y[i].qs);
    }
}

void quantize_q5_0(const float* x, block_q5_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 32) {
        const float d = absmax_signed(x, 32) / -16.0f;
        const float id = inverse_or_zero(d);
        uint8_t q[32];
        for (int j = 0; j < 32; ++j) q[j] = (uint8_t)clampi((int)(x[j] * id + 16.5f), 0, 31);
        y[i].d = fp32_to_fp16(d);
        pack_fifth_bits(q, y[i].qh);
        pack_nibbles(q, y[i].qs);
    }
}

void quantize_q5_1(const float* x, block_q5_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 32) {
        float mn, mx;
        min_max(x, 32, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = inverse_or_zero(d);
        uint8_t q[32];
        for (int j = 0; j < 32; ++j) q[j] = (uint8_t)clampi((int)((x[j] - mn) * id + 0.5f), 0, 31);
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(mn);
        pack_fifth_bits(q, y[i].qh);
        pack_nibbles(q, y[i].qs);
    }
}

// Q8_0 and Q8_1 (which also stores s = d * sum(q)).
template <class Block, bool kSum>
void quantize_q8(const float* x, Block* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = inverse_or_zero(d);
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            const int q = round_half_away(x[j] * id);  // like gguf's np_roundf
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = fp32_to_fp16(d);
        if constexpr (kSum) y[i].s = fp32_to_fp16((float)sum * d);
    }
}

void quantize_f16(const float* x, uint8_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
    }
}

void quantize_bf16(const float* x, uint8_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
    }
}

}  // namespace

bool can_quantize(QType t) {
    switch (t) {
    case QType::F32:
    case QType::F16:
    case QType::BF16:
    case QType::Q4_0:
    case QType::Q4_1:
    case QType::Q5_0:
    case QType::Q5_1:
    case QType::Q8_0:
    case QType::Q8_1:
    case QType::Q2_K:
    case QType::Q3_K:
    case QType::Q4_K:
    case QType::Q5_K:
    case QType::Q6_K:
    case QType::Q8_K:
        return true;
    }
    return false;
}

size_t quantize_row(QType t, const float* x, void* dst, int64_t n) {
    uint8_t* y = static_cast<uint8_t*>(dst);
    const QTypeInfo* info = qtype_info(t);
    const int64_t nb = n / info->block_size;
    switch (t) {
    case QType::F32:
        std::memcpy(y, x, (size_t)n * 4);
        break;
    case QType::F16:
        quantize_f16(x, y, n);
        break;
    case QType::BF16:
        quantize_bf16(x, y, n);
        break;
    case QType::Q4_0:
        quantize_q4_0(x, (block_q4_0*)y, nb);
        break;
    case QType::Q4_1:
        quantize_q4_1(x, (block_q4_1*)y, nb);
        break;
    case QType::Q5_0:
        quantize_q5_0(x, (block_q5_0*)y, nb);
        break;
    case QType::Q5_1:
        quantize_q5_1(x, (block_q5_1*)y, nb);
        break;
    case QType::Q8_0:
        quantize_q8<block_q8_0, false>(x, (block_q8_0*)y, nb);
        break;
    case QType::Q8_1:
        quantize_q8<block_q8_1, true>(x, (block_q8_1*)y, nb);
        break;
    case QType::Q2_K:
        qk::quantize_q2_K(x, (block_q2_K*)y, nb);
        break;
    case QType::Q3_K:
        qk::quantize_q3_K(x, (block_q3_K*)y, nb);
        break;
    case QType::Q4_K:
        qk::quantize_q4_K(x, (block_q4_K*)y, nb);
        break;
    case QType::Q5_K:
        qk::quantize_q5_K(x, (block_q5_K*)y, nb);
        break;
    case QType::Q6_K:
        qk::quantize_q6_K(x, (block_q6_K*)y, nb);
        break;
    case QType::Q8_K:
        qk::quantize_q8_K(x, (block_q8_K*)y, nb);
        break;
    }
    return (size_t)(nb * info->type_size);
}

size_t quantize(QType t, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                int nthreads) {
    const QTypeInfo* info = qtype_info(t);
    const int64_t bs = info->block_size, ts = info->type_size;
    const int64_t nblocks = nrows * (n_per_row / bs);
    // Blocks are independent, so split the flat block range (a single long row parallelizes too).
    const int64_t grain = bs >= QK_K ? 8 : (8192 + bs - 1) / bs;
    uint8_t* d = static_cast<uint8_t*>(dst);
    parallel_for(nblocks, grain, nthreads, [&](int64_t b, int64_t e, int) {
        quantize_row(t, src + b * bs, d + b * ts, (e - b) * bs);
    });
    return (size_t)(nblocks * ts);
}

}  // namespace pylm
