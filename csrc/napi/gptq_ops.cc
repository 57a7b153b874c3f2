// quantkit — JS entry points for the GPTQ calibration core (qk/gptq.h). Arguments are checked here (dims,
// exact buffer lengths with overflow checks, option ranges); the kernels do the maths on a worker thread.
//
//   gptqHessianAccumulate(X: F32 [rows*cols], rows, cols, H: F64 [cols*cols], count: F64 [1], isa?, device?)
//       H holds the running (unscaled, lower-triangle) sum, count[0] the rows seen; both are updated.
//   gptqHessianFinalize(H: F64 [cols*cols], cols, count: F64 [1], isa?)
//   gptqQuantizeMatrix(W: F32 [in*out], in, out, H: F64 [in*in] (consumed), bits, groupSize, symmetric,
//       perChannel, actOrder, damp, maxDampTries, zeroDeadInputs, q: U8 [out*in], scale: F32 [out*G],
//       zero: U8 [out*G], gIdx: I32 [in], wHat: F32 [in*out] | null, result: F64 [4], isa?, device?)
//       result = [dampUsed, dampTries, deadInputs, loss]
//   device (a CUDA device index) runs the op on that device (cuda/gptq.cu, bit-identical to the ref); isa is then
//   ignored. perChannel = false has no device version (QK_UNSUPPORTED). Without CUDA in the build: QK_UNSUPPORTED.
//   gptqCholeskyLower(A: F64 [n*n], n, isa?)            lower triangle -> L (rejects non-PD)
//   gptqTriangularInverseLower(A: F64 [n*n], n, isa?)   lower triangle -> L^-1
//   gptqCholeskyInverseUpper(H: F64 [n*n], n, damp, maxTries, result: F64 [2], isa?)  H -> U, [dampUsed, tries]
//
// The buffers are mutated by the worker: the caller must not touch them (or start another op on them) until
// the Promise settles. lib/gptq serializes this.
#include <napi.h>

#include <cmath>
#include <string>

#include "napi/util.h"
#include "qk/gptq.h"
#include "qk/threadpool.h"
#ifdef QK_WITH_CUDA
#include "qk_cuda.h"
#endif

namespace qkn {
namespace {

using qk::ThreadPool;

// Counts are carried in a Float64Array (exact up to 2^53).
int64_t read_count(Napi::Env env, const View& v) {
  const double c = static_cast<const double*>(v.data)[0];
  if (!(c >= 0) || c > 9007199254740991.0 || c != std::floor(c)) {
    throw_invalid(env, "Expected a non-negative integer in count[0] but received " + format_number(c));
  }
  return static_cast<int64_t>(c);
}

std::string oom(qk_status s, const char* what) {
  return s == QK_STATUS_OUT_OF_MEMORY ? std::string("Out of memory allocating scratch for ") + what : std::string();
}

// Optional CUDA device index at info[i]: -1 = the CPU.
int device_opt(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return -1;
  const int64_t d = dim(info, i, "device");
  if (d > 1024) throw_invalid(info.Env(), "Expected a device index <= 1024 for device but received " + std::to_string(d));
#ifndef QK_WITH_CUDA
  throw_error(info.Env(), "QK_UNSUPPORTED", "CUDA is not available: quantkit was built without CUDA");
#endif
  return static_cast<int>(d);
}

Napi::Value HessianAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View x = typed_array(info, 0, "X", {napi_float32_array});
  const int64_t rows = dim(info, 1, "rows"), cols = dim(info, 2, "cols");
  View h = typed_array(info, 3, "H", {napi_float64_array});
  View count = typed_array(info, 4, "count", {napi_float64_array});
  const qk::KernelTable& k = kernels_arg(info, 5);
  expect_length(env, x, mul(env, rows, cols, "X"), "X");
  expect_length(env, h, mul(env, cols, cols, "H"), "H");
  expect_length(env, count, 1, "count");
  read_count(env, count);
  const int device = device_opt(info, 6);
  auto fn = k.hessian_accumulate;
  auto* xp = static_cast<const float*>(x.data);
  auto* hp = static_cast<double*>(h.data);
  auto* cp = static_cast<double*>(count.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
    int64_t n = static_cast<int64_t>(cp[0]);
#ifdef QK_WITH_CUDA
    if (device >= 0) {
      char err[512] = {0};
      const qk_status s = qk_cuda_gptq_hessian_accumulate(device, xp, rows, cols, hp, &n, err, sizeof err);
      msg = err;
      if (s == QK_STATUS_OK) cp[0] = static_cast<double>(n);
      return s;
    }
#endif
    qk_status s = fn(xp, rows, cols, hp, &n, &ThreadPool::global());
    msg = oom(s, "the Hessian accumulation");
    if (s == QK_STATUS_OK) cp[0] = static_cast<double>(n);
    return s;
  }, {&x, &h, &count});
}

Napi::Value HessianFinalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View h = typed_array(info, 0, "H", {napi_float64_array});
  const int64_t cols = dim(info, 1, "cols");
  View count = typed_array(info, 2, "count", {napi_float64_array});
  const qk::KernelTable& k = kernels_arg(info, 3);
  expect_length(env, h, mul(env, cols, cols, "H"), "H");
  expect_length(env, count, 1, "count");
  const int64_t n = read_count(env, count);
  auto fn = k.hessian_finalize;
  auto* hp = static_cast<double*>(h.data);
  return PromiseWorker::start(env, [=](std::string&) {
    fn(hp, cols, n);
    return QK_STATUS_OK;
  }, {&h, &count});
}

Napi::Value QuantizeMatrix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View w = typed_array(info, 0, "kernel", {napi_float32_array});
  const int64_t in = dim(info, 1, "in"), out = dim(info, 2, "out");
  View h = typed_array(info, 3, "hessian", {napi_float64_array});
  qk::GptqOptions opt;
  const double bits = number(info, 4, "weightBits");
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
    throw_invalid(env, "Expected one of 2, 3, 4, 8 for weightBits but received " + format_number(bits));
  }
  opt.bits = static_cast<int>(bits);
  const double group = number(info, 5, "groupSize");
  if (group != std::floor(group) || !(group == -1 || group >= 1) || group > 9007199254740991.0) {
    throw_invalid(env, "Expected -1 or a positive integer for groupSize but received " + format_number(group));
  }
  opt.group_size = static_cast<int64_t>(group);
  opt.symmetric = boolean(info, 6, "symmetric");
  opt.per_channel = boolean(info, 7, "perChannel");
  opt.act_order = boolean(info, 8, "activationOrder");
  opt.damp = number(info, 9, "hessianDamping");
  if (!(opt.damp >= 0 && opt.damp <= 1)) {
    throw_invalid(env, "Expected a number in [0, 1] for hessianDamping but received " + format_number(opt.damp));
  }
  const double tries = number(info, 10, "maxDampTries");
  if (tries != std::floor(tries) || tries < 1 || tries > 64) {
    throw_invalid(env, "Expected an integer in [1, 64] for maxDampTries but received " + format_number(tries));
  }
  opt.max_damp_tries = static_cast<int>(tries);
  opt.zero_dead_inputs = boolean(info, 11, "zeroDeadInputs");
  View q = typed_array(info, 12, "quantizedKernel", {napi_uint8_array});
  View scale = typed_array(info, 13, "scale", {napi_float32_array});
  View zero = typed_array(info, 14, "zero", {napi_uint8_array});
  View gidx = typed_array(info, 15, "gIdx", {napi_int32_array});
  View what;
  const bool has_what = !info[16].IsNull() && !info[16].IsUndefined();
  if (has_what) what = typed_array(info, 16, "dequantized", {napi_float32_array});
  View result = typed_array(info, 17, "result", {napi_float64_array});
  const qk::KernelTable& k = kernels_arg(info, 18);

  const int64_t G = qk::gptq_num_groups(in, opt.group_size);
  expect_length(env, w, mul(env, in, out, "kernel"), "kernel");
  expect_length(env, h, mul(env, in, in, "hessian"), "hessian");
  expect_length(env, q, mul(env, out, in, "quantizedKernel"), "quantizedKernel");
  expect_length(env, scale, mul(env, out, G, "scale"), "scale");
  expect_length(env, zero, mul(env, out, G, "zero"), "zero");
  expect_length(env, gidx, in, "gIdx");
  if (has_what) expect_length(env, what, mul(env, in, out, "dequantized"), "dequantized");
  expect_length(env, result, 4, "result");

  const int device = device_opt(info, 19);
  if (device >= 0 && !opt.per_channel) {
    throw_error(env, "QK_UNSUPPORTED", "perChannel = false has no CUDA version of GPTQ (one (scale, zero) per group "
                                       "for all outputs); run it on the CPU");
  }
  auto fn = k.gptq_quantize_matrix;
  auto* wp = static_cast<const float*>(w.data);
  auto* hp = static_cast<double*>(h.data);
  auto* qp = static_cast<uint8_t*>(q.data);
  auto* sp = static_cast<float*>(scale.data);
  auto* zp = static_cast<uint8_t*>(zero.data);
  auto* gp = static_cast<int32_t*>(gidx.data);
  float* whp = has_what ? static_cast<float*>(what.data) : nullptr;
  auto* rp = static_cast<double*>(result.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk::GptqResult res;
    qk_status s;
#ifdef QK_WITH_CUDA
    char err[512] = {0};
    if (device >= 0) {
      qk_cuda_gptq_result r{};
      s = qk_cuda_gptq_quantize_matrix(device, wp, in, out, hp, opt.bits, opt.group_size, opt.symmetric ? 1 : 0,
                                       opt.act_order ? 1 : 0, opt.damp, opt.max_damp_tries,
                                       opt.zero_dead_inputs ? 1 : 0, qp, sp, zp, gp, whp, &r, err, sizeof err);
      res.damp_used = r.damp_used;
      res.damp_tries = r.damp_tries;
      res.dead_inputs = r.dead_inputs;
      res.loss = r.loss;
    } else {
      s = fn(wp, in, out, hp, &opt, qp, sp, zp, gp, whp, &res, &ThreadPool::global());
    }
    if (device >= 0 && s != QK_STATUS_OK && s != QK_STATUS_INVALID_ARGUMENT) {
      msg = err;
    } else
#else
    s = fn(wp, in, out, hp, &opt, qp, sp, zp, gp, whp, &res, &ThreadPool::global());
#endif
    if (s == QK_STATUS_INVALID_ARGUMENT) {
      msg = "GPTQ failed: the kernel or the Hessian contains NaN or Infinity, or the Hessian is not positive definite "
            "even with " + std::to_string(opt.max_damp_tries) +
            " increasing dampings; check the calibration activations (finite values) or raise hessianDamping";
    } else {
      msg = oom(s, "GPTQ");
    }
    rp[0] = res.damp_used;
    rp[1] = res.damp_tries;
    rp[2] = static_cast<double>(res.dead_inputs);
    rp[3] = res.loss;
    return s;
  }, {&w, &h, &q, &scale, &zero, &gidx, &what, &result});
}

Napi::Value CholeskyLower(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View a = typed_array(info, 0, "A", {napi_float64_array});
  const int64_t n = dim(info, 1, "n");
  const qk::KernelTable& k = kernels_arg(info, 2);
  expect_length(env, a, mul(env, n, n, "A"), "A");
  auto fn = k.cholesky_lower;
  auto* ap = static_cast<double*>(a.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk_status s = fn(ap, n, &ThreadPool::global());
    if (s == QK_STATUS_INVALID_ARGUMENT) msg = "Cholesky failed: the matrix is not positive definite (or not finite)";
    else msg = oom(s, "the Cholesky factorization");
    return s;
  }, {&a});
}

Napi::Value TriangularInverseLower(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View a = typed_array(info, 0, "A", {napi_float64_array});
  const int64_t n = dim(info, 1, "n");
  const qk::KernelTable& k = kernels_arg(info, 2);
  expect_length(env, a, mul(env, n, n, "A"), "A");
  // The kernel divides by the diagonal: check it here so bad input is an error, not Inf/NaN output.
  const double* ap0 = static_cast<const double*>(a.data);
  for (int64_t i = 0; i < n; ++i) {
    const double d = ap0[i * n + i];
    if (!(d > 0) || !std::isfinite(d)) {
      throw_invalid(env, "Expected a lower-triangular A with a positive finite diagonal but A[" + std::to_string(i) + "][" +
                             std::to_string(i) + "] is " + format_number(d));
    }
  }
  auto fn = k.triangular_inverse_lower;
  auto* ap = static_cast<double*>(a.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk_status s = fn(ap, n, &ThreadPool::global());
    msg = oom(s, "the triangular inverse");
    return s;
  }, {&a});
}

Napi::Value CholeskyInverseUpper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View h = typed_array(info, 0, "H", {napi_float64_array});
  const int64_t n = dim(info, 1, "n");
  const double damp = number(info, 2, "damp");
  if (!(damp >= 0 && damp <= 1)) throw_invalid(env, "Expected a number in [0, 1] for damp but received " + format_number(damp));
  const double tries = number(info, 3, "maxTries");
  if (tries != std::floor(tries) || tries < 1 || tries > 64) {
    throw_invalid(env, "Expected an integer in [1, 64] for maxTries but received " + format_number(tries));
  }
  View result = typed_array(info, 4, "result", {napi_float64_array});
  const qk::KernelTable& k = kernels_arg(info, 5);
  expect_length(env, h, mul(env, n, n, "H"), "H");
  expect_length(env, result, 2, "result");
  auto fn = k.cholesky_inverse_upper;
  auto* hp = static_cast<double*>(h.data);
  auto* rp = static_cast<double*>(result.data);
  const int max_tries = static_cast<int>(tries);
  return PromiseWorker::start(env, [=](std::string& msg) {
    double used = 0;
    int t = 0;
    qk_status s = fn(hp, n, damp, max_tries, &used, &t, &ThreadPool::global());
    if (s == QK_STATUS_INVALID_ARGUMENT) msg = "The damped Hessian is not positive definite after " + std::to_string(max_tries) + " attempts (or it is not finite)";
    else msg = oom(s, "the inverse-Hessian factor");
    rp[0] = used;
    rp[1] = t;
    return s;
  }, {&h, &result});
}

}  // namespace

void register_gptq_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("gptqHessianAccumulate", Napi::Function::New(env, HessianAccumulate, "gptqHessianAccumulate"));
  exports.Set("gptqHessianFinalize", Napi::Function::New(env, HessianFinalize, "gptqHessianFinalize"));
  exports.Set("gptqQuantizeMatrix", Napi::Function::New(env, QuantizeMatrix, "gptqQuantizeMatrix"));
  exports.Set("gptqCholeskyLower", Napi::Function::New(env, CholeskyLower, "gptqCholeskyLower"));
  exports.Set("gptqTriangularInverseLower", Napi::Function::New(env, TriangularInverseLower, "gptqTriangularInverseLower"));
  exports.Set("gptqCholeskyInverseUpper", Napi::Function::New(env, CholeskyInverseUpper, "gptqCholeskyInverseUpper"));
}

}  // namespace qkn
