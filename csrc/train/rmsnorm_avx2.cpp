// AVX2 training RMSNorm: the shared SIMD body (rmsnorm_simd.inc) over simd_avx2.h.
#include "train/rmsnorm.h"
#include "train/simd_avx2.h"

namespace pylm {
namespace avx2 {
namespace train {
#include "train/rmsnorm_simd.inc"
}  // namespace train
}  // namespace avx2
}  // namespace pylm
