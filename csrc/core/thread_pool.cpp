#include "core/thread_pool.h"

#include <atomic>
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

class ThreadPool {
public:
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
            generation_.fetch_add(1);
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
        if (nthreads <= 1 || t_in_parallel || !job_lock.try_lock()) {
            serial(n, fn, ctx);
            return;
        }
        ensure_workers(nthreads - 1);
        fn_ = fn;
        ctx_ = ctx;
        n_ = n;
        grain_ = grain;
        chunks_ = chunks;
        next_.store(0);
        pending_.store(nthreads - 1);
        {
            // active_workers_ and the generation change together under m_, so a worker reads a
            // consistent (generation, participants) pair.
            std::lock_guard<std::mutex> lk(m_);
            active_workers_ = nthreads - 1;
            generation_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        t_in_parallel = true;
        work(0);
        t_in_parallel = false;
        while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
    }

private:
    static void serial(int64_t n, RangeFn fn, void* ctx) {
        const bool was = t_in_parallel;
        t_in_parallel = true;
        fn(ctx, 0, n, 0);
        t_in_parallel = was;
    }

    void work(int thread_index) {
        for (;;) {
            const int64_t c = next_.fetch_add(1, std::memory_order_relaxed);
            if (c >= chunks_) break;
            const int64_t b = c * grain_;
            const int64_t e = b + grain_ < n_ ? b + grain_ : n_;
            fn_(ctx_, b, e, thread_index);
        }
    }

    void ensure_workers(int count) {
        while (static_cast<int>(workers_.size()) < count) {
            const int index = static_cast<int>(workers_.size()) + 1;
            // The worker must start from the generation current NOW: run() bumps it right after,
            // and a thread that starts late must still see that bump as new work.
            const uint64_t gen0 = generation_.load();
            workers_.emplace_back([this, index, gen0] { worker_loop(index, gen0); });
        }
    }

    void worker_loop(int index, uint64_t seen) {
        t_in_parallel = true;
        for (;;) {
            // Spin for a while (cheap wake-up for back-to-back regions), then sleep.
            int spins = 0;
            while (generation_.load(std::memory_order_acquire) == seen && spins < 20000) {
                cpu_relax();
                ++spins;
            }
            if (generation_.load(std::memory_order_acquire) == seen) {
                std::unique_lock<std::mutex> lk(m_);
                cv_.wait(lk, [&] { return generation_.load() != seen; });
            }
            int active;
            {
                std::lock_guard<std::mutex> lk(m_);
                seen = generation_.load(std::memory_order_acquire);
                active = active_workers_;
            }
            if (stop_) return;
            if (index <= active) {
                work(index);
                pending_.fetch_sub(1, std::memory_order_acq_rel);
            }
        }
    }

    std::mutex job_mutex_;  // one parallel region at a time
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int64_t> next_{0};
    std::atomic<int> pending_{0};
    bool stop_ = false;
    RangeFn fn_ = nullptr;
    void* ctx_ = nullptr;
    int64_t n_ = 0, grain_ = 1, chunks_ = 0;
    int active_workers_ = 0;
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
