// Python bindings of the native tokenizer (csrc/tokenizer): pylm._core.Tokenizer, the string
// tables it is built from, and the GGUF string-array reader. Validation happens here; the
// GIL is released around encoding and decoding.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "bindings/bindings.h"
#include "bindings/common.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/trainer.h"
#include "tokenizer/unicode.h"

namespace pylm {

namespace {

using tok::StringTable;
using tok::Tokenizer;

// Bytes of a str (UTF-8, strict: lone surrogates raise UnicodeEncodeError) or bytes-like.
// The pointer stays valid while obj is alive.
std::string_view text_view(const py::handle& obj, const char* what) {
    if (PyUnicode_Check(obj.ptr())) {
        Py_ssize_t n = 0;
        const char* p = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
        if (!p) throw py::error_already_set();
        return std::string_view(p, static_cast<size_t>(n));
    }
    if (PyBytes_Check(obj.ptr()))
        return std::string_view(PyBytes_AS_STRING(obj.ptr()),
                                static_cast<size_t>(PyBytes_GET_SIZE(obj.ptr())));
    throw std::invalid_argument(std::string(what) + ": expected str or bytes, got " +
                                std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
}

StringTable table_from_list(const py::iterable& items) {
    StringTable t;
    for (const py::handle& h : items) t.push(text_view(h, "string table item"));
    return t;
}

py::list ids_to_list(const std::vector<int32_t>& ids) {
    py::list out(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        PyObject* v = PyLong_FromLong(ids[i]);
        if (!v) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), v);
    }
    return out;
}

std::vector<int32_t> ids_from_obj(const py::handle& obj) {
    std::vector<int32_t> ids;
    if (py::isinstance<py::array>(obj)) {
        py::array arr = py::reinterpret_borrow<py::array>(obj);
        if (arr.ndim() != 1)
            throw std::invalid_argument("ids: expected a 1-D array, got shape " + shape_str(arr));
        if (arr.dtype().kind() != 'i' && arr.dtype().kind() != 'u')
            throw std::invalid_argument("ids: expected an integer array, got dtype " +
                                        std::string(py::str(arr.dtype())));
        py::array_t<int64_t, py::array::forcecast> a(arr);
        ids.reserve(a.size());
        for (py::ssize_t i = 0; i < a.size(); ++i) {
            const int64_t v = a.at(i);
            if (v < INT32_MIN || v > INT32_MAX)
                throw std::out_of_range("token id " + std::to_string(v) + " is out of range");
            ids.push_back(static_cast<int32_t>(v));
        }
        return ids;
    }
    for (const py::handle& h : py::iterable(py::reinterpret_borrow<py::object>(obj))) {
        const long long v = py::cast<long long>(h);
        if (v < INT32_MIN || v > INT32_MAX)
            throw std::out_of_range("token id " + std::to_string(v) + " is out of range");
        ids.push_back(static_cast<int32_t>(v));
    }
    return ids;
}

int32_t check_id(const Tokenizer& t, int64_t id) {
    if (id < 0 || id >= t.vocab().size())
        throw std::out_of_range("token id " + std::to_string(id) + " is out of range [0, " +
                                std::to_string(t.vocab().size()) + ")");
    return static_cast<int32_t>(id);
}

py::bytes as_bytes(std::string_view s) {
    return py::bytes(s.data(), s.size());
}

std::unique_ptr<Tokenizer> make_tokenizer(const StringTable& tokens, py::object types,
                                          py::object scores, const StringTable* merges,
                                          const std::string& model, const std::string& pre,
                                          bool ignore_merges, bool add_bos, bool add_eos,
                                          bool add_space_prefix, const py::dict& ids) {
    tok::TokenizerOptions opt;
    if (model == "gpt2") {
        opt.kind = tok::ModelKind::Bpe;
        if (!tok::parse_pre_type(pre, opt.pre))
            throw std::invalid_argument(
                "tokenizer: unknown pre-tokenizer '" + pre +
                "' (tokenizer.ggml.pre); implemented: " + tok::pre_type_names());
        if (!merges)
            throw std::invalid_argument(
                "tokenizer: model 'gpt2' needs merges (tokenizer.ggml.merges)");
    } else if (model == "llama") {
        opt.kind = tok::ModelKind::Spm;
    } else {
        throw std::invalid_argument("tokenizer: unsupported tokenizer model '" + model +
                                    "' (tokenizer.ggml.model); implemented: gpt2, llama");
    }
    opt.ignore_merges = ignore_merges;
    opt.add_bos = add_bos;
    opt.add_eos = add_eos;
    opt.add_space_prefix = add_space_prefix;
    auto get = [&](const char* key, int32_t& dst) {
        if (ids.contains(key) && !ids[key].is_none()) dst = py::cast<int32_t>(ids[key]);
    };
    get("bos", opt.ids.bos);
    get("eos", opt.ids.eos);
    get("eot", opt.ids.eot);
    get("eom", opt.ids.eom);
    get("unk", opt.ids.unk);
    get("sep", opt.ids.sep);
    get("pad", opt.ids.pad);
    get("fim_pre", opt.ids.fim_pre);
    get("fim_suf", opt.ids.fim_suf);
    get("fim_mid", opt.ids.fim_mid);
    get("fim_pad", opt.ids.fim_pad);
    get("fim_rep", opt.ids.fim_rep);
    get("fim_sep", opt.ids.fim_sep);
    std::vector<int32_t> tv;
    std::vector<float> sv;
    if (!types.is_none()) {
        auto a = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(types);
        if (!a) throw std::invalid_argument("token_types: expected an int32 array");
        tv.assign(a.data(), a.data() + a.size());
    }
    if (!scores.is_none()) {
        auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(scores);
        if (!a) throw std::invalid_argument("scores: expected a float32 array");
        sv.assign(a.data(), a.data() + a.size());
    }
    StringTable empty;
    py::gil_scoped_release nogil;
    return std::make_unique<Tokenizer>(tokens, tv, sv, merges ? *merges : empty, opt);
}

}  // namespace

void bind_tokenizer(py::module_& m) {
    py::class_<StringTable>(m, "TokStringTable", "A list of byte strings stored back to back.")
        .def(py::init([](const py::iterable& items) { return table_from_list(items); }),
             py::arg("items"))
        .def("__len__", &StringTable::size)
        .def("__getitem__",
             [](const StringTable& t, int64_t i) {
                 const int64_t n = static_cast<int64_t>(t.size());
                 if (i < 0) i += n;
                 if (i < 0 || i >= n)
                     throw std::out_of_range("string table index " + std::to_string(i) +
                                             " out of range");
                 return as_bytes(t.get(static_cast<size_t>(i)));
             })
        .def("tolist", [](const StringTable& t) {
            py::list out;
            for (size_t i = 0; i < t.size(); ++i) out.append(as_bytes(t.get(i)));
            return out;
        });

    m.def(
        "tok_read_gguf_string_array",
        [](py::buffer buf, uint64_t offset, uint64_t count) {
            py::buffer_info info = buf.request();
            const uint8_t* base = static_cast<const uint8_t*>(info.ptr);
            const uint64_t size = static_cast<uint64_t>(info.size * info.itemsize);
            StringTable t;
            {
                py::gil_scoped_release nogil;
                t.off.reserve(count + 1);
                uint64_t off = offset;
                for (uint64_t i = 0; i < count; ++i) {
                    if (off + 8 > size)
                        throw std::invalid_argument("GGUF string array: string " +
                                                    std::to_string(i) +
                                                    " starts past the end of the file");
                    uint64_t len;
                    std::memcpy(&len, base + off, 8);
                    off += 8;
                    if (len > size - off)
                        throw std::invalid_argument(
                            "GGUF string array: string " + std::to_string(i) + " of length " +
                            std::to_string(len) + " runs past the end of the file");
                    t.push(std::string_view(reinterpret_cast<const char*>(base + off), len));
                    off += len;
                }
                offset = off;
            }
            return py::make_tuple(std::move(t), offset);
        },
        py::arg("buffer"), py::arg("offset"), py::arg("count"),
        "Reads `count` GGUF strings (u64 length + bytes) at `offset`; returns (TokStringTable, end "
        "offset).");

    py::class_<Tokenizer>(m, "Tokenizer", "Native GGUF tokenizer (see pylm.tokenizer.Tokenizer).")
        .def(py::init([](const StringTable& tokens, py::object types, py::object scores,
                         const StringTable* merges, const std::string& model,
                         const std::string& pre, bool ignore_merges, bool add_bos, bool add_eos,
                         bool add_space_prefix, const py::dict& ids) {
                 return make_tokenizer(tokens, types, scores, merges, model, pre, ignore_merges,
                                       add_bos, add_eos, add_space_prefix, ids);
             }),
             py::arg("tokens"), py::arg("types"), py::arg("scores"), py::arg("merges"),
             py::arg("model"), py::arg("pre"), py::arg("ignore_merges"), py::arg("add_bos"),
             py::arg("add_eos"), py::arg("add_space_prefix"), py::arg("ids"))
        .def(
            "encode",
            [](const Tokenizer& t, const py::object& text, bool add_special, bool parse_special) {
                const std::string_view s = text_view(text, "text");
                std::vector<int32_t> out;
                {
                    py::gil_scoped_release nogil;
                    t.encode(s.data(), s.size(), add_special, parse_special, out);
                }
                return ids_to_list(out);
            },
            py::arg("text"), py::arg("add_special") = false, py::arg("parse_special") = false)
        .def(
            "encode_batch",
            [](const Tokenizer& t, const py::iterable& texts, bool add_special, bool parse_special,
               int threads) {
                std::vector<std::string> v;
                for (const py::handle& h : texts) {
                    const std::string_view s = text_view(h, "texts item");
                    v.emplace_back(s.data(), s.size());
                }
                const int nt = resolve_threads(threads);
                std::vector<std::vector<int32_t>> out;
                {
                    py::gil_scoped_release nogil;
                    t.encode_batch(v, add_special, parse_special, nt, out);
                }
                py::list res(out.size());
                for (size_t i = 0; i < out.size(); ++i)
                    PyList_SET_ITEM(res.ptr(), i, ids_to_list(out[i]).release().ptr());
                return res;
            },
            py::arg("texts"), py::arg("add_special") = false, py::arg("parse_special") = false,
            py::arg("threads") = 0)
        .def(
            "decode",
            [](const Tokenizer& t, const py::object& ids, bool skip_special) {
                const std::vector<int32_t> v = ids_from_obj(ids);
                std::string s;
                {
                    py::gil_scoped_release nogil;
                    s = t.decode(v.data(), v.size(), skip_special);
                }
                return py::bytes(s);
            },
            py::arg("ids"), py::arg("skip_special") = false)
        .def("piece", [](const Tokenizer& t,
                         int64_t id) { return as_bytes(t.vocab().piece(check_id(t, id))); })
        .def("text", [](const Tokenizer& t,
                        int64_t id) { return as_bytes(t.vocab().text(check_id(t, id))); })
        .def("attr", [](const Tokenizer& t, int64_t id) { return t.vocab().attr(check_id(t, id)); })
        .def("score",
             [](const Tokenizer& t, int64_t id) { return t.vocab().score(check_id(t, id)); })
        .def("find",
             [](const Tokenizer& t, const py::object& text) {
                 const std::string_view s = text_view(text, "text");
                 return t.vocab().find(s);
             })
        .def("bpe_word_heap",
             [](const Tokenizer& t, const py::bytes& word) {
                 return ids_to_list(t.bpe_word_heap(std::string(word)));
             })
        .def_property_readonly("n_vocab", [](const Tokenizer& t) { return t.vocab().size(); })
        .def_property_readonly("n_merges", &Tokenizer::n_merges)
        .def_property_readonly("eog_ids", [](const Tokenizer& t) { return t.vocab().eog_ids(); })
        .def_property_readonly("special_ids", [](const Tokenizer& t) {
            const tok::SpecialIds& s = t.vocab().ids();
            py::dict d;
            auto put = [&](const char* k, int32_t v) {
                d[k] = v >= 0 ? py::object(py::int_(v)) : py::none();
            };
            put("bos", s.bos);
            put("eos", s.eos);
            put("eot", s.eot);
            put("eom", s.eom);
            put("unk", s.unk);
            put("sep", s.sep);
            put("pad", s.pad);
            put("fim_pre", s.fim_pre);
            put("fim_suf", s.fim_suf);
            put("fim_mid", s.fim_mid);
            put("fim_pad", s.fim_pad);
            put("fim_rep", s.fim_rep);
            put("fim_sep", s.fim_sep);
            return d;
        });
    m.def(
        "tok_cpt_flags_table",
        [] {
            py::array_t<uint16_t> out(tok::kMaxCodepoint);
            uint16_t* p = out.mutable_data();
            const tok::CptTable& t = tok::cpt_table();
            for (uint32_t c = 0; c < tok::kMaxCodepoint; ++c) p[c] = tok::cpt_flags(t, c);
            return out;
        },
        "Class flags of every codepoint (bits: N L Z M P S C undefined, 256: White_Space).");
    m.def(
        "tok_pretokenize",
        [](const std::string& pre, const py::object& text) {
            tok::PreType t;
            if (!tok::parse_pre_type(pre, t))
                throw std::invalid_argument("unknown pre-tokenizer '" + pre +
                                            "'; implemented: " + tok::pre_type_names());
            const std::string_view s = text_view(text, "text");
            std::string clean;
            if (!tok::is_clean_utf8(s.data(), s.size()))
                clean = tok::sanitize_utf8(s.data(), s.size());
            const std::string_view v = clean.empty() ? s : std::string_view(clean);
            tok::PretokScratch sc;
            std::vector<tok::Span> spans;
            tok::pretokenize(t, v.data(), v.size(), sc, spans);
            py::list out;
            for (const tok::Span& sp : spans)
                out.append(py::bytes(v.data() + sp.begin, sp.end - sp.begin));
            return out;
        },
        py::arg("pre"), py::arg("text"), "The pre-tokenizer's pieces of text (bytes).");

    py::class_<tok::BpeTrainer>(m, "BpeTrainer",
                                "Native byte-level BPE trainer (see pylm.tokenizer.train_bpe).")
        .def(py::init([](const std::string& pre) {
                 tok::PreType t;
                 if (!tok::parse_pre_type(pre, t))
                     throw std::invalid_argument("train_bpe: unknown pre-tokenizer '" + pre +
                                                 "'; implemented: " + tok::pre_type_names());
                 return std::make_unique<tok::BpeTrainer>(t);
             }),
             py::arg("pre"))
        .def(
            "add_texts",
            [](tok::BpeTrainer& tr, const py::iterable& texts) {
                std::vector<std::string> v;
                for (const py::handle& h : texts) {
                    const std::string_view s = text_view(h, "texts item");
                    v.emplace_back(s.data(), s.size());
                }
                py::gil_scoped_release nogil;
                for (const std::string& s : v) tr.add_text(s.data(), s.size());
            },
            py::arg("texts"), "Pre-tokenizes the texts and counts their words.")
        .def(
            "add_word",
            [](tok::BpeTrainer& tr, const py::object& word, int64_t count) {
                const std::string_view s = text_view(word, "word");
                tr.add_word(s.data(), s.size(), count);
            },
            py::arg("word"), py::arg("count"))
        .def("start",
             [](tok::BpeTrainer& tr) {
                 py::gil_scoped_release nogil;
                 tr.start();
             })
        .def(
            "step",
            [](tok::BpeTrainer& tr, int max_merges, int64_t min_count) {
                py::gil_scoped_release nogil;
                return tr.step(max_merges, min_count);
            },
            py::arg("max_merges"), py::arg("min_count"))
        .def_property_readonly("n_words", &tok::BpeTrainer::n_words)
        .def_property_readonly("merges", [](const tok::BpeTrainer& tr) { return tr.merges(); })
        .def_property_readonly("symbols",
                               [](const tok::BpeTrainer& tr) {
                                   py::list out;
                                   for (const std::string& s : tr.symbols())
                                       out.append(py::bytes(s));
                                   return out;
                               })
        .def(
            "pair_counts",
            [](const tok::BpeTrainer& tr) {
                py::dict out;
                const auto& sym = tr.symbols();
                for (const auto& t : tr.pair_counts())
                    out[py::make_tuple(py::bytes(sym[std::get<0>(t)]),
                                       py::bytes(sym[std::get<1>(t)]))] = std::get<2>(t);
                return out;
            },
            "{(left bytes, right bytes): count} for the pairs present now.");
}

}  // namespace pylm
