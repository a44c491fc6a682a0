#include "core/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(PYLM_X86)
#include <immintrin.h>
#endif

namespace pylm {

namespace {

inline void cpu_relax() {
#if defined(PYLM_X86)
    _mm_pause();
#endif
}

thread_local bool t_in_parallel = false;

// Work is handed out as chunk claims tagged with the job's generation: claim_ holds
// (generation << 32) | next chunk. A participant claims a chunk with a CAS that only succeeds for
// the generation it is working on, and the caller waits for all CHUNKS to be done — not for the
// workers to check in. So a worker that is asleep or descheduled when a job starts costs nothing
// (the caller does the chunks itself) instead of stalling every parallel region; this is what
// keeps 2-thread decode steady on a machine shared with other processes.
class ThreadPool {
public:
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
            wake_.fetch_add(1);
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }

    void run(int64_t n, int64_t grain, int nthreads, RangeFn fn, void* ctx) {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        const int64_t chunks = (n + grain - 1) / grain;
        if (nthreads <= 0) nthreads = default_threads();
        if (nthreads > chunks) nthreads = static_cast<int>(chunks);
        std::unique_lock<std::mutex> job_lock(job_mutex_, std::defer_lock);
        if (nthreads <= 1 || chunks >= (int64_t(1) << 31) || t_in_parallel || !job_lock.try_lock()) {
            serial(n, fn, ctx);
            return;
        }
        ensure_workers(nthreads - 1);
        const uint32_t gen = ++gen_;
        fn_.store(fn, std::memory_order_relaxed);
        ctx_.store(ctx, std::memory_order_relaxed);
        n_.store(n, std::memory_order_relaxed);
        grain_.store(grain, std::memory_order_relaxed);
        chunks_.store(chunks, std::memory_order_relaxed);
        active_.store(nthreads - 1, std::memory_order_relaxed);
        done_.store(0, std::memory_order_relaxed);
        claim_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);  // publish
        {
            std::lock_guard<std::mutex> lk(m_);
            wake_.store(gen, std::memory_order_release);
        }
        cv_.notify_all();
        t_in_parallel = true;
        work(gen, 0);
        t_in_parallel = false;
        while (done_.load(std::memory_order_acquire) < chunks) cpu_relax();
        // Close the job before its fields are reused: a late worker's claim of this generation
        // can no longer succeed.
        claim_.store((static_cast<uint64_t>(gen) << 32) | kClosed, std::memory_order_release);
    }

private:
    static constexpr uint64_t kClosed = 0xFFFFFFFFu;
    static constexpr int kSpinMicros = 3000;

    static void serial(int64_t n, RangeFn fn, void* ctx) {
        const bool was = t_in_parallel;
        t_in_parallel = true;
        fn(ctx, 0, n, 0);
        t_in_parallel = was;
    }

    // Claims and runs chunks of generation `gen` until none is left.
    void work(uint32_t gen, int thread_index) {
        for (;;) {
            uint64_t c = claim_.load(std::memory_order_acquire);
            if (static_cast<uint32_t>(c >> 32) != gen) return;
            const int64_t idx = static_cast<int64_t>(c & 0xFFFFFFFFu);
            if (idx >= chunks_.load(std::memory_order_relaxed)) return;  // also kClosed
            if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
            // Chunk idx of `gen` is ours: the job cannot complete (and its fields cannot change)
            // before we count it done.
            const int64_t n = n_.load(std::memory_order_relaxed);
            const int64_t grain = grain_.load(std::memory_order_relaxed);
            const int64_t b = idx * grain;
            const int64_t e = b + grain < n ? b + grain : n;
            fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), b, e,
                                                thread_index);
            done_.fetch_add(1, std::memory_order_release);
        }
    }

    void ensure_workers(int count) {
        while (static_cast<int>(workers_.size()) < count) {
            const int index = static_cast<int>(workers_.size()) + 1;
            const uint32_t seen = wake_.load();
            workers_.emplace_back([this, index, seen] { worker_loop(index, seen); });
        }
    }

    void worker_loop(int index, uint32_t seen) {
        t_in_parallel = true;
        for (;;) {
            // Spin for a few milliseconds (a decode step is hundreds of short regions with short
            // serial gaps: a sleeping worker would miss them all), then sleep.
            const auto t0 = std::chrono::steady_clock::now();
            for (int spins = 1; wake_.load(std::memory_order_acquire) == seen; ++spins) {
                cpu_relax();
                if ((spins & 255) == 0 &&
                    std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kSpinMicros))
                    break;
            }
            if (wake_.load(std::memory_order_acquire) == seen) {
                std::unique_lock<std::mutex> lk(m_);
                cv_.wait(lk, [&] { return wake_.load() != seen || stop_; });
            }
            if (stop_) return;
            seen = wake_.load(std::memory_order_acquire);
            if (index <= active_.load(std::memory_order_relaxed)) work(seen, index);
        }
    }

    std::mutex job_mutex_;  // one parallel region at a time
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::thread> workers_;
    uint32_t gen_ = 0;                   // caller side (under job_mutex_)
    std::atomic<uint32_t> wake_{0};      // last published generation
    std::atomic<uint64_t> claim_{kClosed};
    std::atomic<int64_t> done_{0};
    std::atomic<RangeFn> fn_{nullptr};
    std::atomic<void*> ctx_{nullptr};
    std::atomic<int64_t> n_{0}, grain_{1}, chunks_{0};
    std::atomic<int> active_{0};
    std::atomic<bool> stop_{false};
};

ThreadPool& pool() {
    static ThreadPool* p = new ThreadPool();  // never destroyed: workers may outlive static dtors
    return *p;
}

std::atomic<int> g_default_threads{0};

}  // namespace

int hardware_threads() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
}

int default_threads() {
    int n = g_default_threads.load();
    if (n <= 0) {
        n = hardware_threads();
        g_default_threads.store(n);
    }
    return n;
}

void set_default_threads(int n) {
    if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
    g_default_threads.store(n);
}

void parallel_for_raw(int64_t n, int64_t grain, int nthreads, RangeFn fn, void* ctx) {
    pool().run(n, grain, nthreads, fn, ctx);
}

}  // namespace pylm
