// flash_attn_fwd: dtype x head-dim dispatch onto the kernels of attention_flash.cuh (F16/BF16,
// tensor cores) and attention_f32.cu (F32). See attention.cuh for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "attention_launch.cuh"
#include "attention_util.cuh"

namespace pylm {
namespace cuda {
namespace attn {

void set_max_dynamic_smem(const void* kernel, int bytes, std::atomic<unsigned>& done_mask) {
    if (bytes <= 48 * 1024) return;
    int dev = 0;
    PYLM_CUDA_CHECK(cudaGetDevice(&dev));
    const unsigned bit = dev < 32 ? 1u << dev : 0u;
    if (bit && (done_mask.load(std::memory_order_relaxed) & bit)) return;
    PYLM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    done_mask.fetch_or(bit, std::memory_order_relaxed);
}

}  // namespace attn

namespace {

[[noreturn]] void bad_head_dim(int D) {
    throw std::invalid_argument("flash_attn_fwd: head dim D=" + std::to_string(D) +
                                " is not supported (64, 128 or 256)");
}

template <typename T>
void dispatch_mma(const FlashAttnParams& p, cudaStream_t stream) {
    switch (p.D) {
        case 64: return attn::launch_flash_fwd<T, 64>(p, stream);
        case 128: return attn::launch_flash_fwd<T, 128>(p, stream);
        case 256: return attn::launch_flash_fwd<T, 256>(p, stream);
        default: bad_head_dim(p.D);
    }
}

}  // namespace

void flash_attn_fwd(const FlashAttnParams& p, cudaStream_t stream) {
    if (p.Hkv <= 0 || p.Hq % p.Hkv != 0)
        throw std::invalid_argument("flash_attn_fwd: Hq=" + std::to_string(p.Hq) +
                                    " is not a multiple of Hkv=" + std::to_string(p.Hkv));
    if (p.B == 0 || p.Tq == 0 || p.Hq == 0) return;
    switch (p.dtype) {
        case DType::F16: return dispatch_mma<__half>(p, stream);
        case DType::BF16: return dispatch_mma<__nv_bfloat16>(p, stream);
        case DType::F32:
            switch (p.D) {
                case 64: return attn::launch_flash_fwd_f32<64>(p, stream);
                case 128: return attn::launch_flash_fwd_f32<128>(p, stream);
                case 256: return attn::launch_flash_fwd_f32<256>(p, stream);
                default: bad_head_dim(p.D);
            }
        default:
            throw std::invalid_argument(std::string("flash_attn_fwd: dtype ") +
                                        dtype_name(p.dtype) +
                                        " is not supported (float32, float16, bfloat16)");
    }
}

}  // namespace cuda
}  // namespace pylm
