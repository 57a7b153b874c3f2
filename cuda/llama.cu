// quantkit — the float path of the Llama model on the device: RMSNorm, RoPE (llama2.c's interleaved pairs),
// row softmax, SiLU·mul, causal grouped-query attention over the KV cache, KV-cache writes; C-ABI launchers in
// qk_cuda.h. The specification is the CPU reference (csrc/kernels/ref/llama_ref.cpp, contracts in qk/kernels.h);
// the element math is shared through qk/llama_math.h (rope angle, pair rotation, SiLU·mul). Sums are formed by
// warp shuffles and block reductions instead of the reference's sequential order, and CUDA's expf / cosf / sinf /
// powf may differ from glibc's in the last bit, so results match by tolerance (kv_cache_write is exact).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "launch_util.cuh"
#include "qk/llama_math.h"

namespace {

namespace cl = qk::cuda_launch;
constexpr int kThreads = 256;

// max that propagates NaN (a NaN anywhere makes the row NaN, as in the reference).
__device__ __forceinline__ float nan_max(float a, float b) {
  return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b);
}
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ float operator()(float a, float b) const { return nan_max(a, b); }
};
template <class Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide reduction of one value per thread (kThreads threads); every thread gets the result.
template <class Op>
__device__ float block_reduce(float v, float* red, Op op) {
  v = warp_reduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = red[0];
  for (int w = 1; w < kThreads / 32; ++w) t = op(t, red[w]);
  return t;
}
__device__ float block_sum(float v, float* red) { return block_reduce(v, red, Sum()); }
__device__ float block_max(float v, float* red) { return block_reduce(v, red, Max()); }
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, Sum()); }

__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                                          int64_t n, float eps, float* __restrict__ y) {
  __shared__ float red[kThreads / 32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) ss += xr[j] * xr[j];
  ss = block_sum(ss, red);
  ss /= static_cast<float>(n);
  ss += eps;
  ss = 1.0f / sqrtf(ss);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) yr[j] = w[j] * (ss * xr[j]);  // y may be x: read then write
}

__global__ void rope_kernel(float* __restrict__ x, int64_t rows, int64_t heads, int64_t head_dim,
                            const int32_t* __restrict__ positions, float theta) {
  const int64_t pairs = head_dim / 2, total = rows * heads * pairs;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % pairs, rh = e / pairs, r = rh / heads;
    float c, s;
    qk::qk_rope_cos_sin(positions[r], qk::qk_rope_inv_freq(i, head_dim, theta), &c, &s);
    float* v = x + rh * head_dim + 2 * i;
    qk::qk_rope_rotate(&v[0], &v[1], c, s);
  }
}

// In place over x[0, n): m = max; x = expf(x - m); x /= sum.
__device__ void softmax_block(float* x, int64_t n, float* red) {
  float m = -INFINITY;
  bool any_nan = false;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    any_nan = any_nan || x[j] != x[j];
    m = nan_max(m, x[j]);
  }
  m = block_max(any_nan ? __int_as_float(0x7fc00000) : m, red);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const float v = expf(x[j] - m);
    x[j] = v;
    sum += v;
  }
  sum = block_sum(sum, red);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) x[j] /= sum;
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads) softmax_kernel(float* __restrict__ x, int64_t n) {
  __shared__ float red[kThreads / 32];
  softmax_block(x + static_cast<int64_t>(blockIdx.x) * n, n, red);
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = qk::qk_silu_mul_one(gate[i], up[i]);  // out may alias gate or up
  }
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = y[i] + x[i];
  }
}

// One block per (query row t, head h): scores (a warp per cache position, lanes over head_dim), softmax, then
// out[d] = sum_j p_j v_j (thread per d, j ascending). att: scratch [T, heads, pos0 + T].
__global__ void __launch_bounds__(kThreads) attention_kernel(const float* q, int64_t T, int64_t heads, int64_t kv_heads,
                                                            int64_t head_dim, const float* __restrict__ k_cache,
                                                            const float* __restrict__ v_cache, int64_t max_seq,
                                                            int64_t pos0, float* out, float* __restrict__ att) {
  __shared__ float red[kThreads / 32];
  const int64_t h = blockIdx.x, t = blockIdx.y;
  const int64_t len = pos0 + t + 1, g = h / (heads / kv_heads);
  const float* qh = q + (t * heads + h) * head_dim;
  const float* kb = k_cache + g * max_seq * head_dim;
  const float* vb = v_cache + g * max_seq * head_dim;
  float* a = att + (t * heads + h) * (pos0 + T);
  const float root = sqrtf(static_cast<float>(head_dim));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t j = warp; j < len; j += kThreads / 32) {
    float s = 0.0f;
    for (int64_t d = lane; d < head_dim; d += 32) s += qh[d] * kb[j * head_dim + d];
    s = warp_sum(s);
    if (lane == 0) a[j] = s / root;
  }
  __syncthreads();
  softmax_block(a, len, red);
  // q is fully read (scores done) before out, which may alias q, is written: every thread passed the barriers.
  float* oh = out + (t * heads + h) * head_dim;
  for (int64_t d = threadIdx.x; d < head_dim; d += kThreads) {
    float o = 0.0f;
    for (int64_t j = 0; j < len; ++j) o += a[j] * vb[j * head_dim + d];
    oh[d] = o;
  }
}

__global__ void kv_write_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t T, int64_t kv_heads,
                                int64_t head_dim, const int32_t* __restrict__ positions, int64_t max_seq,
                                float* __restrict__ k_cache, float* __restrict__ v_cache) {
  // Serial over t (duplicates: the last t wins, as in the reference); parallel over (g, d).
  const int64_t gd = kv_heads * head_dim;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < gd;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t g = e / head_dim, d = e % head_dim;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t dst = (g * max_seq + positions[t]) * head_dim + d, src = (t * kv_heads + g) * head_dim + d;
      k_cache[dst] = k[src];
      v_cache[dst] = v[src];
    }
  }
}

unsigned grid_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

}  // namespace

extern "C" {

qk_status qk_cuda_rmsnorm_dev(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y,
                              void* stream, char* err, size_t err_len) {
  if (rows < 0 || n < 0 || rows > 0x7FFFFFFF) return cl::invalid(err, err_len, "qk_cuda_rmsnorm", "bad dims");
  if (rows == 0 || n == 0) return QK_STATUS_OK;
  rmsnorm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, cl::as_stream(stream)>>>(x, weight, n, eps, y);
  QK_CU_TRY(cudaGetLastError(), "rmsnorm launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_rope_dev(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions,
                           float theta, void* stream, char* err, size_t err_len) {
  if (rows < 0 || heads < 0 || head_dim < 0 || head_dim % 2 != 0) {
    return cl::invalid(err, err_len, "qk_cuda_rope", "bad dims (head_dim must be even)");
  }
  if (rows * heads * head_dim == 0) return QK_STATUS_OK;
  rope_kernel<<<grid_for(rows * heads * head_dim / 2), kThreads, 0, cl::as_stream(stream)>>>(x, rows, heads, head_dim,
                                                                                           positions, theta);
  QK_CU_TRY(cudaGetLastError(), "rope launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_softmax_rows_dev(float* x, int64_t rows, int64_t n, void* stream, char* err, size_t err_len) {
  if (rows < 0 || n < 0 || rows > 0x7FFFFFFF) return cl::invalid(err, err_len, "qk_cuda_softmax_rows", "bad dims");
  if (rows == 0 || n == 0) return QK_STATUS_OK;
  softmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, cl::as_stream(stream)>>>(x, n);
  QK_CU_TRY(cudaGetLastError(), "softmax launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_silu_mul_dev(const float* gate, const float* up, int64_t n, float* out, void* stream, char* err,
                               size_t err_len) {
  if (n < 0) return cl::invalid(err, err_len, "qk_cuda_silu_mul", "bad n");
  if (n == 0) return QK_STATUS_OK;
  silu_mul_kernel<<<grid_for(n), kThreads, 0, cl::as_stream(stream)>>>(gate, up, n, out);
  QK_CU_TRY(cudaGetLastError(), "silu_mul launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_add_dev(float* y, const float* x, int64_t n, void* stream, char* err, size_t err_len) {
  if (n < 0) return cl::invalid(err, err_len, "qk_cuda_add", "bad n");
  if (n == 0) return QK_STATUS_OK;
  add_kernel<<<grid_for(n), kThreads, 0, cl::as_stream(stream)>>>(y, x, n);
  QK_CU_TRY(cudaGetLastError(), "add launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_attention_decode_dev(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                       const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0,
                                       float* out, float* scratch, void* stream, char* err, size_t err_len) {
  if (T < 0 || heads < 0 || kv_heads < 1 || head_dim < 0 || max_seq < 0 || pos0 < 0 || heads % kv_heads != 0 ||
      pos0 + T > max_seq || heads > 65535 || T > 65535) {
    return cl::invalid(err, err_len, "qk_cuda_attention_decode", "bad dims (heads % kv_heads, pos0 + T <= max_seq)");
  }
  if (T == 0 || heads == 0 || head_dim == 0) return QK_STATUS_OK;
  attention_kernel<<<dim3(static_cast<unsigned>(heads), static_cast<unsigned>(T)), kThreads, 0, cl::as_stream(stream)>>>(
      q, T, heads, kv_heads, head_dim, k_cache, v_cache, max_seq, pos0, out, scratch);
  QK_CU_TRY(cudaGetLastError(), "attention launch");
  return QK_STATUS_OK;
}

qk_status qk_cuda_kv_cache_write_dev(const float* k, const float* v, int64_t T, int64_t kv_heads, int64_t head_dim,
                                     const int32_t* positions, int64_t max_seq, float* k_cache, float* v_cache,
                                     void* stream, char* err, size_t err_len) {
  if (T < 0 || kv_heads < 0 || head_dim < 0 || max_seq < 0) return cl::invalid(err, err_len, "qk_cuda_kv_cache_write", "bad dims");
  if (T == 0 || kv_heads * head_dim == 0) return QK_STATUS_OK;
  kv_write_kernel<<<grid_for(kv_heads * head_dim), kThreads, 0, cl::as_stream(stream)>>>(k, v, T, kv_heads, head_dim,
                                                                                       positions, max_seq, k_cache,
                                                                                       v_cache);
  QK_CU_TRY(cudaGetLastError(), "kv_cache_write launch");
  return QK_STATUS_OK;
}

// Host-pointer entry (tests, one-off calls): uploads the inputs the op reads, runs it, downloads its output.
qk_status qk_cuda_llama(int device, int op, const qk_cuda_llama_args* a, char* err, size_t err_len) {
  if (a == nullptr || op < QK_CUDA_LLAMA_RMSNORM || op > QK_CUDA_LLAMA_ATTENTION) {
    return cl::invalid(err, err_len, "qk_cuda_llama", "bad op or NULL args");
  }
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch d0(device, st), d1(device, st), d2(device, st), dp(device, st), dout(device, st), datt(device, st);
  const size_t f = sizeof(float);
  size_t out_n = 0;
  switch (op) {
    case QK_CUDA_LLAMA_RMSNORM:
      out_n = static_cast<size_t>(a->rows * a->n);
      QK_ST_TRY(cl::upload(d0, a->a, out_n * f, st, "upload x", err, err_len));
      QK_ST_TRY(cl::upload(d1, a->b, static_cast<size_t>(a->n) * f, st, "upload weight", err, err_len));
      QK_ST_TRY(dout.alloc(out_n * f, err, err_len));
      QK_ST_TRY(qk_cuda_rmsnorm_dev(d0.as<float>(), d1.as<float>(), a->rows, a->n, a->eps, dout.as<float>(), st, err,
                                    err_len));
      break;
    case QK_CUDA_LLAMA_ROPE:
      out_n = static_cast<size_t>(a->rows * a->heads * a->head_dim);
      QK_ST_TRY(cl::upload(dout, a->a, out_n * f, st, "upload x", err, err_len));
      QK_ST_TRY(cl::upload(dp, a->positions, static_cast<size_t>(a->rows) * 4, st, "upload positions", err, err_len));
      QK_ST_TRY(qk_cuda_rope_dev(dout.as<float>(), a->rows, a->heads, a->head_dim, dp.as<int32_t>(), a->theta, st, err,
                                 err_len));
      break;
    case QK_CUDA_LLAMA_SOFTMAX:
      out_n = static_cast<size_t>(a->rows * a->n);
      QK_ST_TRY(cl::upload(dout, a->a, out_n * f, st, "upload x", err, err_len));
      QK_ST_TRY(qk_cuda_softmax_rows_dev(dout.as<float>(), a->rows, a->n, st, err, err_len));
      break;
    case QK_CUDA_LLAMA_SILU_MUL:
      out_n = static_cast<size_t>(a->n);
      QK_ST_TRY(cl::upload(d0, a->a, out_n * f, st, "upload gate", err, err_len));
      QK_ST_TRY(cl::upload(d1, a->b, out_n * f, st, "upload up", err, err_len));
      QK_ST_TRY(dout.alloc(out_n * f, err, err_len));
      QK_ST_TRY(qk_cuda_silu_mul_dev(d0.as<float>(), d1.as<float>(), a->n, dout.as<float>(), st, err, err_len));
      break;
    default: {  // attention
      out_n = static_cast<size_t>(a->T * a->heads * a->head_dim);
      const size_t cache = static_cast<size_t>(a->kv_heads * a->max_seq * a->head_dim);
      QK_ST_TRY(cl::upload(d0, a->a, out_n * f, st, "upload q", err, err_len));
      QK_ST_TRY(cl::upload(d1, a->b, cache * f, st, "upload k_cache", err, err_len));
      QK_ST_TRY(cl::upload(d2, a->c, cache * f, st, "upload v_cache", err, err_len));
      QK_ST_TRY(dout.alloc(out_n * f, err, err_len));
      QK_ST_TRY(datt.alloc(static_cast<size_t>(a->T * a->heads * (a->pos0 + a->T)) * f, err, err_len));
      QK_ST_TRY(qk_cuda_attention_decode_dev(d0.as<float>(), a->T, a->heads, a->kv_heads, a->head_dim, d1.as<float>(),
                                             d2.as<float>(), a->max_seq, a->pos0, dout.as<float>(), datt.as<float>(), st,
                                             err, err_len));
    }
  }
  if (out_n > 0) QK_CU_TRY(cudaMemcpyAsync(a->out, dout.get(), out_n * f, cudaMemcpyDeviceToHost, st), "download out");
  QK_CU_TRY(cudaStreamSynchronize(st), "llama op (kernel execution)");
  return QK_STATUS_OK;
}

}  // extern "C"
