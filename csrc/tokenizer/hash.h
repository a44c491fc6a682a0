// Small open-addressing hash tables for the tokenizer's hot paths: byte string -> int32
// (vocabulary, word cache) and (int32, int32) -> (rank, id) (BPE merges). Linear probing,
// power-of-two capacity, load factor <= 1/2, no deletion (tables are cleared whole).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pylm {
namespace tok {

static inline uint64_t hash_mix(uint64_t x) {
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ULL;
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ULL;
    x ^= x >> 32;
    return x;
}

static inline uint64_t hash_bytes(const char* p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xFF51AFD7ED558CCDULL);
    while (n >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        std::memcpy(&w, p, n);
        h = (h ^ w) * 0xC2B2AE3D27D4EB4FULL;
    }
    return hash_mix(h);
}

static inline size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

// Byte string -> int32 value. Keys are copied into an internal arena.
class StrMap {
public:
    explicit StrMap(size_t expected = 0) { reserve(expected); }

    void reserve(size_t expected) {
        const size_t cap = pow2_at_least(expected * 2 + 2);
        if (cap <= slots_.size()) return;
        std::vector<Slot> old;
        old.swap(slots_);
        slots_.assign(cap, Slot{});
        mask_ = cap - 1;
        for (const Slot& s : old)
            if (s.len != kEmpty) place(s);
    }

    // Inserts key -> value unless key is present; returns the value now stored for key.
    int32_t insert(const char* key, size_t len, int32_t value) {
        if ((size_ + 1) * 2 > slots_.size()) reserve(size_ + 1);
        const uint64_t h = hash_bytes(key, len);
        size_t i = h & mask_;
        for (;; i = (i + 1) & mask_) {
            Slot& s = slots_[i];
            if (s.len == kEmpty) break;
            if (s.hash == h && s.len == len && std::memcmp(arena_.data() + s.off, key, len) == 0)
                return s.value;
        }
        Slot& s = slots_[i];
        s.hash = h;
        s.off = arena_.size();
        s.len = static_cast<uint32_t>(len);
        s.value = value;
        arena_.append(key, len);
        ++size_;
        return value;
    }

    // Value for key, or -1.
    int32_t find(const char* key, size_t len) const {
        if (size_ == 0) return -1;
        const uint64_t h = hash_bytes(key, len);
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const Slot& s = slots_[i];
            if (s.len == kEmpty) return -1;
            if (s.hash == h && s.len == len && std::memcmp(arena_.data() + s.off, key, len) == 0)
                return s.value;
        }
    }
    int32_t find(const std::string& key) const { return find(key.data(), key.size()); }

    size_t size() const { return size_; }
    size_t arena_bytes() const { return arena_.size(); }
    void clear() {
        for (Slot& s : slots_) s.len = kEmpty;
        arena_.clear();
        size_ = 0;
    }

private:
    static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
    struct Slot {
        uint64_t hash = 0;
        uint64_t off = 0;
        uint32_t len = kEmpty;
        int32_t value = -1;
    };
    void place(const Slot& s) {
        size_t i = s.hash & mask_;
        while (slots_[i].len != kEmpty) i = (i + 1) & mask_;
        slots_[i] = s;
    }
    std::vector<Slot> slots_;
    std::string arena_;
    size_t mask_ = 0;
    size_t size_ = 0;
};

// (a, b) -> (rank, merged symbol) for BPE merges, a and b non-negative int32.
class PairMap {
public:
    struct Value {
        int32_t rank;
        int32_t id;
    };

    void reserve(size_t expected) {
        const size_t cap = pow2_at_least(expected * 2 + 2);
        if (cap <= slots_.size()) return;
        std::vector<Slot> old;
        old.swap(slots_);
        slots_.assign(cap, Slot{});
        mask_ = cap - 1;
        for (const Slot& s : old)
            if (s.key != kEmpty) place(s);
    }

    // Inserts unless present (the first rank given for a pair wins, as in llama.cpp).
    void insert(int32_t a, int32_t b, Value v) {
        if ((size_ + 1) * 2 > slots_.size()) reserve(size_ + 1);
        const uint64_t key = make_key(a, b);
        size_t i = hash_mix(key) & mask_;
        for (; slots_[i].key != kEmpty; i = (i + 1) & mask_)
            if (slots_[i].key == key) return;
        slots_[i] = Slot{key, v};
        ++size_;
    }

    // Pointer to the value, or nullptr.
    const Value* find(int32_t a, int32_t b) const {
        if (size_ == 0) return nullptr;
        const uint64_t key = make_key(a, b);
        for (size_t i = hash_mix(key) & mask_;; i = (i + 1) & mask_) {
            const Slot& s = slots_[i];
            if (s.key == key) return &s.value;
            if (s.key == kEmpty) return nullptr;
        }
    }

    size_t size() const { return size_; }

private:
    static constexpr uint64_t kEmpty = ~0ULL;
    struct Slot {
        uint64_t key = kEmpty;
        Value value{-1, -1};
    };
    static uint64_t make_key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    void place(const Slot& s) {
        size_t i = hash_mix(s.key) & mask_;
        while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
        slots_[i] = s;
    }
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    size_t size_ = 0;
};

}  // namespace tok
}  // namespace pylm
