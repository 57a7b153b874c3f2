// quantkit — tiling of the float32 SIMT GEMM of the float Dense layers (gemm_f32.cu), as __host__ __device__
// functions: which global element a thread loads into which shared-memory slot, which outputs a thread owns,
// and the per-thread multiply-accumulate step. test/cuda/host/layout_test.cpp runs a host model of whole thread
// blocks through exactly these functions and compares with a direct computation (and checks that the loads
// cover each tile exactly once and that the shared-memory accesses of a warp are free of bank conflicts).
//
// y[M, N] = x[M, K] @ w[K, N] + bias, all row-major float32 (w in the Keras [in, out] layout: no repack).
// Block tile kBM x kBN outputs, K consumed kBK at a time; 256 threads, each owning kTM x kTN = 4 x 4 outputs
// strided by 16 (rows ty + 16 i, columns tx + 16 j with ty = tid / 16, tx = tid % 16): a warp then reads 16
// consecutive B columns (no bank conflict) and 2 A rows (broadcast), and its stores of y are 64-byte runs.
// Shared memory: A tile stored k-major as as[kk][row] with a row stride of kBM + kPadA floats (the k-major store
// of 16 consecutive k of one row then spreads over 16 banks instead of one), B tile as bs[kk][col]. One stage:
// 16 * 68 + 16 * 64 floats = 8.4 KiB. Accumulation: fmaf over k in increasing order per output.
#ifndef QK_CUDA_GEMM_F32_TILING_CUH_
#define QK_CUDA_GEMM_F32_TILING_CUH_

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define QK_SG_HD __host__ __device__ __forceinline__
#else
#define QK_SG_HD inline
#endif

namespace qk {
namespace sgemm {

constexpr int kBM = 64;
constexpr int kBN = 64;
constexpr int kBK = 16;
constexpr int kThreads = 256;
constexpr int kTM = 4;                     // outputs per thread along M
constexpr int kTN = 4;                     // outputs per thread along N
constexpr int kThreadsN = kBN / kTN;       // 16 threads along N
constexpr int kPadA = 4;
constexpr int kLdA = kBM + kPadA;          // row stride (in floats) of as[kk][.]
constexpr int kLoadsA = kBM * kBK / kThreads;  // 4 elements of A per thread per tile
constexpr int kLoadsB = kBK * kBN / kThreads;  // 4 elements of B per thread per tile
static_assert(kBM == kTM * (kThreads / kThreadsN), "thread grid must cover the block tile rows");
static_assert(kBN == kTN * kThreadsN, "thread grid must cover the block tile columns");
static_assert(kLoadsA * kThreads == kBM * kBK && kLoadsB * kThreads == kBK * kBN, "loads must cover the tiles");

struct RC {
  int row, col;
};

// Output rows / columns of thread `tid` inside the block tile (i < kTM, j < kTN).
QK_SG_HD int out_row(int tid, int i) { return tid / kThreadsN + (kThreads / kThreadsN) * i; }
QK_SG_HD int out_col(int tid, int j) { return tid % kThreadsN + kThreadsN * j; }

// Load r (< kLoadsA) of thread tid from the A tile: (row in [0, kBM), k in [0, kBK)). Consecutive threads take
// consecutive k of one row (64-byte global runs).
QK_SG_HD RC a_load(int tid, int r) {
  const int e = tid + kThreads * r;
  return RC{e / kBK, e % kBK};
}
// Load r (< kLoadsB) of thread tid from the B tile: (k in [0, kBK), col in [0, kBN)); consecutive threads take
// consecutive columns (256-byte global runs).
QK_SG_HD RC b_load(int tid, int r) {
  const int e = tid + kThreads * r;
  return RC{e / kBN, e % kBN};
}
// Shared-memory float offsets of A element (row, k) and B element (k, col).
QK_SG_HD int a_smem(int row, int k) { return k * kLdA + row; }
QK_SG_HD int b_smem(int k, int col) { return k * kBN + col; }
constexpr int kSmemAFloats = kBK * kLdA;
constexpr int kSmemBFloats = kBK * kBN;

// Blocks along M and N (grid.x covers N so that consecutive blocks share the same x rows).
QK_SG_HD int64_t blocks_m(int64_t M) { return (M + kBM - 1) / kBM; }
QK_SG_HD int64_t blocks_n(int64_t N) { return (N + kBN - 1) / kBN; }

// One k-tile of thread tid: acc[i][j] += as[k][row_i] * bs[k][col_j] for k = 0..kBK-1 in order (fmaf).
QK_SG_HD void mac_tile(const float* as, const float* bs, int tid, float (&acc)[kTM][kTN]) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < kBK; ++k) {
    float a[kTM], b[kTN];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int i = 0; i < kTM; ++i) a[i] = as[a_smem(out_row(tid, i), k)];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int j = 0; j < kTN; ++j) b[j] = bs[b_smem(k, out_col(tid, j))];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int i = 0; i < kTM; ++i) {
#if defined(__CUDACC__)
#pragma unroll
#endif
      for (int j = 0; j < kTN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

}  // namespace sgemm
}  // namespace qk

#endif  // QK_CUDA_GEMM_F32_TILING_CUH_
