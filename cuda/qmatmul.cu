// pylm::cuda::qmatmul — validates the contract of cuda/qmatmul.cuh and picks a path:
//   F32/F16/BF16 weights: the dense GEMM (X converted to W's dtype when they differ)
//   block formats, M <= kGemvMaxM: the fused-dequant GEMV (weights read once, in GGUF layout)
//   block formats, larger M: dequantize W into a stream-ordered f16/bf16 scratch buffer
//     (cudaMallocAsync), then the tensor-core GEMM with fp32 accumulation. The 16-bit type is
//     bf16 when X is bf16, else f16 (X in f32 is rounded to f16 for the tensor cores: activations
//     beyond +-65504 would overflow there — the usual trade of cuBLAS-backed engines).
#include <stdexcept>
#include <string>

#include "gemm.cuh"
#include "qmatmul.cuh"
#include "qmatmul_kernels.cuh"
#include "quant/blocks.h"

namespace pylm {
namespace cuda {

namespace {

using namespace qmm_detail;

struct Scratch {  // stream-ordered device buffer (none when bytes == 0)
    void* ptr = nullptr;
    cudaStream_t stream;
    Scratch(size_t bytes, cudaStream_t s) : stream(s) {
        if (bytes) PYLM_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, s));
    }
    ~Scratch() {
        if (ptr) cudaFreeAsync(ptr, stream);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

template <int QT>
void run_quant(const uint8_t* W, int64_t row_bytes, int N, int K, DType xdt, const void* X, int M,
               float* Y, bool accumulate, cudaStream_t stream) {
    if (M <= kGemvMaxM) {
        launch_qgemv<QT>(W, row_bytes, N, K, xdt, X, M, Y, accumulate, stream);
        return;
    }
    const DType t = xdt == DType::BF16 ? DType::BF16 : DType::F16;
    Scratch w16((size_t)N * K * 2, stream);
    launch_dequant16<QT>(W, row_bytes, N, K, t, w16.ptr, stream);
    const void* x16 = X;
    Scratch xs(xdt == t ? 0 : (size_t)M * K * 2, stream);
    if (xdt != t) {
        launch_convert(xdt, X, t, xs.ptr, (int64_t)M * K, stream);
        x16 = xs.ptr;
    }
    gemm(false, true, M, N, K, 1.f, t, x16, K, w16.ptr, K, accumulate ? 1.f : 0.f, DType::F32, Y,
         N, stream);
}

void run_dense(DType wdt, const void* W, int N, int K, DType xdt, const void* X, int M, float* Y,
               bool accumulate, cudaStream_t stream) {
    const void* x = X;
    Scratch xs(xdt == wdt ? 0 : (size_t)M * K * dtype_size(wdt), stream);
    if (xdt != wdt) {
        launch_convert(xdt, X, wdt, xs.ptr, (int64_t)M * K, stream);
        x = xs.ptr;
    }
    gemm(false, true, M, N, K, 1.f, wdt, x, K, W, K, accumulate ? 1.f : 0.f, DType::F32, Y, N,
         stream);
}

}  // namespace

bool qmatmul_supported(int qtype) {
    switch ((QType)qtype) {
        case QType::F32: case QType::F16: case QType::BF16:
        case QType::Q4_0: case QType::Q4_1: case QType::Q5_0: case QType::Q8_0:
        case QType::Q4_K: case QType::Q5_K: case QType::Q6_K: return true;
        default: return false;
    }
}

void qmatmul(int qtype, const void* W, int64_t N, int64_t K, DType x_dtype, const void* X,
             int64_t M, float* Y, bool accumulate, cudaStream_t stream) {
    const QTypeInfo* info = qtype_info(qtype);
    if (!info || !qmatmul_supported(qtype))
        throw std::invalid_argument("qmatmul: unsupported GGUF type id " + std::to_string(qtype));
    if (x_dtype != DType::F32 && x_dtype != DType::F16 && x_dtype != DType::BF16)
        throw std::invalid_argument(std::string("qmatmul: x dtype ") + dtype_name(x_dtype) +
                                    " is not supported (float32, float16, bfloat16)");
    if (M < 0 || N < 0 || K < 0 || M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff)
        throw std::invalid_argument("qmatmul: bad sizes M=" + std::to_string(M) + " N=" +
                                    std::to_string(N) + " K=" + std::to_string(K));
    if (K % info->block_size != 0)
        throw std::invalid_argument("qmatmul: K=" + std::to_string(K) + " is not a multiple of " +
                                    std::to_string(info->block_size) + " for " + info->name);
    const bool dense = qtype == (int)QType::F32 || qtype == (int)QType::F16 ||
                       qtype == (int)QType::BF16;
    if (!dense && ((reinterpret_cast<uintptr_t>(W) | reinterpret_cast<uintptr_t>(X)) & 15))
        throw std::invalid_argument("qmatmul: W and X must be 16-byte aligned device pointers");
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate) PYLM_CUDA_CHECK(cudaMemsetAsync(Y, 0, (size_t)M * N * 4, stream));
        return;
    }
    const int n = (int)N, k = (int)K, m = (int)M;
    const int64_t row_bytes = K / info->block_size * info->type_size;
    const uint8_t* w = static_cast<const uint8_t*>(W);
    switch ((QType)qtype) {
        case QType::F32: return run_dense(DType::F32, W, n, k, x_dtype, X, m, Y, accumulate, stream);
        case QType::F16: return run_dense(DType::F16, W, n, k, x_dtype, X, m, Y, accumulate, stream);
        case QType::BF16: return run_dense(DType::BF16, W, n, k, x_dtype, X, m, Y, accumulate, stream);
#define PYLM_QMM_CASE(QT)                                                                       \
    case QType::QT:                                                                             \
        return run_quant<(int)QType::QT>(w, row_bytes, n, k, x_dtype, X, m, Y, accumulate, stream);
        PYLM_QMM_CASE(Q4_0)
        PYLM_QMM_CASE(Q4_1)
        PYLM_QMM_CASE(Q5_0)
        PYLM_QMM_CASE(Q8_0)
        PYLM_QMM_CASE(Q4_K)
        PYLM_QMM_CASE(Q5_K)
        PYLM_QMM_CASE(Q6_K)
#undef PYLM_QMM_CASE
        default: break;
    }
    throw std::invalid_argument("qmatmul: unsupported GGUF type id " + std::to_string(qtype));
}

}  // namespace cuda
}  // namespace pylm
