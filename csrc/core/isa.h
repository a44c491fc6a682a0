// Instruction-set selection for the CPU kernels.
//
// Each kernel is compiled three times (scalar reference, AVX2+FMA, AVX-512 with VNNI), in
// separate translation units with their own flags. `active_isa()` is decided once from
// CPUID + XGETBV (or PYLM_FORCE_ISA) and every dispatcher switches on it.
#pragma once
#include <string>
#include <vector>

namespace pylm {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "scalar" | "avx2" | "avx512"; throws std::invalid_argument naming the value otherwise.
Isa parse_isa(const std::string& name);
// True when this CPU and OS can run code compiled for `isa`.
bool cpu_supports(Isa isa);
std::vector<Isa> available_isas();
// The ISA the dispatchers use. The first call reads PYLM_FORCE_ISA (throws if unsupported).
Isa active_isa();
// Changes the active ISA for the whole process (tests force each one in turn).
void set_active_isa(Isa isa);

// Call the right variant: DISPATCH(fn, args...) -> pylm::<isa>::fn(args...).
#define PYLM_DISPATCH(fn, ...)                                    \
    do {                                                          \
        switch (::pylm::active_isa()) {                           \
        case ::pylm::Isa::Avx512: ::pylm::avx512::fn(__VA_ARGS__); break; \
        case ::pylm::Isa::Avx2: ::pylm::avx2::fn(__VA_ARGS__); break;     \
        default: ::pylm::ref::fn(__VA_ARGS__); break;             \
        }                                                         \
    } while (0)

}  // namespace pylm
