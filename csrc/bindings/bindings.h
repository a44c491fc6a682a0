// One bind_<area>() per binding file; module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace pylm {
void bind_core(pybind11::module_& m);       // bind_core.cpp: ISA, threads, backend info
void bind_quant(pybind11::module_& m);      // bind_quant.cpp: dequantize / quantize
void bind_qmatmul(pybind11::module_& m);    // bind_qmatmul.cpp: quantized matvec / matmul
void bind_matmul(pybind11::module_& m);     // bind_matmul.cpp: f32 matmul
void bind_nn(pybind11::module_& m);         // bind_nn.cpp: rmsnorm, rope, softmax, activations
void bind_attention(pybind11::module_& m);  // bind_attention.cpp: fused causal attention
void bind_bench(pybind11::module_& m);      // bind_bench.cpp: bandwidth / FMA-peak probes
void bind_tokenizer(pybind11::module_& m);  // bind_tokenizer.cpp: native BPE encoder
void bind_engine(pybind11::module_& m);     // bind_engine.cpp: the inference engine
void bind_train(pybind11::module_& m);      // bind_train.cpp: training ops (forward + backward)
}  // namespace pylm
