// See qtype_arg.h.
#include "bindings/qtype_arg.h"

#include <stdexcept>
#include <string>

namespace py = pybind11;

namespace pylm {

namespace {

std::string known_names() {
    std::string s;
    for (int id = 0; id < 64; ++id)
        if (const QTypeInfo* t = qtype_info(id))
            s += (s.empty() ? "" : ", ") + std::string(t->name);
    return s;
}

}  // namespace

const QTypeInfo& parse_qtype(const py::handle& q, const char* fn) {
    const QTypeInfo* info = nullptr;
    std::string shown;
    if (py::isinstance<py::str>(q)) {
        shown = q.cast<std::string>();
        info = qtype_info_by_name(shown.c_str());
    } else if (py::isinstance<py::int_>(q)) {
        const long long id = q.cast<long long>();
        shown = std::to_string(id);
        if (id >= 0 && id < (1 << 16)) info = qtype_info((int)id);
    } else {
        throw std::invalid_argument(std::string(fn) +
                                    ": qtype must be a name or a ggml type id, got " +
                                    std::string(py::str(py::type::of(q))));
    }
    if (!info)
        throw std::invalid_argument(std::string(fn) + ": unknown qtype '" + shown +
                                    "' (known: " + known_names() + ")");
    return *info;
}

}  // namespace pylm
