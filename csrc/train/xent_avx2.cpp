// AVX2 fused softmax + cross-entropy: the shared SIMD body (xent_simd.inc) over simd_avx2.h.
#include <cmath>

#include "train/simd_avx2.h"
#include "train/xent.h"

namespace pylm {
namespace avx2 {
namespace train {
#include "train/xent_simd.inc"
}  // namespace train
}  // namespace avx2
}  // namespace pylm
