// quantkit — tiling of the Tensor-Core fused dequantize GEMM (wq_mma.cu: W4A16 grouped int4 and GPTQ 2/3/4/8-bit
// weights, float16 / bfloat16 activations, mma.sync m16n8k16 with float32 accumulation, sm_80+), as
// __host__ __device__ functions: which global chunk each thread loads, where it lands in shared memory, which
// shared-memory element each fragment register holds, which output each accumulator is, and the element math
// (dequantize in float32 exactly as qk::ref::dense_gptq / dense_w4g, then one round-to-nearest-even into the mma
// type). test/cuda/host/layout_test.cpp runs a host model of a whole thread block through exactly these functions
// (warp mma modelled through the PTX fragment layouts of mma_layout.cuh) against the CPU references.
//
// Block tile: kBM (64 tokens) x kBN (64 outputs), K consumed kBK = 32 rows at a time; 128 threads = 4 warps in a
// 2 x 2 grid, each warp a 32 x 32 output tile = 2 (m16) x 4 (n8) mma tiles; a k32 slice is two k16 mma steps.
//
// Shared memory (16-bit elements; row strides padded by 8 elements = 16 bytes):
//   As [kBM][kAStride]  activations, row = token, k contiguous    (A fragment registers: one 32-bit load each)
//   Bs [kBK][kBStride]  dequantized weights, row = k, n contiguous (B fragment registers: two 16-bit loads each)
// Each thread fills 16-byte runs: 8 consecutive k of one token (A), 8 consecutive outputs of one k row (B: exactly
// the 8 levels of one `bits`-byte chunk of the packed row, wq_layout.cuh). The paddings make the fragment reads
// and the 16-byte stores bank-conflict free (checked on the host).
#ifndef QK_CUDA_WQ_MMA_LAYOUT_CUH_
#define QK_CUDA_WQ_MMA_LAYOUT_CUH_

#include <stdint.h>

#include "mma_layout.cuh"
#include "qk/fp_convert.h"
#include "wq_layout.cuh"

namespace qk {
namespace wqmma {

constexpr int kBM = 64;
constexpr int kBN = 64;
constexpr int kBK = 32;
constexpr int kThreads = 128;
constexpr int kWarpsN = 2;
constexpr int kWarpTileM = 32;
constexpr int kWarpTileN = 32;
constexpr int kMTiles = kWarpTileM / 16;  // 2
constexpr int kNTiles = kWarpTileN / 8;   // 4
constexpr int kKSteps = kBK / 16;         // 2
constexpr int kAStride = kBK + 8;         // 40 elements = 80 bytes
constexpr int kBStride = kBN + 8;         // 72 elements = 144 bytes
constexpr int kAChunks = kBM * (kBK / 8) / kThreads;   // 2 runs of 8 activations per thread
constexpr int kBChunks = kBK * (kBN / 8) / kThreads;   // 2 chunks of 8 weights per thread
// Below this many rows the CUDA-core kernel (wq_gemm.cu: the weight is read once per 4 rows, no tile waste) is
// used; from it on the Tensor-Core tile pays off.
constexpr int64_t kMinRows = 16;

static_assert(kAChunks * kThreads == kBM * kBK / 8 && kBChunks * kThreads == kBK * kBN / 8, "whole tiles");
static_assert((kAStride * 2) % 16 == 0 && (kBStride * 2) % 16 == 0, "16-byte aligned rows");

// Global -> shared, activations: run j of thread tid is token row `row`, k elements 8 * chunk .. + 7 of the tile.
QK_LAYOUT_HD mma::RC a_load(int tid, int j) {
  const int c = tid + j * kThreads;
  return mma::RC{c / (kBK / 8), c % (kBK / 8)};
}
// Global -> shared, weights: chunk j of thread tid is k row `row` of the tile, outputs 8 * col .. + 7 of the tile.
// Eight consecutive threads read eight consecutive chunks of one packed row (8 * bits contiguous bytes).
QK_LAYOUT_HD mma::RC b_load(int tid, int j) {
  const int c = tid + j * kThreads;
  return mma::RC{c / (kBN / 8), c % (kBN / 8)};
}
// Element offsets in As / Bs.
QK_LAYOUT_HD int a_offset(int row, int k) { return row * kAStride + k; }
QK_LAYOUT_HD int b_offset(int k, int n) { return k * kBStride + n; }

QK_LAYOUT_HD int warp_m(int warp) { return warp / kWarpsN; }
QK_LAYOUT_HD int warp_n(int warp) { return warp % kWarpsN; }

// Element e (0..7) of the m16n8k16 A fragment of m-tile mt at k-step ks: its (token row, k) in the tile.
// Elements 2r and 2r + 1 are adjacent in k, so register r is one 32-bit load at a_offset(row, k).
QK_LAYOUT_HD mma::RC a_frag(int warp, int mt, int ks, int lane, int e) {
  const mma::RC a = mma::m16n8k16_a(lane, e);
  return mma::RC{warp_m(warp) * kWarpTileM + mt * 16 + a.row, ks * 16 + a.col};
}
// Element e (0..3) of the B fragment of n-tile nt at k-step ks: its (k, output) in the tile.
QK_LAYOUT_HD mma::RC b_frag(int warp, int nt, int ks, int lane, int e) {
  const mma::RC b = mma::m16n8k16_b(lane, e);
  return mma::RC{ks * 16 + b.row, warp_n(warp) * kWarpTileN + nt * 8 + b.col};
}
// Accumulator element e of (mt, nt): its (token row, output) in the block tile.
QK_LAYOUT_HD mma::RC acc_coord(int warp, int mt, int nt, int lane, int e) {
  const mma::RC c = mma::m16n8_c(lane, e);
  return mma::RC{warp_m(warp) * kWarpTileM + mt * 16 + c.row, warp_n(warp) * kWarpTileN + nt * 8 + c.col};
}

// ---- element math ------------------------------------------------------------------------------------------
// The 16-bit operand types, as raw bits: float16 (IEEE binary16) or bfloat16, RNE from float32 (qk/fp_convert.h
// is the same rounding as __float2half_rn / __float2bfloat16_rn; the device uses the intrinsics).
enum class Op16 : int { kF16 = 0, kBF16 = 1 };
QK_LAYOUT_HD uint16_t to_op16(float v, Op16 t) {
  return t == Op16::kF16 ? fp::f32_to_f16_one(v) : fp::f32_to_bf16_one(v);
}
QK_LAYOUT_HD float from_op16(uint16_t b, Op16 t) {
  return t == Op16::kF16 ? fp::f16_to_f32_one(b) : fp::bf16_to_f32_one(b);
}

// The dequantized weight of output j (column j0 + t of chunk c) at row k, in float32, exactly as the CPU
// references form it: W_hat = (q - z) * s (wq::dequant); 0 for j >= N. v is the row's chunk (wq::load_chunk8).
QK_LAYOUT_HD float b_weight(const wq::Problem& p, uint64_t v, int64_t g, int64_t j, int t) {
  if (j >= p.N) return 0.0f;
  return wq::dequant(wq::chunk_level(v, t, p.bits), p.zero[g * p.N + j], p.scale[g * p.N + j], p.is_signed);
}

// Epilogue: y = acc + bias[j] (float32), then rounded to the activation type by the caller.
QK_LAYOUT_HD float epilogue(float acc, const float* bias, int64_t j) { return bias != nullptr ? acc + bias[j] : acc; }

}  // namespace wqmma
}  // namespace qk

#endif  // QK_CUDA_WQ_MMA_LAYOUT_CUH_
