// quantkit — scalar reference for the GPTQ Dense forward over the GPTQ runtime layout (the specification of
// qk::*::dense_gptq), and the one-time conversions gptq_runtime_pack / gptq_runtime_unpack (the only
// implementation of those; every ISA's table points here). Layout and semantics: kernels.h.
//
// dense_gptq: y[i][j] = sum_{k=0}^{K-1} x[i][k] * What[k][j] (+ bias[j]), accumulated in float32 in ascending k
// from 0, every operation separately rounded (-ffp-contract=off), What[k][j] = (float(q) - float(z)) * s with
// q = level(k, j), z = zero[g][j], s = scale[g][j], g = k / group. No threads, no SIMD: the pool is ignored.
#include <algorithm>
#include <cstddef>
#include <cstring>

#include "qk/kernels.h"

namespace qk {
namespace ref {
namespace {

// Level of column j of a runtime row: bits [bits*j, bits*j + bits) of the row's little-endian bit stream
// (kernels.h). Only 3-bit levels can straddle a byte boundary, and then the next byte is inside the row.
inline int gptq_level(const uint8_t* row, int bits, int64_t j) {
  const int64_t bit = bits * j;
  const int64_t byte = bit / 8;
  const int sh = static_cast<int>(bit % 8);
  int v = row[byte] >> sh;
  if (sh + bits > 8) v |= row[byte + 1] << (8 - sh);
  return v & ((1 << bits) - 1);
}

// ORs level v (< 2^bits) of column j into a zero-initialised runtime row.
inline void gptq_put(uint8_t* row, int bits, int64_t j, int v) {
  const int64_t bit = bits * j;
  const int64_t byte = bit / 8;
  const int sh = static_cast<int>(bit % 8);
  row[byte] = static_cast<uint8_t>(row[byte] | ((v << sh) & 0xFF));
  if (sh + bits > 8) row[byte + 1] = static_cast<uint8_t>(row[byte + 1] | (v >> (8 - sh)));
}

}  // namespace

Status dense_gptq(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* wq, int bits, const float* scale,
                  const uint8_t* zero, int64_t group, const float* bias, float* y, ThreadPool* /*pool*/) {
  const int64_t rb = gptq_runtime_row_bytes(N, bits);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = k / group;
        const float q = static_cast<float>(gptq_level(wq + k * rb, bits, j));
        const float what = (q - static_cast<float>(zero[g * N + j])) * scale[g * N + j];
        sum += x[i * K + k] * what;
      }
      if (bias != nullptr) sum += bias[j];
      y[i * N + j] = sum;
    }
  }
  return kOk;
}

// Tiled over (64 outputs) x (64 runtime rows) so that the [N, K] source is read row-run by row-run and the 64
// source rows of one output tile stay in cache while every K tile is gathered from them.
void gptq_runtime_pack(const uint8_t* q, int64_t N, int64_t K, const int32_t* perm, int bits, uint8_t* dst) {
  const int64_t rb = gptq_runtime_row_bytes(N, bits);
  const int mask = (1 << bits) - 1;
  if (rb > 0 && K > 0) std::memset(dst, 0, static_cast<std::size_t>(K * rb));  // dst may be null when K = 0
  constexpr int64_t T = 64;
  uint8_t tile[T][T];  // tile[kk][jj] = level of runtime row k0 + kk, column j0 + jj
  for (int64_t j0 = 0; j0 < N; j0 += T) {
    const int64_t nj = std::min(T, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += T) {
      const int64_t nk = std::min(T, K - k0);
      for (int64_t jj = 0; jj < nj; ++jj) {
        const uint8_t* src = q + (j0 + jj) * K;
        for (int64_t kk = 0; kk < nk; ++kk) {
          const int64_t col = perm != nullptr ? perm[k0 + kk] : k0 + kk;
          tile[kk][jj] = src[col];
        }
      }
      for (int64_t kk = 0; kk < nk; ++kk) {
        uint8_t* row = dst + (k0 + kk) * rb;
        for (int64_t jj = 0; jj < nj; ++jj) gptq_put(row, bits, j0 + jj, tile[kk][jj] & mask);
      }
    }
  }
}

void gptq_runtime_unpack(const uint8_t* src, int64_t N, int64_t K, int bits, uint8_t* dst) {
  const int64_t rb = gptq_runtime_row_bytes(N, bits);
  for (int64_t k = 0; k < K; ++k) {
    const uint8_t* row = src + k * rb;
    for (int64_t j = 0; j < N; ++j) dst[k * N + j] = static_cast<uint8_t>(gptq_level(row, bits, j));
  }
}

}  // namespace ref
}  // namespace qk
