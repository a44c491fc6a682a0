// A small persistent thread pool: parallel_for over [0, n) in chunks of `grain`.
//
// The caller's thread takes part. Workers spin briefly before sleeping, so the many short
// parallel regions of a decode step do not pay a futex wake-up each. Nested calls, and calls
// made while another thread holds the pool, run serially on the calling thread.
#pragma once
#include <cstdint>
#include <type_traits>

namespace pylm {

// fn(ctx, begin, end, thread_index) processes the half-open range [begin, end).
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end, int thread_index);

// Default number of threads for native calls (initially: the CPUs this process may use).
int default_threads();
void set_default_threads(int n);  // throws std::invalid_argument for n < 1
int hardware_threads();

// Runs fn over [0, n) split into ceil(n / grain) chunks on up to `nthreads` threads
// (nthreads <= 0 means default_threads()). Returns when every chunk is done.
void parallel_for_raw(int64_t n, int64_t grain, int nthreads, RangeFn fn, void* ctx);

// Lambda convenience: f(begin, end, thread_index). Safe in per-ISA translation units: the
// instantiation is keyed on the lambda's unique type, so no inline copy is shared across ISAs.
template <class F>
inline void parallel_for(int64_t n, int64_t grain, int nthreads, F&& f) {
    using Fn = typename std::remove_reference<F>::type;
    parallel_for_raw(
        n, grain, nthreads,
        [](void* ctx, int64_t b, int64_t e, int t) { (*static_cast<Fn*>(ctx))(b, e, t); },
        const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace pylm
