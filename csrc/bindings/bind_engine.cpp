// pylm._core.Engine: the native model. Python (pylm/model.py) reads the GGUF file, maps the
// architecture onto a config dict and a weight table of numpy uint8 views into the mmap; the
// Engine keeps those views alive and never copies the weights.
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "engine/model.h"

namespace pylm {

namespace {

struct PyEngine {
    std::unique_ptr<Engine> engine;
    py::list keepalive;  // the numpy views whose memory the weights point into
};

WeightRef weight_from(const py::handle& obj, py::list& keep, const std::string& what) {
    WeightRef w;
    if (obj.is_none()) return w;
    auto t = obj.cast<py::tuple>();  // (uint8 array, ggml type id, ne0, ne1)
    if (t.size() != 4) throw std::invalid_argument(what + ": expected (data, type, ne0, ne1)");
    py::array arr = py::array::ensure(t[0]);
    if (!arr || !(arr.flags() & py::array::c_style))
        throw std::invalid_argument(what + ": data must be a C-contiguous numpy array");
    const int type = t[1].cast<int>();
    const QTypeInfo* info = qtype_info(type);
    if (!info || type == static_cast<int>(QType::Q8_K) || type == static_cast<int>(QType::Q8_1))
        throw std::invalid_argument(what + ": unsupported tensor type id " + std::to_string(type));
    w.type = info->type;
    w.ne0 = t[2].cast<int64_t>();
    w.ne1 = t[3].cast<int64_t>();
    if (w.ne0 <= 0 || w.ne1 <= 0 || w.ne0 % info->block_size != 0)
        throw std::invalid_argument(what + ": bad shape ne0=" + std::to_string(w.ne0) + " ne1=" +
                                    std::to_string(w.ne1) + " for " + info->name);
    const int64_t need = w.ne0 / info->block_size * info->type_size * w.ne1;
    if (arr.nbytes() != need)
        throw std::invalid_argument(what + ": " + std::to_string(arr.nbytes()) + " bytes, expected " +
                                    std::to_string(need));
    w.data = arr.data();
    keep.append(arr);
    return w;
}

WeightRef opt(const py::dict& d, const char* key, py::list& keep, const std::string& prefix) {
    return d.contains(key) ? weight_from(d[key], keep, prefix + key) : WeightRef{};
}

}  // namespace

void bind_engine(py::module_& m) {
    py::register_exception<KVPoolExhausted>(m, "KVPoolExhausted", PyExc_RuntimeError);

    py::class_<PyEngine>(m, "Engine")
        .def(py::init([](const py::dict& c, const py::dict& w, int64_t kv_blocks, int block_size, int threads) {
                 ModelConfig cfg;
                 cfg.n_embd = c["n_embd"].cast<int>();
                 cfg.n_layer = c["n_layer"].cast<int>();
                 cfg.n_head = c["n_head"].cast<int>();
                 cfg.n_head_kv = c["n_head_kv"].cast<int>();
                 cfg.head_dim = c["head_dim"].cast<int>();
                 cfg.n_ff = c["n_ff"].cast<int>();
                 cfg.n_vocab = c["n_vocab"].cast<int>();
                 cfg.n_ctx = c["n_ctx"].cast<int64_t>();
                 cfg.eps = c["eps"].cast<float>();
                 cfg.rope_mode = c["rope_mode"].cast<int>();
                 cfg.rope_dims = c["rope_dims"].cast<int>();
                 cfg.rope_freq_scale = c["rope_freq_scale"].cast<float>();
                 cfg.window = c["window"].cast<int64_t>();
                 cfg.embed_scale = c["embed_scale"].cast<float>();
                 cfg.attn_scale = c["attn_scale"].cast<float>();
                 cfg.attn_softcap = c["attn_softcap"].cast<float>();
                 cfg.final_softcap = c["final_softcap"].cast<float>();
                 cfg.act = static_cast<Activation>(c["act"].cast<int>());
                 auto pe = std::make_unique<PyEngine>();
                 ModelWeights mw;
                 mw.tok_embd = weight_from(w["tok_embd"], pe->keepalive, "tok_embd");
                 mw.output_norm = weight_from(w["output_norm"], pe->keepalive, "output_norm");
                 mw.output = weight_from(w["output"], pe->keepalive, "output");
                 for (auto item : w["layers"].cast<py::list>()) {
                     py::dict d = item.cast<py::dict>();
                     const std::string p = "layer." + std::to_string(mw.layers.size()) + ".";
                     LayerWeights L;
                     L.attn_norm = opt(d, "attn_norm", pe->keepalive, p);
                     L.wq = opt(d, "wq", pe->keepalive, p);
                     L.wk = opt(d, "wk", pe->keepalive, p);
                     L.wv = opt(d, "wv", pe->keepalive, p);
                     L.wo = opt(d, "wo", pe->keepalive, p);
                     L.bq = opt(d, "bq", pe->keepalive, p);
                     L.bk = opt(d, "bk", pe->keepalive, p);
                     L.bv = opt(d, "bv", pe->keepalive, p);
                     L.bo = opt(d, "bo", pe->keepalive, p);
                     L.q_norm = opt(d, "q_norm", pe->keepalive, p);
                     L.k_norm = opt(d, "k_norm", pe->keepalive, p);
                     L.post_attn_norm = opt(d, "post_attn_norm", pe->keepalive, p);
                     L.ffn_norm = opt(d, "ffn_norm", pe->keepalive, p);
                     L.w_gate = opt(d, "w_gate", pe->keepalive, p);
                     L.w_up = opt(d, "w_up", pe->keepalive, p);
                     L.w_down = opt(d, "w_down", pe->keepalive, p);
                     L.post_ffn_norm = opt(d, "post_ffn_norm", pe->keepalive, p);
                     L.sliding = d["sliding"].cast<bool>();
                     L.rope_base = d["rope_base"].cast<float>();
                     for (auto* req : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
                         if (!*req) throw std::invalid_argument(p + ": a required weight is missing");
                     mw.layers.push_back(L);
                 }
                 if (threads <= 0) threads = resolve_threads(0);
                 pe->engine = std::make_unique<Engine>(cfg, std::move(mw), kv_blocks, block_size, threads);
                 return pe;
             }),
             py::arg("config"), py::arg("weights"), py::arg("kv_blocks"), py::arg("block_size") = 16,
             py::arg("threads") = 0)
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
        .def_property_readonly("free_blocks", [](PyEngine& e) { return e.engine->kv().free_blocks(); })
        .def_property_readonly("n_blocks", [](PyEngine& e) { return e.engine->kv().n_blocks(); })
        .def_property_readonly("block_size", [](PyEngine& e) { return e.engine->kv().block_size(); })
        .def_property("threads", [](PyEngine& e) { return e.engine->threads(); },
                      [](PyEngine& e, int n) {
                          if (n < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
                          e.engine->set_threads(n);
                      });
}

}  // namespace pylm
