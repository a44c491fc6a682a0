// AVX2 optimizer updates: the shared SIMD body (optim_simd.inc) over simd_avx2.h.
#include "train/optim.h"
#include "train/simd_avx2.h"

namespace pylm {
namespace avx2 {
namespace train {
#include "train/optim_simd.inc"
}  // namespace train
}  // namespace avx2
}  // namespace pylm
