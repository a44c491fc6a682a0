// Bindings for the machine-limit probes (csrc/bench/probe.h), used by pylm/bench.py to express
// kernel timings as fractions of what this machine sustains.
#include "bench/probe.h"
#include "bindings/bindings.h"
#include "bindings/common.h"

namespace pylm {

namespace {

void check_reps(int reps) {
    if (reps < 1) throw std::invalid_argument("reps must be >= 1, got " + std::to_string(reps));
}

py::dict to_dict(const ProbeResult& r, const char* unit) {
    py::dict d;
    d["best"] = r.best;
    d["median"] = r.median;
    d["threads"] = r.threads;
    d["unit"] = unit;
    return d;
}

ProbeResult read_bw(int64_t nbytes, int reps, int threads) {
    if (nbytes < 0)
        throw std::invalid_argument("nbytes must be >= 0 (0 = default), got " +
                                    std::to_string(nbytes));
    check_reps(reps);
    const int nt = resolve_threads(threads);
    py::gil_scoped_release release;
    return probe_read_bandwidth(nbytes, reps, nt);
}

ProbeResult fma_peak(int64_t iters, int reps, int threads) {
    if (iters < 0)
        throw std::invalid_argument("iters must be >= 0 (0 = default), got " +
                                    std::to_string(iters));
    check_reps(reps);
    const int nt = resolve_threads(threads);
    py::gil_scoped_release release;
    return probe_fma_peak(iters, reps, nt);
}

}  // namespace

void bind_bench(py::module_& m) {
    m.def(
        "probe_read_bandwidth",
        [](int64_t nbytes, int reps, int threads) { return read_bw(nbytes, reps, threads).best; },
        py::arg("nbytes") = 0, py::arg("reps") = 5, py::arg("threads") = 0,
        "Best read bandwidth in GB/s (1e9 bytes/s) of `threads` threads streaming `nbytes` "
        "together on the active ISA. nbytes=0: a buffer well beyond the LLC (DRAM); a small "
        "buffer (e.g. 256 KiB per thread) measures cache bandwidth. threads=0: the default.");
    m.def(
        "probe_read_bandwidth_stats",
        [](int64_t nbytes, int reps, int threads) {
            return to_dict(read_bw(nbytes, reps, threads), "GB/s");
        },
        py::arg("nbytes") = 0, py::arg("reps") = 5, py::arg("threads") = 0,
        "Like probe_read_bandwidth, as a dict: best, median, threads (that ran concurrently), "
        "unit.");
    m.def(
        "probe_fma_peak",
        [](int64_t iters, int threads, int reps) { return fma_peak(iters, reps, threads).best; },
        py::arg("iters") = 0, py::arg("threads") = 0, py::arg("reps") = 5,
        "Best FMA throughput in GFLOP/s (2 flops per lane per FMA; mul+add on scalar) of "
        "`threads` threads running independent register-resident chains on the active ISA. "
        "iters=0: a default of 4M rounds per thread.");
    m.def(
        "probe_fma_peak_stats",
        [](int64_t iters, int threads, int reps) {
            return to_dict(fma_peak(iters, reps, threads), "GFLOP/s");
        },
        py::arg("iters") = 0, py::arg("threads") = 0, py::arg("reps") = 5,
        "Like probe_fma_peak, as a dict: best, median, threads, unit.");
    m.def("cache_bytes", &cache_bytes, py::arg("level"),
          "Bytes of the level-2 or level-3 data cache as the OS reports it (0 if unknown).");
    m.def("default_read_bytes", &default_read_bytes,
          "Buffer size probe_read_bandwidth uses for nbytes=0: max(256 MiB, 2 x LLC), <= 1 GiB.");
}

}  // namespace pylm
