// The row path's walk over one run of keys, shared by the SIMD variants: tiles of Bk keys (64 /
// 32 / 16 for D <= 64 / <= 128 / more, the canonical row path of attention_ref.cpp); rows at one
// position (pos_step 0: a kv group's heads) share a tile's keys and go through it 4 at a time,
// rows at their own positions one at a time. Fold is the ISA's per-tile fold of NR rows:
//   Fold::run<NR>(q, r0, kt, ldk, vt, ldv, ca, cb, tn, st)   (rows r0 .. r0 + NR - 1, keys [ca, cb)
//   of the tn-key tile at kt / vt).
// In an anonymous namespace: each ISA's translation unit compiles its own copy with its flags.
#pragma once
#include <cstdint>

#include "kernels/attention.h"

namespace pylm {
namespace {

template <class Fold>
inline void walk_rows(const AttnRows& q, int ra, int rb, const float* k, int64_t ldk,
                      const float* v, int64_t ldv, int64_t j0, int64_t n, AttnState& st) {
    const int64_t Bk = q.D <= 64 ? 64 : (q.D <= 128 ? 32 : 16);
    for (int64_t t0 = 0; t0 < n; t0 += Bk) {
        const int64_t tn = n - t0 < Bk ? n - t0 : Bk;
        const int64_t jt = j0 + t0;  // absolute index of the tile's first key
        const float* kt = k + t0 * ldk;
        const float* vt = v + t0 * ldv;
        auto keys = [&](int64_t p, int64_t& ca, int64_t& cb) {  // row at p: keys [ca, cb)
            ca = 0;
            cb = tn;
            if (q.causal && p - jt + 1 < cb) cb = p - jt + 1;
            if (q.window > 0 && p - q.window + 1 - jt > ca) ca = p - q.window + 1 - jt;
            return ca < cb;
        };
        int64_t ca, cb;
        if (q.pos_step != 0) {
            for (int r = ra; r < rb; ++r)
                if (keys(q.pos0 + r * q.pos_step, ca, cb))
                    Fold::template run<1>(q, r, kt, ldk, vt, ldv, ca, cb, tn, st);
            continue;
        }
        if (!keys(q.pos0, ca, cb)) continue;
        int r = ra;
        for (; rb - r >= 4; r += 4) Fold::template run<4>(q, r, kt, ldk, vt, ldv, ca, cb, tn, st);
        switch (rb - r) {
        case 3: Fold::template run<3>(q, r, kt, ldk, vt, ldv, ca, cb, tn, st); break;
        case 2: Fold::template run<2>(q, r, kt, ldk, vt, ldv, ca, cb, tn, st); break;
        case 1: Fold::template run<1>(q, r, kt, ldk, vt, ldv, ca, cb, tn, st); break;
        default: break;
        }
    }
}

}  // namespace
}  // namespace pylm
