// pylm._cuda.Engine: the GPU inference engine with the CPU engine's Python interface
// (pylm._core.Engine: forward, seq_new/fork/truncate/free/len/ids, clear, free_blocks, ...), so
// pylm.Model, the sampler and speculative decoding run on it unchanged. The constructor reads
// the same config dict and weight table (numpy views into the GGUF mmap) and uploads the weights;
// nothing on the host is kept. Every entry point raises RuntimeError when no device is usable.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bind.h"
#include "bindings/engine_args.h"
#include "engine/device_engine.h"
#include "interop.h"
#include "quant/blocks.h"

namespace py = pybind11;

namespace pylm {
namespace cuda {

namespace {

DType kv_dtype_from(const std::string& s) {
    if (s == "float16" || s == "f16") return DType::F16;
    if (s == "float32" || s == "f32") return DType::F32;
    throw std::invalid_argument("kv_dtype must be 'float16' or 'float32', got '" + s + "'");
}

// Device-to-device copy bandwidth, (bytes read + bytes written) / s: the roofline the decode
// step's weight reads are compared with.
double copy_bandwidth(int64_t nbytes, int iters, int device) {
    if (nbytes <= 0 || iters < 1)
        throw std::invalid_argument("copy_bandwidth: need nbytes > 0 and iters >= 1");
    require_device(device);
    py::gil_scoped_release nogil;
    void *a = nullptr, *b = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    float ms = 0.f;
    cudaError_t st = cudaMalloc(&a, nbytes);
    if (st == cudaSuccess) st = cudaMalloc(&b, nbytes);
    if (st == cudaSuccess) st = cudaEventCreate(&e0);
    if (st == cudaSuccess) st = cudaEventCreate(&e1);
    if (st == cudaSuccess) st = cudaMemcpy(b, a, nbytes, cudaMemcpyDeviceToDevice);  // warm-up
    if (st == cudaSuccess) st = cudaEventRecord(e0);
    for (int i = 0; i < iters && st == cudaSuccess; ++i)
        st = cudaMemcpyAsync(b, a, nbytes, cudaMemcpyDeviceToDevice);
    if (st == cudaSuccess) st = cudaEventRecord(e1);
    if (st == cudaSuccess) st = cudaEventSynchronize(e1);
    if (st == cudaSuccess) st = cudaEventElapsedTime(&ms, e0, e1);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    check(st, "copy_bandwidth");
    return 2.0 * static_cast<double>(nbytes) * iters / (ms * 1e-3);
}

}  // namespace

void bind_engine(py::module_& m) {
    // The GPU pool's exhaustion raises the CPU engine's Python class, so `except
    // pylm.KVPoolExhausted` works for both devices (RuntimeError if _core is missing).
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const KVPoolExhausted& e) {
            PyObject* cls = nullptr;
            if (PyObject* core = PyImport_ImportModule("pylm._core")) {
                cls = PyObject_GetAttrString(core, "KVPoolExhausted");
                Py_DECREF(core);
            }
            if (!cls) PyErr_Clear();
            PyErr_SetString(cls ? cls : PyExc_RuntimeError, e.what());
            Py_XDECREF(cls);
        }
    });

    m.def("copy_bandwidth", &copy_bandwidth, py::arg("nbytes") = int64_t(1) << 30,
          py::arg("iters") = 10, py::arg("device") = 0,
          "Device-to-device memcpy bandwidth in bytes/s, counting bytes read plus written.");

    py::class_<DeviceEngine>(m, "Engine")
        .def(py::init([](const py::dict& c, const py::dict& w, int64_t kv_blocks, int block_size,
                         int device, const std::string& kv_dtype, bool cuda_graphs) {
                 ModelConfig cfg = engine_config_from(c);
                 ModelWeights mw = engine_weights_from(w, nullptr);
                 const DType kvt = kv_dtype_from(kv_dtype);
                 if (kv_blocks <= 0 || block_size <= 0)
                     throw std::invalid_argument("kv_blocks=" + std::to_string(kv_blocks) +
                                                 " and block_size=" + std::to_string(block_size) +
                                                 " must be positive");
                 require_device(device);
                 py::gil_scoped_release nogil;  // the numpy views stay alive in `w`
                 return std::make_unique<DeviceEngine>(cfg, mw, kv_blocks, block_size, kvt, device,
                                                       cuda_graphs);
             }),
             py::arg("config"), py::arg("weights"), py::arg("kv_blocks"), py::arg("block_size") = 16,
             py::arg("device") = 0, py::arg("kv_dtype") = "float16", py::arg("cuda_graphs") = true)
        .def("forward",
             [](DeviceEngine& e, const std::vector<int>& seqs,
                const std::vector<std::vector<int32_t>>& toks, bool all_logits) {
                 const int64_t R = e.logits_rows(toks, all_logits);
                 py::array_t<float> out({R, static_cast<int64_t>(e.config().n_vocab)});
                 float* p = out.mutable_data();
                 {
                     py::gil_scoped_release nogil;
                     e.forward(seqs, toks, all_logits, p);
                 }
                 return out;
             },
             py::arg("seq_ids"), py::arg("tokens"), py::arg("all_logits") = false,
             "Append tokens[i] to sequence seq_ids[i] and return logits [rows, n_vocab] (host).")
        .def("seq_new", [](DeviceEngine& e) { return e.kv().seq_new(); })
        .def("seq_fork", [](DeviceEngine& e, int s) { return e.kv().seq_fork(s); })
        .def("seq_truncate", [](DeviceEngine& e, int s, int64_t n) { e.kv().seq_truncate(s, n); })
        .def("seq_free", [](DeviceEngine& e, int s) { e.kv().seq_free(s); })
        .def("seq_len", [](DeviceEngine& e, int s) { return e.kv().seq_len(s); })
        .def("seq_ids", [](DeviceEngine& e) { return e.kv().seq_ids(); })
        .def("clear", [](DeviceEngine& e) { e.kv().clear(); })
        .def_property_readonly("free_blocks", [](DeviceEngine& e) { return e.kv().free_blocks(); })
        .def_property_readonly("n_blocks", [](DeviceEngine& e) { return e.kv().n_blocks(); })
        .def_property_readonly("block_size", [](DeviceEngine& e) { return e.kv().block_size(); })
        // Host threads do not apply on the GPU; kept for the CPU engine's interface.
        .def_property("threads", [](DeviceEngine&) { return 1; },
                      [](DeviceEngine&, int n) {
                          if (n < 1)
                              throw std::invalid_argument("threads must be >= 1, got " + std::to_string(n));
                      })
        .def_property_readonly("device", [](DeviceEngine& e) { return e.device(); })
        .def_property_readonly("kv_dtype", [](DeviceEngine& e) { return std::string(dtype_name(e.kv_dtype())); })
        .def_property("cuda_graphs", [](DeviceEngine& e) { return e.graphs_enabled(); },
                      [](DeviceEngine& e, bool on) { e.set_graphs_enabled(on); })
        .def_property_readonly("graph_error", [](DeviceEngine& e) { return e.graph_error(); })
        .def_property_readonly("graphs_captured", [](DeviceEngine& e) { return e.graphs_captured(); })
        .def_property_readonly("weight_bytes", [](DeviceEngine& e) { return e.weights().bytes(); })
        .def_property_readonly("matmul_bytes", [](DeviceEngine& e) { return e.weights().matmul_bytes(); },
                               "Bytes of the weight matrices one decode step reads.")
        .def("replay_last_decode",
             [](DeviceEngine& e, int iters) {
                 py::gil_scoped_release nogil;
                 return e.replay_last_decode(iters);
             },
             py::arg("iters") = 50,
             "Seconds per decode step on the GPU: replays the last decode step's CUDA graph.");
}

}  // namespace cuda
}  // namespace pylm
