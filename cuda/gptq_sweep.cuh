// quantkit — GPTQ on the device: the per-thread work of every kernel of cuda/gptq.cu as __host__ __device__
// functions, written so that each produces exactly the sequence of correctly rounded operations of the CPU
// reference (csrc/kernels/ref/gptq_ref.cpp, contracts in qk/gptq.h), hence BIT-IDENTICAL results:
//
//   Hessian    one thread per lower entry (i, j): H[i][j] += x_t[i] * x_t[j] over rows t ascending, in float64
//              (a product of two floats is exact in float64, so this is the reference's sum).
//   Cholesky   column by column (one launch per column): every entry of column j (diagonal included) is
//              s = A[i][j]; s = fma(-L[i][k], L[j][k], s) for k ascending, then sqrt / division — the reference's
//              loop; entries of one column are independent, so a column is one parallel launch.
//   inverse    Y = L^-1 one thread per COLUMN j (columns are independent; within a column, row i needs rows
//              j..i-1 of the same column): the reference's loop for that column. L is read from a pristine copy
//              (the in-place reference reads only columns >= j of L, which no other column's thread changes there).
//   sweep      one thread per output o over all inputs j (GPTQ's rows are independent once U is known, except
//              through !per_channel, which the device path does not offer). Lazy block updates: inside a block
//              [j0, j1) every update is applied at once; the updates of the block to the columns >= j1 are
//              applied after it, j ascending — per weight the same fmaf sequence as the reference's immediate
//              updates. Blocks never separate a group's first column from later columns of that group unless the
//              group starts at the block start (block_end below), so group parameters see the same weights.
//   loss       sum of e^2 in (j, o) order, in float64, by one thread per block of columns (exact order).
//
// test/cuda/host/layout_test.cpp runs these functions in the kernels' order and requires bit-identical H, L, U,
// levels, scales, zeros, dequantized weights and loss against qk::ref.
#ifndef QK_CUDA_GPTQ_SWEEP_CUH_
#define QK_CUDA_GPTQ_SWEEP_CUH_

#include <math.h>
#include <stdint.h>

#include <algorithm>
#include <vector>

#include "mma_layout.cuh"  // QK_LAYOUT_HD
#include "qk/gptq.h"

namespace qk {
namespace gptq_dev {

constexpr int64_t kLazyBlock = 128;  // columns per lazy block (at most)

// ---- Hessian: lower entry (i, j), j <= i, of the running sum, rows ascending ------------------------------------
QK_LAYOUT_HD double hessian_entry(const float* X, int64_t rows, int64_t cols, int64_t i, int64_t j, double h) {
  for (int64_t t = 0; t < rows; ++t) h += static_cast<double>(X[t * cols + i]) * static_cast<double>(X[t * cols + j]);
  return h;
}

// ---- Cholesky, column j: the pivot s (before sqrt) and an entry below the diagonal ---------------------------
QK_LAYOUT_HD double chol_pivot(const double* A, int64_t n, int64_t j) {
  const double* rj = A + j * n;
  double s = rj[j];
  for (int64_t k = 0; k < j; ++k) s = fma(-rj[k], rj[k], s);
  return s;
}
QK_LAYOUT_HD bool chol_pivot_ok(double s) { return s > 0.0 && isfinite(s); }
QK_LAYOUT_HD double chol_entry(const double* A, int64_t n, int64_t i, int64_t j, double d) {
  const double* ri = A + i * n;
  const double* rj = A + j * n;
  double v = ri[j];
  for (int64_t k = 0; k < j; ++k) v = fma(-ri[k], rj[k], v);
  return v / d;
}

// ---- triangular inverse: column j of Y = L^-1 (L read-only, Y written; lower triangles, row-major [n, n]) -----
QK_LAYOUT_HD void trinv_column(const double* L, double* Y, int64_t n, int64_t j) {
  Y[j * n + j] = 1.0 / L[j * n + j];
  for (int64_t i = j + 1; i < n; ++i) {
    double s = 0.0;
    for (int64_t k = j; k < i; ++k) s = fma(L[i * n + k], Y[k * n + j], s);
    Y[i * n + j] = -s / L[i * n + i];
  }
}

// ---- the column sweep ---------------------------------------------------------------------------------------
// The end of the lazy block starting at j0 (g = group size, >= 1; the whole input range for group -1).
QK_LAYOUT_HD int64_t block_end(int64_t j0, int64_t in, int64_t g) {
  int64_t e;
  if (g < kLazyBlock) {
    e = j0 + (kLazyBlock / g) * g;                 // whole groups
  } else {
    const int64_t next_group = (j0 / g + 1) * g;  // a group start is always a block start
    e = j0 + kLazyBlock < next_group ? j0 + kLazyBlock : next_group;
  }
  return e < in ? e : in;
}

struct SweepArgs {
  int64_t in, out, G, g;  // g: group size (in for group_size -1, at least 1)
  int bits;
  bool symmetric;
  const double* U;        // [in, in] upper factor (processing order)
  float* Wt;              // [in, out] working weights, processing order (updated in place)
  float* E;               // [kLazyBlock, out] the block's errors e (row j - j0)
  uint8_t* q;             // [out, in]  levels at q[o * in + perm[j]]
  float* scale;           // [out, G]
  uint8_t* zero;          // [out, G]
  float* w_hat;           // [in, out] at w_hat[perm[j] * out + o], or null
  const int32_t* perm;    // [in] processing order -> input
};

// Output o, columns [j0, j1): group parameters at each group start, quantize, error, immediate updates inside the
// block. s / z carry the current group's parameters of this output across blocks.
QK_LAYOUT_HD void sweep_block(const SweepArgs& a, int64_t o, int64_t j0, int64_t j1, float* s, float* z) {
  const float maxq = static_cast<float>((1 << a.bits) - 1);
  for (int64_t j = j0; j < j1; ++j) {
    if (j % a.g == 0) {
      const int64_t ge = j + a.g < a.in ? j + a.g : a.in;
      float mn = a.Wt[j * a.out + o], mx = mn;
      for (int64_t c = j + 1; c < ge; ++c) {
        const float v = a.Wt[c * a.out + o];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
      }
      gptq_group_params(mn, mx, a.bits, a.symmetric, s, z);
      a.scale[o * a.G + j / a.g] = *s;
      a.zero[o * a.G + j / a.g] = static_cast<uint8_t>(*z);
    }
    const float d = static_cast<float>(a.U[j * a.in + j]);
    const float w = a.Wt[j * a.out + o];
    const float lv = gptq_quantize_level(w, *s, *z, maxq);
    const float dq = *s * (lv - *z);
    const float e = (w - dq) / d;
    a.E[(j - j0) * a.out + o] = e;
    a.q[o * a.in + a.perm[j]] = static_cast<uint8_t>(lv);
    if (a.w_hat != nullptr) a.w_hat[a.perm[j] * a.out + o] = dq;
    for (int64_t k = j + 1; k < j1; ++k) {
      const float u = static_cast<float>(a.U[j * a.in + k]);
      a.Wt[k * a.out + o] = fmaf(-u, e, a.Wt[k * a.out + o]);
    }
  }
}

// The block's updates to column k >= j1 of output o, j ascending.
QK_LAYOUT_HD void sweep_flush(const SweepArgs& a, int64_t o, int64_t j0, int64_t j1, int64_t k) {
  float w = a.Wt[k * a.out + o];
  for (int64_t j = j0; j < j1; ++j) w = fmaf(-static_cast<float>(a.U[j * a.in + k]), a.E[(j - j0) * a.out + o], w);
  a.Wt[k * a.out + o] = w;
}

// The loss of a block, (j, o) order, added to `loss`.
QK_LAYOUT_HD double block_loss(const float* E, int64_t rows, int64_t out, double loss) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) loss += static_cast<double>(E[r * out + o]) * static_cast<double>(E[r * out + o]);
  return loss;
}

// ---- the host-side preparation of the device GPTQ (O(in^2 + in * out); the launcher and the host test share it) ---
// Dead inputs (diag(H) == 0 -> 1, as qk::ref::gptq_fix_dead_inputs), act order (stable sort by decreasing diag),
// Hp = P H P^T, its diagonal, the working weights Wt[j][o] = W[perm[j]][o] (0 for dead inputs when zero_dead).
// H is modified (dead diagonal entries set to 1), as the CPU version does.
struct Prepared {
  std::vector<int32_t> perm;
  std::vector<double> Hp, diag;
  std::vector<float> Wt;
  int64_t dead = 0;
};
inline void prepare(const float* W, int64_t in, int64_t out, double* H, bool act_order, bool zero_dead, Prepared* p) {
  std::vector<uint8_t> dead(static_cast<size_t>(in));
  p->dead = 0;
  for (int64_t i = 0; i < in; ++i) {
    dead[i] = H[i * in + i] == 0.0;
    if (dead[i]) {
      H[i * in + i] = 1.0;
      ++p->dead;
    }
  }
  p->perm.resize(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) p->perm[i] = static_cast<int32_t>(i);
  if (act_order) {
    std::stable_sort(p->perm.begin(), p->perm.end(),
                     [&](int32_t a, int32_t b) { return H[a * in + a] > H[b * in + b]; });
  }
  p->Hp.resize(static_cast<size_t>(in * in));
  p->diag.resize(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < in; ++j) p->Hp[i * in + j] = H[static_cast<int64_t>(p->perm[i]) * in + p->perm[j]];
  for (int64_t i = 0; i < in; ++i) p->diag[i] = p->Hp[i * in + i];
  p->Wt.resize(static_cast<size_t>(in * out));
  for (int64_t j = 0; j < in; ++j) {
    const bool z = zero_dead && dead[p->perm[j]];
    for (int64_t o = 0; o < out; ++o) p->Wt[j * out + o] = z ? 0.0f : W[static_cast<int64_t>(p->perm[j]) * out + o];
  }
}

}  // namespace gptq_dev
}  // namespace qk

#endif  // QK_CUDA_GPTQ_SWEEP_CUH_
