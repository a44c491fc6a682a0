// AVX512 training RMSNorm: the shared SIMD body (rmsnorm_simd.inc) over simd_avx512.h.
#include "train/rmsnorm.h"
#include "train/simd_avx512.h"

namespace pylm {
namespace avx512 {
namespace train {
#include "train/rmsnorm_simd.inc"
}  // namespace train
}  // namespace avx512
}  // namespace pylm
