#include "bindings/bindings.h"
#include "bindings/common.h"

namespace pylm {

void bind_tokenizer(py::module_& m) { (void)m; }

}  // namespace pylm
