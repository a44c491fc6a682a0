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
