// The model's weights in device memory: the GGUF tensors' bytes uploaded once, unchanged, into
// one arena (qmatmul dequantizes on the fly). Projections that read the same input and share a
// type and row length (q/k/v, gate/up) are placed back to back so that one qmatmul computes them
// all: rows stay the file's rows, only their order in memory is chosen (no repacking).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common.cuh"
#include "engine/model.h"  // csrc/engine/model.h: ModelConfig, ModelWeights (host views)

namespace pylm {
namespace cuda {

struct DevWeight {
    const void* ptr = nullptr;  // device, GGUF bytes: N rows of K elements
    int qtype = 0;
    int64_t K = 0, N = 0;
};

// Consecutive projections [first, first + count) of a list computed by one qmatmul.
struct DevGroup {
    DevWeight w;
    int first = 0, count = 0;
    int64_t col0 = 0;  // output column of the group's first member in the concatenated output
};

struct DevLayer {
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    const float* post_attn_norm = nullptr;  // optional
    const float* post_ffn_norm = nullptr;   // optional
    const float* q_norm = nullptr;          // optional
    const float* k_norm = nullptr;          // optional
    const float* bq = nullptr;              // optional biases
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* bo = nullptr;
    std::vector<DevGroup> qkv;  // members 0 = q, 1 = k, 2 = v
    std::vector<DevGroup> gate_up;  // members 0 = gate, 1 = up
    DevWeight wo, w_down;
    bool sliding = false;
    float rope_base = 10000.f;
};

class DeviceWeights {
public:
    // Validates every tensor (ValueError naming it), then uploads. Must run on the target device.
    DeviceWeights(const ModelConfig& cfg, const ModelWeights& host);
    ~DeviceWeights();
    DeviceWeights(const DeviceWeights&) = delete;
    DeviceWeights& operator=(const DeviceWeights&) = delete;

    DevWeight tok_embd, output;
    const float* output_norm = nullptr;
    std::vector<DevLayer> layers;
    int64_t bytes() const { return bytes_; }
    // Bytes a decode step reads once per step: every layer's matrices and the output matrix.
    int64_t matmul_bytes() const { return matmul_bytes_; }

private:
    void* arena_ = nullptr;
    int64_t bytes_ = 0, matmul_bytes_ = 0;
};

}  // namespace cuda
}  // namespace pylm
