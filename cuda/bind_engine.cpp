// Python bindings of the CUDA engine area (see bind.h).
#include "bind.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

void bind_engine(py::module_& m) { (void)m; }

}  // namespace cuda
}  // namespace pylm
