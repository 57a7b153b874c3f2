// quantkit — GPTQ on the device: Hessian accumulation, Cholesky, triangular inverse and the upper factor
// (cholesky_inverse_upper), and the column sweep with lazy block updates; C-ABI launchers in qk_cuda.h.
// Results are BIT-IDENTICAL to the CPU reference (qk::ref in csrc/kernels/ref/gptq_ref.cpp): every kernel's
// per-thread work is a function of gptq_sweep.cuh, which the host test runs against qk::ref (see there why the
// operation sequences are the same). Build flags (cuda.cmake): --fmad=false, IEEE division and sqrt, no FTZ.
//
// Scheduling (correctness first; none of this was timed on a GPU):
//   Hessian   16 x 16 lower-entry tiles per block, x rows staged through shared memory, rows ascending.
//   Cholesky  one launch per column (all entries of the column in parallel; each block recomputes the pivot).
//   inverse   one thread per column, from a read-only copy of L.
//   sweep     one thread per output; per lazy block: sweep_block, then the flush of the block's updates to the
//             later columns (one thread per (column, output)), then the block's loss (one thread, exact order).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gptq_sweep.cuh"
#include "launch_util.cuh"

namespace {

namespace gd = qk::gptq_dev;
namespace cl = qk::cuda_launch;

constexpr int kHTile = 16, kHRows = 32;

// H[i][j] += sum_t X[t][i] * X[t][j] for the lower entries of one 16 x 16 tile, rows in chunks through shared memory.
__global__ void __launch_bounds__(kHTile* kHTile) hessian_kernel(const float* __restrict__ X, int64_t rows, int64_t cols,
                                                                 double* __restrict__ H) {
  __shared__ float xi[kHRows][kHTile], xj[kHRows][kHTile];
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kHTile, j0 = static_cast<int64_t>(blockIdx.x) * kHTile;
  if (j0 > i0) return;  // strictly upper tile
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int64_t i = i0 + ty, j = j0 + tx;
  const bool mine = i < cols && j <= i;
  double h = mine ? H[i * cols + j] : 0.0;
  for (int64_t t0 = 0; t0 < rows; t0 += kHRows) {
    for (int r = ty; r < kHRows; r += kHTile) {
      const int64_t t = t0 + r;
      xi[r][tx] = (t < rows && i0 + tx < cols) ? X[t * cols + i0 + tx] : 0.0f;
      xj[r][tx] = (t < rows && j0 + tx < cols) ? X[t * cols + j0 + tx] : 0.0f;
    }
    __syncthreads();
    const int nr = rows - t0 < kHRows ? static_cast<int>(rows - t0) : kHRows;
    // The same additions as gd::hessian_entry, rows ascending.
    for (int r = 0; r < nr; ++r) h += static_cast<double>(xi[r][ty]) * static_cast<double>(xj[r][tx]);
    __syncthreads();
  }
  if (mine) H[i * cols + j] = h;
}

// Column j of the Cholesky factor. Every block computes the pivot from row j (whose diagonal still holds the
// damped H entry: the diagonal of column j is written only by the NEXT launch, from piv[j], because no thread of
// that launch reads it, while the pivot readers of this launch do).
__global__ void chol_column_kernel(double* __restrict__ A, int64_t n, int64_t j, double* __restrict__ piv,
                                   int* __restrict__ bad) {
  const bool first = blockIdx.x == 0 && threadIdx.x == 0;
  if (first && j > 0) A[(j - 1) * n + (j - 1)] = piv[j - 1];
  const double s = gd::chol_pivot(A, n, j);
  if (!gd::chol_pivot_ok(s)) {
    if (first) *bad = 1;
    return;
  }
  const double d = sqrt(s);
  for (int64_t i = j + 1 + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A[i * n + j] = gd::chol_entry(A, n, i, j, d);
  }
  if (first) piv[j] = d;
}
__global__ void chol_last_diag_kernel(double* __restrict__ A, int64_t n, const double* __restrict__ piv) {
  A[(n - 1) * n + (n - 1)] = piv[n - 1];
}

__global__ void trinv_kernel(const double* __restrict__ L, double* __restrict__ Y, int64_t n) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < n) gd::trinv_column(L, Y, n, j);
}

// A <- J A J (180-degree rotation), out of place.
__global__ void rotate_kernel(const double* __restrict__ A, double* __restrict__ B, int64_t n) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    B[n * n - 1 - e] = A[e];
  }
}

// Attempt setup: diagonal = diag + lambda; on a retry also the lower triangle from the (untouched) strict upper one.
__global__ void damp_kernel(double* __restrict__ A, const double* __restrict__ diag_rot, int64_t n, double lambda,
                            bool restore) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    if (j < i && restore) A[e] = A[j * n + i];
    else if (j == i) A[e] = diag_rot[i] + lambda;
  }
}

// Final U: upper triangle of the rotated inverse, zeros below.
__global__ void upper_kernel(const double* __restrict__ Yrot, double* __restrict__ U, int64_t n) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    U[e] = j >= i ? Yrot[e] : 0.0;
  }
}

__global__ void sweep_block_kernel(const gd::SweepArgs a, int64_t j0, int64_t j1, float* __restrict__ sz) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= a.out) return;
  float s = sz[2 * o], z = sz[2 * o + 1];
  gd::sweep_block(a, o, j0, j1, &s, &z);
  sz[2 * o] = s;
  sz[2 * o + 1] = z;
}

__global__ void sweep_flush_kernel(const gd::SweepArgs a, int64_t j0, int64_t j1) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t k = j1 + blockIdx.y + static_cast<int64_t>(blockIdx.z) * 65535;
  if (o < a.out && k < a.in) gd::sweep_flush(a, o, j0, j1, k);
}

__global__ void loss_kernel(const float* __restrict__ E, int64_t rows, int64_t out, double* __restrict__ loss) {
  *loss = gd::block_loss(E, rows, out, *loss);
}

unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

// Device cholesky_inverse_upper on the worker stream: H (device, [n, n], symmetric, dead inputs fixed) -> U.
qk_status chol_inverse_upper(int device, cudaStream_t st, double* dH, int64_t n, const std::vector<double>& diag,
                             double damp, int max_tries, double* damp_used, int* tries, char* err, size_t err_len) {
  const size_t bytes = static_cast<size_t>(n * n) * sizeof(double);
  cl::Scratch rot(device, st), lcopy(device, st), y(device, st), ddiag(device, st), dbad(device, st), dpiv(device, st);
  QK_ST_TRY(rot.alloc(bytes, err, err_len));
  QK_ST_TRY(lcopy.alloc(bytes, err, err_len));
  QK_ST_TRY(y.alloc(bytes, err, err_len));
  QK_ST_TRY(dbad.alloc(sizeof(int), err, err_len));
  QK_ST_TRY(dpiv.alloc(static_cast<size_t>(n) * sizeof(double), err, err_len));
  std::vector<double> diag_rot(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += diag[i];
  for (int64_t i = 0; i < n; ++i) diag_rot[i] = diag[n - 1 - i];
  QK_ST_TRY(cl::upload(ddiag, diag_rot.data(), static_cast<size_t>(n) * sizeof(double), st, "upload diag", err, err_len));
  const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  const unsigned eb = blocks_for(n * n, 256);
  rotate_kernel<<<eb, 256, 0, st>>>(dH, rot.as<double>(), n);  // J H J: lower factored, strict upper = backup
  double cur = damp;
  for (int attempt = 1; attempt <= max_tries; ++attempt) {
    if (attempt > 1) cur = cur > 0.0 ? cur * 10.0 : 1e-4;
    damp_kernel<<<eb, 256, 0, st>>>(rot.as<double>(), ddiag.as<double>(), n, cur * mean, attempt > 1);
    QK_CU_TRY(cudaMemsetAsync(dbad.get(), 0, sizeof(int), st), "cudaMemsetAsync");
    for (int64_t j = 0; j < n; ++j) {
      chol_column_kernel<<<blocks_for(n - j - 1, 128), 128, 0, st>>>(rot.as<double>(), n, j, dpiv.as<double>(),
                                                                       dbad.as<int>());
    }
    chol_last_diag_kernel<<<1, 1, 0, st>>>(rot.as<double>(), n, dpiv.as<double>());
    QK_CU_TRY(cudaGetLastError(), "gptq cholesky launch");
    int bad = 0;
    QK_CU_TRY(cudaMemcpyAsync(&bad, dbad.get(), sizeof(int), cudaMemcpyDeviceToHost, st), "download pivot flag");
    QK_CU_TRY(cudaStreamSynchronize(st), "gptq cholesky (kernel execution)");
    if (bad) continue;
    // Y = L^-1 of the lower triangle (the strict upper triangle of rot is the backup and stays untouched in lcopy).
    QK_CU_TRY(cudaMemcpyAsync(lcopy.get(), rot.get(), bytes, cudaMemcpyDeviceToDevice, st), "copy L");
    QK_CU_TRY(cudaMemcpyAsync(y.get(), rot.get(), bytes, cudaMemcpyDeviceToDevice, st), "copy L");
    trinv_kernel<<<blocks_for(n, 64), 64, 0, st>>>(lcopy.as<double>(), y.as<double>(), n);
    rotate_kernel<<<eb, 256, 0, st>>>(y.as<double>(), rot.as<double>(), n);  // lower L^-1 of J H J -> upper U
    upper_kernel<<<eb, 256, 0, st>>>(rot.as<double>(), dH, n);
    QK_CU_TRY(cudaGetLastError(), "gptq inverse launch");
    if (damp_used) *damp_used = cur;
    if (tries) *tries = attempt;
    return QK_STATUS_OK;
  }
  if (tries) *tries = max_tries;
  cl::write_msg(err, err_len, "gptq: the damped Hessian is not positive definite after %d attempts", max_tries);
  return QK_STATUS_INVALID_ARGUMENT;
}

}  // namespace

extern "C" {

qk_status qk_cuda_gptq_hessian_accumulate(int device, const float* X, int64_t rows, int64_t cols, double* H,
                                          int64_t* n_seen, char* err, size_t err_len) {
  if (rows < 0 || cols < 0 || n_seen == nullptr || (rows * cols > 0 && X == nullptr) || (cols > 0 && H == nullptr)) {
    return cl::invalid(err, err_len, "qk_cuda_gptq_hessian_accumulate", "bad sizes or NULL pointer");
  }
  if (cols > (int64_t{1} << 20) || rows > (int64_t{1} << 40)) {
    return cl::invalid(err, err_len, "qk_cuda_gptq_hessian_accumulate", "dims too large");
  }
  QK_ST_TRY(qk_cuda_use_device(device, err, err_len));
  if (rows == 0 || cols == 0) {
    *n_seen += rows;
    return QK_STATUS_OK;
  }
  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch dx(device, st), dh(device, st);
  const size_t hb = static_cast<size_t>(cols * cols) * sizeof(double);
  QK_ST_TRY(cl::upload(dx, X, static_cast<size_t>(rows * cols) * sizeof(float), st, "upload X", err, err_len));
  QK_ST_TRY(cl::upload(dh, H, hb, st, "upload H", err, err_len));
  const unsigned tiles = static_cast<unsigned>((cols + kHTile - 1) / kHTile);
  hessian_kernel<<<dim3(tiles, tiles), dim3(kHTile, kHTile), 0, st>>>(dx.as<float>(), rows, cols, dh.as<double>());
  QK_CU_TRY(cudaGetLastError(), "gptq hessian launch");
  QK_CU_TRY(cudaMemcpyAsync(H, dh.get(), hb, cudaMemcpyDeviceToHost, st), "download H");
  QK_CU_TRY(cudaStreamSynchronize(st), "gptq hessian (kernel execution)");
  *n_seen += rows;
  return QK_STATUS_OK;
}

qk_status qk_cuda_gptq_quantize_matrix(int device, const float* W, int64_t in, int64_t out, double* H, int bits,
                                       int64_t group_size, int symmetric, int act_order, double damp,
                                       int max_damp_tries, int zero_dead_inputs, uint8_t* q, float* scale,
                                       uint8_t* zero, int32_t* g_idx, float* w_hat, qk_cuda_gptq_result* res,
                                       char* err, size_t err_len) {
  const char* op = "qk_cuda_gptq_quantize_matrix";
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8)) return cl::invalid(err, err_len, op, "bits must be 2, 3, 4 or 8");
  if (group_size == 0 || group_size < -1) return cl::invalid(err, err_len, op, "group_size must be >= 1 or -1");
  if (!(damp >= 0.0 && damp <= 1.0) || max_damp_tries < 1) {
    return cl::invalid(err, err_len, op, "damp must be in [0, 1] and max_damp_tries >= 1");
  }
  if (in < 0 || out < 0 || in > (int64_t{1} << 20) || out > (int64_t{1} << 31)) return cl::invalid(err, err_len, op, "bad dims");
  QK_ST_TRY(qk_cuda_use_device(device, err, err_len));  // before H is touched
  for (int64_t k = 0; k < in * out; ++k)
    if (!std::isfinite(W[k])) return cl::invalid(err, err_len, op, "W has a non-finite entry");
  for (int64_t k = 0; k < in * in; ++k)
    if (!std::isfinite(H[k])) return cl::invalid(err, err_len, op, "H has a non-finite entry");
  const int64_t G = qk::gptq_num_groups(in, group_size);
  const int64_t g = group_size < 0 ? std::max<int64_t>(in, 1) : group_size;
  if (in == 0) {
    if (G > 0) {  // an empty group (group_size -1): parameters of the all-zero range
      for (int64_t o = 0; o < out; ++o) {
        float z0;
        qk::gptq_group_params(0.0f, 0.0f, bits, symmetric != 0, &scale[o * G], &z0);
        zero[o * G] = static_cast<uint8_t>(z0);
      }
    }
    if (res) *res = qk_cuda_gptq_result{damp, 1, 0, 0.0};
    return QK_STATUS_OK;
  }
  gd::Prepared pre;
  gd::prepare(W, in, out, H, act_order != 0, zero_dead_inputs != 0, &pre);
  const std::vector<int32_t>& perm = pre.perm;
  const int64_t n_dead = pre.dead;

  void* sv = nullptr;
  QK_ST_TRY(qk_cuda_worker_stream(device, &sv, err, err_len));
  const cudaStream_t st = static_cast<cudaStream_t>(sv);
  cl::Scratch dH(device, st), dW(device, st), dE(device, st), dq(device, st), ds(device, st), dz(device, st),
      dwh(device, st), dperm(device, st), dsz(device, st), dloss(device, st);
  QK_ST_TRY(cl::upload(dH, pre.Hp.data(), pre.Hp.size() * sizeof(double), st, "upload H", err, err_len));
  double damp_used = 0.0;
  int tries = 0;
  QK_ST_TRY(chol_inverse_upper(device, st, dH.as<double>(), in, pre.diag, damp, max_damp_tries, &damp_used, &tries, err,
                               err_len));
  QK_ST_TRY(cl::upload(dW, pre.Wt.data(), pre.Wt.size() * sizeof(float), st, "upload W", err, err_len));
  QK_ST_TRY(cl::upload(dperm, perm.data(), perm.size() * sizeof(int32_t), st, "upload perm", err, err_len));
  QK_ST_TRY(dE.alloc(static_cast<size_t>(gd::kLazyBlock * out) * sizeof(float), err, err_len));
  QK_ST_TRY(dq.alloc(static_cast<size_t>(out * in), err, err_len));
  QK_ST_TRY(ds.alloc(static_cast<size_t>(out * G) * sizeof(float), err, err_len));
  QK_ST_TRY(dz.alloc(static_cast<size_t>(out * G), err, err_len));
  QK_ST_TRY(dsz.alloc(static_cast<size_t>(2 * out) * sizeof(float), err, err_len));
  QK_ST_TRY(dloss.alloc(sizeof(double), err, err_len));
  QK_CU_TRY(cudaMemsetAsync(dloss.get(), 0, sizeof(double), st), "cudaMemsetAsync");
  QK_CU_TRY(cudaMemsetAsync(dsz.get(), 0, static_cast<size_t>(2 * out) * sizeof(float), st), "cudaMemsetAsync");
  if (w_hat != nullptr) QK_ST_TRY(dwh.alloc(static_cast<size_t>(in * out) * sizeof(float), err, err_len));
  const gd::SweepArgs a{in, out, G, g, bits, symmetric != 0, dH.as<double>(), dW.as<float>(), dE.as<float>(),
                        dq.as<uint8_t>(), ds.as<float>(), dz.as<uint8_t>(), w_hat ? dwh.as<float>() : nullptr,
                        dperm.as<int32_t>()};
  const unsigned ob = static_cast<unsigned>((out + 127) / 128);
  for (int64_t j0 = 0; out > 0 && j0 < in; j0 = gd::block_end(j0, in, g)) {  // out == 0: U and g_idx only
    const int64_t j1 = gd::block_end(j0, in, g);
    sweep_block_kernel<<<ob, 128, 0, st>>>(a, j0, j1, dsz.as<float>());
    const int64_t later = in - j1;
    if (later > 0) {
      const dim3 grid(ob, static_cast<unsigned>(later < 65535 ? later : 65535),
                      static_cast<unsigned>((later + 65534) / 65535));
      sweep_flush_kernel<<<grid, 128, 0, st>>>(a, j0, j1);
    }
    loss_kernel<<<1, 1, 0, st>>>(dE.as<float>(), j1 - j0, out, dloss.as<double>());
  }
  QK_CU_TRY(cudaGetLastError(), "gptq sweep launch");
  double loss = 0.0;
  if (out > 0) {
    QK_CU_TRY(cudaMemcpyAsync(q, dq.get(), static_cast<size_t>(out * in), cudaMemcpyDeviceToHost, st), "download q");
    QK_CU_TRY(cudaMemcpyAsync(scale, ds.get(), static_cast<size_t>(out * G) * sizeof(float), cudaMemcpyDeviceToHost,
                              st), "download scale");
    QK_CU_TRY(cudaMemcpyAsync(zero, dz.get(), static_cast<size_t>(out * G), cudaMemcpyDeviceToHost, st),
              "download zero");
    if (w_hat != nullptr) {
      QK_CU_TRY(cudaMemcpyAsync(w_hat, dwh.get(), static_cast<size_t>(in * out) * sizeof(float),
                                cudaMemcpyDeviceToHost, st), "download w_hat");
    }
  }
  QK_CU_TRY(cudaMemcpyAsync(&loss, dloss.get(), sizeof(double), cudaMemcpyDeviceToHost, st), "download loss");
  // H is consumed: it holds U (processing order), as the CPU version leaves it.
  QK_CU_TRY(cudaMemcpyAsync(H, dH.get(), static_cast<size_t>(in * in) * sizeof(double), cudaMemcpyDeviceToHost, st),
            "download U");
  QK_CU_TRY(cudaStreamSynchronize(st), "gptq sweep (kernel execution)");
  for (int64_t j = 0; j < in; ++j) g_idx[perm[j]] = static_cast<int32_t>(group_size < 0 ? 0 : j / g);
  if (res) *res = qk_cuda_gptq_result{damp_used, tries, n_dead, loss};
  return QK_STATUS_OK;
}

}  // extern "C"
