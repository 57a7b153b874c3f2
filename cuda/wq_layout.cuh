// quantkit — addressing of the packed weight-only formats read by the fused dequantize GEMM/GEMV (wq_gemm.cu),
// as __host__ __device__ functions, plus the per-thread accumulation loop itself so that the host test runs
// the kernel's own arithmetic.
//
// Both formats the kernel reads are "K rows of N levels, packed along N as one little-endian bit stream"
// (qk/kernels.h): level (k, j) is bits [bits * j, bits * j + bits) of row k, row k starting at byte
// k * row_bytes(N, bits) = k * ceil(bits * N / 8):
//   * GPTQ runtime layout (gptq_runtime_pack; bits 2, 3, 4, 8): unsigned levels, uint8 zero points,
//     W_hat = (float(q) - float(z)) * s.
//   * Keras grouped int4 (dense_w4g): w4 [K, (N+1)/2], low nibble for even j — the same stream with bits = 4 —
//     signed nibbles ((v ^ 8) - 8), int8 zero points, W_hat = float(q - z) * s.
// In both, s = scale[g * N + j], z = zero[g * N + j], g = group_index(k) (group_index below): k / group for rows
// in runtime order (the act-order permutation was applied by the pack, so g_idx is the plain k / group of the
// runtime row), or g_idx[k] when the caller passes a g_idx (rows left in the checkpoint's input order, as
// GPTQ checkpoints with act-order store them: any g in [0, G) per row; x then needs no permutation).
//
// A thread owns 8 consecutive columns 8c .. 8c + 7: they are exactly the `bits` bytes [c * bits, c * bits + bits)
// of a row (8 levels of `bits` bits = `bits` bytes), so one load of up to 8 bytes yields all eight levels,
// whatever the width, and no level straddles the thread's bytes.
#ifndef QK_CUDA_WQ_LAYOUT_CUH_
#define QK_CUDA_WQ_LAYOUT_CUH_

#include <math.h>
#include <stdint.h>

#include "mma_layout.cuh"  // QK_LAYOUT_HD

namespace qk {
namespace wq {

constexpr int kCols = 8;        // columns per thread
constexpr int kThreads = 256;   // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kBlockCols = 32 * kCols;  // 256 columns per block: lane -> column chunk
constexpr int kRows = 4;        // activation rows per pass (accumulators: kRows * kCols floats per thread)

QK_LAYOUT_HD int64_t row_bytes(int64_t N, int bits) { return (bits * N + 7) / 8; }

// The up-to-8 bytes holding columns 8c .. 8c+7 of a row, little-endian in a uint64 (bytes past the row end
// are not read: they only exist for the last chunk, whose missing columns are >= N).
QK_LAYOUT_HD uint64_t load_chunk8(const uint8_t* row, int64_t c, int bits, int64_t rb) {
  const int64_t first = c * bits;
  int64_t n = rb - first;
  if (n > bits) n = bits;
  uint64_t v = 0;
  for (int64_t b = 0; b < n; ++b) v |= static_cast<uint64_t>(row[first + b]) << (8 * b);
  return v;
}
// Level t (0..7) of a chunk.
QK_LAYOUT_HD int chunk_level(uint64_t v, int t, int bits) {
  return static_cast<int>((v >> (bits * t)) & ((1u << bits) - 1u));
}
// Level -> dequantized weight. is_signed: Keras int4 (sign-extended nibble, int8 zero); else GPTQ (unsigned,
// uint8 zero). Both are exact small integers, so float(q - z) == float(q) - float(z).
QK_LAYOUT_HD float dequant(int level, uint8_t zero_byte, float s, bool is_signed) {
  const int q = is_signed ? ((level ^ 8) - 8) : level;
  const int z = is_signed ? static_cast<int>(static_cast<int8_t>(zero_byte)) : static_cast<int>(zero_byte);
  return static_cast<float>(q - z) * s;
}
QK_LAYOUT_HD int64_t group_of(int64_t k, int64_t group) { return k / group; }
// The group of row k: g_idx[k] when given, else k / group. An entry outside [0, G) (the callers validate
// g_idx; this keeps an unvalidated device buffer from reading out of bounds) is taken as group 0.
QK_LAYOUT_HD int64_t group_index(int64_t k, int64_t group, const int32_t* g_idx, int64_t G) {
  if (g_idx == nullptr) return group_of(k, group);
  const int64_t g = g_idx[k];
  return (g >= 0 && g < G) ? g : 0;
}

// Warp w of a block sums k in [k_begin(w), k_end(w)): K cut into kWarps contiguous slices.
QK_LAYOUT_HD int64_t slice_len(int64_t K) { return (K + kWarps - 1) / kWarps; }
QK_LAYOUT_HD int64_t k_begin(int64_t K, int w) {
  const int64_t b = w * slice_len(K);
  return b < K ? b : K;
}
QK_LAYOUT_HD int64_t k_end(int64_t K, int w) { return k_begin(K, w + 1); }

struct Problem {
  int64_t M, N, K;
  const uint8_t* wq;
  int bits;
  bool is_signed;
  const float* scale;
  const uint8_t* zero;
  int64_t group;
  const int32_t* g_idx;  // [K] or null (then g = k / group)
  int64_t G;             // rows of scale / zero
};

// One thread's partial sums: acc[r][t] += x[m0 + r, k] * W_hat[k, 8c + t] over k in [kb, ke), in ascending k,
// one fmaf per term. XLoad(i, k) returns x[i, k] as float. Columns >= N and rows >= M are skipped (their
// accumulators stay 0).
template <class XLoad>
QK_LAYOUT_HD void accumulate(const Problem& p, const XLoad& xload, int64_t m0, int64_t c, int64_t kb, int64_t ke,
                             float (&acc)[kRows][kCols]) {
  const int64_t rb = row_bytes(p.N, p.bits);
  const int64_t j0 = c * kCols;
  int64_t gcur = -1;
  float s[kCols];
  uint8_t z[kCols];
  for (int t = 0; t < kCols; ++t) {
    s[t] = 0.0f;
    z[t] = 0;
  }
  for (int64_t k = kb; k < ke; ++k) {
    const int64_t g = group_index(k, p.group, p.g_idx, p.G);
    if (g != gcur) {
      gcur = g;
      for (int t = 0; t < kCols; ++t) {
        const bool in = j0 + t < p.N;
        s[t] = in ? p.scale[g * p.N + j0 + t] : 0.0f;
        z[t] = in ? p.zero[g * p.N + j0 + t] : 0;
      }
    }
    const uint64_t v = load_chunk8(p.wq + k * rb, c, p.bits, rb);
    float w[kCols];
    for (int t = 0; t < kCols; ++t) w[t] = dequant(chunk_level(v, t, p.bits), z[t], s[t], p.is_signed);
    for (int r = 0; r < kRows; ++r) {
      if (m0 + r >= p.M) break;
      const float xv = xload(m0 + r, k);
      for (int t = 0; t < kCols; ++t) acc[r][t] = fmaf(xv, w[t], acc[r][t]);
    }
  }
}

// The block's reduction: output (m0 + r, 8c + t) = (sum over warps w = 0..7 in order of partial[w]) + bias.
QK_LAYOUT_HD float finish(const float* partials_by_warp, int stride, const float* bias, int64_t j) {
  float sum = 0.0f;
  for (int w = 0; w < kWarps; ++w) sum += partials_by_warp[w * stride];
  return bias != nullptr ? sum + bias[j] : sum;
}

}  // namespace wq
}  // namespace qk

#endif  // QK_CUDA_WQ_LAYOUT_CUH_
