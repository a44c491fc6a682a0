// Small helpers of the quantized dot products, `static inline` (internal linkage) so that every
// per-ISA translation unit gets its own copy compiled with its own flags.
#pragma once
#include <xmmintrin.h>

#include <cstdint>
#include <cstring>

namespace pylm {

// Software prefetch of the row about 8 KiB (whole rows) ahead: a lone core streaming W from
// DRAM otherwise stalls between the hardware prefetcher's requests (matvec is memory bound).
static inline void prefetch_ahead(const uint8_t* row, int64_t ws) {
    if (ws <= 0) return;
    const uint8_t* p = row + (ws >= 8192 ? ws : (8192 / ws + 1) * ws);
    for (int64_t off = 0; off < ws; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

// 4 unaligned bytes.
static inline uint32_t rd32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

}  // namespace pylm
