// DLPack import (a producer's capsule -> DevTensor) and export (a pylm.cuda.Array buffer ->
// capsule). Internal to the CUDA extension; see interop.h for the contract.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "interop.h"

namespace pylm {
namespace cuda {

// obj has __dlpack__ / __dlpack_device__: ValueError unless the device is CUDA. `stream` is the
// consumer stream passed to __dlpack__ (kNoSync -> -1, 0 -> 1 = legacy default).
DevTensor dev_tensor_dlpack(pybind11::handle obj, const char* name, int64_t stream);
// Parses a "dltensor" / "dltensor_versioned" capsule without checking the device (tests read
// CPU capsules through this); the capsule stays owned by the returned tensor's `keep`.
DevTensor parse_dlpack_capsule(pybind11::object capsule, const char* name);
// A capsule viewing device memory at ptr that keeps `owner` alive until the consumer is done.
// versioned: DLPack 1.0 layout ("dltensor_versioned"), else 0.8 ("dltensor").
pybind11::object make_dlpack_capsule(pybind11::object owner, uintptr_t ptr, DType dtype,
                                     const std::vector<int64_t>& shape,
                                     const std::vector<int64_t>& strides, int device,
                                     bool versioned, bool readonly);

}  // namespace cuda
}  // namespace pylm
