// f32 matmul dispatcher: picks the ISA's pieces, blocks for the caches, packs, and threads.
//
// Loop nest, for C [M, N] = op(A) [M, K] @ op(B) [K, N]:
//   jc over N in blocks      Bp = pack(op(B)[:, jc:jc+nc]) for every K block (shared, L3)
//    task: mc rows (x nct)   parallel, taken dynamically
//     pc over K in KC        Ap = pack(op(A)[rows, pc:pc+KC]) (per thread, L2)
//                            macro-kernel: MR x NR micro-tiles, C += Ap Bp (beta on pc = 0)
// One barrier per B block (after packing it). The split into tasks never changes what is
// summed in which order, so the result is identical for any thread count.
#include "kernels/matmul.h"

#include <cstdlib>
#include <new>
#include <vector>

#include "core/isa.h"
#include "core/scratch.h"
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
// Floats of op(B) packed at once (8 MiB). Tasks tile the columns, so a block larger than L2
// costs nothing; splitting N (688 columns of weight gradients: K = 2048) costs a second pack
// pass and barrier, and a narrow last block.
constexpr int64_t kMaxPackedB = 1 << 21;
constexpr int64_t kTileMPanels = 8;     // rows per task: up to 8 * MR
constexpr int64_t kMinTileMPanels = 4;  // rows kept before tiling columns (B reuse per load)
constexpr int64_t kMinTileNPanels = 4;  // column tiles (only when rows alone are too few)
constexpr int64_t kPackBPanels = 8;     // op(B) panels packed per pack call (whole rows read)
// Tasks per thread wanted in a pass: with dynamic claims the last one leaves the other
// threads idle for up to a task, so a pass of 2 threads x 3 tasks loses a sixth.
constexpr int64_t kTasksPerThread = 16;
// Long K (weight gradients: K = tokens): every task streams all of op(B) (K x its columns)
// once per K block of its rows, so small tasks re-read B from L3 too often; fewer, larger,
// evenly sized tasks win there.
constexpr int64_t kTasksPerThreadLongK = 4;
constexpr int64_t kLongKBlocks = 3;  // "long": at least this many K blocks

// Per calling thread, reused across calls (no page faults of fresh allocations per product).
thread_local ScratchBuffer t_scratch;  // the caller's packed op(B)
thread_local ScratchBuffer t_apack;    // each thread's packed op(A) rows

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
    const int64_t npk = ceil_div(g.K, kKC);  // K blocks
    // Columns per op(B) block: all of N when op(B) packed for every K block stays under
    // kMaxPackedB floats, else N split evenly into blocks (multiples of NR) that do.
    const int64_t nblk = ceil_div(g.N * npk * kKC, kMaxPackedB);
    int64_t nc_max = ceil_div(ceil_div(g.N, nblk), NR) * NR;
    if (nc_max > g.N) nc_max = g.N;
    const int64_t nbp_max = ceil_div(nc_max, NR) * NR;  // padded block width
    float* Bp = t_scratch.get<float>(static_cast<size_t>(nbp_max * npk * kKC));

    for (int64_t jc = 0; jc < g.N; jc += nc_max) {
        const int64_t nc = g.N - jc < nc_max ? g.N - jc : nc_max;
        const int64_t npb = ceil_div(nc, NR), ncp = npb * NR;
        // Pack op(B)[:, jc:jc+nc] for every K block (block p at Bp + p * KC * ncp, its panels
        // [kc][NR] at + c * kc), kPackBPanels panels per item. One pass, shared by every task
        // below.
        const int64_t GW = kPackBPanels * NR, ng = ceil_div(nc, GW);
        parallel_for(npk * ng, 1, nthreads, [&](int64_t b, int64_t e, int) {
            for (int64_t it = b; it < e; ++it) {
                const int64_t p = it / ng, c = (it % ng) * GW, pc = p * kKC;
                const int64_t kc = g.K - pc < kKC ? g.K - pc : kKC;
                k.pack_b(g, jc + c, nc - c < GW ? nc - c : GW, pc, kc, Bp + pc * ncp + c * kc);
            }
        });
        // Tasks: blocks of mc rows of C across all nc columns; each packs its own op(A)
        // rows per K block into a per-thread buffer (L2-sized) and runs the macro-kernel
        // over the whole op(B) block, K blocks in order (so the sum order per element is
        // fixed by the shape alone). When there would be too few tasks to keep every thread
        // busy to the end: fewer rows per task down to kMinTileMPanels (each B micro-panel
        // brought into L1 serves that many A panels), then column tiles, then rows down to 2
        // panels.
        int64_t mc = kTileMPanels * MR, mt = ceil_div(g.M, mc), nct = ncp, nt = 1;
        const int64_t per_thread = npk >= kLongKBlocks ? kTasksPerThreadLongK : kTasksPerThread;
        const int64_t want = nthreads > 1 ? per_thread * nthreads : 1;
        auto shrink_rows = [&](int64_t min_panels) {
            for (; mt * nt < want && mc > min_panels * MR; mt = ceil_div(g.M, mc)) mc -= MR;
        };
        shrink_rows(kMinTileMPanels);
        while (mt * nt < want && nct > kMinTileNPanels * NR) {
            nct = (nct / 2 + NR - 1) / NR * NR;
            nt = ceil_div(nc, nct);
        }
        shrink_rows(2);
        // Even row tasks (whole panels spread over mt tasks): no short last task that leaves
        // the other threads idle for most of a task.
        mc = ceil_div(ceil_div(g.M, MR), mt) * MR;
        mt = ceil_div(g.M, mc);
        parallel_for(mt * nt, 1, nthreads, [&](int64_t b, int64_t e, int) {
            float* Ap = t_apack.get<float>(static_cast<size_t>(ceil_div(mc, MR) * MR * kKC));
            for (int64_t t = b; t < e; ++t) {
                const int64_t i = (t / nt) * mc, j = (t % nt) * nct;
                const int64_t mlen = g.M - i < mc ? g.M - i : mc;
                const int64_t nlen = nc - j < nct ? nc - j : nct;
                for (int64_t pc = 0; pc < g.K; pc += kKC) {
                    const int64_t kc = g.K - pc < kKC ? g.K - pc : kKC;
                    k.pack_a(g, i, mlen, pc, kc, kc, Ap);
                    k.macro(mlen, nlen, kc, Ap, Bp + pc * ncp + j * kc, g.C + i * g.ldc + jc + j,
                            g.ldc, pc == 0 ? g.beta : 1.0f);
                }
            }
        });
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
