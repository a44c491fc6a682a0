// Machine-limit probes: DRAM/L2 read bandwidth and FMA peak, measured on the active ISA.
//
// The benchmark harness (pylm/bench.py) divides each kernel's GB/s and GFLOP/s by these figures,
// measured in the same run, so "fraction of the roofline" means "of what this machine, with this
// ISA and thread count, actually sustains" rather than of a datasheet number.
//
// Per-ISA inner loops (probe_ref.cpp, probe_avx2.cpp, probe_avx512.cpp) are single-threaded and
// timing-free; probe.cpp threads them with parallel_for behind a start barrier and times the
// region from the first thread's start to the last thread's end, so the figure is aggregate.
#pragma once
#include <cstdint>

namespace pylm {

// Single-threaded inner loops, one set per ISA (same contract in each namespace):
//   read_sum(p, nbytes): wrapping sum of p[0, nbytes) as 64-bit words, with the widest loads
//     of the ISA and several independent accumulators (p is (nbytes,), 64-byte aligned, nbytes
//     a multiple of 512). Integer adds (latency 1) keep the loop load-bound; the value only
//     defeats dead-code removal.
//   fma_chains(iters, seed): `iters` rounds of independent x = x * a + b chains held in
//     registers (FMA instructions in the SIMD variants, mul then add in the scalar one).
//   fma_flops_per_iter(): floating-point operations per round (2 per lane per chain).
namespace ref {
uint64_t read_sum(const uint8_t* p, int64_t nbytes);
float fma_chains(int64_t iters, float seed);
int64_t fma_flops_per_iter();
}  // namespace ref
namespace avx2 {
uint64_t read_sum(const uint8_t* p, int64_t nbytes);
float fma_chains(int64_t iters, float seed);
int64_t fma_flops_per_iter();
}  // namespace avx2
namespace avx512 {
uint64_t read_sum(const uint8_t* p, int64_t nbytes);
float fma_chains(int64_t iters, float seed);
int64_t fma_flops_per_iter();
}  // namespace avx512

// Bytes of the data cache at `level` (2 = L2, 3 = L3) reported by the OS; 0 when unknown.
int64_t cache_bytes(int level);

// Buffer size used when a caller passes nbytes <= 0: well beyond the LLC so reads come from DRAM
// (max(256 MiB, 2 x LLC), capped at 1 GiB).
int64_t default_read_bytes();

struct ProbeResult {
    double best;    // GB/s (read) or GFLOP/s (fma): the best repetition
    double median;  // same unit, median repetition
    int threads;    // threads that actually ran concurrently
};

// Streams `nbytes` (split into one contiguous slice per thread) `reps` times; buffers smaller
// than 64 MiB are read several times per repetition so each timed region is long enough.
// nthreads <= 0 means default_threads(). Throws std::invalid_argument for reps < 1.
ProbeResult probe_read_bandwidth(int64_t nbytes, int reps, int nthreads);

// Every thread runs fma_chains(iters) concurrently, `reps` times. iters <= 0 picks a default
// (about 10-50 ms per repetition).
ProbeResult probe_fma_peak(int64_t iters, int reps, int nthreads);

}  // namespace pylm
