// Small helpers of the quantized dot products, `static inline` (internal linkage) so that every
// per-ISA translation unit gets its own copy compiled with its own flags.
#pragma once
#include <xmmintrin.h>

#include <cstdint>
#include <cstring>

namespace pylm {

// The byte distance prefetch_ahead uses: whole rows, about 8 KiB (ws > 0).
static inline int64_t prefetch_distance(int64_t ws) {
    return ws >= 8192 ? ws : (8192 / ws + 1) * ws;
}

// Prefetch the lines of [p, p + bytes) (p's line first). Spread calls over a loop instead of
// one burst per row: a burst stalls the loop behind it (measured on F16 / Q4_1 matvec).
static inline void prefetch_span(const uint8_t* p, int64_t bytes) {
    for (int64_t off = 0; off < bytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
}

// Software prefetch of the row about 8 KiB (whole rows) ahead: a lone core streaming W from
// DRAM otherwise stalls between the hardware prefetcher's requests (matvec is memory bound).
static inline void prefetch_ahead(const uint8_t* row, int64_t ws) {
    if (ws <= 0) return;
    prefetch_span(row + prefetch_distance(ws), ws);
}

// 4 unaligned bytes.
static inline uint32_t rd32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

}  // namespace pylm
