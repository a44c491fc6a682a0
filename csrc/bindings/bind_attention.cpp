#include "bindings/bindings.h"
#include "bindings/common.h"

namespace pylm {

void bind_attention(py::module_& m) { (void)m; }

}  // namespace pylm
