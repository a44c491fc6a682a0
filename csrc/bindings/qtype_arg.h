// A GGUF tensor type given from Python as a name ("Q4_K", case-insensitive) or a ggml type id
// (int / IntEnum). Shared by pylm._core and pylm._cuda.
#pragma once
#include <pybind11/pybind11.h>

#include "quant/blocks.h"

namespace pylm {

// The type's info; ValueError naming `fn` and the value (with the known names) otherwise.
const QTypeInfo& parse_qtype(const pybind11::handle& q, const char* fn);

}  // namespace pylm
