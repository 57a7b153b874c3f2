// quantkit — ISA-independent driver of the weight-only quantized Dense forwards (dense_w8, dense_w4, dense_w4g,
// dense_fp8), private to dense_float_avx2.cpp / dense_float_avx512.cpp.
//
// Like sgemm_common.h (whose helpers it reuses: per-thread scratch and its layout, K blocking, task grid, task
// runner, next-block prefetcher, staged edge panels), everything lives in an anonymous namespace, so each ISA
// translation unit gets its own copy compiled with its own flags.
//
// The quantized weights are never expanded to a float copy of the kernel. Two paths:
//
// * M >= 2: the blocked GEMM of sgemm_common.h, except that the B block is not copied but DEQUANTIZED while it
//   is packed: each K block x column tile of the weights is read in its storage format (int8, packed int4,
//   e4m3fn bytes) and written as float NR-wide panels into the per-thread L2-sized scratch (KC x NT_MAX floats),
//   which the float micro-kernel then reuses for every row of the task. The packed value of element (k, j) is
//   exactly the float the reference multiplies by (int8/int4: the integer; grouped int4: (q - z) * s, one
//   float32 product; fp8: 2^-8 times the decoded e4m3fn value, see kUnscale), so the only difference from the reference is the
//   summation (FMA, and blocking order). Per-column factors (1 / w_scale, x_scale * w_scale) and the bias are
//   applied once per output in an epilogue, after the whole K sum, in the reference's order of operations.
//
// * M == 1 (decode GEMV, memory bound): the weights stream once, straight from their storage, through an ISA
//   routine (F::gemv) that expands them in registers and accumulates into a column strip held in L1. The work
//   is split over K (and, for wide and short problems, over N) into tasks; each task sums its K range into its
//   own partial vector (the first K range directly into y), then the partials are added and the epilogue is
//   applied. Splitting K keeps every task's weight reads long contiguous row runs.
//
// The ISA unit supplies
//   a policy P (as in sgemm_common.h): MR, NR, KC, AS, NT_MAX, kernel(rows)
//   a format F with
//     void pack(int64_t k, int64_t j0, int64_t cols, float* dst) const
//         dst[0..NR) = dequantized W[k, j0 .. j0+cols) / kUnscale, zero past cols (j0 is even, cols <= NR)
//     const void* row_ptr(int64_t k, int64_t j0) const; int64_t row_bytes(int64_t width) const  (prefetch)
//     void gemv(int64_t k0, int64_t k1, int64_t j0, int64_t j1, const float* x, float* acc, float* tmp) const
//         acc[0 .. j1-j0) = sum_{k in [k0,k1)} x[k] * What[k, j0 + .] (overwrites; j0 is a multiple of 64);
//         tmp: 64-byte aligned workspace of kGemvTmpFloats floats (the L1-resident column strip)
//     static constexpr int64_t kGemvTmpFloats
//     static constexpr float kUnscale: factor the sums of both paths must be multiplied by (1, or 256 for fp8:
//         pack and gemv expand e4m3fn codes to 2^-8 times their value, which saves a multiply per weight; the
//         scaled products are exact and every partial sum is a multiple of 2^-26 far from the subnormal range,
//         so the scaled sums are exactly 2^-8 times the unscaled ones, and multiplying by 256 restores them)
#ifndef QK_KERNELS_X86_DENSE_FLOAT_COMMON_H_
#define QK_KERNELS_X86_DENSE_FLOAT_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "qk/fp_convert.h"
#include "qk/kernels.h"
#include "qk/threadpool.h"
#include "sgemm_common.h"

namespace qk {
namespace dense_float {
namespace {

using sgemm_common::ceil_div;
using sgemm_common::KernelFn;
using sgemm_common::round_up;
using sgemm_common::run_tasks;
using sgemm_common::scratch_floats;

// How the float sum acc[i][j] becomes y[i][j] (the reference's order of operations, one rounding each).
struct Epilogue {
  enum Kind { kDivide, kMultiply, kNone } kind;
  const float* w_scale;  // kDivide: y = acc / w_scale[j] + bias[j]
  float mul;             // kMultiply: y = acc * mul + bias[j]
  const float* bias;     // may be null

  void apply(float* y, int64_t j0, int64_t n) const {
    float* const out = y + j0;
    switch (kind) {
      case kDivide: {
        const float* s = w_scale + j0;
        if (bias != nullptr) {
          const float* b = bias + j0;
          for (int64_t j = 0; j < n; ++j) out[j] = out[j] / s[j] + b[j];
        } else {
          for (int64_t j = 0; j < n; ++j) out[j] = out[j] / s[j];
        }
        break;
      }
      case kMultiply: {
        const float m = mul;
        if (bias != nullptr) {
          const float* b = bias + j0;
          for (int64_t j = 0; j < n; ++j) out[j] = out[j] * m + b[j];
        } else {
          for (int64_t j = 0; j < n; ++j) out[j] = out[j] * m;
        }
        break;
      }
      case kNone:
        if (bias != nullptr) {
          const float* b = bias + j0;
          for (int64_t j = 0; j < n; ++j) out[j] = out[j] + b[j];
        }
        break;
    }
  }
};

// Computes the task y[m0:m1, n0:n1] (before the epilogue) over all of K. A is x (or the fp8-quantized x).
template <class P, class F>
void compute_tile(const F& fmt, int64_t N, int64_t K, const float* A, float* C, int64_t kc_block, int64_t m0,
                  int64_t m1, int64_t n0, int64_t n1, float* scratch) {
  constexpr int64_t MR = P::MR, NR = P::NR, AS = P::AS;
  // Scratch layout of one GEMM task as in sgemm_common.h: [packed B block][A micro-panel][staging tile].
  const sgemm_common::TileBuffers buf = sgemm_common::tile_buffers<P>(scratch);
  float* const bp = buf.bp;
  float* const ap = buf.ap;
  float* const ct = buf.ct;
  const int64_t width = n1 - n0;
  const int64_t npanels = ceil_div(width, NR);
  const int64_t lda = K, ldc = N;
  const int64_t row_tiles = ceil_div(m1 - m0, MR);
  const int64_t row_base = (m1 - m0) / row_tiles, row_extra = (m1 - m0) % row_tiles;

  for (int64_t p0 = 0; p0 < K; p0 += kc_block) {
    const int64_t kc = std::min(kc_block, K - p0);
    const bool accumulate = p0 > 0;

    // Dequantize-pack W[p0:p0+kc, n0:n1]: each storage row is read once, left to right.
    for (int64_t k = 0; k < kc; ++k) {
      float* dst = bp + k * NR;
      for (int64_t jp = 0; jp < npanels; ++jp, dst += kc * NR) {
        const int64_t cols = std::min(NR, width - jp * NR);
        fmt.pack(p0 + k, n0 + jp * NR, cols, dst);
      }
    }

    // Prefetch the next K block's weight rows into L2 while this block is computed (spread over the
    // micro-kernel calls), so the next packing pass finds them there (see sgemm_common.h).
    const auto next_row = [&](int64_t r) { return fmt.row_ptr(p0 + kc + r, n0); };
    sgemm_common::NextBlockPrefetcher<decltype(next_row)> prefetch(std::min(kc_block, K - (p0 + kc)),
                                                                   fmt.row_bytes(width), row_tiles * npanels,
                                                                   next_row);

    // Row micro-panels of balanced height (16 rows -> 8 + 8, not 14 + 2): a short last panel would run the
    // micro-kernel with too few independent accumulator chains to hide the FMA latency.
    for (int64_t t = 0, i0 = m0; t < row_tiles; ++t) {
      const int rows = static_cast<int>(row_base + (t < row_extra ? 1 : 0));
      for (int r = 0; r < rows; ++r) {
        std::memcpy(ap + r * AS, A + (i0 + r) * lda + p0, static_cast<std::size_t>(kc) * sizeof(float));
      }
      const KernelFn kern = P::kernel(rows);
      float* crow = C + i0 * ldc + n0;
      for (int64_t jp = 0; jp < npanels; ++jp) {
        const int64_t cols = std::min(NR, width - jp * NR);
        prefetch.step();
        sgemm_common::run_panel<P>(kern, rows, cols, kc, ap, bp + jp * kc * NR, crow + jp * NR, ldc, accumulate,
                                   ct);
      }
      i0 += rows;
    }
  }
}

// M >= 2: blocked GEMM with dequantizing B packing; same task decomposition as sgemm_common.h.
template <class P, class F>
Status gemm_path(const F& fmt, int64_t M, int64_t N, int64_t K, const float* A, float* y, const Epilogue& epi,
                 ThreadPool* pool, int threads) {
  const int64_t kc_block = sgemm_common::k_block_size<P>(K);
  std::atomic<bool> out_of_memory{false};

  // nt is a multiple of NR, hence even: every task starts on an int4 byte boundary.
  const sgemm_common::TaskGrid grid = sgemm_common::split_tasks<P>(M, N, threads);
  const int64_t mt = grid.mt, nt = grid.nt, nb = grid.nb;

  run_tasks(pool, threads, grid.mb * nb, [&](int64_t t) {
    float* scratch = sgemm_common::thread_scratch(scratch_floats<P>());
    if (scratch == nullptr) {
      out_of_memory.store(true, std::memory_order_relaxed);
      return;
    }
    const int64_t m0 = (t / nb) * mt, n0 = (t % nb) * nt;
    const int64_t m1 = std::min(M, m0 + mt), n1 = std::min(N, n0 + nt);
    compute_tile<P>(fmt, N, K, A, y, kc_block, m0, m1, n0, n1, scratch);
    for (int64_t i = m0; i < m1; ++i) {
      if (F::kUnscale != 1.0f) {
        float* row = y + i * N;
        for (int64_t j = n0; j < n1; ++j) row[j] *= F::kUnscale;
      }
      epi.apply(y + i * N, n0, n1 - n0);
    }
  });
  return out_of_memory.load() ? QK_STATUS_OUT_OF_MEMORY : kOk;
}

// M == 1: streaming GEMV over a (K range) x (column range) task grid, see the header comment.
template <class F>
Status gemv_path(const F& fmt, int64_t N, int64_t K, const float* x, float* y, const Epilogue& epi,
                 ThreadPool* pool, int threads) {
  // K ranges of at least 256 rows (a multiple of 4) and column ranges of at least 1024 columns (a multiple
  // of 64), about 4 tasks per thread so that a busy core does not hold up the others.
  int64_t nk = 1, nn = 1;
  if (threads > 1) {
    const int64_t want = 4 * int64_t{threads};
    nk = std::max<int64_t>(1, std::min(want, K / 256));
    nn = std::max<int64_t>(1, std::min(ceil_div(want, nk), N / 1024));
  }
  const int64_t kstep = round_up(ceil_div(K, nk), 4);
  nk = ceil_div(K, kstep);
  const int64_t nstep = round_up(ceil_div(N, nn), 64);
  nn = ceil_div(N, nstep);

  // Partial sums of K ranges 1.. go to a scratch vector each (range 0 sums into y itself).
  std::unique_ptr<float[]> partial;
  if (nk > 1) {
    partial.reset(new (std::nothrow) float[static_cast<std::size_t>((nk - 1) * N)]);
    if (!partial) return QK_STATUS_OUT_OF_MEMORY;
  }
  float* const part = partial.get();
  const float unscale = F::kUnscale;
  std::atomic<bool> out_of_memory{false};
  auto finish = [&](int64_t j0, int64_t j1) {  // sum the partials, undo the GEMV scaling, epilogue
    for (int64_t r = 1; r < nk; ++r) {
      const float* p = part + (r - 1) * N;
      for (int64_t j = j0; j < j1; ++j) y[j] += p[j];
    }
    if (unscale != 1.0f) {
      for (int64_t j = j0; j < j1; ++j) y[j] *= unscale;
    }
    epi.apply(y, j0, j1 - j0);
  };

  run_tasks(pool, threads, nk * nn, [&](int64_t t) {
    const int64_t r = t / nn, c = t % nn;
    const int64_t k0 = r * kstep, k1 = std::min(K, k0 + kstep);
    const int64_t j0 = c * nstep, j1 = std::min(N, j0 + nstep);
    float* tmp = sgemm_common::thread_scratch(static_cast<std::size_t>(F::kGemvTmpFloats));
    if (tmp == nullptr) {
      out_of_memory.store(true, std::memory_order_relaxed);
      return;
    }
    float* acc = (r == 0 ? y : part + (r - 1) * N) + j0;
    fmt.gemv(k0, k1, j0, j1, x, acc, tmp);
    if (nk == 1) finish(j0, j1);
  });
  if (out_of_memory.load()) return QK_STATUS_OUT_OF_MEMORY;
  if (nk > 1) {
    if (nn > 1) {
      run_tasks(pool, threads, nn, [&](int64_t c) { finish(c * nstep, std::min(N, (c + 1) * nstep)); });
    } else {
      finish(0, N);
    }
  }
  return kOk;
}

// Entry point shared by the four kernels.
template <class P, class F>
Status dense_driver(const F& fmt, int64_t M, int64_t N, int64_t K, const float* x, float* y, const Epilogue& epi,
                    ThreadPool* pool) {
  if (M <= 0 || N <= 0) return kOk;
  if (K <= 0) {  // empty sum: y = epilogue(0)
    for (int64_t i = 0; i < M; ++i) {
      std::memset(y + i * N, 0, static_cast<std::size_t>(N) * sizeof(float));
      epi.apply(y + i * N, 0, N);
    }
    return kOk;
  }
  int threads = pool != nullptr ? pool->num_threads() : 1;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (flops < 1.0e6) threads = 1;
  if (M == 1) return gemv_path(fmt, N, K, x, y, epi, pool, threads);
  return gemm_path<P>(fmt, M, N, K, x, y, epi, pool, threads);
}

// dense_fp8's activation quantization of one element: dec(e4m3fn(clip(v / x_scale, -448, 448))) (the scalar
// definition, used for SIMD tails; the ISA routines reproduce it bit for bit).
inline float fp8_quantize_decode(float v, float x_scale) {
  float t = v / x_scale;
  if (t < -448.0f) t = -448.0f;  // NaN compares false and stays NaN
  if (t > 448.0f) t = 448.0f;
  return fp::e4m3fn_to_f32_one(fp::f32_to_e4m3fn_one(t));
}

// dense_fp8: x is quantized to e4m3fn and decoded back to float once per call, into a scratch copy (M*K
// floats: activation sized, the weights are never copied; the decoded values are exact floats), then the
// GEMM/GEMV runs on it. quantize(src, n, x_scale, dst) is the ISA's vectorized fp8_quantize_decode.
template <class P, class F, class Q>
Status dense_fp8_driver(const F& fmt, int64_t M, int64_t N, int64_t K, const float* x, float x_scale, float* y,
                        const Epilogue& epi, ThreadPool* pool, Q quantize) {
  if (M <= 0 || N <= 0 || K <= 0) return dense_driver<P>(fmt, M, N, K, x, y, epi, pool);
  const int64_t total = M * K;
  std::unique_ptr<float[]> xq(new (std::nothrow) float[static_cast<std::size_t>(total)]);
  if (!xq) return QK_STATUS_OUT_OF_MEMORY;
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = ceil_div(total, kChunk);
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  float* const q = xq.get();
  run_tasks(pool, threads, chunks, [&](int64_t c) {
    const int64_t b = c * kChunk;
    quantize(x + b, std::min(kChunk, total - b), x_scale, q + b);
  });
  return dense_driver<P>(fmt, M, N, K, q, y, epi, pool);
}

}  // namespace
}  // namespace dense_float
}  // namespace qk

#endif  // QK_KERNELS_X86_DENSE_FLOAT_COMMON_H_
