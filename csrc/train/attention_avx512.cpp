// AVX512 training attention: the shared SIMD body (attention_simd.inc) over simd_avx512.h.
#include <cmath>

#include "train/attention.h"
#include "train/simd_avx512.h"

namespace pylm {
namespace avx512 {
namespace train {
#include "train/attention_simd.inc"
}  // namespace train
}  // namespace avx512
}  // namespace pylm
