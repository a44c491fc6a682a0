// Scalar reference for the K-quant dot products (Q2_K .. Q6_K weights x Q8K activations), and
// the CANONICAL evaluation order that qdot_kquant_avx2.cpp and qdot_kquant_avx512.cpp reproduce
// bit for bit (same integers, same float operations in the same order, FMA where FMA).
//
// One super-block b of 256 weights: unsigned codes u[w] (Q2: 0..3, Q3: 0..7 = q + 4,
// Q4: 0..15, Q5: 0..31, Q6: 0..63 = q + 32), int16 scales sc[j] and mins16[j] per 16 weights
// (mins16 = mn for Q2_K/Q4_K/Q5_K; 4 * sc for Q3_K and 32 * sc for Q6_K, the zero points),
// block_q8_K a = {d_x, qs[256], bsums[16]}. 16 lanes k:
//   is[k] = sum_{w : lane(w) = k} sc[w / 16] * u[w] * a.qs[w]          (int32, exact)
//   lane(w) = 4 * ((w >> 4) & 3) + 2 * ((w >> 6) & 1) + ((w >> 3) & 1)
//     (the int32 lane of AVX-512's vpdpbusd -> vpackssdw -> vpdpwssd chain: 8 runs of 2 x 8
//     weights of two sub-blocks per lane)
//   ms[k] = bsums[2k] * mins16[2k] + bsums[2k+1] * mins16[2k+1] for k < 8, else 0 (vpmaddwd)
//   Q3_K/Q6_K:       t = float(is[k] - ms[k]) * d
//   Q2_K/Q4_K/Q5_K:  t = float(is[k]) * d;  k < 8: t = fmaf(-float(ms[k]), dmin, t)
//   acc[k] = fmaf(t, d_x, acc[k])                       (acc = 0 before the first super-block)
// and after the last super-block one fixed tree: v[i] += v[i+8] (i < 8), v[i] += v[i+4] (i < 4),
// v[i] += v[i+2] (i < 2), v[0] += v[1]. d, dmin: the fp16 fields, converted exactly.
// A row's result never depends on the other activation rows of a gemm (batch invariance).
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/qdot.h"
#include "quant/qdot_ref_common.h"

namespace pylm {
namespace ref {

namespace {

using qref::gemm_rows;
using qref::h2f;
using qref::tree16;

// One decoded super-block: unsigned codes and int16-range scales / mins per 16 weights.
struct KDec {
    int u[256];
    int sc[16], mins16[16];
    float d, dmin;
};

// The 12 packed bytes of Q4_K/Q5_K: 8 six-bit scales and 8 six-bit mins (get_scale_min_k4).
void scale_min_k4(const uint8_t* s, int j, int* sc, int* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

void dec_q2_K(const uint8_t* b, KDec* k) {
    const block_q2_K* x = reinterpret_cast<const block_q2_K*>(b);
    for (int j = 0; j < 16; ++j) {
        k->sc[j] = x->scales[j] & 0x0F;
        k->mins16[j] = x->scales[j] >> 4;
    }
    for (int n = 0; n < 2; ++n)           // halves of 128
        for (int j = 0; j < 4; ++j)       // shift 2j
            for (int l = 0; l < 32; ++l)  // element 128n + 32j + l
                k->u[128 * n + 32 * j + l] = (x->qs[32 * n + l] >> (2 * j)) & 3;
    k->d = h2f(&x->d);
    k->dmin = h2f(&x->dmin);
}

void dec_q3_K(const uint8_t* b, KDec* k) {
    const block_q3_K* x = reinterpret_cast<const block_q3_K*>(b);
    const uint8_t* s = x->scales;
    for (int j = 0; j < 16; ++j) {  // 16 six-bit scales: low 4 bits, then 2 high bits
        const int lo = j < 8 ? (s[j] & 0x0F) : (s[j - 8] >> 4);
        const int hi = (s[8 + (j & 3)] >> (2 * (j / 4))) & 3;
        k->sc[j] = (lo | (hi << 4)) - 32;
        k->mins16[j] = 4 * k->sc[j];
    }
    for (int n = 0; n < 2; ++n)
        for (int j = 0; j < 4; ++j)
            for (int l = 0; l < 32; ++l) {  // value = u - 4 (hmask bit set: no -4)
                const int lo = (x->qs[32 * n + l] >> (2 * j)) & 3;
                const int h = (x->hmask[l] >> (4 * n + j)) & 1;
                k->u[128 * n + 32 * j + l] = lo | (h << 2);
            }
    k->d = h2f(&x->d);
    k->dmin = 0.0f;
}

void dec_q4_K(const uint8_t* b, KDec* k) {
    const block_q4_K* x = reinterpret_cast<const block_q4_K*>(b);
    for (int j = 0; j < 8; ++j) {
        int sc, mn;
        scale_min_k4(x->scales, j, &sc, &mn);
        k->sc[2 * j] = k->sc[2 * j + 1] = sc;
        k->mins16[2 * j] = k->mins16[2 * j + 1] = mn;
    }
    for (int j = 0; j < 4; ++j)  // 64 weights per 32 bytes: low nibbles, then high nibbles
        for (int l = 0; l < 32; ++l) {
            k->u[64 * j + l] = x->qs[32 * j + l] & 0x0F;
            k->u[64 * j + 32 + l] = x->qs[32 * j + l] >> 4;
        }
    k->d = h2f(&x->d);
    k->dmin = h2f(&x->dmin);
}

void dec_q5_K(const uint8_t* b, KDec* k) {
    const block_q5_K* x = reinterpret_cast<const block_q5_K*>(b);
    for (int j = 0; j < 8; ++j) {
        int sc, mn;
        scale_min_k4(x->scales, j, &sc, &mn);
        k->sc[2 * j] = k->sc[2 * j + 1] = sc;
        k->mins16[2 * j] = k->mins16[2 * j + 1] = mn;
    }
    for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) {
            k->u[64 * j + l] = (x->qs[32 * j + l] & 0x0F) | (((x->qh[l] >> (2 * j)) & 1) << 4);
            k->u[64 * j + 32 + l] =
                (x->qs[32 * j + l] >> 4) | (((x->qh[l] >> (2 * j + 1)) & 1) << 4);
        }
    k->d = h2f(&x->d);
    k->dmin = h2f(&x->dmin);
}

void dec_q6_K(const uint8_t* b, KDec* k) {
    const block_q6_K* x = reinterpret_cast<const block_q6_K*>(b);
    for (int j = 0; j < 16; ++j) {
        k->sc[j] = x->scales[j];
        k->mins16[j] = 32 * x->scales[j];
    }
    for (int n = 0; n < 2; ++n) {  // value = u - 32
        const uint8_t* ql = x->ql + 64 * n;
        const uint8_t* qh = x->qh + 32 * n;
        int* u = k->u + 128 * n;
        for (int l = 0; l < 32; ++l) {
            u[l] = (ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4);
            u[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            u[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            u[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    k->d = h2f(&x->d);
    k->dmin = 0.0f;
}

using KQuantDec = void (*)(const uint8_t*, KDec*);

// The 16 float lanes of one super-block added into acc (canonical order, see the top).
void accumulate_sb(const KDec& k, const block_q8_K& a, bool offset, float* acc) {
    int is[16] = {0};
    for (int w = 0; w < 256; w += 8) {  // runs of 8 weights share a lane and a scale
        int dot = 0;
        for (int l = 0; l < 8; ++l) dot += k.u[w + l] * a.qs[w + l];
        is[4 * ((w >> 4) & 3) + 2 * ((w >> 6) & 1) + ((w >> 3) & 1)] += k.sc[w >> 4] * dot;
    }
    for (int l = 0; l < 16; ++l) {
        const int ms = l < 8 ? a.bsums[2 * l] * k.mins16[2 * l] +
                                   a.bsums[2 * l + 1] * k.mins16[2 * l + 1]
                             : 0;
        float t;
        if (offset) {
            t = (float)(is[l] - ms) * k.d;
        } else {
            t = (float)is[l] * k.d;
            if (l < 8) t = std::fmaf(-(float)ms, k.dmin, t);
        }
        acc[l] = std::fmaf(t, a.d, acc[l]);
    }
}

// w_row: K/256 super-blocks of TS bytes; act: K/256 block_q8_K.
template <KQuantDec DEC, int TS, bool OFFSET>
float dot_kquant(int64_t K, const void* w, const void* act) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const block_q8_K* a = static_cast<const block_q8_K*>(act);
    float acc[16] = {0.0f};
    KDec k;
    for (int64_t b = 0; b < K / QK_K; ++b) {
        DEC(wb + b * TS, &k);
        accumulate_sb(k, a[b], OFFSET, acc);
    }
    return tree16(acc);
}

#define PYLM_KERNELS(name, fn) const QDotKernels name = {fn, gemm_rows<fn>}
PYLM_KERNELS(kQ2_K, (dot_kquant<dec_q2_K, sizeof(block_q2_K), false>));
PYLM_KERNELS(kQ3_K, (dot_kquant<dec_q3_K, sizeof(block_q3_K), true>));
PYLM_KERNELS(kQ4_K, (dot_kquant<dec_q4_K, sizeof(block_q4_K), false>));
PYLM_KERNELS(kQ5_K, (dot_kquant<dec_q5_K, sizeof(block_q5_K), false>));
PYLM_KERNELS(kQ6_K, (dot_kquant<dec_q6_K, sizeof(block_q6_K), true>));
#undef PYLM_KERNELS

}  // namespace

const QDotKernels* qdot_kernels_k(QType t) {
    switch (t) {
        case QType::Q2_K:
            return &kQ2_K;
        case QType::Q3_K:
            return &kQ3_K;
        case QType::Q4_K:
            return &kQ4_K;
        case QType::Q5_K:
            return &kQ5_K;
        case QType::Q6_K:
            return &kQ6_K;
        default:
            return nullptr;
    }
}

}  // namespace ref
}  // namespace pylm
