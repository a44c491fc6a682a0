// AVX2 training pointwise ops: the shared SIMD body (pointwise_simd.inc) over simd_avx2.h.
#include "train/pointwise.h"
#include "train/simd_avx2.h"

namespace pylm {
namespace avx2 {
namespace train {
#include "train/pointwise_simd.inc"
}  // namespace train
}  // namespace avx2
}  // namespace pylm
