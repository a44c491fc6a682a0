// Paged KV cache storage in host memory; the bookkeeping is BlockTables (block_tables.h).
#include "engine/kv_cache.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace pylm {

PagedKVCache::PagedKVCache(int n_layer, int64_t kv_dim, int block_size, int64_t n_blocks)
    : n_layer_(n_layer), kv_dim_(kv_dim),
      tables_(block_size, n_blocks, [this](int32_t dst, int32_t src) { copy_block(dst, src); }) {
    if (n_layer <= 0 || kv_dim <= 0)
        throw std::invalid_argument("PagedKVCache: bad geometry (layers=" + std::to_string(n_layer) +
                                    ", kv_dim=" + std::to_string(kv_dim) + ")");
    const size_t floats = static_cast<size_t>(n_blocks * block_stride());
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    for (int il = 0; il < n_layer; ++il)
        for (auto* pool : {&k_, &v_}) {
            float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!p) throw std::bad_alloc();
            pool->emplace_back(p);
        }
}

void PagedKVCache::copy_block(int32_t dst, int32_t src) {
    const size_t bytes = static_cast<size_t>(block_stride()) * sizeof(float);
    for (int il = 0; il < n_layer_; ++il) {
        std::memcpy(k_block(il, dst), k_block(il, src), bytes);
        std::memcpy(v_block(il, dst), v_block(il, src), bytes);
    }
}

}  // namespace pylm
