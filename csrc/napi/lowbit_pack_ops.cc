// quantkit — JS entry points of the packed-once low-bit decode GEMV (qk/lowbit_pack.h). Every argument is checked
// here; a packed buffer's header is re-validated (magic, version, kind, bits, K, N, group, total length) before
// any kernel reads it, so a hostile buffer gives a QK_INVALID_ARGUMENT error, never an out-of-bounds read.
//
//   lowbitPackBytes(kind, bits, K, N, group) -> number       kind 1 Keras int4 grouped, 2 GPTQ, 3 int4 per-channel
//   lowbitPack(kind, bits, K, N, group, w: U8|I8, scale: F32, zero: I8|U8|null, dst: U8 [bytes]) -> Promise
//       w: Keras int4 [K, ceil(N/2)] (kinds 1, 3) or GPTQ runtime rows [K * ceil(bits*N/8)] (kind 2);
//       scale [G*N] ([N] for kind 3); zero int8 [G*N] (kind 1), uint8 [G*N] (kind 2), ignored for kind 3
//   denseLowbitPacked(M, N, K, x: F32 [M*K], packed: U8, bias: F32 [N] | null, actLo, actHi, actEps, y: F32 [M*N],
//                     isa?) -> Promise                       (the AVX-512 table runs the VNNI variant, others ref)
#include <napi.h>

#include <string>

#include "napi/util.h"
#include "qk/lowbit_pack.h"
#include "qk/threadpool.h"

namespace qkn {
namespace {

qk::LowbitPackInfo geometry_args(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  const int64_t kind = dim(info, i, "kind"), bits = dim(info, i + 1, "bits");
  const int64_t K = dim(info, i + 2, "K"), N = dim(info, i + 3, "N"), group = dim(info, i + 4, "group");
  qk::LowbitPackInfo g;
  if (kind < 1 || kind > 3 || bits > 8 ||
      !qk::lowbit_pack_geometry(static_cast<int>(kind), static_cast<int>(bits), K, N, group, &g)) {
    throw_invalid(env, "Expected a packable (kind, bits, K, N, group) (kind 1/3: bits 4; kind 3: group = K >= 1; "
                       "bits 2, 3, 4 or 8; group >= 1) but received (" + std::to_string(kind) + ", " +
                       std::to_string(bits) + ", " + std::to_string(K) + ", " + std::to_string(N) + ", " +
                       std::to_string(group) + ")");
  }
  return g;
}

Napi::Value LowbitPackBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(geometry_args(info, 0).total));
}

Napi::Value LowbitPack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const qk::LowbitPackInfo g = geometry_args(info, 0);
  View w = typed_array(info, 5, "w", {napi_uint8_array, napi_int8_array});
  View scale = typed_array(info, 6, "scale", {napi_float32_array});
  View zero;
  if (g.kind != qk::kLowbitInt4Channel) {
    zero = typed_array(info, 7, "zero", {g.kind == qk::kLowbitKerasGrouped ? napi_int8_array : napi_uint8_array});
    expect_length(env, zero, mul(env, g.G, g.N, "zero"), "zero");
  }
  View dst = typed_array(info, 8, "dst", {napi_uint8_array});
  const int64_t rb = g.kind == qk::kLowbitGptq ? qk::gptq_runtime_row_bytes(g.N, g.bits) : (g.N + 1) / 2;
  expect_length(env, w, mul(env, g.K, rb, "w"), "w");
  expect_length(env, scale, g.kind == qk::kLowbitInt4Channel ? g.N : mul(env, g.G, g.N, "scale"), "scale");
  expect_length(env, dst, g.total, "dst");
  expect_disjoint(env, dst, "dst", w, "w");
  expect_disjoint(env, dst, "dst", scale, "scale");
  expect_disjoint(env, dst, "dst", zero, "zero");
  auto* wp = static_cast<const uint8_t*>(w.data);
  auto* sp = static_cast<const float*>(scale.data);
  const void* zp = zero.data;
  auto* dp = static_cast<uint8_t*>(dst.data);
  return PromiseWorker::start(env, [=](std::string&) {
    qk::lowbit_pack(g, wp, sp, zp, dp, &qk::ThreadPool::global());
    return QK_STATUS_OK;
  }, {&w, &scale, &zero, &dst});
}

Napi::Value DenseLowbitPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t M = dim(info, 0, "M"), N = dim(info, 1, "N"), K = dim(info, 2, "K");
  View x = typed_array(info, 3, "x", {napi_float32_array});
  View packed = typed_array(info, 4, "packed", {napi_uint8_array});
  qk::LowbitPackInfo g;
  if (const char* why = qk::lowbit_pack_read_header(static_cast<const uint8_t*>(packed.data),
                                                    static_cast<int64_t>(packed.byte_length), &g)) {
    throw_invalid(env, std::string("Expected packed low-bit weights (lowbitPack) for packed but received ") + why);
  }
  if (g.K != K || g.N != N) {
    throw_shape(env, "Expected packed weights of K = " + std::to_string(K) + ", N = " + std::to_string(N) +
                         " for packed but received K = " + std::to_string(g.K) + ", N = " + std::to_string(g.N));
  }
  View bias;
  const float* bias_ptr = nullptr;
  if (!info[5].IsNull() && !info[5].IsUndefined()) {
    bias = typed_array(info, 5, "bias", {napi_float32_array});
    expect_length(env, bias, N, "bias");
    bias_ptr = static_cast<const float*>(bias.data);
  }
  const double l = number(info, 6, "actLo"), h = number(info, 7, "actHi"), e = number(info, 8, "actEps");
  if (l != static_cast<int>(l) || h != static_cast<int>(h) || l < -128 || h > 127 || l >= h || h <= 0) {
    throw_invalid(env, "Expected integers -128 <= lo < hi <= 127 with hi > 0 for the activation value range but received [" +
                           format_number(l) + ", " + format_number(h) + "]");
  }
  if (e < 0) throw_invalid(env, "Expected a non-negative number for actEps but received " + format_number(e));
  View y = typed_array(info, 9, "y", {napi_float32_array});
  const qk::KernelTable& k = kernels_arg(info, 10);
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, y, mul(env, M, N, "y"), "y");
  expect_disjoint(env, y, "y", x, "x");
  expect_disjoint(env, y, "y", packed, "packed");
  expect_disjoint(env, y, "y", bias, "bias");
  auto fn = &qk::ref::lowbit_packed_gemv;
#ifdef QK_HAVE_X86_VARIANTS
  if (k.isa == qk::Isa::kAvx512) fn = &qk::avx512::lowbit_packed_gemv;
#else
  (void)k;
#endif
  auto* xp = static_cast<const float*>(x.data);
  auto* pp = static_cast<const uint8_t*>(packed.data);
  auto* yp = static_cast<float*>(y.data);
  const float lo = static_cast<float>(l), hi = static_cast<float>(h), eps = static_cast<float>(e);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk_status s = fn(g, M, xp, pp, bias_ptr, lo, hi, eps, yp, &qk::ThreadPool::global());
    if (s == QK_STATUS_OUT_OF_MEMORY) msg = "Out of memory allocating Dense kernel scratch";
    return s;
  }, {&x, &packed, &bias, &y}, static_cast<double>(M) * N * K);
}

}  // namespace

void register_lowbit_pack_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("lowbitPackBytes", Napi::Function::New(env, LowbitPackBytes, "lowbitPackBytes"));
  exports.Set("lowbitPack", Napi::Function::New(env, LowbitPack, "lowbitPack"));
  exports.Set("denseLowbitPacked", Napi::Function::New(env, DenseLowbitPacked, "denseLowbitPacked"));
}

}  // namespace qkn
