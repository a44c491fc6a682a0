// AVX512 training pointwise ops: the shared SIMD body (pointwise_simd.inc) over simd_avx512.h.
#include "train/pointwise.h"
#include "train/simd_avx512.h"

namespace pylm {
namespace avx512 {
namespace train {
#include "train/pointwise_simd.inc"
}  // namespace train
}  // namespace avx512
}  // namespace pylm
