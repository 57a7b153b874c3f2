// quantkit — the native GPTQ core: Hessian accumulation, Cholesky factorizations and the GPTQ column loop.
//
// Spec: /work/shared/spec/keras-quantization.md §3.5-§3.10, with the deliberate differences of DESIGN.md §2
// (grouped ranges contain 0, zero points clamped into [0, maxq], group parameters computed once per group for
// any group size). Design note: docs/gptq-native.md.
//
// Every function exists in qk::ref (csrc/kernels/ref/gptq_ref.cpp, the specification: plain loops, no threads,
// no SIMD), qk::avx2 and qk::avx512 (csrc/kernels/x86/gptq_{avx2,avx512}.cpp: blocked, packed, multithreaded).
//
// BIT-EXACTNESS. All variants return bit-identical results (H, L, U, levels, scales, zeros, dequantized
// weights and the loss). This holds because every floating-point quantity is produced by the same sequence of
// correctly rounded operations in every variant:
//   * Hessian: products of two float32 values are exact in float64, so an FMA equals multiply+add and the sum
//     for each entry is formed in ascending row order (the blocked kernels start each tile from the stored
//     running sum and add rows in order).
//   * Cholesky / triangular inverse: each entry is `s = a; s = fma(-x_k, y_k, s)` over k ascending, then a
//     division or square root (the blocked right-looking / left-looking kernels keep that order).
//   * GPTQ: every weight receives `w = fmaf(-u, e, w)` updates in ascending column order, whether they are
//     applied immediately (the reference, non-lazy) or batched per 128-column block (the lazy optimised
//     variants), and the loss is summed in (column, output) order.
// The reference therefore uses std::fma/fmaf (hardware FMA through libm when the ref TU has no FMA flag).
//
// Matrices are row-major and contiguous unless said otherwise. Callers validate sizes; functions that may
// fail or allocate return a Status.
#ifndef QK_GPTQ_H_
#define QK_GPTQ_H_

#include <math.h>
#include <stdint.h>

#include "qk/status.h"

// The element math below is shared with the CUDA GPTQ (cuda/gptq_sweep.cuh): __host__ __device__ under nvcc.
#ifndef QK_HD
#ifdef __CUDACC__
#define QK_HD __host__ __device__
#else
#define QK_HD
#endif
#endif

namespace qk {

class ThreadPool;

// Options of one GPTQ layer quantization (GPTQConfig, spec §3.1, minus the calibration fields).
struct GptqOptions {
  int bits = 4;               // 2, 3, 4 or 8; maxq = 2^bits - 1 (levels are unsigned, stored one per byte here)
  int64_t group_size = 128;   // >= 1, or -1 = one group over all inputs (per output channel)
  bool symmetric = false;     // symmetric: scale = 2*max|w|/maxq, zero = (maxq+1)/2
  bool per_channel = true;    // false: one (scale, zero) per group shared by all outputs (Keras per_channel=False)
  bool act_order = false;     // process inputs by decreasing diag(H) (stable: ties keep the lower index first)
  double damp = 0.01;         // hessian_damping, in [0, 1]: lambda = damp * mean(diag H) added to diag(H)
  int max_damp_tries = 6;     // attempts of the factorization, damping x10 each retry (>= 1)
  bool zero_dead_inputs = false;  // reference GPTQ zeroes the weights of inputs whose diag(H) == 0; Keras does not
};

// What gptq_quantize_matrix reports besides its outputs.
struct GptqResult {
  double damp_used = 0;     // relative damping of the successful factorization (lambda = damp_used * mean(diag))
  int damp_tries = 0;       // attempts made (1 = the requested damping worked)
  int64_t dead_inputs = 0;  // inputs with diag(H) == 0 (set to 1 on the diagonal before damping)
  double loss = 0;          // proxy loss sum_{j,o} (w - dq)^2 / U[j][j]^2 (float64, summed in (j, o) order)
};

// Number of (scale, zero) columns: 1 for group_size == -1, else ceil(in / group_size) (Keras n_g).
QK_HD inline int64_t gptq_num_groups(int64_t in, int64_t group_size) {
  return group_size < 0 ? 1 : (in + group_size - 1) / group_size;
}

// Scale and zero of one group from the min and max of its weights (spec §3.9 with the DESIGN.md §2 fixes).
// float32 throughout, shared by every variant so that they agree bit for bit:
//   mn = min(mn, 0), mx = max(mx, 0)                    range always contains 0 (fix; Keras does not)
//   symmetric: a = max(-mn, mx), mn = -a, mx = a        (Keras keeps mn = 0 for an all-positive group and then
//                                                        clips its upper half; impossible here)
//   mn == mx (only 0 == 0): mn = -1, mx = 1             constant-zero groups are safe
//   scale = (mx - mn) / maxq; scale <= 0 (underflow) -> 1e-8
//   zero  = symmetric ? (maxq + 1) / 2 : clamp(rne(-mn / scale), 0, maxq)   (clamp = fix)
QK_HD inline void gptq_group_params(float mn, float mx, int bits, bool symmetric, float* scale, float* zero) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  mn = mn < 0.0f ? mn : 0.0f;
  mx = mx > 0.0f ? mx : 0.0f;
  if (symmetric) {
    const float a = -mn > mx ? -mn : mx;
    mn = -a;
    mx = a;
  }
  if (mn == mx) {
    mn = -1.0f;
    mx = 1.0f;
  }
  float s = (mx - mn) / maxq;
  if (!(s > 0.0f)) s = 1e-8f;
  float z;
  if (symmetric) {
    z = static_cast<float>((1 << bits) / 2);
  } else {
    z = nearbyintf(-mn / s);
    z = z < 0.0f ? 0.0f : z;
    z = z > maxq ? maxq : z;
  }
  *scale = s;
  *zero = z;
}

// One level: clamp(rne(w / s + z), 0, maxq) (rounding on w/s + z as Keras, spec §3.8). Two separately rounded
// float32 operations, then round-half-even; the SIMD variants do the same lane-wise.
// The clamp is written as (t > 0 ? t : 0) and (t < maxq ? t : maxq), exactly the semantics of x86 max/min
// instructions with the constant as second operand, so -0 becomes +0 in every variant.
QK_HD inline float gptq_quantize_level(float w, float s, float z, float maxq) {
  float t = nearbyintf(w / s + z);
  t = t > 0.0f ? t : 0.0f;
  return t < maxq ? t : maxq;
}

#define QK_DECLARE_GPTQ_KERNELS                                                                                 \
  /* Streams a batch into the running Hessian sum. X: float32 [rows, cols] row-major contiguous. H: float64  \
     [cols, cols] row-major, holds the RUNNING SUM S = sum_t x_t x_t^T over every row seen so far (not yet    \
     scaled); start from all zeros and *n_seen = 0. Adds each x_t x_t^T for t = 0..rows-1 (ascending) to the  \
     LOWER triangle only (incl. the diagonal); the strict upper triangle is not touched until                \
     hessian_finalize mirrors it, so streaming costs no O(cols^2) pass per batch. *n_seen += rows.           \
     Streaming in several batches gives a bit-identical H to one big batch.                                  \
     Returns OUT_OF_MEMORY if scratch cannot be allocated (H is then unchanged). */                           \
  Status hessian_accumulate(const float* X, int64_t rows, int64_t cols, double* H, int64_t* n_seen,            \
                            ThreadPool* pool);                                                                 \
  /* In place: mirrors the lower triangle into the upper one (H exactly symmetric) and scales              \
     H = (2 / n_seen) * S (Keras' H = 2/N sum x x^T, N counting rows/tokens, spec §3.5). n_seen = 0 only     \
     mirrors (H stays all zeros: every input is then "dead" and GPTQ degenerates to round-to-nearest, as    \
     Keras does). GPTQ itself is invariant to the scale of H; the factor only keeps numbers comparable. */   \
  void hessian_finalize(double* H, int64_t cols, int64_t n_seen);                                              \
  /* In-place Cholesky A = L L^T. A: float64 [n, n] row-major. Reads only the lower triangle (incl. the      \
     diagonal) and overwrites it with L; the strict upper triangle is neither read nor written. Every entry  \
     is s = A[i][j]; s = fma(-L[i][k], L[j][k], s) for k ascending; L[j][j] = sqrt(s), L[i][j] = s / L[j][j]. \
     Returns QK_STATUS_INVALID_ARGUMENT if a pivot s is not > 0 or not finite (A not positive definite, or  \
     NaN/inf): the lower triangle is then partly overwritten, never silently NaN. */                          \
  Status cholesky_lower(double* A, int64_t n, ThreadPool* pool);                                               \
  /* In-place inverse of a lower-triangular matrix with a positive diagonal: reads and overwrites the lower  \
     triangle of A (row-major [n, n]) with Y = L^-1; the strict upper triangle is neither read nor written.  \
     Y[j][j] = 1 / L[j][j]; Y[i][j] = -s / L[i][i] with s = 0; s = fma(L[i][k], Y[k][j], s), k = j..i-1.    \
     Returns OUT_OF_MEMORY if scratch cannot be allocated (optimised variants; A is then unchanged). */      \
  Status triangular_inverse_lower(double* A, int64_t n, ThreadPool* pool);                                     \
  /* The factor GPTQ needs (spec §3.6-§3.7): damps H and returns U, upper triangular with positive diagonal, \
     such that (H + lambda I)^-1 = U^T U. H: float64 [n, n] row-major, symmetric (both triangles are used:   \
     the strict upper triangle is the backup from which retries restore the lower one). Dead columns must   \
     already be handled (gptq_fix_dead_inputs). lambda = damp * mean(diag H); if the factorization fails the \
     damping is multiplied by 10 (damp == 0: the first retry uses 1e-4) and retried, up to max_tries        \
     attempts. On success H holds U in its upper triangle (incl. diagonal) and zeros below, *damp_used the  \
     relative damping used, *tries the attempts (either pointer may be null). On failure (never positive    \
     definite, or non-finite input) returns QK_STATUS_INVALID_ARGUMENT (OUT_OF_MEMORY if scratch cannot be  \
     allocated) and H is unspecified.                                                                       \
     Method: with J the reversal permutation, J H J = L L^T (Cholesky) gives H = V V^T with V = J L J upper  \
     triangular, so H^-1 = U^T U with U = V^-1 = J L^-1 J: one Cholesky plus one triangular inverse (2n^3/3 \
     flops) instead of Cholesky, inverse and a second Cholesky (4n^3/3). U is unique, so this is the same    \
     matrix torch.linalg.cholesky(cholesky_inverse(L), upper=True) computes, up to rounding. */              \
  Status cholesky_inverse_upper(double* H, int64_t n, double damp, int max_tries, double* damp_used,          \
                                int* tries, ThreadPool* pool);                                                 \
  /* Dead inputs (spec §3.6): for every i with H[i][i] == 0 sets H[i][i] = 1 and marks dead[i] = 1 (dead may  \
     be null; else [n] bytes, 0 for live inputs). Returns the number of dead inputs. */                       \
  int64_t gptq_fix_dead_inputs(double* H, int64_t n, uint8_t* dead);                                           \
  /* GPTQ of one layer (spec §3.6-§3.10).                                                                    \
     W:     float32 [in, out] row-major = the Keras Dense kernel as stored ((in, units)); not modified.       \
            Must be finite (else INVALID_ARGUMENT).                                                          \
     H:     float64 [in, in], the finalized Hessian (hessian_finalize), symmetric. CONSUMED: overwritten with  \
            the factor U of the (permuted) damped Hessian.                                                   \
     Steps: dead inputs (gptq_fix_dead_inputs; optionally zero their weights); with act_order, perm = stable  \
     sort of the inputs by decreasing diag(H), W and H permuted (P H P^T); cholesky_inverse_upper; then the   \
     column loop in processing order j = 0..in-1: at the first column of each group (groups are contiguous   \
     runs of group_size columns of the PERMUTED order; -1 = all), (scale, zero) from the min/max of the      \
     group's current weights (gptq_group_params; per output row, or over all rows if !per_channel), computed \
     ONCE per group from the weights as updated by every earlier column; then per output o:                 \
       q = gptq_quantize_level(w, s, z, maxq); dq = s * (q - z); e = (w - dq) / (float)U[j][j];              \
       w_k = fmaf(-(float)U[j][k], e, w_k) for every later column k;  loss += (double)e * e.                 \
     The reference applies the update immediately (textbook GPTQ); the optimised variants batch it per 128  \
     columns (the paper's lazy updates), which gives the same bits.                                        \
     Outputs (Keras layout, spec §3.10, in the ORIGINAL input order):                                       \
       q      uint8 [out, in]   levels in [0, maxq], q[o*in + perm[j]] (unpacked; packing is a separate op)  \
       scale  float32 [out, G]  G = gptq_num_groups(in, group_size); columns in processing (permuted) order   \
       zero   uint8 [out, G]    in [0, maxq]                                                                \
       g_idx  int32 [in]        g_idx[perm[j]] = j / group_size (0 for group_size -1)                       \
       w_hat  float32 [in, out] dequantized weights dq, same layout as W; may be null                       \
       res    GptqResult        may be null                                                                 \
     Returns INVALID_ARGUMENT for bad options (bits not 2/3/4/8, group_size 0 or < -1, damp outside [0, 1],  \
     max_damp_tries < 1), non-finite W or H, or a Hessian that stays non positive definite; OUT_OF_MEMORY   \
     when scratch cannot be allocated. in == 0 or out == 0 is legal. */                                       \
  Status gptq_quantize_matrix(const float* W, int64_t in, int64_t out, double* H, const GptqOptions* opt,        \
                              uint8_t* q, float* scale, uint8_t* zero, int32_t* g_idx, float* w_hat,           \
                              GptqResult* res, ThreadPool* pool);

namespace ref {
QK_DECLARE_GPTQ_KERNELS
}  // namespace ref
namespace avx2 {
QK_DECLARE_GPTQ_KERNELS
}  // namespace avx2
namespace avx512 {
QK_DECLARE_GPTQ_KERNELS
}  // namespace avx512

}  // namespace qk

#endif  // QK_GPTQ_H_
