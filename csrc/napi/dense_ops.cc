// quantkit — JS entry points for the Dense forward kernels (float and quantized). Arguments are checked here
// (dims, buffer lengths, optional bias); the kernels (csrc/kernels/*/dense_*) do the maths.
//
//   denseF32(M, N, K, x: F32, w: F32 [K,N], bias: F32|null, y: F32, isa?, packed?)
//   denseW8A8(M, N, K, x, w: I8 [K,N], wScale: F32 [N], bias|null, actLo, actHi, actEps, y, isa?, packed?)
//     packed: optional ArrayBuffer from packWeights('f32' | 'w8a8', K, N, w) (napi/packed_arg.h); used for
//     M > 16 (fp32) / M >= 2 (int8) when the call's ISA reads its layout, else the Keras-layout w is used.
//   denseW4A8(M, N, K, x, w4: U8|I8 [K,(N+1)/2], wScale, bias|null, actLo, actHi, actEps, y, isa?)
//   denseW8(M, N, K, x, w: I8 [K,N], wScale: F32 [N], bias|null, y, isa?)
//   denseW4(M, N, K, x, w4, wScale, bias|null, y, isa?)
//   denseW4G(M, N, K, x, w4, scale: F32 [G,N], zero: I8 [G,N], group, bias|null, y, isa?)
//   denseFp8(M, N, K, x, xScale, w8: U8 [K,N], wScale, bias|null, y, isa?)
#include <napi.h>

#include <string>

#include "napi/packed_arg.h"
#include "napi/util.h"
#include "qk/packed.h"
#include "qk/threadpool.h"

namespace qkn {
namespace {

using qk::ThreadPool;

struct Common {
  int64_t M, N, K;
  View x, y, bias;
  const float* bias_ptr = nullptr;
};

// Reads M, N, K (args 0..2) and x (arg 3); checks x and y lengths and the optional bias.
Common common(const Napi::CallbackInfo& info, size_t bias_index, size_t y_index) {
  Napi::Env env = info.Env();
  Common c;
  c.M = dim(info, 0, "M");
  c.N = dim(info, 1, "N");
  c.K = dim(info, 2, "K");
  c.x = typed_array(info, 3, "x", {napi_float32_array});
  expect_length(env, c.x, mul(env, c.M, c.K, "x"), "x");
  c.y = typed_array(info, y_index, "y", {napi_float32_array});
  expect_length(env, c.y, mul(env, c.M, c.N, "y"), "y");
  if (!info[bias_index].IsNull() && !info[bias_index].IsUndefined()) {
    c.bias = typed_array(info, bias_index, "bias", {napi_float32_array});
    expect_length(env, c.bias, c.N, "bias");
    c.bias_ptr = static_cast<const float*>(c.bias.data);
  }
  return c;
}

void act_range(const Napi::CallbackInfo& info, size_t i, float* lo, float* hi, float* eps) {
  Napi::Env env = info.Env();
  double l = number(info, i, "actLo"), h = number(info, i + 1, "actHi"), e = number(info, i + 2, "actEps");
  if (l != static_cast<int>(l) || h != static_cast<int>(h) || l < -128 || h > 127 || l >= h || h <= 0) {
    throw_invalid(env, "Expected integers -128 <= lo < hi <= 127 with hi > 0 for the activation value range but received [" +
                           format_number(l) + ", " + format_number(h) + "]");
  }
  if (e < 0) throw_invalid(env, "Expected a non-negative number for actEps but received " + format_number(e));
  *lo = static_cast<float>(l);
  *hi = static_cast<float>(h);
  *eps = static_cast<float>(e);
}

int64_t packed_cols(int64_t N) { return N / 2 + (N % 2); }

// Multiply-adds of the call: tiny ones run inline (see PromiseWorker::start).
Napi::Value finish(Napi::Env env, const Common& c, PromiseWorker::Work work, std::initializer_list<const View*> keep) {
  return PromiseWorker::start(env, std::move(work), keep, static_cast<double>(c.M) * c.N * c.K);
}

// Pre-packed paths (qk/packed.h). packed_arg returns a payload only for the AVX-512 table, which exists only in
// builds with the x86 variants.
constexpr int64_t kPackedMinRowsF32 = 16;  // up to here sgemm's small-M path reads B in place (sgemm_common.h)

qk_status sgemm_packed(int64_t M, int64_t N, int64_t K, const float* x, const float* pk, float* y) {
#ifdef QK_HAVE_X86_VARIANTS
  return qk::avx512::sgemm_packed(M, N, K, x, K, pk, y, N, &ThreadPool::global());
#else
  (void)M, (void)N, (void)K, (void)x, (void)pk, (void)y;
  return QK_STATUS_INTERNAL;
#endif
}

qk_status dense_w8a8_packed(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* pk, const float* ws,
                            const float* b, float lo, float hi, float eps, float* y) {
#ifdef QK_HAVE_X86_VARIANTS
  return qk::avx512::dense_w8a8_packed(M, N, K, x, pk, ws, b, lo, hi, eps, y, &ThreadPool::global());
#else
  (void)M, (void)N, (void)K, (void)x, (void)pk, (void)ws, (void)b, (void)lo, (void)hi, (void)eps, (void)y;
  return QK_STATUS_INTERNAL;
#endif
}

std::string oom(qk_status s) { return s == QK_STATUS_OUT_OF_MEMORY ? "Out of memory allocating Dense kernel scratch" : ""; }

Napi::Value DenseF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Common c = common(info, 5, 6);
  View w = typed_array(info, 4, "w", {napi_float32_array});
  expect_length(env, w, mul(env, c.K, c.N, "w"), "w");
  const qk::KernelTable& k = kernels_arg(info, 7);
  View keep_packed;
  const auto* pk = static_cast<const float*>(packed_arg(info, 8, qk::PackedKind::kF32, k, c.K, c.N, &keep_packed));
  if (c.M <= kPackedMinRowsF32) pk = nullptr;
  auto fn = k.sgemm;
  auto* xp = static_cast<const float*>(c.x.data);
  auto* wp = static_cast<const float*>(w.data);
  auto* yp = static_cast<float*>(c.y.data);
  const float* bp = c.bias_ptr;
  const int64_t M = c.M, N = c.N, K = c.K;
  return finish(env, c, [=](std::string& msg) {
    qk_status s = pk != nullptr ? sgemm_packed(M, N, K, xp, pk, yp) : fn(M, N, K, xp, K, wp, N, yp, N, &ThreadPool::global());
    msg = oom(s);
    if (s == QK_STATUS_OK && bp != nullptr) {
      for (int64_t i = 0; i < M; ++i) {
        float* row = yp + i * N;
        for (int64_t j = 0; j < N; ++j) row[j] += bp[j];
      }
    }
    return s;
  }, {&c.x, &w, &c.bias, &c.y, &keep_packed});
}

Napi::Value DenseInt8Act(const Napi::CallbackInfo& info, bool nibbles) {
  Napi::Env env = info.Env();
  Common c = common(info, 6, 10);
  View w = typed_array(info, 4, nibbles ? "w4" : "w", nibbles ? std::initializer_list<napi_typedarray_type>{napi_uint8_array, napi_int8_array}
                                                       : std::initializer_list<napi_typedarray_type>{napi_int8_array});
  expect_length(env, w, mul(env, c.K, nibbles ? packed_cols(c.N) : c.N, nibbles ? "w4" : "w"), nibbles ? "w4" : "w");
  View ws = typed_array(info, 5, "wScale", {napi_float32_array});
  expect_length(env, ws, c.N, "wScale");
  float lo, hi, eps;
  act_range(info, 7, &lo, &hi, &eps);
  const qk::KernelTable& k = kernels_arg(info, 11);
  View keep_packed;
  const auto* pk = nibbles ? nullptr
                           : static_cast<const uint8_t*>(packed_arg(info, 12, qk::PackedKind::kW8A8, k, c.K, c.N, &keep_packed));
  if (c.M < 2) pk = nullptr;
  auto* xp = static_cast<const float*>(c.x.data);
  auto* sp = static_cast<const float*>(ws.data);
  auto* yp = static_cast<float*>(c.y.data);
  const float* bp = c.bias_ptr;
  const int64_t M = c.M, N = c.N, K = c.K;
  PromiseWorker::Work work;
  if (nibbles) {
    auto fn = k.dense_w4a8;
    auto* wp = static_cast<const uint8_t*>(w.data);
    work = [=](std::string& msg) { qk_status s = fn(M, N, K, xp, wp, sp, bp, lo, hi, eps, yp, &ThreadPool::global()); msg = oom(s); return s; };
  } else {
    auto fn = k.dense_w8a8;
    auto* wp = static_cast<const int8_t*>(w.data);
    work = [=](std::string& msg) {
      qk_status s = pk != nullptr ? dense_w8a8_packed(M, N, K, xp, pk, sp, bp, lo, hi, eps, yp)
                                  : fn(M, N, K, xp, wp, sp, bp, lo, hi, eps, yp, &ThreadPool::global());
      msg = oom(s);
      return s;
    };
  }
  return finish(env, c, std::move(work), {&c.x, &w, &ws, &c.bias, &c.y, &keep_packed});
}

Napi::Value DenseW8A8(const Napi::CallbackInfo& info) { return DenseInt8Act(info, false); }
Napi::Value DenseW4A8(const Napi::CallbackInfo& info) { return DenseInt8Act(info, true); }

Napi::Value DenseWeightOnly(const Napi::CallbackInfo& info, bool nibbles) {
  Napi::Env env = info.Env();
  Common c = common(info, 6, 7);
  View w = typed_array(info, 4, nibbles ? "w4" : "w", nibbles ? std::initializer_list<napi_typedarray_type>{napi_uint8_array, napi_int8_array}
                                                       : std::initializer_list<napi_typedarray_type>{napi_int8_array});
  expect_length(env, w, mul(env, c.K, nibbles ? packed_cols(c.N) : c.N, nibbles ? "w4" : "w"), nibbles ? "w4" : "w");
  View ws = typed_array(info, 5, "wScale", {napi_float32_array});
  expect_length(env, ws, c.N, "wScale");
  const qk::KernelTable& k = kernels_arg(info, 8);
  auto* xp = static_cast<const float*>(c.x.data);
  auto* sp = static_cast<const float*>(ws.data);
  auto* yp = static_cast<float*>(c.y.data);
  const float* bp = c.bias_ptr;
  const int64_t M = c.M, N = c.N, K = c.K;
  PromiseWorker::Work work;
  if (nibbles) {
    auto fn = k.dense_w4;
    auto* wp = static_cast<const uint8_t*>(w.data);
    work = [=](std::string& msg) { qk_status s = fn(M, N, K, xp, wp, sp, bp, yp, &ThreadPool::global()); msg = oom(s); return s; };
  } else {
    auto fn = k.dense_w8;
    auto* wp = static_cast<const int8_t*>(w.data);
    work = [=](std::string& msg) { qk_status s = fn(M, N, K, xp, wp, sp, bp, yp, &ThreadPool::global()); msg = oom(s); return s; };
  }
  return finish(env, c, std::move(work), {&c.x, &w, &ws, &c.bias, &c.y});
}

Napi::Value DenseW8(const Napi::CallbackInfo& info) { return DenseWeightOnly(info, false); }
Napi::Value DenseW4(const Napi::CallbackInfo& info) { return DenseWeightOnly(info, true); }

Napi::Value DenseW4G(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Common c = common(info, 8, 9);
  View w = typed_array(info, 4, "w4", {napi_uint8_array, napi_int8_array});
  expect_length(env, w, mul(env, c.K, packed_cols(c.N), "w4"), "w4");
  int64_t group = dim(info, 7, "group");
  if (group < 1) throw_invalid(env, "Expected a group size >= 1 for group but received " + std::to_string(group));
  const int64_t G = c.K == 0 ? 0 : (c.K + group - 1) / group;
  View scale = typed_array(info, 5, "scale", {napi_float32_array});
  expect_length(env, scale, mul(env, G, c.N, "scale"), "scale");
  View zero = typed_array(info, 6, "zero", {napi_int8_array});
  expect_length(env, zero, mul(env, G, c.N, "zero"), "zero");
  const qk::KernelTable& k = kernels_arg(info, 10);
  auto fn = k.dense_w4g;
  auto* xp = static_cast<const float*>(c.x.data);
  auto* wp = static_cast<const uint8_t*>(w.data);
  auto* sp = static_cast<const float*>(scale.data);
  auto* zp = static_cast<const int8_t*>(zero.data);
  auto* yp = static_cast<float*>(c.y.data);
  const float* bp = c.bias_ptr;
  const int64_t M = c.M, N = c.N, K = c.K;
  return finish(env, c, [=](std::string& msg) {
    qk_status s = fn(M, N, K, xp, wp, sp, zp, group, bp, yp, &ThreadPool::global());
    msg = oom(s);
    return s;
  }, {&c.x, &w, &scale, &zero, &c.bias, &c.y});
}

Napi::Value DenseFp8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Common c = common(info, 7, 8);
  double xs = number(info, 4, "xScale");
  View w = typed_array(info, 5, "w8", {napi_uint8_array});
  expect_length(env, w, mul(env, c.K, c.N, "w8"), "w8");
  double wsv = number(info, 6, "wScale");
  if (!(xs > 0) || !(wsv > 0)) {
    throw_invalid(env, "Expected positive finite scales for xScale and wScale but received " + format_number(xs) + " and " +
                           format_number(wsv));
  }
  const qk::KernelTable& k = kernels_arg(info, 9);
  auto fn = k.dense_fp8;
  auto* xp = static_cast<const float*>(c.x.data);
  auto* wp = static_cast<const uint8_t*>(w.data);
  auto* yp = static_cast<float*>(c.y.data);
  const float* bp = c.bias_ptr;
  const int64_t M = c.M, N = c.N, K = c.K;
  const float fxs = static_cast<float>(xs), fws = static_cast<float>(wsv);
  return finish(env, c, [=](std::string& msg) {
    qk_status s = fn(M, N, K, xp, fxs, wp, fws, bp, yp, &ThreadPool::global());
    msg = oom(s);
    return s;
  }, {&c.x, &w, &c.bias, &c.y});
}

}  // namespace

void register_dense_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("denseF32", Napi::Function::New(env, DenseF32, "denseF32"));
  exports.Set("denseW8A8", Napi::Function::New(env, DenseW8A8, "denseW8A8"));
  exports.Set("denseW4A8", Napi::Function::New(env, DenseW4A8, "denseW4A8"));
  exports.Set("denseW8", Napi::Function::New(env, DenseW8, "denseW8"));
  exports.Set("denseW4", Napi::Function::New(env, DenseW4, "denseW4"));
  exports.Set("denseW4G", Napi::Function::New(env, DenseW4G, "denseW4G"));
  exports.Set("denseFp8", Napi::Function::New(env, DenseFp8, "denseFp8"));
}

}  // namespace qkn
