// Threaded, timed drivers for the probe loops (baseline translation unit; the per-ISA inner
// loops live in probe_<isa>.cpp). Contract: probe.h.
//
// Concurrency: one parallel_for chunk per thread, and every chunk waits at a start barrier
// before its clock starts, so the threads stream (or FMA) at the same time and the figure is
// aggregate: work / (last thread's end - first thread's start). When the pool runs the region
// serially (nested call, pool busy), the single call owns every slot and the barrier passes at
// once: the figure is then honestly that of one thread, and `threads` says so.
#include "bench/probe.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

const int64_t kMiB = int64_t(1) << 20;
const int64_t kSliceAlign = 512;  // bytes: one avx512 read_sum iteration

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

uint64_t read_sum_active(const uint8_t* p, int64_t nbytes) {
    switch (active_isa()) {
    case Isa::Avx512: return avx512::read_sum(p, nbytes);
    case Isa::Avx2: return avx2::read_sum(p, nbytes);
    default: return ref::read_sum(p, nbytes);
    }
}

float fma_chains_active(int64_t iters, float seed) {
    switch (active_isa()) {
    case Isa::Avx512: return avx512::fma_chains(iters, seed);
    case Isa::Avx2: return avx2::fma_chains(iters, seed);
    default: return ref::fma_chains(iters, seed);
    }
}

int64_t fma_flops_per_iter_active() {
    switch (active_isa()) {
    case Isa::Avx512: return avx512::fma_flops_per_iter();
    case Isa::Avx2: return avx2::fma_flops_per_iter();
    default: return ref::fma_flops_per_iter();
    }
}

// Timing of one concurrent region.
struct Span {
    double seconds;
    int calls;  // parallel_for chunks that ran: = threads when the pool ran them concurrently
};

// Runs work(slot) for slot in [0, nslots), one slot per thread, all starting together.
template <class Work>
Span run_concurrent(int nslots, Work&& work) {
    std::vector<int64_t> t0(nslots), t1(nslots);
    std::atomic<int64_t> arrived{0};
    std::atomic<int> calls{0};
    parallel_for(nslots, 1, nslots, [&](int64_t b, int64_t e, int) {
        calls.fetch_add(1);
        arrived.fetch_add(e - b);
        // Start barrier. Yield while waiting: on an oversubscribed machine the thread we wait for
        // may need our core to get here.
        for (int spins = 0; arrived.load(std::memory_order_acquire) < nslots; ++spins)
            if (spins > 1000) std::this_thread::yield();
        for (int64_t s = b; s < e; ++s) {
            t0[s] = now_ns();
            work(s);
            t1[s] = now_ns();
        }
    });
    const int64_t start = *std::min_element(t0.begin(), t0.end());
    const int64_t end = *std::max_element(t1.begin(), t1.end());
    return Span{double(std::max<int64_t>(end - start, 1)) * 1e-9, calls.load()};
}

ProbeResult summarize(std::vector<double> rates, int threads) {
    std::sort(rates.begin(), rates.end());
    const size_t n = rates.size();
    const double median = n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
    return ProbeResult{rates.back(), median, threads};
}

int64_t parse_size(const char* path) {
    FILE* f = std::fopen(path, "r");
    if (!f) return 0;
    char buf[64] = {0};
    const bool ok = std::fgets(buf, sizeof(buf), f) != nullptr;
    std::fclose(f);
    if (!ok) return 0;
    char* end = nullptr;
    const long long v = std::strtoll(buf, &end, 10);
    if (v <= 0) return 0;
    if (*end == 'K') return v * 1024;
    if (*end == 'M') return v * kMiB;
    return v;
}

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

// Results of the probe loops land here so that they are not elided.
volatile float g_sink = 0;
volatile uint64_t g_sink_u64 = 0;

}  // namespace

int64_t cache_bytes(int level) {
    if (level != 2 && level != 3)
        throw std::invalid_argument("cache level must be 2 or 3, got " + std::to_string(level));
    long v = 0;
#if defined(_SC_LEVEL3_CACHE_SIZE)
    v = sysconf(level == 3 ? _SC_LEVEL3_CACHE_SIZE : _SC_LEVEL2_CACHE_SIZE);
#endif
    if (v > 0) return v;
    // sysfs: index2 is usually L2 and index3 L3; check the level file to be sure.
    for (int idx = 0; idx < 8; ++idx) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx);
        if (parse_size((dir + "/level").c_str()) == level)
            return parse_size((dir + "/size").c_str());
    }
    return 0;
}

int64_t default_read_bytes() {
    const int64_t llc = cache_bytes(3);
    return std::min<int64_t>(std::max<int64_t>(256 * kMiB, 2 * llc), 1024 * kMiB);
}

ProbeResult probe_read_bandwidth(int64_t nbytes, int reps, int nthreads) {
    if (reps < 1) throw std::invalid_argument("reps must be >= 1, got " + std::to_string(reps));
    if (nthreads <= 0) nthreads = default_threads();
    if (nbytes <= 0) nbytes = default_read_bytes();
    // One slice per thread, each a whole number of 512-byte read_sum iterations.
    const int64_t slice = nbytes / nthreads / kSliceAlign * kSliceAlign;
    if (slice < 4096)
        throw std::invalid_argument("nbytes=" + std::to_string(nbytes) + " is too small for " +
                                    std::to_string(nthreads) + " threads (need >= 4 KiB each)");
    const int64_t total = slice * nthreads;
    std::unique_ptr<void, FreeDeleter> mem(std::aligned_alloc(64, total));
    if (!mem) throw std::runtime_error("cannot allocate " + std::to_string(total) + " bytes");
    char* base = static_cast<char*>(mem.get());
    // Write every page (untouched pages all map the shared zero page and would read from
    // cache), each thread its own slice: on NUMA machines pages land near their reader.
    run_concurrent(nthreads, [&](int64_t s) { std::memset(base + s * slice, 0, slice); });
    // Small (cache-resident) buffers are read several times per repetition so that each timed
    // region lasts long enough to time well.
    const int64_t passes = std::max<int64_t>(1, 64 * kMiB / total);
    std::vector<double> rates;
    int threads = nthreads;
    // Repetition 0 is a warm-up (page-table walks, cache state, frequency ramp): not counted.
    for (int r = 0; r <= reps; ++r) {
        const Span sp = run_concurrent(nthreads, [&](int64_t s) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(base + s * slice);
            uint64_t acc = 0;
            for (int64_t k = 0; k < passes; ++k) acc += read_sum_active(p, slice);
            g_sink_u64 = acc;
        });
        threads = sp.calls;
        if (r > 0) rates.push_back(double(total) * double(passes) / sp.seconds * 1e-9);
    }
    return summarize(rates, threads);
}

ProbeResult probe_fma_peak(int64_t iters, int reps, int nthreads) {
    if (reps < 1) throw std::invalid_argument("reps must be >= 1, got " + std::to_string(reps));
    if (nthreads <= 0) nthreads = default_threads();
    if (iters <= 0) iters = int64_t(1) << 22;
    const double flops = double(iters) * double(fma_flops_per_iter_active()) * nthreads;
    std::vector<double> rates;
    int threads = nthreads;
    for (int r = 0; r <= reps; ++r) {  // repetition 0: warm-up (AVX frequency licence switch)
        const Span sp = run_concurrent(nthreads, [&](int64_t s) {
            g_sink = fma_chains_active(iters, 0.5f + float(s));
        });
        threads = sp.calls;
        if (r > 0) rates.push_back(flops / sp.seconds * 1e-9);
    }
    return summarize(rates, threads);
}

}  // namespace pylm
