#include "quant/blocks.h"

#include <cctype>
#include <cstring>
#include <string>

namespace pylm {

namespace {
const QTypeInfo kTypes[] = {
    {QType::F32, "F32", 1, 4},          {QType::F16, "F16", 1, 2},
    {QType::BF16, "BF16", 1, 2},        {QType::Q4_0, "Q4_0", QK4_0, sizeof(block_q4_0)},
    {QType::Q4_1, "Q4_1", QK4_1, sizeof(block_q4_1)}, {QType::Q5_0, "Q5_0", QK5_0, sizeof(block_q5_0)},
    {QType::Q5_1, "Q5_1", QK5_1, sizeof(block_q5_1)}, {QType::Q8_0, "Q8_0", QK8_0, sizeof(block_q8_0)},
    {QType::Q8_1, "Q8_1", QK8_1, sizeof(block_q8_1)}, {QType::Q2_K, "Q2_K", QK_K, sizeof(block_q2_K)},
    {QType::Q3_K, "Q3_K", QK_K, sizeof(block_q3_K)},  {QType::Q4_K, "Q4_K", QK_K, sizeof(block_q4_K)},
    {QType::Q5_K, "Q5_K", QK_K, sizeof(block_q5_K)},  {QType::Q6_K, "Q6_K", QK_K, sizeof(block_q6_K)},
    {QType::Q8_K, "Q8_K", QK_K, sizeof(block_q8_K)},
};
}  // namespace

const QTypeInfo* qtype_info(QType t) { return qtype_info(static_cast<int>(t)); }

const QTypeInfo* qtype_info(int id) {
    for (const auto& t : kTypes)
        if (static_cast<int>(t.type) == id) return &t;
    return nullptr;
}

const QTypeInfo* qtype_info_by_name(const char* name) {
    std::string up(name);
    for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (const auto& t : kTypes)
        if (up == t.name) return &t;
    return nullptr;
}

}  // namespace pylm
