// quantkit — 8-bit Tensor-Core GEMMs: int8 W8A8 Dense (bit-exact with qk::ref::dense_w8a8) and float8 e4m3
// Dense (qk::ref::dense_fp8 within tolerance), with their C-ABI launchers (qk_cuda.h).
//
// One kernel template, two instantiations (kFp8 = false / true). Every index — which chunk a thread loads, the
// shared-memory swizzle, the rows lanes hand to ldmatrix, the accumulator -> output mapping — and the element
// math of prologue and epilogue come from gemm_tiling.cuh / mma_layout.cuh, which the host test checks
// (including a host model of a whole block that must reproduce qk::ref::dense_w8a8 bit for bit).
//
//   prologue  (int8) each block computes the abs-max scale of its 64 rows (warp per row, bit-pattern max as in
//             absmax.cu) — recomputed by every column block, which costs one extra read of the x rows per
//             64 outputs, and saves a quantized copy of x in global memory.
//   main loop x tile: float32 from global (registers, issued before the mma of the current tile), quantized
//             (int8: qk_quantize_clip with the row scale; fp8: e4m3fn(clip(x / x_scale))) and stored swizzled;
//             w tile: 16-byte cp.async with zero fill past N (sm_80+), plain 16-byte loads (sm_75). Two stages.
//             Fragments by ldmatrix.x4; mma.sync m16n8k32 (.s8 sm_80+, .e4m3 sm_89+), or on sm_75 four
//             m8n8k16 .s8 on the same registers (mma_layout.cuh explains why that is the same product).
//   epilogue  int8: d = w_scale[j] * sx_i; y = float(acc) / d + bias[j]; fp8: y = acc * (x_scale * w_scale) +
//             bias[j]; bounds-checked stores.
// Arch guards: cp.async and m16n8k32 .s8 need __CUDA_ARCH__ >= 800, .e4m3 needs >= 890; below that the fp8
// instantiation compiles to a trap and the launcher refuses first (run-time predicate, arch.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "gemm_tiling.cuh"
#include "launch_util.cuh"

namespace {

namespace g = qk::gemm;
namespace cl = qk::cuda_launch;

// ---- PTX wrappers ------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint8_t* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// 16 bytes global -> shared; src_bytes = 0 fills zeros (cp.async zfill) on sm_80+.
__device__ __forceinline__ void copy16(uint8_t* dst, const uint8_t* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
#else
  *reinterpret_cast<uint4*>(dst) = valid ? *reinterpret_cast<const uint4*>(src) : make_uint4(0, 0, 0, 0);
#endif
}
__device__ __forceinline__ void copy_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
__device__ __forceinline__ void copy_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::);
#endif
}

// D += A * B for one m16n8k32 tile of int8 fragments.
__device__ __forceinline__ void mma_s8(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  // sm_75: four m8n8k16 on the same registers (qk::mma::sm75_* in mma_layout.cuh).
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int h = qk::mma::sm75_c_half(s) * 2;
    asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+r"(d[h]), "+r"(d[h + 1])
                 : "r"(a[qk::mma::sm75_a_reg(s)]), "r"(b[qk::mma::sm75_b_reg(s)]));
  }
#endif
}

__device__ __forceinline__ void mma_e4m3(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  (void)d;
  (void)a;
  (void)b;
  __trap();  // unreachable: the launcher requires compute capability 8.9 (qk::cuda_arch::Feature::kFp8Mma)
#endif
}

template <bool kFp8>
struct Acc;
template <>
struct Acc<false> {
  using T = int32_t;
};
template <>
struct Acc<true> {
  using T = float;
};

struct Params {
  const float* x;
  int64_t M, N, K, Kp;
  const uint8_t* wt;       // NK64
  const float* w_scale;    // int8: [N] multipliers
  const float* bias;       // [N] or null
  float act_lo, act_hi, act_eps;  // int8
  float x_scale, out_scale;       // fp8
  float* y;
  bool vec;                // x is 16-byte aligned and K % 4 == 0: float4 loads
};

// ---- the kernel ------------------------------------------------------------------------------------------

template <bool kFp8>
__global__ void __launch_bounds__(g::kThreads) gemm8_kernel(const Params p) {
  using AccT = typename Acc<kFp8>::T;
  __shared__ __align__(128) uint8_t smem[g::kStages][2][g::kTileBytes];  // [stage][A | B]
  __shared__ float row_scale[g::kBM];

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31, warp = tid >> 5;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * g::kBN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * g::kBM;

  // Prologue: per-token scales of this block's rows (int8 only).
  if (!kFp8) {
    for (int r = g::prologue_first_row(warp); r < g::kBM; r += g::kPrologueRowStride) {
      const int64_t row = m0 + r;
      unsigned m = 0;
      if (row < p.M) {
        const float* xr = p.x + row * p.K;
        for (int64_t k = lane; k < p.K; k += 32) m = max(m, __float_as_uint(xr[k]) & 0x7FFFFFFFu);
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, off));
      if (lane == 0) {
        const float amax = m > 0x7F800000u ? qk::qk_canonical_nan() : __uint_as_float(m);
        row_scale[r] = g::w8a8_row_scale(amax, p.act_hi, p.act_eps);
      }
    }
    __syncthreads();
  }

  // x chunks of the next tile, held in registers across the mma of the current one.
  float xr[g::kLoadsPerThread][16];
  auto fetch_x = [&](int kt) {
#pragma unroll
    for (int j = 0; j < g::kLoadsPerThread; ++j) {
      const qk::mma::RC c = g::load_chunk(tid, j);
      const int64_t row = m0 + c.row, k = static_cast<int64_t>(kt) * g::kBK + c.col * 16;
      if (row < p.M && p.vec && k + 16 <= p.K) {
        const float4* src = reinterpret_cast<const float4*>(p.x + row * p.K + k);
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const float4 f = src[v];
          xr[j][4 * v] = f.x;
          xr[j][4 * v + 1] = f.y;
          xr[j][4 * v + 2] = f.z;
          xr[j][4 * v + 3] = f.w;
        }
      } else {
#pragma unroll
        for (int e = 0; e < 16; ++e) xr[j][e] = (row < p.M && k + e < p.K) ? p.x[row * p.K + k + e] : 0.0f;
      }
    }
  };
  // Quantize the fetched chunks into stage s. Out-of-range elements become the byte 0 (int8 0 / fp8 +0).
  auto store_x = [&](int kt, int s) {
#pragma unroll
    for (int j = 0; j < g::kLoadsPerThread; ++j) {
      const qk::mma::RC c = g::load_chunk(tid, j);
      const int64_t row = m0 + c.row, k = static_cast<int64_t>(kt) * g::kBK + c.col * 16;
      uint32_t w[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        uint32_t word = 0;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          const int e = 4 * q + b;
          uint8_t byte = 0;
          if (row < p.M && k + e < p.K) {
            byte = kFp8 ? g::fp8_quantize(xr[j][e], p.x_scale)
                        : g::w8a8_quantize(xr[j][e], row_scale[c.row], p.act_lo, p.act_hi);
          }
          word |= static_cast<uint32_t>(byte) << (8 * b);
        }
        w[q] = word;
      }
      *reinterpret_cast<uint4*>(&smem[s][0][g::swizzle(c.row, c.col)]) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  };
  auto load_w = [&](int kt, int s) {
#pragma unroll
    for (int j = 0; j < g::kLoadsPerThread; ++j) {
      const qk::mma::RC c = g::load_chunk(tid, j);
      const int64_t n = n0 + c.row;
      const bool valid = n < p.N;
      const uint8_t* src = p.wt + (valid ? g::nk64_index(n, static_cast<int64_t>(kt) * g::kBK + c.col * 16, p.Kp) : 0);
      copy16(&smem[s][1][g::swizzle(c.row, c.col)], src, valid);
    }
    copy_commit();
  };

  AccT acc[g::kMTiles][g::kNTiles][4];
#pragma unroll
  for (int i = 0; i < g::kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < g::kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

  const int k_tiles = static_cast<int>(p.Kp / g::kBK);
  if (k_tiles > 0) {
    load_w(0, 0);
    fetch_x(0);
    store_x(0, 0);
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt & 1;
    copy_wait_all();
    __syncthreads();  // stage s complete and visible; every warp is done with stage s ^ 1
    const bool more = kt + 1 < k_tiles;
    if (more) {
      load_w(kt + 1, s ^ 1);
      fetch_x(kt + 1);
    }
    const uint8_t* sa = smem[s][0];
    const uint8_t* sb = smem[s][1];
#pragma unroll
    for (int ks = 0; ks < g::kKSteps; ++ks) {
      uint32_t a[g::kMTiles][4];
      uint32_t b[g::kNTiles][2];
#pragma unroll
      for (int mt = 0; mt < g::kMTiles; ++mt) {
        const qk::mma::RC c = g::a_ldmatrix_src(warp, mt, ks, lane);
        ldmatrix_x4(a[mt], sa + g::swizzle(c.row, c.col));
      }
#pragma unroll
      for (int np = 0; np < g::kNTiles / 2; ++np) {
        const qk::mma::RC c = g::b_ldmatrix_src(warp, np, ks, lane);
        uint32_t r[4];
        ldmatrix_x4(r, sb + g::swizzle(c.row, c.col));
        b[2 * np][0] = r[0];
        b[2 * np][1] = r[1];
        b[2 * np + 1][0] = r[2];
        b[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < g::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < g::kNTiles; ++nt) {
          if constexpr (kFp8) {
            mma_e4m3(acc[mt][nt], a[mt], b[nt]);
          } else {
            mma_s8(acc[mt][nt], a[mt], b[nt]);
          }
        }
    }
    if (more) store_x(kt + 1, s ^ 1);
  }

  // Epilogue.
#pragma unroll
  for (int mt = 0; mt < g::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < g::kNTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const qk::mma::RC c = g::acc_coord(warp, mt, nt, lane, e);
        const int64_t row = m0 + c.row, col = n0 + c.col;
        if (row >= p.M || col >= p.N) continue;
        float v;
        if constexpr (kFp8) {
          v = g::fp8_epilogue(acc[mt][nt][e], p.out_scale, p.bias, col);
        } else {
          v = g::w8a8_epilogue(acc[mt][nt][e], p.w_scale[col], row_scale[c.row], p.bias, col);
        }
        p.y[row * p.N + col] = v;
      }
}

// wt[n * Kp + k] = k < K ? w[k * N + n] : 0. A one-time repack: a plain grid-stride loop is enough.
__global__ void __launch_bounds__(256) repack_nk64_kernel(const uint8_t* __restrict__ w, int64_t K, int64_t N,
                                                          int64_t Kp, uint8_t* __restrict__ wt) {
  const int64_t total = N * Kp;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = idx / Kp, k = idx % Kp;
    wt[idx] = k < K ? w[k * N + n] : 0;
  }
}

constexpr int64_t kMaxM = int64_t{65535} * g::kBM;
constexpr int64_t kMaxKInt8 = 131071;

qk_status check_gemm(const char* op, int64_t M, int64_t N, int64_t K, int64_t max_k, const void* x, const void* wt,
                     const void* y, bool device_wt, char* err, size_t err_len) {
  if (M < 0 || N < 0 || K < 0) return cl::invalid(err, err_len, op, "expected non-negative M, N, K");
  if (M > kMaxM) return cl::invalid(err, err_len, op, "M above 4194240 rows");
  if (K > max_k) return cl::invalid(err, err_len, op, "K above 131071 (int32 accumulation must stay exact)");
  if (N > (int64_t{1} << 40) || K > (int64_t{1} << 40)) return cl::invalid(err, err_len, op, "N or K too large");
  if (M * N == 0) return QK_STATUS_OK;
  if ((M * K > 0 && x == nullptr) || (N * K > 0 && wt == nullptr) || y == nullptr) {
    return cl::invalid(err, err_len, op, "NULL pointer");
  }
  if (device_wt && !cl::aligned(wt, 16)) return cl::invalid(err, err_len, op, "wt must be 16-byte aligned");
  return QK_STATUS_OK;
}

template <bool kFp8>
qk_status launch(const Params& p, cudaStream_t stream, char* err, size_t err_len) {
  if (p.M == 0 || p.N == 0) return QK_STATUS_OK;  // K == 0: no k-tiles, the epilogue sees zero accumulators
  const Params& q = p;
  const dim3 grid(static_cast<unsigned>((q.N + g::kBN - 1) / g::kBN), static_cast<unsigned>((q.M + g::kBM - 1) / g::kBM));
  gemm8_kernel<kFp8><<<grid, g::kThreads, 0, stream>>>(q);
  QK_CU_TRY(cudaGetLastError(), kFp8 ? "gemm fp8 kernel launch" : "gemm int8 kernel launch");
  return QK_STATUS_OK;
}

}  // namespace

extern "C" {

int64_t qk_cuda_nk64_padded_k(int64_t K) { return g::pad_k(K); }

qk_status qk_cuda_repack_nk64_dev(const uint8_t* w, int64_t K, int64_t N, uint8_t* wt, void* stream, char* err,
                                  size_t err_len) {
  if (K < 0 || N < 0) return cl::invalid(err, err_len, "qk_cuda_repack_nk64_dev", "expected non-negative K, N");
  const int64_t total = N * g::pad_k(K);
  if (total == 0) return QK_STATUS_OK;
  if ((K > 0 && w == nullptr) || wt == nullptr) return cl::invalid(err, err_len, "qk_cuda_repack_nk64_dev", "NULL pointer");
  const int64_t blocks = total / 256 + 1 < 65536 ? total / 256 + 1 : 65536;
  repack_nk64_kernel<<<static_cast<unsigned>(blocks), 256, 0, cl::as_stream(stream)>>>(w, K, N, g::pad_k(K), wt);
  QK_CU_TRY(cudaGetLastError(), "repack kernel launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_dense_w8a8_dev(const float* x, int64_t M, int64_t N, int64_t K, const uint8_t* wt,
                                 const float* w_scale, const float* bias, float act_lo, float act_hi, float act_eps,
                                 float* y, void* stream, char* err, size_t err_len) {
  QK_ST_TRY(check_gemm("qk_cuda_dense_w8a8", M, N, K, kMaxKInt8, x, wt, y, true, err, err_len));
  if (M * N > 0 && w_scale == nullptr) return cl::invalid(err, err_len, "qk_cuda_dense_w8a8", "w_scale is NULL");
  QK_ST_TRY(cl::require(qk::cuda_arch::Feature::kInt8Mma, err, err_len));
  Params p{};
  p.x = x;
  p.M = M;
  p.N = N;
  p.K = K;
  p.Kp = g::pad_k(K);
  p.wt = wt;
  p.w_scale = w_scale;
  p.bias = bias;
  p.act_lo = act_lo;
  p.act_hi = act_hi;
  p.act_eps = act_eps;
  p.y = y;
  p.vec = cl::aligned(x, 16) && K % 4 == 0;
  return launch<false>(p, cl::as_stream(stream), err, err_len);
}

qk_status qk_cuda_dense_fp8_dev(const float* x, int64_t M, int64_t N, int64_t K, float x_scale, const uint8_t* wt,
                                float w_scale, const float* bias, float* y, void* stream, char* err,
                                size_t err_len) {
  QK_ST_TRY(check_gemm("qk_cuda_dense_fp8", M, N, K, INT64_MAX, x, wt, y, true, err, err_len));
  if (!(x_scale > 0.0f) || !(w_scale > 0.0f)) return cl::invalid(err, err_len, "qk_cuda_dense_fp8", "scales must be > 0");
  QK_ST_TRY(cl::require(qk::cuda_arch::Feature::kFp8Mma, err, err_len));
  Params p{};
  p.x = x;
  p.M = M;
  p.N = N;
  p.K = K;
  p.Kp = g::pad_k(K);
  p.wt = wt;
  p.bias = bias;
  p.x_scale = x_scale;
  p.out_scale = x_scale * w_scale;
  p.y = y;
  p.vec = cl::aligned(x, 16) && K % 4 == 0;
  return launch<true>(p, cl::as_stream(stream), err, err_len);
}

}  // extern "C"

namespace {

// Shared body of the host-pointer versions.
template <bool kFp8>
qk_status dense8_host(int device, const float* x, int64_t M, int64_t N, int64_t K, const uint8_t* w,
                      const float* w_scale, const float* bias, float act_lo, float act_hi, float act_eps,
                      float x_scale, float w_scale_t, float* y, char* err, size_t err_len) {
  const char* op = kFp8 ? "qk_cuda_dense_fp8" : "qk_cuda_dense_w8a8";
  QK_ST_TRY(check_gemm(op, M, N, K, kFp8 ? INT64_MAX : kMaxKInt8, x, w, y, false, err, err_len));
  if (!kFp8 && M * N > 0 && w_scale == nullptr) return cl::invalid(err, err_len, op, "w_scale is NULL");
  if (M * N == 0) return QK_STATUS_OK;
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  QK_ST_TRY(cl::require(kFp8 ? qk::cuda_arch::Feature::kFp8Mma : qk::cuda_arch::Feature::kInt8Mma, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  const int64_t Kp = g::pad_k(K);
  cl::Scratch dx(device, st), dw(device, st), dwt(device, st), ds(device, st), db(device, st), dy(device, st);
  QK_ST_TRY(cl::upload(dx, x, static_cast<size_t>(M * K) * 4, st, "upload x", err, err_len));
  QK_ST_TRY(cl::upload(dw, w, static_cast<size_t>(K * N), st, "upload w", err, err_len));
  QK_ST_TRY(dwt.alloc(static_cast<size_t>(N * Kp), err, err_len));
  if (!kFp8) QK_ST_TRY(cl::upload(ds, w_scale, static_cast<size_t>(N) * 4, st, "upload w_scale", err, err_len));
  if (bias != nullptr) QK_ST_TRY(cl::upload(db, bias, static_cast<size_t>(N) * 4, st, "upload bias", err, err_len));
  QK_ST_TRY(dy.alloc(static_cast<size_t>(M * N) * 4, err, err_len));
  QK_ST_TRY(qk_cuda_repack_nk64_dev(dw.as<uint8_t>(), K, N, dwt.as<uint8_t>(), st, err, err_len));
  const float* bp = bias != nullptr ? db.as<float>() : nullptr;
  if (kFp8) {
    QK_ST_TRY(qk_cuda_dense_fp8_dev(dx.as<float>(), M, N, K, x_scale, dwt.as<uint8_t>(), w_scale_t, bp,
                                    dy.as<float>(), st, err, err_len));
  } else {
    QK_ST_TRY(qk_cuda_dense_w8a8_dev(dx.as<float>(), M, N, K, dwt.as<uint8_t>(), ds.as<float>(), bp, act_lo, act_hi,
                                     act_eps, dy.as<float>(), st, err, err_len));
  }
  QK_CU_TRY(cudaMemcpyAsync(y, dy.get(), static_cast<size_t>(M * N) * 4, cudaMemcpyDeviceToHost, st), "download y");
  QK_CU_TRY(cudaStreamSynchronize(st), kFp8 ? "dense fp8 (kernel execution)" : "dense w8a8 (kernel execution)");
  return QK_STATUS_OK;
}

}  // namespace

extern "C" {

qk_status qk_cuda_dense_w8a8(int device, const float* x, int64_t M, int64_t N, int64_t K, const int8_t* w,
                             const float* w_scale, const float* bias, float act_lo, float act_hi, float act_eps,
                             float* y, char* err, size_t err_len) {
  return dense8_host<false>(device, x, M, N, K, reinterpret_cast<const uint8_t*>(w), w_scale, bias, act_lo, act_hi,
                            act_eps, 0.0f, 0.0f, y, err, err_len);
}

qk_status qk_cuda_dense_fp8(int device, const float* x, int64_t M, int64_t N, int64_t K, float x_scale,
                            const uint8_t* w8, float w_scale, const float* bias, float* y, char* err,
                            size_t err_len) {
  if (!(x_scale > 0.0f) || !(w_scale > 0.0f)) return cl::invalid(err, err_len, "qk_cuda_dense_fp8", "scales must be > 0");
  return dense8_host<true>(device, x, M, N, K, w8, nullptr, bias, 0.0f, 0.0f, 0.0f, x_scale, w_scale, y, err,
                           err_len);
}

}  // extern "C"
