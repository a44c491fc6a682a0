// AVX2 training attention: the shared SIMD body (attention_simd.inc) over simd_avx2.h.
#include <cmath>

#include "train/attention.h"
#include "train/simd_avx2.h"

namespace pylm {
namespace avx2 {
namespace train {
#include "train/attention_simd.inc"
}  // namespace train
}  // namespace avx2
}  // namespace pylm
