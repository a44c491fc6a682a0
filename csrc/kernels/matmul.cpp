// f32 matmul dispatcher: picks the ISA's pieces, blocks for the caches, packs, and threads.
//
// Loop nest (BLIS order), for C [M, N] = op(A) [M, K] @ op(B) [K, N]:
//   jc over N in NC          Bp = pack(op(B)[pc:pc+KC, jc:jc+NC])   (L3-sized, shared)
//    pc over K in KC
//     ic0 over M in MB       Ap = pack(op(A)[ic0:ic0+MB, pc:pc+KC]) (shared)
//      tiles (MC x NCT)      one task each: macro-kernel over MR x NR micro-tiles
// Each pass is one parallel_for; tasks are taken dynamically, and the split never changes
// what is summed in which order, so the result is identical for any thread count.
#include "kernels/matmul.h"

#include <cstdlib>
#include <new>
#include <vector>

#include "core/isa.h"
#include "core/thread_pool.h"

namespace pylm {

namespace {

struct IsaGemm {
    int mr, nr;
    void (*pack_a)(const GemmArgs&, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
    void (*pack_b)(const GemmArgs&, int64_t, int64_t, int64_t, int64_t, float*);
    void (*macro)(int64_t, int64_t, int64_t, const float*, const float*, float*, int64_t, float);
    void (*small_m)(const GemmArgs&, int64_t, int64_t);
};

const IsaGemm* isa_gemm(Isa isa) {
    static const IsaGemm k512 = {avx512::kGemmMR,     avx512::kGemmNR,    avx512::gemm_pack_a,
                                 avx512::gemm_pack_b, avx512::gemm_macro, avx512::gemm_small_m};
    static const IsaGemm k2 = {avx2::kGemmMR,     avx2::kGemmNR,    avx2::gemm_pack_a,
                               avx2::gemm_pack_b, avx2::gemm_macro, avx2::gemm_small_m};
    switch (isa) {
    case Isa::Avx512: return &k512;
    case Isa::Avx2: return &k2;
    default: return nullptr;
    }
}

// Block sizes. KC: one B micro-panel (KC x NR) fits L1 next to the streaming A panel.
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 4096;        // columns of op(B) packed at once (KC x NC: 4 MiB)
constexpr int64_t kTileMPanels = 8;  // MC = 8 * MR rows per task
constexpr int64_t kTileNPanels = 8;  // NCT = 8 * NR columns per task
constexpr int64_t kMBPanels = 256;   // MB = 256 * MR rows of op(A) packed at once
// Below this many tiles per thread, tiles shrink (down to 2 A panels): with 2 threads and
// 3 equal tiles one thread idles for a third of the pass.
constexpr int64_t kTasksPerThread = 8;
constexpr int64_t kKRows = 16;  // rows of A per packing item when op(A) = A^T

// A 64-byte aligned scratch buffer per calling thread, grown on demand and reused across calls
// so repeated products do not page-fault fresh allocations.
struct Scratch {
    float* p = nullptr;
    size_t n = 0;
    ~Scratch() { std::free(p); }
    float* get(size_t floats) {
        if (floats > n) {
            std::free(p);
            const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
            p = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!p) {
                n = 0;
                throw std::bad_alloc();
            }
            n = floats;
        }
        return p;
    }
};

thread_local Scratch t_scratch;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Fewer threads for small products: a parallel region costs a few microseconds.
int threads_for(int nthreads, double flops) {
    if (nthreads <= 0) nthreads = default_threads();
    const int64_t cap = static_cast<int64_t>(flops / 2.0e6) + 1;
    return cap < nthreads ? static_cast<int>(cap) : nthreads;
}

void gemm_scalar(const GemmArgs& g, int nthreads) {
    const int64_t grain = g.N * g.K >= 65536 ? 1 : ceil_div(65536, g.N * g.K + 1);
    parallel_for(g.M, grain, nthreads, [&](int64_t b, int64_t e, int) { ref::gemm_rows(g, b, e); });
}

void gemm_small(const GemmArgs& g0, const IsaGemm& k, int nthreads) {
    GemmArgs g = g0;
    std::vector<float> a;
    if (g.trans_a) {  // the small-M kernels read op(A) rows contiguously
        a.resize(static_cast<size_t>(g.M * g.K));
        for (int64_t k2 = 0; k2 < g.K; ++k2)
            for (int64_t i = 0; i < g.M; ++i) a[i * g.K + k2] = g.A[k2 * g.lda + i];
        g.A = a.data();
        g.lda = g.K;
        g.trans_a = false;
    }
    parallel_for(g.N, 64, nthreads, [&](int64_t b, int64_t e, int) { k.small_m(g, b, e); });
}

void gemm_blocked(const GemmArgs& g, const IsaGemm& k, int nthreads) {
    const int64_t MR = k.mr, NR = k.nr;
    const int64_t MC = kTileMPanels * MR, NCT = kTileNPanels * NR, MB = kMBPanels * MR;
    const int64_t nc_max = g.N < kNC ? g.N : kNC, kc_max = g.K < kKC ? g.K : kKC;
    const int64_t mb_max = g.M < MB ? g.M : MB;
    const size_t a_floats = static_cast<size_t>(ceil_div(mb_max, MR) * MR * kc_max);
    const size_t b_floats = static_cast<size_t>(ceil_div(nc_max, NR) * NR * kc_max);
    float* Ap = t_scratch.get(a_floats + b_floats);
    float* Bp = Ap + a_floats;

    for (int64_t jc = 0; jc < g.N; jc += kNC) {
        const int64_t nc = g.N - jc < kNC ? g.N - jc : kNC;
        const int64_t npb = ceil_div(nc, NR);
        for (int64_t pc = 0; pc < g.K; pc += kKC) {
            const int64_t kc = g.K - pc < kKC ? g.K - pc : kKC;
            const float beta = pc == 0 ? g.beta : 1.0f;
            for (int64_t ic0 = 0; ic0 < g.M; ic0 += MB) {
                const int64_t mb = g.M - ic0 < MB ? g.M - ic0 : MB;
                const int64_t npa = ceil_div(mb, MR);
                // Pack this op(A) block, and the op(B) block on the first M block. Items of
                // op(A): one panel each, or for A^T (rows of A are panel rows) kKRows rows of
                // A across every panel.
                const int64_t nb_items = ic0 == 0 ? npb : 0;
                const int64_t na_items = g.trans_a ? ceil_div(kc, kKRows) : npa;
                parallel_for(na_items + nb_items, 4, nthreads, [&](int64_t b, int64_t e, int) {
                    for (int64_t it = b; it < e; ++it) {
                        if (it < na_items && g.trans_a) {
                            const int64_t q = it * kKRows, qn = kc - q < kKRows ? kc - q : kKRows;
                            k.pack_a(g, ic0, mb, pc + q, qn, kc, Ap + q * MR);
                        } else if (it < na_items) {
                            const int64_t r = it * MR;
                            k.pack_a(g, ic0 + r, mb - r < MR ? mb - r : MR, pc, kc, kc,
                                     Ap + r * kc);
                        } else {
                            const int64_t c = (it - na_items) * NR;
                            k.pack_b(g, jc + c, nc - c < NR ? nc - c : NR, pc, kc, Bp + c * kc);
                        }
                    }
                });
                // Tiles: MC x NCT by default; fewer A panels per tile when that leaves too
                // few tiles to keep every thread busy to the end (tiles do not change what
                // is summed in which order, so the result stays thread-count independent).
                int64_t mc = MC, mt = ceil_div(mb, mc);
                const int64_t nt = ceil_div(nc, NCT);
                while (nthreads > 1 && mt * nt < kTasksPerThread * nthreads && mc > 2 * MR) {
                    mc -= MR;
                    mt = ceil_div(mb, mc);
                }
                parallel_for(mt * nt, 1, nthreads, [&](int64_t b, int64_t e, int) {
                    for (int64_t t = b; t < e; ++t) {
                        const int64_t i = (t / nt) * mc, j = (t % nt) * NCT;
                        k.macro(mb - i < mc ? mb - i : mc, nc - j < NCT ? nc - j : NCT, kc,
                                Ap + i * kc, Bp + j * kc, g.C + (ic0 + i) * g.ldc + jc + j, g.ldc,
                                beta);
                    }
                });
            }
        }
    }
}

}  // namespace

void gemm_f32(const GemmArgs& g, int nthreads) {
    if (g.M <= 0 || g.N <= 0) return;
    if (g.K <= 0) {  // empty sum: C = beta * C
        for (int64_t i = 0; i < g.M; ++i) {
            float* c = g.C + i * g.ldc;
            for (int64_t j = 0; j < g.N; ++j) c[j] = g.beta == 0.0f ? 0.0f : g.beta * c[j];
        }
        return;
    }
    nthreads = threads_for(nthreads, 2.0 * g.M * g.N * g.K);
    const IsaGemm* k = isa_gemm(active_isa());
    if (!k) return gemm_scalar(g, nthreads);
    if (g.M <= kGemmSmallM) return gemm_small(g, *k, nthreads);
    gemm_blocked(g, *k, nthreads);
}

void matmul_f32(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K,
                int64_t lda, int64_t ldb, int64_t ldc, bool trans_b, int nthreads) {
    GemmArgs g;
    g.A = A;
    g.B = B;
    g.C = C;
    g.M = M;
    g.N = N;
    g.K = K;
    g.lda = lda;
    g.ldb = ldb;
    g.ldc = ldc;
    g.trans_a = false;
    g.trans_b = trans_b;
    g.beta = 0.0f;
    gemm_f32(g, nthreads);
}

}  // namespace pylm
