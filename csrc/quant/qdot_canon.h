// The canonical floating-point evaluation of the legacy-block and float-weight dot products.
// Scalar (qdot_ref.cpp), AVX2 and AVX-512 (qdot_avx2.cpp / qdot_avx512.cpp) all compute exactly
// these float operations in exactly this order, so every ISA returns bit-identical results, and
// a row's result never depends on how many activation rows share the call (batch invariance).
// The order is the natural one of the AVX-512 kernels: 16 float lanes, then one fixed tree.
//
// Reduction tree of 16 lanes v[0..15] (every kernel, written out, never reduce_add_ps):
//   v[i] += v[i+8] (i < 8); v[i] += v[i+4] (i < 4); v[i] += v[i+2] (i < 2); v[0] += v[1].
// fma(a, b, c) is a fused multiply-add everywhere (std::fmaf in scalar code).
//
// Float weights (F32/F16/BF16) against the float row x:
//   acc[l] = 0; for t = 0, 1, ..: k = 16t + l, if k < K: acc[l] = fma(w[k], x[k], acc[l]);
//   result = tree(acc).
//
// Legacy blocks (32 weights, weight scale d_w, integer weights q) against a Q8S row (qdot.h):
//   units of U consecutive blocks: U = 4 (Q4_0, Q4_1, Q5_0, Q5_1), U = 2 (Q8_0); unit u holds
//   blocks U*u .. U*u+U-1 (blocks past the row's end are absent). Lane l of a unit belongs to
//   block i = l % U of the unit and to the position set G_j, j = l / U:
//     U = 4: G_j = {4j .. 4j+3} u {16+4j .. 16+4j+3}  (the low and high nibbles of qs[4j..4j+3])
//     U = 2: G_j = {4j .. 4j+3}
//   P = sum_{p in G_j} q[p] * a[p], an exact int32 (q signed: Q4_0 nibble-8, Q5_0 value-16,
//   Q8_0 the int8; Q4_1/Q5_1 the unsigned 0..15 / 0..31).
//   sc_b = d_w(b) * d_x(b) (one float multiply).
//   acc_e (unit u even) / acc_o (u odd): acc[l] = fma(float(P), sc_b, acc[l]), units in order.
//   Q4_1/Q5_1 only: groups of 16 blocks g = 0, 1, ..: accs[i] = fma(m_w(16g+i), s_x(16g+i),
//   accs[i]) for the blocks present (s_x = d_x * sum(a), qdot.h).
//   result = tree((acc_e + acc_o) + accs)   (lane-wise; accs = 0 for the other types).
// Absent blocks and lanes contribute nothing; SIMD code may add exact zeros there (a zero
// product added to an accumulator that started at +0 never changes it).
// The float conversion of P is exact: |P| < 2^24 for every type.
#pragma once
