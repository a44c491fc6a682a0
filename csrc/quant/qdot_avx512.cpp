#include "quant/qdot.h"
namespace pylm { namespace avx512 {
const QDotKernels* qdot_kernels(QType t) { return avx2::qdot_kernels(t); }
const QDotKernels* qdot_kernels_k(QType t) { return avx2::qdot_kernels_k(t); }
}}
