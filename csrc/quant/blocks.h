// GGUF / ggml block layouts (byte-exact with llama.cpp's ggml-common.h).
//
// Legacy blocks hold QK = 32 weights; K-quant super-blocks hold QK_K = 256. Sizes are asserted,
// so a struct that drifts from the file format fails to compile.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pylm {

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

// GGML type ids as stored in GGUF tensor infos.
enum class QType : int {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

#pragma pack(push, 1)
struct block_q4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };                   // x = (q - 8) * d
struct block_q4_1 { uint16_t d, m; uint8_t qs[QK4_1 / 2]; };                // x = q * d + m
struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };    // x = (q - 16) * d
struct block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; }; // x = q * d + m
struct block_q8_0 { uint16_t d; int8_t qs[QK8_0]; };                        // x = q * d
struct block_q8_1 { uint16_t d, s; int8_t qs[QK8_1]; };                     // s = d * sum(q)

struct block_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; };
struct block_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct block_q4_K { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };  // activations
#pragma pack(pop)

static_assert(sizeof(block_q4_0) == 18, "q4_0");
static_assert(sizeof(block_q4_1) == 20, "q4_1");
static_assert(sizeof(block_q5_0) == 22, "q5_0");
static_assert(sizeof(block_q5_1) == 24, "q5_1");
static_assert(sizeof(block_q8_0) == 34, "q8_0");
static_assert(sizeof(block_q8_1) == 36, "q8_1");
static_assert(sizeof(block_q2_K) == 84, "q2_K");
static_assert(sizeof(block_q3_K) == 110, "q3_K");
static_assert(sizeof(block_q4_K) == 144, "q4_K");
static_assert(sizeof(block_q5_K) == 176, "q5_K");
static_assert(sizeof(block_q6_K) == 210, "q6_K");
static_assert(sizeof(block_q8_K) == 292, "q8_K");

struct QTypeInfo {
    QType type;
    const char* name;
    int block_size;   // weights per block
    int type_size;    // bytes per block
};

// Table lookup by id or name (names as in GGUF / gguf-py: "Q4_K", "F16", ...).
// Return nullptr when unknown.
const QTypeInfo* qtype_info(QType t);
const QTypeInfo* qtype_info(int id);
const QTypeInfo* qtype_info_by_name(const char* name);

}  // namespace pylm
