#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "core/isa.h"
#include "core/thread_pool.h"

#ifndef PYLM_VERSION
#define PYLM_VERSION "0.0.0"
#endif

namespace pylm {

int resolve_threads(int threads) {
    if (threads < 0) throw std::invalid_argument("threads must be >= 0, got " + std::to_string(threads));
    return threads == 0 ? default_threads() : threads;
}

void bind_core(py::module_& m) {
    m.attr("__version__") = PYLM_VERSION;
    m.def("active_isa", [] { return std::string(isa_name(active_isa())); },
          "The ISA the CPU kernels use now (scalar, avx2 or avx512).");
    m.def("set_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
          py::arg("name"), "Force the ISA for this process; RuntimeError if this CPU cannot run it.");
    m.def("available_isas", [] {
        std::vector<std::string> out;
        for (Isa i : available_isas()) out.push_back(isa_name(i));
        return out;
    });
    m.def("cpu_supports", [](const std::string& name) { return cpu_supports(parse_isa(name)); });
    m.def("get_threads", &default_threads);
    m.def("set_threads", &set_default_threads, py::arg("n"));
    m.def("hardware_threads", &hardware_threads);
}

}  // namespace pylm
