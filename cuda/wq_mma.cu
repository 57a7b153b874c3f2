// quantkit — Tensor-Core fused dequantize GEMM for the weight-only formats (W4A16 grouped int4 and GPTQ 2/3/4/8-bit,
// with or without g_idx), float16 / bfloat16 activations: mma.sync m16n8k16 with float32 accumulation (sm_80+).
// Called by the launcher in wq_gemm.cu (qk_cuda_dense_wq_dev) for M >= qk::wqmma::kMinRows on devices with
// compute capability 8.0+; decode (small M), float32 activations and sm_75 use wq_gemm.cu's CUDA-core kernel.
//
// Per k32 slice: each thread moves two 8-element runs of x (16-byte loads when K % 8 == 0) and dequantizes two
// 8-level chunks of the packed weight rows (one `bits`-byte load each, group scale/zero per column, W_hat in
// float32 exactly as the CPU reference, one RNE into the mma type) into shared memory; then every warp runs
// 2 k16 steps x 2 m16 x 4 n8 mma.sync. The next slice's global loads are issued before the mma of the current
// one (register double buffering). No float copy of the weight exists outside shared memory.
// Every index and the element math come from wq_mma_layout.cuh / wq_layout.cuh (checked on the host by a model
// of the whole block, test/cuda/host/layout_test.cpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "launch_util.cuh"
#include "wq_mma_layout.cuh"

namespace qk {
namespace wqmma {
// The launcher used by wq_gemm.cu (dtype QK_CUDA_F16 or QK_CUDA_BF16; the caller checked the device).
qk_status launch_mma(int dtype, const void* x, const wq::Problem& p, const float* bias, void* y, cudaStream_t st,
                     char* err, size_t err_len);
}  // namespace wqmma
}  // namespace qk

namespace {

namespace t = qk::wqmma;
namespace w = qk::wq;

// float32 -> the 16-bit operand type, RNE (the rounding of qk::wqmma::to_op16 on the host).
__device__ __forceinline__ uint16_t op_bits(float v, bool bf16) {
  return bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
}

// D += A * B, one m16n8k16 tile, float32 accumulators; bf16 selects the operand type (warp-uniform).
__device__ __forceinline__ void mma16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], bool bf16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (!bf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#else
  (void)d;
  (void)a;
  (void)b;
  (void)bf16;
#endif
}

// Global data of one k32 slice held in registers between the load and the shared-memory store.
struct Staged {
  uint4 a[t::kAChunks];
  uint4 b[t::kBChunks];
};

__device__ __forceinline__ void load_slice(const uint16_t* __restrict__ x, const w::Problem& p, int64_t m0,
                                           int64_t n0, int64_t k0, bool xvec, bool bf16, int tid, Staged& s) {
#pragma unroll
  for (int j = 0; j < t::kAChunks; ++j) {
    const qk::mma::RC rc = t::a_load(tid, j);
    const int64_t row = m0 + rc.row, k = k0 + rc.col * 8;
    uint16_t v[8];
    if (row < p.M && xvec && k + 8 <= p.K) {
      s.a[j] = __ldg(reinterpret_cast<const uint4*>(x + row * p.K + k));
      continue;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = (row < p.M && k + e < p.K) ? x[row * p.K + k + e] : 0;
    s.a[j] = make_uint4(v[0] | (uint32_t{v[1]} << 16), v[2] | (uint32_t{v[3]} << 16), v[4] | (uint32_t{v[5]} << 16),
                        v[6] | (uint32_t{v[7]} << 16));
  }
  const int64_t rb = w::row_bytes(p.N, p.bits);
#pragma unroll
  for (int j = 0; j < t::kBChunks; ++j) {
    const qk::mma::RC rc = t::b_load(tid, j);
    const int64_t k = k0 + rc.row, c = n0 / 8 + rc.col;
    uint16_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (k < p.K && c * 8 < p.N) {
      const int64_t g = w::group_index(k, p.group, p.g_idx, p.G);
      const uint64_t q = w::load_chunk8(p.wq + k * rb, c, p.bits, rb);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = op_bits(t::b_weight(p, q, g, c * 8 + e, e), bf16);
    }
    s.b[j] = make_uint4(v[0] | (uint32_t{v[1]} << 16), v[2] | (uint32_t{v[3]} << 16), v[4] | (uint32_t{v[5]} << 16),
                        v[6] | (uint32_t{v[7]} << 16));
  }
}

// One instantiation for float16 and bfloat16 (bf16: a warp-uniform flag) keeps the build time of the 6 archs
// down; below sm_80 the body is empty (the launcher never starts it there: capability predicate kF16Mma).
__global__ void __launch_bounds__(t::kThreads) wq_mma_kernel(const uint16_t* __restrict__ x, const w::Problem p,
                                                             const float* __restrict__ bias, uint16_t* __restrict__ y,
                                                             bool xvec, bool bf16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) uint16_t As[t::kBM * t::kAStride];
  __shared__ __align__(16) uint16_t Bs[t::kBK * t::kBStride];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * t::kBN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * t::kBM;

  float acc[t::kMTiles][t::kNTiles][4];
#pragma unroll
  for (int i = 0; i < t::kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < t::kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  Staged st;
  load_slice(x, p, m0, n0, 0, xvec, bf16, tid, st);
  for (int64_t k0 = 0; k0 < p.K; k0 += t::kBK) {
#pragma unroll
    for (int j = 0; j < t::kAChunks; ++j) {
      const qk::mma::RC rc = t::a_load(tid, j);
      *reinterpret_cast<uint4*>(&As[t::a_offset(rc.row, rc.col * 8)]) = st.a[j];
    }
#pragma unroll
    for (int j = 0; j < t::kBChunks; ++j) {
      const qk::mma::RC rc = t::b_load(tid, j);
      *reinterpret_cast<uint4*>(&Bs[t::b_offset(rc.row, rc.col * 8)]) = st.b[j];
    }
    __syncthreads();
    if (k0 + t::kBK < p.K) load_slice(x, p, m0, n0, k0 + t::kBK, xvec, bf16, tid, st);  // overlaps the mma below
#pragma unroll
    for (int ks = 0; ks < t::kKSteps; ++ks) {
      uint32_t a[t::kMTiles][4], b[t::kNTiles][2];
#pragma unroll
      for (int mt = 0; mt < t::kMTiles; ++mt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const qk::mma::RC rc = t::a_frag(warp, mt, ks, lane, 2 * r);
          a[mt][r] = *reinterpret_cast<const uint32_t*>(&As[t::a_offset(rc.row, rc.col)]);
        }
#pragma unroll
      for (int nt = 0; nt < t::kNTiles; ++nt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const qk::mma::RC lo = t::b_frag(warp, nt, ks, lane, 2 * r), hi = t::b_frag(warp, nt, ks, lane, 2 * r + 1);
          b[nt][r] = uint32_t{Bs[t::b_offset(lo.row, lo.col)]} | (uint32_t{Bs[t::b_offset(hi.row, hi.col)]} << 16);
        }
#pragma unroll
      for (int mt = 0; mt < t::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < t::kNTiles; ++nt) mma16(acc[mt][nt], a[mt], b[nt], bf16);
    }
    __syncthreads();
  }
#pragma unroll
  for (int mt = 0; mt < t::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < t::kNTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const qk::mma::RC rc = t::acc_coord(warp, mt, nt, lane, e);
        const int64_t row = m0 + rc.row, col = n0 + rc.col;
        if (row < p.M && col < p.N) y[row * p.N + col] = op_bits(t::epilogue(acc[mt][nt][e], bias, col), bf16);
      }
#else
  (void)x, (void)p, (void)bias, (void)y, (void)xvec, (void)bf16;
  __trap();  // unreachable: the launcher requires compute capability 8.0
#endif
}

}  // namespace

namespace qk {
namespace wqmma {

qk_status launch_mma(int dtype, const void* x, const wq::Problem& p, const float* bias, void* y, cudaStream_t st,
                     char* err, size_t err_len) {
  const int64_t gx = (p.N + kBN - 1) / kBN, gy = (p.M + kBM - 1) / kBM;
  if (gx > 0x7FFFFFFF || gy > 65535) {
    return cuda_launch::invalid(err, err_len, "qk_cuda_dense_wq", "M or N too large for the Tensor-Core path");
  }
  const auto* xp = static_cast<const uint16_t*>(x);
  const bool xvec = p.K % 8 == 0 && cuda_launch::aligned(x, 16);
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  wq_mma_kernel<<<grid, kThreads, 0, st>>>(xp, p, bias, static_cast<uint16_t*>(y), xvec, dtype == QK_CUDA_BF16);
  QK_CU_TRY(cudaGetLastError(), "dense_wq Tensor-Core kernel launch");
  return QK_STATUS_OK;
}

}  // namespace wqmma
}  // namespace qk
