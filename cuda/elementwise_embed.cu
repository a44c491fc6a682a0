// Token embedding lookup from GGUF bytes on the GPU (contract: elementwise.cuh): row ids[t] of
// the table is decoded with the same per-element block decoders as the dequantizer
// (dequant_blocks.cuh, bit-exact), times `scale`, and stored as F32/F16/BF16. One thread block
// per token (grid-strided), threads across the row.
#include <stdexcept>
#include <string>

#include "dequant_blocks.cuh"
#include "elementwise.cuh"
#include "elementwise_util.cuh"

namespace pylm {
namespace cuda {

namespace {

using namespace ew;

// table: V rows of row_bytes; ids: [n] (in range, checked by the caller); out: [n, C] of out_dt.
template <int TYPE>
__global__ void embedding_kernel(const uint8_t* __restrict__ table, int64_t row_bytes, int64_t C,
                                 const int32_t* __restrict__ ids, int64_t n, float scale,
                                 DType out_dt, void* __restrict__ out) {
    for (int64_t t = blockIdx.x; t < n; t += gridDim.x) {
        const uint8_t* row = table + (int64_t)ids[t] * row_bytes;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            const float v = __fmul_rn(dq::dq_elem<TYPE>(row, c), scale);
            const int64_t o = t * C + c;
            switch (out_dt) {  // uniform across the grid: no divergence
            case DType::F16: static_cast<__half*>(out)[o] = __float2half_rn(v); break;
            case DType::BF16: static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16_rn(v); break;
            default: static_cast<float*>(out)[o] = v; break;
            }
        }
    }
}

struct EmbedLaunch {
    const void* table;
    int64_t row_bytes, C;
    const int32_t* ids;
    int64_t n;
    float scale;
    DType out_dt;
    void* out;
    cudaStream_t stream;
    template <int TYPE>
    void operator()() const {
        const int threads = row_threads(C, 256);
        const unsigned grid = (unsigned)(n < kMaxGrid ? n : kMaxGrid);
        embedding_kernel<TYPE><<<grid, threads, 0, stream>>>(
            static_cast<const uint8_t*>(table), row_bytes, C, ids, n, scale, out_dt, out);
        PYLM_CUDA_CHECK_LAUNCH("embedding");
    }
};

}  // namespace

void embedding(int qtype, const void* table, int64_t C, const int32_t* ids, int64_t n,
               float scale, DType out_dt, void* out, cudaStream_t stream) {
    const QTypeInfo* info = qtype_info(qtype);
    if (!info)
        throw std::invalid_argument("embedding: unknown GGUF type id " + std::to_string(qtype));
    if (out_dt != DType::F32 && out_dt != DType::F16 && out_dt != DType::BF16)
        throw std::invalid_argument(std::string("embedding: out dtype ") + dtype_name(out_dt) +
                                    " (expected float32, float16 or bfloat16)");
    if (C <= 0 || C % info->block_size != 0)
        throw std::invalid_argument("embedding: C=" + std::to_string(C) +
                                    " must be a positive multiple of " + info->name +
                                    "'s block size " + std::to_string(info->block_size));
    if (n <= 0) return;
    const int64_t row_bytes = C / info->block_size * info->type_size;
    if (!dq::visit_qtype(qtype, EmbedLaunch{table, row_bytes, C, ids, n, scale, out_dt, out, stream}))
        throw std::invalid_argument(std::string("embedding: unsupported table type ") + info->name);
}

}  // namespace cuda
}  // namespace pylm
