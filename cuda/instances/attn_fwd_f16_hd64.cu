// Explicit instantiation: flash attention forward, f16, head dim 64 (one per file: compile time).
#include "attention_flash.cuh"

template void pylm::cuda::attn::launch_flash_fwd<__half, 64>(const pylm::cuda::FlashAttnParams&,
                                                               cudaStream_t);
