#include "engine/paged_attention.h"

#include "core/isa.h"

namespace pylm {

void paged_attention_group(const PagedAttnGroup& a) { PYLM_DISPATCH(paged_attention_group, a); }

}  // namespace pylm
