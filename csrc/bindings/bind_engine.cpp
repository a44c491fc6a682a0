// pylm._core.Engine: the native model. Python (pylm/model.py) reads the GGUF file, maps the
// architecture onto a config dict and a weight table of numpy uint8 views into the mmap; the
// Engine keeps those views alive and copies only what it repacks (repack=True, Engine ctor).
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "bindings/engine_args.h"
#include "engine/model.h"

namespace pylm {

namespace {

struct PyEngine {
    std::unique_ptr<Engine> engine;
    py::list keepalive;  // the numpy views whose memory the weights point into
};

}  // namespace

void bind_engine(py::module_& m) {
    py::register_exception<KVPoolExhausted>(m, "KVPoolExhausted", PyExc_RuntimeError);

    py::class_<PyEngine>(m, "Engine")
        .def(py::init([](const py::dict& c, const py::dict& w, int64_t kv_blocks, int block_size, int threads,
                         bool repack) {
                 const ModelConfig cfg = engine_config_from(c);
                 auto pe = std::make_unique<PyEngine>();
                 ModelWeights mw = engine_weights_from(w, &pe->keepalive);
                 if (threads <= 0) threads = resolve_threads(0);
                 py::gil_scoped_release nogil;  // repacking reads the whole model
                 pe->engine = std::make_unique<Engine>(cfg, std::move(mw), kv_blocks, block_size, threads, repack);
                 return pe;
             }),
             py::arg("config"), py::arg("weights"), py::arg("kv_blocks"), py::arg("block_size") = 16,
             py::arg("threads") = 0, py::arg("repack") = true)
        .def("forward",
             [](PyEngine& e, const std::vector<int>& seqs, const std::vector<std::vector<int32_t>>& toks,
                bool all_logits) {
                 const int64_t R = e.engine->logits_rows(toks, all_logits);
                 py::array_t<float> out({R, static_cast<int64_t>(e.engine->config().n_vocab)});
                 float* p = out.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     e.engine->forward(seqs, toks, all_logits, p);
                 }
                 return out;
             },
             py::arg("seq_ids"), py::arg("tokens"), py::arg("all_logits") = false,
             "Append tokens[i] to sequence seq_ids[i] and return logits [rows, n_vocab].")
        .def("seq_new", [](PyEngine& e) { return e.engine->kv().seq_new(); })
        .def("seq_fork", [](PyEngine& e, int s) { return e.engine->kv().seq_fork(s); })
        .def("seq_truncate", [](PyEngine& e, int s, int64_t n) { e.engine->kv().seq_truncate(s, n); })
        .def("seq_free", [](PyEngine& e, int s) { e.engine->kv().seq_free(s); })
        .def("seq_len", [](PyEngine& e, int s) { return e.engine->kv().seq_len(s); })
        .def("seq_ids", [](PyEngine& e) { return e.engine->kv().seq_ids(); })
        .def("clear", [](PyEngine& e) { e.engine->kv().clear(); })
        .def_property_readonly("repacked_bytes", [](PyEngine& e) { return e.engine->repacked_bytes(); })
        .def_property_readonly("free_blocks", [](PyEngine& e) { return e.engine->kv().free_blocks(); })
        .def_property_readonly("n_blocks", [](PyEngine& e) { return e.engine->kv().n_blocks(); })
        .def_property_readonly("block_size", [](PyEngine& e) { return e.engine->kv().block_size(); })
        .def_property("head_rows", [](PyEngine& e) { return e.engine->head_rows(); },
                      [](PyEngine& e, int64_t n) { e.engine->set_head_rows(n); },
                      "Logits only for token ids < head_rows (the rest -inf): a vocabulary-prefix "
                      "output head for drafting.")
        .def_property("head_screen", [](PyEngine& e) { return e.engine->head_screen(); },
                      [](PyEngine& e, int k) {
                          py::gil_scoped_release nogil;
                          e.engine->set_head_screen(k);
                      },
                      "k > 0: logits from a Q4_0 copy of the output head, the top k recomputed "
                      "with the head itself (greedy drafting); 0: off.")
        .def_property("threads", [](PyEngine& e) { return e.engine->threads(); },
                      [](PyEngine& e, int n) {
                          if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
                          e.engine->set_threads(n);
                      });
}

}  // namespace pylm
