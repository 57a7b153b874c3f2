// quantkit — scalar reference of the GPTQ core (the specification of qk::*::hessian_accumulate ...
// gptq_quantize_matrix, see qk/gptq.h for the contracts and docs/gptq-native.md for the design).
//
// Plain loops, no threads, no SIMD (the pool arguments are ignored). The optimised variants in
// csrc/kernels/x86/gptq_{avx2,avx512}.cpp reproduce these results bit for bit: every value is produced by the
// same sequence of correctly rounded operations, written here with std::fma / std::fmaf where they use FMA.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <numeric>
#include <vector>

#include "qk/gptq.h"

namespace qk {
namespace ref {
namespace {

// 180-degree rotation in place: A[i][j] <-> A[n-1-i][n-1-j], i.e. A <- J A J with J the reversal permutation.
void rotate180(double* A, int64_t n) {
  const int64_t total = n * n;
  for (int64_t a = 0, b = total - 1; a < b; ++a, --b) std::swap(A[a], A[b]);
}

// Symmetric permutation in place: A <- P A P^T with (P A P^T)[i][j] = A[perm[i]][perm[j]].
// Rows first (cycle following with a row buffer), then every row's entries.
void permute_symmetric(double* A, int64_t n, const std::vector<int64_t>& perm) {
  std::vector<double> tmp(static_cast<size_t>(n));
  std::vector<char> done(static_cast<size_t>(n), 0);
  for (int64_t s = 0; s < n; ++s) {
    if (done[s]) continue;
    // new row i = old row perm[i]: walk the cycle s -> perm[s] -> ...
    std::memcpy(tmp.data(), A + s * n, sizeof(double) * n);
    int64_t i = s;
    while (true) {
      done[i] = 1;
      const int64_t src = perm[i];
      if (src == s) {
        std::memcpy(A + i * n, tmp.data(), sizeof(double) * n);
        break;
      }
      std::memcpy(A + i * n, A + src * n, sizeof(double) * n);
      i = src;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    double* row = A + i * n;
    for (int64_t j = 0; j < n; ++j) tmp[j] = row[perm[j]];
    std::memcpy(row, tmp.data(), sizeof(double) * n);
  }
}

}  // namespace

Status hessian_accumulate(const float* X, int64_t rows, int64_t cols, double* H, int64_t* n_seen,
                          ThreadPool* /*pool*/) {
  // Lower triangle: H[i][j] += x_i * x_j, rows in ascending order (the product of two floats is exact in
  // double, so this equals an FMA).
  for (int64_t t = 0; t < rows; ++t) {
    const float* x = X + t * cols;
    for (int64_t i = 0; i < cols; ++i) {
      const double xi = x[i];
      double* h = H + i * cols;
      for (int64_t j = 0; j <= i; ++j) h[j] += xi * static_cast<double>(x[j]);
    }
  }
  *n_seen += rows;
  return kOk;
}

void hessian_finalize(double* H, int64_t cols, int64_t n_seen) {
  const double f = n_seen > 0 ? 2.0 / static_cast<double>(n_seen) : 1.0;
  for (int64_t i = 0; i < cols; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      const double v = H[i * cols + j] * f;
      H[i * cols + j] = v;
      H[j * cols + i] = v;
    }
  }
}

Status cholesky_lower(double* A, int64_t n, ThreadPool* /*pool*/) {
  for (int64_t j = 0; j < n; ++j) {
    double* rj = A + j * n;
    double s = rj[j];
    for (int64_t k = 0; k < j; ++k) s = std::fma(-rj[k], rj[k], s);
    if (!(s > 0.0) || !std::isfinite(s)) return QK_STATUS_INVALID_ARGUMENT;
    const double d = std::sqrt(s);
    rj[j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double* ri = A + i * n;
      double v = ri[j];
      for (int64_t k = 0; k < j; ++k) v = std::fma(-ri[k], rj[k], v);
      ri[j] = v / d;
    }
  }
  return kOk;
}

Status triangular_inverse_lower(double* A, int64_t n, ThreadPool* /*pool*/) {
  // Column by column, ascending: column j needs Y[k][j] (k < i, this column, already written) and the
  // original L[i][k] for k >= j (columns > j are not processed yet; L[i][j] itself is read before written).
  for (int64_t j = 0; j < n; ++j) {
    A[j * n + j] = 1.0 / A[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = j; k < i; ++k) s = std::fma(A[i * n + k], A[k * n + j], s);
      A[i * n + j] = -s / A[i * n + i];
    }
  }
  return kOk;
}

Status cholesky_inverse_upper(double* H, int64_t n, double damp, int max_tries, double* damp_used, int* tries,
                              ThreadPool* pool) {
  if (max_tries < 1 || !(damp >= 0.0) || !std::isfinite(damp)) return QK_STATUS_INVALID_ARGUMENT;
  for (int64_t k = 0; k < n * n; ++k)
    if (!std::isfinite(H[k])) return QK_STATUS_INVALID_ARGUMENT;
  std::vector<double> diag(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    diag[i] = H[i * n + i];
    sum += diag[i];
  }
  const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  // Work on J H J: its lower triangle is factored, its strict upper triangle stays a copy (H is symmetric).
  rotate180(H, n);
  double cur = damp;
  for (int attempt = 1; attempt <= max_tries; ++attempt) {
    if (attempt > 1) {
      cur = cur > 0.0 ? cur * 10.0 : 1e-4;
      for (int64_t i = 0; i < n; ++i)  // restore the lower triangle from the untouched upper one
        for (int64_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
    }
    const double lambda = cur * mean;
    for (int64_t i = 0; i < n; ++i) H[i * n + i] = diag[n - 1 - i] + lambda;
    Status st = cholesky_lower(H, n, pool);
    if (st == QK_STATUS_INVALID_ARGUMENT) continue;
    if (st != kOk) return st;
    st = triangular_inverse_lower(H, n, pool);
    if (st != kOk) return st;
    rotate180(H, n);  // lower L^-1 of J H J -> upper U = J L^-1 J
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < i; ++j) H[i * n + j] = 0.0;
    if (damp_used) *damp_used = cur;
    if (tries) *tries = attempt;
    return kOk;
  }
  if (tries) *tries = max_tries;
  return QK_STATUS_INVALID_ARGUMENT;
}

int64_t gptq_fix_dead_inputs(double* H, int64_t n, uint8_t* dead) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool d = H[i * n + i] == 0.0;
    if (d) {
      H[i * n + i] = 1.0;
      ++count;
    }
    if (dead) dead[i] = d ? 1 : 0;
  }
  return count;
}

Status gptq_quantize_matrix(const float* W, int64_t in, int64_t out, double* H, const GptqOptions* opt,
                            uint8_t* q, float* scale, uint8_t* zero, int32_t* g_idx, float* w_hat,
                            GptqResult* res, ThreadPool* pool) {
  const int bits = opt->bits;
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8)) return QK_STATUS_INVALID_ARGUMENT;
  if (opt->group_size == 0 || opt->group_size < -1) return QK_STATUS_INVALID_ARGUMENT;
  if (!(opt->damp >= 0.0 && opt->damp <= 1.0) || opt->max_damp_tries < 1) return QK_STATUS_INVALID_ARGUMENT;
  for (int64_t k = 0; k < in * out; ++k)
    if (!std::isfinite(W[k])) return QK_STATUS_INVALID_ARGUMENT;
  const float maxq = static_cast<float>((1 << bits) - 1);
  const int64_t G = gptq_num_groups(in, opt->group_size);
  const int64_t g = opt->group_size < 0 ? std::max<int64_t>(in, 1) : opt->group_size;

  // §3.6 dead inputs.
  std::vector<uint8_t> dead(static_cast<size_t>(in));
  const int64_t n_dead = gptq_fix_dead_inputs(H, in, dead.data());

  // §3.7 activation order: stable sort by decreasing diag(H) (after the dead fix; damping adds a constant).
  std::vector<int64_t> perm(static_cast<size_t>(in));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (opt->act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[a * in + a] > H[b * in + b]; });
    permute_symmetric(H, in, perm);
  }
  double damp_used = 0.0;
  int tries = 0;
  Status st = cholesky_inverse_upper(H, in, opt->damp, opt->max_damp_tries, &damp_used, &tries, pool);
  if (st != kOk) return st;
  const double* U = H;

  // Working weights in processing order, one row per input: Wt[j][o] = W[perm[j]][o].
  std::vector<float> Wt(static_cast<size_t>(in * out));
  for (int64_t j = 0; j < in; ++j) {
    const bool zero_it = opt->zero_dead_inputs && dead[perm[j]];
    for (int64_t o = 0; o < out; ++o) Wt[j * out + o] = zero_it ? 0.0f : W[perm[j] * out + o];
  }
  std::vector<float> s(static_cast<size_t>(out)), z(static_cast<size_t>(out));
  if (in == 0 && G > 0) {  // an empty group (group_size -1): parameters of the all-zero range
    for (int64_t o = 0; o < out; ++o) {
      float z0;
      gptq_group_params(0.0f, 0.0f, bits, opt->symmetric, &scale[o * G], &z0);
      zero[o * G] = static_cast<uint8_t>(z0);
    }
  }
  double loss = 0.0;
  for (int64_t j = 0; j < in; ++j) {
    if (j % g == 0) {  // first column of a group: parameters from the current (fully updated) weights
      const int64_t gi = j / g, ge = std::min(j + g, in);
      float gmn = 0.0f, gmx = 0.0f;  // over all rows, for !per_channel
      for (int64_t o = 0; o < out; ++o) {
        float mn = Wt[j * out + o], mx = mn;
        for (int64_t c = j + 1; c < ge; ++c) {
          const float v = Wt[c * out + o];
          mn = v < mn ? v : mn;
          mx = v > mx ? v : mx;
        }
        if (opt->per_channel) {
          gptq_group_params(mn, mx, bits, opt->symmetric, &s[o], &z[o]);
        } else {
          gmn = (o == 0 || mn < gmn) ? mn : gmn;
          gmx = (o == 0 || mx > gmx) ? mx : gmx;
        }
      }
      if (!opt->per_channel) {
        float s0, z0;
        gptq_group_params(gmn, gmx, bits, opt->symmetric, &s0, &z0);
        for (int64_t o = 0; o < out; ++o) {
          s[o] = s0;
          z[o] = z0;
        }
      }
      for (int64_t o = 0; o < out; ++o) {
        scale[o * G + gi] = s[o];
        zero[o * G + gi] = static_cast<uint8_t>(z[o]);
      }
    }
    const float d = static_cast<float>(U[j * in + j]);
    for (int64_t o = 0; o < out; ++o) {
      const float w = Wt[j * out + o];
      const float lv = gptq_quantize_level(w, s[o], z[o], maxq);
      const float dq = s[o] * (lv - z[o]);
      const float e = (w - dq) / d;
      loss += static_cast<double>(e) * static_cast<double>(e);
      q[o * in + perm[j]] = static_cast<uint8_t>(lv);
      if (w_hat) w_hat[perm[j] * out + o] = dq;
      for (int64_t k = j + 1; k < in; ++k) {
        const float u = static_cast<float>(U[j * in + k]);
        Wt[k * out + o] = std::fmaf(-u, e, Wt[k * out + o]);
      }
    }
    g_idx[perm[j]] = static_cast<int32_t>(opt->group_size < 0 ? 0 : j / g);
  }
  if (res) {
    res->damp_used = damp_used;
    res->damp_tries = tries;
    res->dead_inputs = n_dead;
    res->loss = loss;
  }
  return kOk;
}

}  // namespace ref
}  // namespace qk
