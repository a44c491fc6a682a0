// Scalar dequantization: the oracle and the fallback. One loop per block format, written in
// the element order and float operation order of gguf-py's numpy code (see dequant.h).
#include <cstring>

#include "core/half.h"
#include "quant/dequant.h"

namespace pylm {
namespace ref {
namespace {

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }

// Q4_K / Q5_K 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

void deq_q4_0(const block_q4_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * (float)((x[i].qs[j] & 0xF) - 8);
            y[j + 16] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

void deq_q4_1(const block_q4_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * (float)(x[i].qs[j] & 0xF) + m;
            y[j + 16] = d * (float)(x[i].qs[j] >> 4) + m;
        }
    }
}

void deq_q5_0(const block_q5_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
        const float d = h2f(x[i].d);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {  // element j takes high bit j
            const int q0 = (x[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
            const int q1 = (x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)(q0 - 16);
            y[j + 16] = d * (float)(q1 - 16);
        }
    }
}

void deq_q5_1(const block_q5_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (x[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
            const int q1 = (x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)q0 + m;
            y[j + 16] = d * (float)q1 + m;
        }
    }
}

void deq_q8_0(const block_q8_0* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK8_0) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK8_0; ++j) y[j] = d * (float)x[i].qs[j];
    }
}

void deq_q8_1(const block_q8_1* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK8_1) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK8_1; ++j) y[j] = d * (float)x[i].qs[j];
    }
}

// Q2_K: 2 halves of 128; in each, 4 shifts of the same 32 bytes; 16 values per scale.
void deq_q2_K(const block_q2_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* q = x[i].qs + 32 * h;
            for (int s = 0; s < 4; ++s) {
                for (int k = 0; k < 2; ++k) {
                    const uint8_t sc = x[i].scales[8 * h + 2 * s + k];
                    const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * (float)((q[16 * k + l] >> (2 * s)) & 3) - ml;
                }
            }
        }
    }
}

// Q3_K: like Q2_K, plus one high bit per value in hmask (bit 4h+s); q = low2 - (hbit ? 0 : 4).
void deq_q3_K(const block_q3_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        const uint8_t* sb = x[i].scales;
        float dl[16];
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? (sb[j] & 0xF) : (sb[j - 8] >> 4);
            const int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
            dl[j] = d * (float)((lo | (hi << 4)) - 32);
        }
        for (int h = 0; h < 2; ++h) {
            const uint8_t* q = x[i].qs + 32 * h;
            for (int s = 0; s < 4; ++s) {
                const int bit = 4 * h + s;
                for (int l = 0; l < 32; ++l) {
                    const int lo = (q[l] >> (2 * s)) & 3;
                    const int hb = (x[i].hmask[l] >> bit) & 1;
                    *y++ = dl[8 * h + 2 * s + l / 16] * (float)(lo - (hb ? 0 : 4));
                }
            }
        }
    }
}

// Q4_K: 4 chunks of 32 bytes; low nibbles = sub-block 2c, high nibbles = 2c+1 (32 values each).
void deq_q4_K(const block_q4_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int c = 0; c < 4; ++c) {
            const uint8_t* q = x[i].qs + 32 * c;
            for (int k = 0; k < 2; ++k) {
                uint8_t sc, m;
                scale_min_k4(2 * c + k, x[i].scales, &sc, &m);
                const float dl = d * (float)sc, ml = dmin * (float)m;
                for (int l = 0; l < 32; ++l) *y++ = dl * (float)((q[l] >> (4 * k)) & 0xF) - ml;
            }
        }
    }
}

// Q5_K: Q4_K plus a fifth bit: bit b of qh[l] belongs to sub-block b.
void deq_q5_K(const block_q5_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int c = 0; c < 4; ++c) {
            const uint8_t* q = x[i].qs + 32 * c;
            for (int k = 0; k < 2; ++k) {
                const int b = 2 * c + k;
                uint8_t sc, m;
                scale_min_k4(b, x[i].scales, &sc, &m);
                const float dl = d * (float)sc, ml = dmin * (float)m;
                for (int l = 0; l < 32; ++l) {
                    const int v = ((q[l] >> (4 * k)) & 0xF) | (((x[i].qh[l] >> b) & 1) << 4);
                    *y++ = dl * (float)v - ml;
                }
            }
        }
    }
}

// Q6_K: 2 halves of 128 values; value 32t+l of a half takes nibble t/2 of ql[32(t%2)+l] and
// bits 2t..2t+1 of qh[l]; scale index = value / 16.
void deq_q6_K(const block_q6_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(x[i].d);
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[i].ql + 64 * h;
            const uint8_t* qh = x[i].qh + 32 * h;
            for (int t = 0; t < 4; ++t) {
                for (int l = 0; l < 32; ++l) {
                    const int lo = (ql[32 * (t % 2) + l] >> (4 * (t / 2))) & 0xF;
                    const int hi = (qh[l] >> (2 * t)) & 3;
                    const float dl = d * (float)x[i].scales[8 * h + 2 * t + l / 16];
                    *y++ = dl * (float)((lo | (hi << 4)) - 32);
                }
            }
        }
    }
}

void deq_q8_K(const block_q8_K* x, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += QK_K)
        for (int j = 0; j < QK_K; ++j) y[j] = x[i].d * (float)x[i].qs[j];
}

}  // namespace

void dequantize_row(QType t, const void* src, float* y, int64_t n) {
    const uint8_t* s = static_cast<const uint8_t*>(src);
    switch (t) {
    case QType::F32:
        std::memcpy(y, s, (size_t)n * 4);
        break;
    case QType::F16:
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, s + 2 * i, 2);
            y[i] = fp16_to_fp32(h);
        }
        break;
    case QType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, s + 2 * i, 2);
            y[i] = bf16_to_fp32(h);
        }
        break;
    case QType::Q4_0:
        deq_q4_0((const block_q4_0*)s, y, n / QK4_0);
        break;
    case QType::Q4_1:
        deq_q4_1((const block_q4_1*)s, y, n / QK4_1);
        break;
    case QType::Q5_0:
        deq_q5_0((const block_q5_0*)s, y, n / QK5_0);
        break;
    case QType::Q5_1:
        deq_q5_1((const block_q5_1*)s, y, n / QK5_1);
        break;
    case QType::Q8_0:
        deq_q8_0((const block_q8_0*)s, y, n / QK8_0);
        break;
    case QType::Q8_1:
        deq_q8_1((const block_q8_1*)s, y, n / QK8_1);
        break;
    case QType::Q2_K:
        deq_q2_K((const block_q2_K*)s, y, n / QK_K);
        break;
    case QType::Q3_K:
        deq_q3_K((const block_q3_K*)s, y, n / QK_K);
        break;
    case QType::Q4_K:
        deq_q4_K((const block_q4_K*)s, y, n / QK_K);
        break;
    case QType::Q5_K:
        deq_q5_K((const block_q5_K*)s, y, n / QK_K);
        break;
    case QType::Q6_K:
        deq_q6_K((const block_q6_K*)s, y, n / QK_K);
        break;
    case QType::Q8_K:
        deq_q8_K((const block_q8_K*)s, y, n / QK_K);
        break;
    }
}

}  // namespace ref
}  // namespace pylm
