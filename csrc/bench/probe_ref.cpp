// Scalar probe loops: the ceiling the reference kernels (baseline x86-64 / any CPU) can reach.
// Contract and shapes: probe.h.
#include "bench/probe.h"

#include <cstring>

// Keeps `x` in a register as an opaque value, so the compiler neither folds the chains nor packs
// the twelve scalar chains into SSE vectors (the SLP vectorizer would, and then this would not be
// the scalar peak).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYLM_OPAQUE(x) __asm__ volatile("" : "+x"(x))
#elif defined(__GNUC__)
#define PYLM_OPAQUE(x) __asm__ volatile("" : "+w"(x))
#else
#define PYLM_OPAQUE(x) (void)0
#endif

namespace pylm {
namespace ref {

namespace {
inline uint64_t load_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof(v));  // one unaligned-safe 8-byte load
    return v;
}
}  // namespace

uint64_t read_sum(const uint8_t* p, int64_t nbytes) {
    // p is (nbytes,), read as 64-bit words: 64 bytes per iteration into four accumulators.
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = 0; i + 64 <= nbytes; i += 64) {
        s0 += load_u64(p + i + 0);
        s1 += load_u64(p + i + 8);
        s2 += load_u64(p + i + 16);
        s3 += load_u64(p + i + 24);
        s0 += load_u64(p + i + 32);
        s1 += load_u64(p + i + 40);
        s2 += load_u64(p + i + 48);
        s3 += load_u64(p + i + 56);
    }
    return (s0 + s1) + (s2 + s3);
}

static const int kChains = 12;

float fma_chains(int64_t iters, float seed) {
    // x = x * a + b converges to b / (1 - a): values stay finite and normal for any iters.
    const float a = 0.999f, b = 0.001f;
    float x0 = seed, x1 = seed + 1, x2 = seed + 2, x3 = seed + 3, x4 = seed + 4, x5 = seed + 5;
    float x6 = seed + 6, x7 = seed + 7, x8 = seed + 8, x9 = seed + 9, x10 = seed + 10,
          x11 = seed + 11;
    for (int64_t i = 0; i < iters; ++i) {
        // -ffp-contract=off: each line is one mul and one add (2 flops).
        x0 = x0 * a + b; x1 = x1 * a + b; x2 = x2 * a + b; x3 = x3 * a + b;
        x4 = x4 * a + b; x5 = x5 * a + b; x6 = x6 * a + b; x7 = x7 * a + b;
        x8 = x8 * a + b; x9 = x9 * a + b; x10 = x10 * a + b; x11 = x11 * a + b;
        PYLM_OPAQUE(x0); PYLM_OPAQUE(x1); PYLM_OPAQUE(x2); PYLM_OPAQUE(x3);
        PYLM_OPAQUE(x4); PYLM_OPAQUE(x5); PYLM_OPAQUE(x6); PYLM_OPAQUE(x7);
        PYLM_OPAQUE(x8); PYLM_OPAQUE(x9); PYLM_OPAQUE(x10); PYLM_OPAQUE(x11);
    }
    return ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) + ((x8 + x9) + (x10 + x11));
}

int64_t fma_flops_per_iter() { return 2 * kChains; }

}  // namespace ref
}  // namespace pylm
