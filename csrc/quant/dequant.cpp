// Dequantization dispatcher: picks the ISA variant and splits whole tensors over threads.
#include "quant/dequant.h"

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {

bool can_dequantize(QType t) {
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

void dequantize_row(QType t, const void* src, float* dst, int64_t n) {
#if defined(PYLM_X86)
    PYLM_DISPATCH(dequantize_row, t, src, dst, n);
#else
    ref::dequantize_row(t, src, dst, n);
#endif
}

void dequantize(QType t, const void* src, float* dst, int64_t n, int nthreads) {
    const QTypeInfo* info = qtype_info(t);
    const int64_t bs = info->block_size, ts = info->type_size;
    const int64_t nblocks = n / bs;
    // ~64 KiB of output per chunk: big enough to amortize scheduling, small enough to balance.
    const int64_t grain = (16384 + bs - 1) / bs;
    const uint8_t* s = static_cast<const uint8_t*>(src);
    parallel_for(nblocks, grain, nthreads, [&](int64_t b, int64_t e, int) {
        dequantize_row(t, s + b * ts, dst + b * bs, (e - b) * bs);
    });
}

}  // namespace pylm
