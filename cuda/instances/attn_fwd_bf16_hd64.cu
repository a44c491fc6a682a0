// Explicit instantiation: flash attention forward, bf16, head dim 64 (one per file: compile time).
#include "attention_flash.cuh"

template void pylm::cuda::attn::launch_flash_fwd<__nv_bfloat16, 64>(const pylm::cuda::FlashAttnParams&,
                                                               cudaStream_t);
