// Parsing of the engine's constructor arguments (engine_args.h).
#include "bindings/engine_args.h"

#include <pybind11/numpy.h>

#include <stdexcept>
#include <string>

#include "quant/blocks.h"

namespace py = pybind11;

namespace pylm {

namespace {

WeightRef weight_from(const py::handle& obj, py::list* keep, const std::string& what) {
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
    if (keep) keep->append(arr);
    return w;
}

WeightRef opt(const py::dict& d, const char* key, py::list* keep, const std::string& prefix) {
    return d.contains(key) ? weight_from(d[key], keep, prefix + key) : WeightRef{};
}

}  // namespace

ModelConfig engine_config_from(const py::dict& c) {
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
    if (cfg.n_layer <= 0 || cfg.n_embd <= 0 || cfg.n_vocab <= 0 || cfg.n_ff <= 0)
        throw std::invalid_argument("config: n_layer, n_embd, n_ff and n_vocab must be positive");
    return cfg;
}

ModelWeights engine_weights_from(const py::dict& w, py::list* keep) {
    ModelWeights mw;
    mw.tok_embd = weight_from(w["tok_embd"], keep, "tok_embd");
    mw.output_norm = weight_from(w["output_norm"], keep, "output_norm");
    mw.output = weight_from(w["output"], keep, "output");
    for (auto item : w["layers"].cast<py::list>()) {
        py::dict d = item.cast<py::dict>();
        const std::string p = "layer." + std::to_string(mw.layers.size()) + ".";
        LayerWeights L;
        L.attn_norm = opt(d, "attn_norm", keep, p);
        L.wq = opt(d, "wq", keep, p);
        L.wk = opt(d, "wk", keep, p);
        L.wv = opt(d, "wv", keep, p);
        L.wo = opt(d, "wo", keep, p);
        L.bq = opt(d, "bq", keep, p);
        L.bk = opt(d, "bk", keep, p);
        L.bv = opt(d, "bv", keep, p);
        L.bo = opt(d, "bo", keep, p);
        L.q_norm = opt(d, "q_norm", keep, p);
        L.k_norm = opt(d, "k_norm", keep, p);
        L.post_attn_norm = opt(d, "post_attn_norm", keep, p);
        L.ffn_norm = opt(d, "ffn_norm", keep, p);
        L.w_gate = opt(d, "w_gate", keep, p);
        L.w_up = opt(d, "w_up", keep, p);
        L.w_down = opt(d, "w_down", keep, p);
        L.post_ffn_norm = opt(d, "post_ffn_norm", keep, p);
        L.sliding = d["sliding"].cast<bool>();
        L.rope_base = d["rope_base"].cast<float>();
        for (auto* req : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.w_gate,
                          &L.w_up, &L.w_down})
            if (!*req) throw std::invalid_argument(p + ": a required weight is missing");
        mw.layers.push_back(L);
    }
    if (!mw.tok_embd || !mw.output_norm || !mw.output)
        throw std::invalid_argument("weights: tok_embd, output_norm and output are required");
    return mw;
}

}  // namespace pylm
