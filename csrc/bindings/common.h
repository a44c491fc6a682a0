// Helpers shared by the binding files: argument checks that raise ValueError with messages
// naming the value, and an ISA/threads scope for per-call overrides.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace pylm {

inline std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

// A C-contiguous float32 array (ValueError otherwise). `what` names the argument in errors.
inline py::array_t<float, py::array::c_style> as_f32(const py::handle& obj, const char* what) {
    py::array arr = py::array::ensure(obj);
    if (!arr) throw std::invalid_argument(std::string(what) + ": expected a numpy array");
    if (!arr.dtype().is(py::dtype::of<float>()))
        throw std::invalid_argument(std::string(what) + ": expected dtype float32, got " +
                                    std::string(py::str(arr.dtype())));
    if (!(arr.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(what) + ": array must be C-contiguous");
    return py::array_t<float, py::array::c_style>(arr);
}

inline py::array_t<uint8_t, py::array::c_style> as_u8(const py::handle& obj, const char* what) {
    py::array arr = py::array::ensure(obj);
    if (!arr) throw std::invalid_argument(std::string(what) + ": expected a numpy array");
    if (arr.dtype().itemsize() != 1 && !arr.dtype().is(py::dtype::of<uint8_t>()))
        throw std::invalid_argument(std::string(what) + ": expected dtype uint8, got " +
                                    std::string(py::str(arr.dtype())));
    if (!(arr.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(what) + ": array must be C-contiguous");
    return py::array_t<uint8_t, py::array::c_style>(arr);
}

inline void check_ndim(const py::array& a, int ndim, const char* what) {
    if (a.ndim() != ndim)
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(ndim) +
                                    "-D array, got shape " + shape_str(a));
}

// Resolves a per-call `threads` argument (0 or None -> the global default).
int resolve_threads(int threads);

}  // namespace pylm
