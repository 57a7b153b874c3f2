// quantkit — tiling of the 8-bit Tensor-Core GEMMs (gemm_mma.cu: int8 W8A8 and fp8 e4m3), as
// __host__ __device__ functions: which global chunk a thread loads, where it lands in shared memory (XOR
// swizzle), which row each lane hands to ldmatrix, which output element each accumulator is, and the element
// math of the fused prologue (per-token activation quantization) and epilogue (descale + bias).
// test/cuda/host/layout_test.cpp runs a host model of a whole thread block through exactly these functions and
// requires the result to be bit-identical to qk::ref::dense_w8a8 (and within tolerance of qk::ref::dense_fp8).
//
// Block tile: kBM x kBN outputs, K consumed kBK bytes (= 8-bit elements) at a time, two shared-memory stages.
// 128 threads = 4 warps in a 2 x 2 grid; each warp owns a 32 x 32 output tile = 2 (m16) x 4 (n8) mma tiles, and
// a kBK = 64 slice is two k32 mma steps.
//
// Shared memory: an A tile is kBM rows (tokens) x 64 bytes (k), a B tile is kBN rows (outputs n) x 64 bytes (k),
// each row four 16-byte chunks. Chunk c of row r is stored at chunk position c ^ ((r >> 1) & 3): the 8 rows an
// ldmatrix phase reads (8 consecutive rows, one chunk column) then fall into 8 different 16-byte bank groups
// (a 64-byte row puts two rows in each 128-byte bank line), so ldmatrix and the 16-byte stores are
// conflict-free (checked on the host).
//
// Weights are repacked once ("NK64" layout, made by qk_cuda_repack_nk64_dev): wt[n * Kp + k] = w[k * N + n]
// with Kp = K rounded up to 64 and zero padding, so every k-tile of B is whole, 16-byte aligned rows; the
// activation side is bounds-checked and quantizes out-of-range k to 0, which makes the padding inert.
#ifndef QK_CUDA_GEMM_TILING_CUH_
#define QK_CUDA_GEMM_TILING_CUH_

#include <stdint.h>

#include "mma_layout.cuh"
#include "qk/fp_convert.h"
#include "qk/quant_math.h"

namespace qk {
namespace gemm {

constexpr int kBM = 64;
constexpr int kBN = 64;
constexpr int kBK = 64;               // bytes of k per tile (8-bit elements)
constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kWarpsN = 2;            // warp w: warp_m = w / kWarpsN, warp_n = w % kWarpsN
constexpr int kWarpTileM = 32;
constexpr int kWarpTileN = 32;
constexpr int kMTiles = kWarpTileM / 16;  // 2 m16 tiles per warp
constexpr int kNTiles = kWarpTileN / 8;   // 4 n8 tiles per warp
constexpr int kKSteps = kBK / 32;         // 2 k32 mma steps per tile
constexpr int kChunksPerRow = kBK / 16;   // 4
constexpr int kTileBytes = kBM * kBK;     // 4096 (A and B tiles have the same size: kBM == kBN)
constexpr int kLoadsPerThread = kBM * kChunksPerRow / kThreads;  // 2 chunks of A and 2 of B per thread
constexpr int kStages = 2;

static_assert(kBM == kBN, "A and B tiles share the chunk mapping");
static_assert(kBM == 2 * kWarpTileM && kBN == kWarpsN * kWarpTileN, "2 x 2 warps");

QK_LAYOUT_HD int64_t pad_k(int64_t K) { return (K + kBK - 1) / kBK * kBK; }
// NK64 weight layout: element (k, n) of the [K, N] weight.
QK_LAYOUT_HD int64_t nk64_index(int64_t n, int64_t k, int64_t Kp) { return n * Kp + k; }

// Byte offset in a tile of byte `b` (0..15) of chunk `chunk` (0..3) of row `row`.
QK_LAYOUT_HD int swizzle(int row, int chunk) { return row * kBK + ((chunk ^ ((row >> 1) & 3)) << 4); }

// Global -> shared: load j (0 .. kLoadsPerThread-1) of thread `tid` moves chunk (row, chunk) of the tile.
// Consecutive threads take consecutive chunks of a row, so a warp reads 8 whole 64-byte rows.
QK_LAYOUT_HD mma::RC load_chunk(int tid, int j) {
  const int c = tid + j * kThreads;
  return mma::RC{c / kChunksPerRow, c % kChunksPerRow};
}

QK_LAYOUT_HD int warp_m(int warp) { return warp / kWarpsN; }
QK_LAYOUT_HD int warp_n(int warp) { return warp % kWarpsN; }

// ldmatrix.x4 for the A fragment of m-tile mt at k-step ks: the (tile row, chunk) whose address `lane`
// supplies. Matrix j = lane / 8 is rows (j & 1) * 8.. of the m16 tile and k bytes (j >> 1) * 16.., so the four
// destination registers are exactly registers 0..3 of the m16n8k32 A fragment.
QK_LAYOUT_HD mma::RC a_ldmatrix_src(int warp, int mt, int ks, int lane) {
  const int j = mma::ldmatrix_src_matrix(lane);
  return mma::RC{warp_m(warp) * kWarpTileM + mt * 16 + (j & 1) * 8 + mma::ldmatrix_src_row(lane),
                 ks * 2 + (j >> 1)};
}
// ldmatrix.x4 for the B fragments of n-tiles 2*np and 2*np+1 at k-step ks: matrix j is n-tile 2*np + (j >> 1),
// k half j & 1; destination registers = {B reg 0, B reg 1} of n-tile 2*np, then of 2*np+1.
QK_LAYOUT_HD mma::RC b_ldmatrix_src(int warp, int np, int ks, int lane) {
  const int j = mma::ldmatrix_src_matrix(lane);
  return mma::RC{warp_n(warp) * kWarpTileN + (np * 2 + (j >> 1)) * 8 + mma::ldmatrix_src_row(lane),
                 ks * 2 + (j & 1)};
}

// Accumulator element e of m-tile mt, n-tile nt of `lane` in `warp`: its (row, col) in the block tile.
QK_LAYOUT_HD mma::RC acc_coord(int warp, int mt, int nt, int lane, int e) {
  const mma::RC c = mma::m16n8_c(lane, e);
  return mma::RC{warp_m(warp) * kWarpTileM + mt * 16 + c.row, warp_n(warp) * kWarpTileN + nt * 8 + c.col};
}

// Prologue: warp w computes the abs-max of the block's rows w, w + kWarps, ...; lanes stride over k.
QK_LAYOUT_HD int prologue_first_row(int warp) { return warp; }
constexpr int kPrologueRowStride = kWarps;

// ---- element math (the specification is qk::ref::dense_w8a8 / dense_fp8, qk/kernels.h) ----------------------

// int8: per-token scale from the row's abs-max, and the quantized activation (qk/quant_math.h).
QK_LAYOUT_HD float w8a8_row_scale(float amax, float act_hi, float act_eps) {
  return qk_absmax_scale(amax, act_hi, act_eps);
}
QK_LAYOUT_HD uint8_t w8a8_quantize(float x, float sx, float act_lo, float act_hi) {
  return static_cast<uint8_t>(qk_quantize_clip(x, sx, act_lo, act_hi));
}
// d = w_scale * sx; v = float(acc) / d; y = v + bias; NaN -> canonical NaN (the order of dense_w8a8).
QK_LAYOUT_HD float w8a8_epilogue(int32_t acc, float w_scale, float sx, const float* bias, int64_t j) {
  const float d = w_scale * sx;
  const float v = static_cast<float>(acc) / d;
  const float out = bias != nullptr ? v + bias[j] : v;
  return qk_is_nan(out) ? qk_canonical_nan() : out;
}

// fp8: xq = e4m3fn(clip(x / x_scale, -448, 448)); y = acc * (x_scale * w_scale) + bias.
QK_LAYOUT_HD uint8_t fp8_quantize(float x, float x_scale) {
  float t = x / x_scale;
  if (t < -448.0f) t = -448.0f;
  if (t > 448.0f) t = 448.0f;
  return fp::f32_to_e4m3fn_one(t);
}
QK_LAYOUT_HD float fp8_epilogue(float acc, float out_scale, const float* bias, int64_t j) {
  const float v = acc * out_scale;
  return bias != nullptr ? v + bias[j] : v;
}

}  // namespace gemm
}  // namespace qk

#endif  // QK_CUDA_GEMM_TILING_CUH_
