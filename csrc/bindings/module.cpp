// pylm._core: the CPU extension. Each area registers its functions from its own file.
#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "pylm native CPU core";
    pylm::bind_core(m);
    pylm::bind_quant(m);
    pylm::bind_qmatmul(m);
    pylm::bind_matmul(m);
    pylm::bind_nn(m);
    pylm::bind_attention(m);
    pylm::bind_bench(m);
    pylm::bind_tokenizer(m);
    pylm::bind_engine(m);
    pylm::bind_train(m);
}
