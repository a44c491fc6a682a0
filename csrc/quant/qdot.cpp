// Dispatchers for the quantized dot products (baseline translation unit), and the weight-type
// -> activation-format table. Contract and layouts: qdot.h.
#include <cstring>

#include "core/isa.h"
#include "quant/qdot.h"

namespace pylm {

bool qdot_supported(QType t) {
    switch (t) {
        case QType::F32:
        case QType::F16:
        case QType::BF16:
        case QType::Q4_0:
        case QType::Q4_1:
        case QType::Q5_0:
        case QType::Q5_1:
        case QType::Q8_0:
        case QType::Q2_K:
        case QType::Q3_K:
        case QType::Q4_K:
        case QType::Q5_K:
        case QType::Q6_K:
            return true;
        default:
            return false;
    }
}

ActFormat act_format(QType t) {
    switch (t) {
        case QType::Q4_0:
        case QType::Q4_1:
        case QType::Q5_0:
        case QType::Q5_1:
        case QType::Q8_0:
            return ActFormat::Q8S;
        case QType::Q2_K:
        case QType::Q3_K:
        case QType::Q4_K:
        case QType::Q5_K:
        case QType::Q6_K:
            return ActFormat::Q8K;
        default:
            return ActFormat::F32;
    }
}

int64_t act_row_bytes(ActFormat f, int64_t K) {
    int64_t bytes = 0;
    switch (f) {
        case ActFormat::F32:
            bytes = K * 4;
            break;
        case ActFormat::Q8S:
            bytes = K + 8 * (K / 32);
            break;
        case ActFormat::Q8K:
            bytes = (K / QK_K) * (int64_t)sizeof(block_q8_K);
            break;
    }
    return (bytes + 63) / 64 * 64;
}

namespace avx512 {
// AVX-512 CPUs run the AVX2 quantizers (this work is O(M*K), not the hot loop).
static void quantize_act_q8s(const float* x, int64_t K, void* row) {
    avx2::quantize_act_q8s(x, K, row);
}
static void quantize_act_q8k(const float* x, int64_t K, void* row) {
    avx2::quantize_act_q8k(x, K, row);
}
}  // namespace avx512

void quantize_act(ActFormat f, const float* x, int64_t K, void* row) {
    switch (f) {
        case ActFormat::F32:
            std::memcpy(row, x, (size_t)K * 4);
            break;
        case ActFormat::Q8S:
            PYLM_DISPATCH(quantize_act_q8s, x, K, row);
            break;
        case ActFormat::Q8K:
            PYLM_DISPATCH(quantize_act_q8k, x, K, row);
            break;
    }
}

void qdot_pack_rows(QType t, const uint8_t* src, int64_t N, int64_t K, uint8_t* dst) {
    const int64_t nb = K / 32;
    const bool q8 = t == QType::Q8_0, min = t == QType::Q4_1;
    const int U = q8 ? 2 : 4, Q = q8 ? 32 : 16;
    const int64_t bs = q8 ? sizeof(block_q8_0) : min ? sizeof(block_q4_1) : sizeof(block_q4_0);
    const int qs_at = min ? 4 : 2;  // the qs follow d (and m)
    for (int64_t n = 0; n < N; ++n) {
        const uint8_t* row = src + n * nb * bs;
        uint8_t* out = dst + n * nb * bs;
        uint8_t* o = out;
        for (int64_t u0 = 0; u0 < nb; u0 += U) {
            const int nv = nb - u0 < U ? (int)(nb - u0) : U;
            for (int l = 0; l < 16; ++l) {
                if (l % U >= nv) continue;
                const uint8_t* q = row + (u0 + l % U) * bs + qs_at + 4 * (l / U);
                for (int b = 0; b < 4; ++b) *o++ = q8 ? (uint8_t)(q[b] ^ 0x80) : q[b];
            }
        }
        uint8_t* d = out + nb * Q;  // fp16 d[nb], then m[nb]
        for (int64_t b = 0; b < nb; ++b) {
            std::memcpy(d + 2 * b, row + b * bs, 2);
            if (min) std::memcpy(d + 2 * (nb + b), row + b * bs + 2, 2);
        }
    }
}

const QDotKernels* qdot_kernels(QType t) {
    switch (active_isa()) {
        case Isa::Avx512:
            return avx512::qdot_kernels(t);
        case Isa::Avx2:
            return avx2::qdot_kernels(t);
        default:
            return ref::qdot_kernels(t);
    }
}

}  // namespace pylm
