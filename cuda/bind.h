// One binding function per area of the CUDA extension; bind_cuda.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace pylm {
namespace cuda {

void bind_device(pybind11::module_& m);       // device info, pylm.cuda.Array, streams
void bind_elementwise(pybind11::module_& m);  // rmsnorm, rope, softmax, swiglu/geglu, embedding
void bind_gemm(pybind11::module_& m);         // gemm, qmatmul
void bind_attention(pybind11::module_& m);    // flash attention, paged decode attention
void bind_engine(pybind11::module_& m);       // the GPU inference engine
void bind_train(pybind11::module_& m);        // training forward/backward ops, AdamW

}  // namespace cuda
}  // namespace pylm
