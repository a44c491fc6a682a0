// paged_attn_decode: split-K plan, workspace size, the split reduction and the dispatch of
// paged_attention.cuh over (cache dtype, head dim). See attention.cuh for the contract.
#include <stdexcept>
#include <string>

#include "paged_attention.cuh"

namespace pylm {
namespace cuda {
namespace attn {
namespace {

constexpr int kMinSplitKeys = 256;  // keys per split at least (partials cost D*4 bytes a row)

int sm_count() {
    static std::atomic<int> cached[64] = {};
    int dev = 0;
    PYLM_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 64) {
        const int n = cached[dev].load(std::memory_order_relaxed);
        if (n > 0) return n;
    }
    int n = 0;
    PYLM_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    if (dev < 64) cached[dev].store(n, std::memory_order_relaxed);
    return n;
}

// Enough CTAs for ~4 per SM (two resident waves of two), never fewer than kMinSplitKeys keys a
// split; the partition is a multiple of 64 keys.
SplitPlan make_plan(const PagedAttnParams& p) {
    SplitPlan plan;
    const int R = p.Hq / p.Hkv * p.Tq;
    plan.chunks = (R + kPagedRows - 1) / kPagedRows;
    const int max_ctx = p.max_context_len > 0 ? p.max_context_len : 1;
    const int64_t base = static_cast<int64_t>(p.S) * p.Hkv * plan.chunks;
    const int64_t want = (4 * static_cast<int64_t>(sm_count()) + base - 1) / base;
    const int64_t by_len = (max_ctx + kMinSplitKeys - 1) / kMinSplitKeys;
    const int64_t splits = want < 1 ? 1 : (want > by_len ? by_len : want);
    const int64_t per = (max_ctx + splits - 1) / splits;
    plan.part = static_cast<int>((per + 63) / 64 * 64);
    plan.splits = (max_ctx + plan.part - 1) / plan.part;
    return plan;
}

// o[row] = sum_k 2^(m_k - M) acc_k / sum_k 2^(m_k - M) l_k over the splits k of the row.
__global__ void __launch_bounds__(128)
    paged_attn_reduce(const PagedAttnParams p, const SplitPlan plan) {
    const int64_t row = blockIdx.x;  // (s * Tq + i) * Hq + hq
    const float2* ml = plan.ml + row * plan.splits;
    const float* acc = plan.acc + row * plan.splits * p.D;
    float M = neg_inf();
    for (int k = 0; k < plan.splits; ++k) M = fmaxf(M, ml[k].x);
    for (int d = threadIdx.x; d < p.D; d += blockDim.x) {
        float num = 0.f, den = 0.f;
        for (int k = 0; k < plan.splits; ++k) {
            const float2 mk = ml[k];
            if (mk.y > 0.f) {  // splits with no visible key hold m = -inf, l = 0
                const float w = exp2f(mk.x - M);
                den = fmaf(w, mk.y, den);
                num = fmaf(w, acc[static_cast<int64_t>(k) * p.D + d], num);
            }
        }
        store_from_f32(p.o, p.q_dtype, row * p.D + d, den > 0.f ? num / den : 0.f);
    }
}

template <typename KV, int D>
void launch_paged(const PagedAttnParams& p, const SplitPlan& plan, cudaStream_t stream) {
    using C = PagedCfg<KV, D>;
    static std::atomic<unsigned> smem_set{0};
    auto kernel = paged_attn_kernel<KV, D>;
    set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), C::kSmemBytes, smem_set);
    const dim3 grid(plan.splits, p.Hkv * plan.chunks, p.S);
    kernel<<<grid, kPagedThreads, C::kSmemBytes, stream>>>(p, plan);
    PYLM_CUDA_CHECK_LAUNCH("paged_attn_decode");
}

template <typename KV>
void dispatch_head_dim(const PagedAttnParams& p, const SplitPlan& plan, cudaStream_t stream) {
    switch (p.D) {
        case 64: return launch_paged<KV, 64>(p, plan, stream);
        case 128: return launch_paged<KV, 128>(p, plan, stream);
        case 256: return launch_paged<KV, 256>(p, plan, stream);
        default:
            throw std::invalid_argument("paged_attn_decode: head dim D=" + std::to_string(p.D) +
                                        " is not supported (64, 128 or 256)");
    }
}

void check_params(const PagedAttnParams& p) {
    auto bad = [](const std::string& m) { throw std::invalid_argument("paged_attn_decode: " + m); };
    if (p.Hkv <= 0 || p.Hq % p.Hkv != 0)
        bad("Hq=" + std::to_string(p.Hq) + " is not a multiple of Hkv=" + std::to_string(p.Hkv));
    if (p.Tq < 1) bad("Tq=" + std::to_string(p.Tq) + " must be >= 1");
    if (p.block_size < 1) bad("block_size=" + std::to_string(p.block_size) + " must be >= 1");
    if (p.S > 65535) bad("S=" + std::to_string(p.S) + " sequences exceed 65535 per launch");
    for (DType t : {p.q_dtype, p.kv_dtype})
        if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
            bad(std::string("dtype ") + dtype_name(t) + " is not supported");
}

}  // namespace
}  // namespace attn

size_t paged_attn_workspace_bytes(const PagedAttnParams& p) {
    attn::check_params(p);
    if (p.S == 0 || p.Hq == 0) return 0;
    const attn::SplitPlan plan = attn::make_plan(p);
    if (plan.splits == 1) return 0;
    const size_t slots = static_cast<size_t>(p.S) * p.Tq * p.Hq * plan.splits;
    return slots * sizeof(float2) + slots * p.D * sizeof(float);
}

void paged_attn_decode(const PagedAttnParams& p, cudaStream_t stream) {
    attn::check_params(p);
    if (p.S == 0 || p.Hq == 0) return;
    attn::SplitPlan plan = attn::make_plan(p);
    if (plan.splits > 1) {
        if (!p.workspace)
            throw std::invalid_argument("paged_attn_decode: workspace is null but " +
                                        std::to_string(paged_attn_workspace_bytes(p)) +
                                        " bytes are needed");
        const size_t slots = static_cast<size_t>(p.S) * p.Tq * p.Hq * plan.splits;
        plan.ml = static_cast<float2*>(p.workspace);
        plan.acc = reinterpret_cast<float*>(plan.ml + slots);
    }
    switch (p.kv_dtype) {
        case DType::F16: attn::dispatch_head_dim<__half>(p, plan, stream); break;
        case DType::BF16: attn::dispatch_head_dim<__nv_bfloat16>(p, plan, stream); break;
        default: attn::dispatch_head_dim<float>(p, plan, stream); break;
    }
    if (plan.splits > 1) {
        const int64_t rows = static_cast<int64_t>(p.S) * p.Tq * p.Hq;
        attn::paged_attn_reduce<<<static_cast<unsigned>(rows), 128, 0, stream>>>(p, plan);
        PYLM_CUDA_CHECK_LAUNCH("paged_attn_decode (split reduce)");
    }
}

}  // namespace cuda
}  // namespace pylm
