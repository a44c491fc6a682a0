// Python bindings of the CUDA train area (see bind.h).
#include "bind.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

void bind_train(py::module_& m) { (void)m; }

}  // namespace cuda
}  // namespace pylm
