// CPU feature detection (CPUID + XGETBV) and the process-wide active ISA.
#include "core/isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#if defined(PYLM_X86)
#include <cpuid.h>
#endif

namespace pylm {

namespace {

struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false, bmi2 = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
};

#if defined(PYLM_X86)
unsigned long long xgetbv0() {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

CpuFeatures detect() {
    CpuFeatures f;
#if defined(PYLM_X86)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    f.fma = (c >> 12) & 1;
    f.f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return f;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_os = (xcr0 & 0x6) == 0x6;           // SSE + AVX state
    const bool zmm_os = (xcr0 & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!ymm_os) { f.fma = f.f16c = false; return f; }
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.bmi2 = (b >> 8) & 1;
    if (zmm_os) {
        f.avx512f = (b >> 16) & 1;
        f.avx512dq = (b >> 17) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
        f.avx512vnni = (c >> 11) & 1;
    }
#endif
    return f;
}

const CpuFeatures& features() {
    static const CpuFeatures f = detect();
    return f;
}

std::atomic<int> g_active{-1};
std::mutex g_init_mutex;

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
    }
}

Isa parse_isa(const std::string& name) {
    if (name == "scalar" || name == "ref") return Isa::Scalar;
    if (name == "avx2") return Isa::Avx2;
    if (name == "avx512") return Isa::Avx512;
    throw std::invalid_argument("unknown ISA '" + name + "': expected scalar, avx2 or avx512");
}

bool cpu_supports(Isa isa) {
    const CpuFeatures& f = features();
    switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c && f.bmi2;
    case Isa::Avx512:
        return f.avx2 && f.fma && f.f16c && f.bmi2 && f.avx512f && f.avx512bw && f.avx512vl &&
               f.avx512dq && f.avx512vnni;
    }
    return false;
}

std::vector<Isa> available_isas() {
    std::vector<Isa> out;
    for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
        if (cpu_supports(i)) out.push_back(i);
    return out;
}

void set_active_isa(Isa isa) {
    if (!cpu_supports(isa))
        throw std::runtime_error(std::string("ISA '") + isa_name(isa) +
                                 "' is not supported by this CPU (available: " +
                                 isa_name(available_isas().back()) + " and below)");
    g_active.store(static_cast<int>(isa));
}

Isa active_isa() {
    int v = g_active.load(std::memory_order_relaxed);
    if (v >= 0) return static_cast<Isa>(v);
    std::lock_guard<std::mutex> lock(g_init_mutex);
    v = g_active.load();
    if (v >= 0) return static_cast<Isa>(v);
    const char* env = std::getenv("PYLM_FORCE_ISA");
    if (env && *env) {
        set_active_isa(parse_isa(env));  // throws: forced ISA unknown or unsupported
    } else {
        g_active.store(static_cast<int>(available_isas().back()));
    }
    return static_cast<Isa>(g_active.load());
}

}  // namespace pylm
