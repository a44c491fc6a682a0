// AVX512 optimizer updates: the shared SIMD body (optim_simd.inc) over simd_avx512.h.
#include "train/optim.h"
#include "train/simd_avx512.h"

namespace pylm {
namespace avx512 {
namespace train {
#include "train/optim_simd.inc"
}  // namespace train
}  // namespace avx512
}  // namespace pylm
