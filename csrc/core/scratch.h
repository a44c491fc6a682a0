// A 64-byte aligned buffer, grown on demand and kept for reuse: declared thread_local, one per
// use, it keeps allocations (and the page faults of fresh memory) off hot paths that run once
// per work item. Plain C++ in an anonymous namespace, so every translation unit (each compiled
// for its own ISA) has its own copy.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace pylm {
namespace {

class ScratchBuffer {
public:
    ScratchBuffer() = default;
    ScratchBuffer(const ScratchBuffer&) = delete;
    ScratchBuffer& operator=(const ScratchBuffer&) = delete;
    ~ScratchBuffer() { std::free(p_); }

    // Room for `count` values of T (contents unspecified; earlier contents may be lost).
    template <class T>
    T* get(size_t count) {
        const size_t bytes = count * sizeof(T);
        if (bytes > cap_) {
            std::free(p_);
            cap_ = (bytes + 4095) / 4096 * 4096;
            p_ = std::aligned_alloc(64, cap_);
            if (!p_) {
                cap_ = 0;
                throw std::bad_alloc();
            }
        }
        return static_cast<T*>(p_);
    }

private:
    void* p_ = nullptr;
    size_t cap_ = 0;
};

}  // namespace
}  // namespace pylm
