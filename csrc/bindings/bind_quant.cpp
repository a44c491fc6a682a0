// Python bindings for GGUF formats: qtype_info / qtypes, dequantize, quantize.
// All argument checks live here (ValueError naming the value); kernels assume their contract.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "bindings/qtype_arg.h"
#include "quant/blocks.h"
#include "quant/dequant.h"
#include "quant/quantize.h"

namespace pylm {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

py::dict info_dict(const QTypeInfo& t) {
    py::dict d;
    d["name"] = t.name;
    d["id"] = static_cast<int>(t.type);
    d["block_size"] = t.block_size;
    d["type_size"] = t.type_size;
    return d;
}

// raw: uint8[...] with prod(shape) / block_size * type_size bytes -> float32[shape].
py::array_t<float> py_dequantize(const py::object& raw_obj, const py::object& qtype,
                                 const std::vector<int64_t>& shape, int threads) {
    const QTypeInfo& t = parse_qtype(qtype, "dequantize");
    auto raw = as_u8(raw_obj, "dequantize: raw");
    if (shape.empty())
        throw std::invalid_argument("dequantize: shape must have at least one dimension");
    int64_t n = 1;
    for (int64_t s : shape) {
        if (s < 0)
            throw std::invalid_argument("dequantize: negative dimension in shape " +
                                        shape_text(shape));
        n *= s;
    }
    if (shape.back() % t.block_size != 0)
        throw std::invalid_argument("dequantize: row length " + std::to_string(shape.back()) +
                                    " (shape[-1] of " + shape_text(shape) +
                                    ") is not a multiple of the " + t.name + " block size " +
                                    std::to_string(t.block_size));
    const int64_t need = n / t.block_size * t.type_size;
    if ((int64_t)raw.nbytes() != need)
        throw std::invalid_argument("dequantize: raw has " + std::to_string(raw.nbytes()) +
                                    " bytes but " + std::string(t.name) + " shape " +
                                    shape_text(shape) + " needs " + std::to_string(need));
    if (!can_dequantize(t.type))
        throw std::invalid_argument(std::string("dequantize: ") + t.name + " is not supported");
    const int nthreads = resolve_threads(threads);
    py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    const uint8_t* src = raw.data();
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        dequantize(t.type, src, dst, n, nthreads);
    }
    return out;
}

// x: float32[..., K] (K % block_size == 0) -> uint8[..., K / block_size * type_size].
py::array_t<uint8_t> py_quantize(const py::object& x_obj, const py::object& qtype, int threads) {
    const QTypeInfo& t = parse_qtype(qtype, "quantize");
    auto x = as_f32(x_obj, "quantize: x");
    if (x.ndim() < 1)
        throw std::invalid_argument("quantize: x must have at least one dimension, got a scalar");
    const int64_t k = x.shape(x.ndim() - 1);
    if (k % t.block_size != 0)
        throw std::invalid_argument("quantize: row length " + std::to_string(k) + " (x.shape " +
                                    shape_str(x) + ") is not a multiple of the " + t.name +
                                    " block size " + std::to_string(t.block_size));
    if (!can_quantize(t.type))
        throw std::invalid_argument(std::string("quantize: ") + t.name + " is not supported");
    const int nthreads = resolve_threads(threads);
    std::vector<py::ssize_t> oshape(x.shape(), x.shape() + x.ndim());
    oshape.back() = k / t.block_size * t.type_size;
    const int64_t nrows = k == 0 ? 0 : (int64_t)x.size() / k;
    py::array_t<uint8_t> out(oshape);
    const float* src = x.data();
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        if (nrows > 0 && k > 0) quantize(t.type, src, dst, nrows, k, nthreads);
    }
    return out;
}

}  // namespace

void bind_quant(py::module_& m) {
    m.def(
        "qtype_info", [](const py::object& q) { return info_dict(parse_qtype(q, "qtype_info")); },
        py::arg("qtype"), "{name, id, block_size, type_size} of a GGUF tensor type.");
    m.def(
        "qtypes",
        [] {
            std::vector<std::string> out;
            for (int id = 0; id < 64; ++id)
                if (const QTypeInfo* t = qtype_info(id))
                    if (can_dequantize(t->type)) out.push_back(t->name);
            return out;
        },
        "Names of the tensor types dequantize() accepts, by ggml id.");
    m.def(
        "quantize_types",
        [] {
            std::vector<std::string> out;
            for (int id = 0; id < 64; ++id)
                if (const QTypeInfo* t = qtype_info(id))
                    if (can_quantize(t->type)) out.push_back(t->name);
            return out;
        },
        "Names of the tensor types quantize() produces, by ggml id.");
    m.def("dequantize", &py_dequantize, py::arg("raw"), py::arg("qtype"), py::arg("shape"),
          py::arg("threads") = 0, "GGUF tensor bytes -> float32 array of `shape`.");
    m.def("quantize", &py_quantize, py::arg("x"), py::arg("qtype"), py::arg("threads") = 0,
          "float32[..., K] -> uint8[..., row_bytes] in the GGUF block layout of `qtype`.");
}

}  // namespace pylm
