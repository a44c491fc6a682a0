// Explicit instantiation: flash attention forward, f16, head dim 128 (one per file: compile time).
#include "attention_flash.cuh"

template void pylm::cuda::attn::launch_flash_fwd<__half, 128>(const pylm::cuda::FlashAttnParams&,
                                                               cudaStream_t);
