// The engine's constructor arguments from Python: the config dict and the weight table that
// pylm/model.py builds from a GGUF file (weights: (uint8 array, ggml type id, ne0, ne1) views into
// the mmap). Shared by pylm._core.Engine (CPU) and pylm._cuda.Engine (GPU); every defect raises
// ValueError naming the entry.
#pragma once
#include <pybind11/pybind11.h>

#include "engine/model.h"

namespace pylm {

ModelConfig engine_config_from(const pybind11::dict& c);
// keep (may be null): receives the numpy arrays the WeightRefs point into, for an engine that
// reads the weights in place and must keep them alive.
ModelWeights engine_weights_from(const pybind11::dict& w, pybind11::list* keep);

}  // namespace pylm
