// AVX512 fused softmax + cross-entropy: the shared SIMD body (xent_simd.inc) over simd_avx512.h.
#include <cmath>

#include "train/simd_avx512.h"
#include "train/xent.h"

namespace pylm {
namespace avx512 {
namespace train {
#include "train/xent_simd.inc"
}  // namespace train
}  // namespace avx512
}  // namespace pylm
