// quantkit — JS entry points for GPTQ inference: the fused dequantize-in-register Dense over the GPTQ runtime
// layout (kernels.h) and the one-time conversions into and out of that layout. Every argument is checked here
// (dims, bits, group, exact buffer lengths with overflow checks, the permutation, output buffers not
// overlapping inputs) before anything runs; the kernels do the maths on a worker thread.
//
//   denseGptq(M, N, K, x: F32 [M*K], wq: U8 [K*rowBytes], bits, scale: F32 [G*N], zero: U8 [G*N], group,
//             bias: F32 [N] | null, y: F32 [M*N], isa?)                          G = ceil(K / group)
//   gptqRuntimePack(q: U8 [N*K], N, K, perm: I32 [K] | null, bits, dst: U8 [K*rowBytes], isa?)
//       q: the levels [out, in] one per byte (each in [0, 2^bits - 1], checked); perm: runtime row k <- input perm[k]
//   gptqRuntimeUnpack(src: U8 [K*rowBytes], N, K, bits, dst: U8 [K*N], isa?)
//   denseLowbitA8(M, N, K, x: F32 [M*K], w: U8|I8 [K*rowBytes], bits, kerasSigned: boolean, scale: F32 [G*N],
//                 zero: I8 [G*N] (kerasSigned) | U8 [G*N], group, bias: F32 [N] | null, y: F32 [M*N], isa?)
//       the int8-compute path (qk/lowbit_a8.h) of int4 grouped (kerasSigned, bits 4) and GPTQ; min(group, K) must be
//       <= 65536 (keeps the int32 group sums exact)
//   lowbitA8Fast(isa?) -> boolean: whether that ISA's dense_lowbit_a8 is the fast VNNI variant (auto-selection)
// with rowBytes = ceil(bits * N / 8). All return Promises.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "napi/util.h"
#include "qk/threadpool.h"

namespace qkn {
namespace {

using qk::ThreadPool;

int read_bits(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  const double b = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : std::nan("");
  if (b != 2 && b != 3 && b != 4 && b != 8) {
    std::string got = v.IsNumber() ? format_number(b) : v.IsUndefined() ? "undefined" : v.IsNull() ? "null" : "a non-number";
    throw_invalid(info.Env(), "Expected one of 2, 3, 4, 8 for bits but received " + got);
  }
  return static_cast<int>(b);
}

// Bytes per runtime row, ceil(bits * N / 8), with the product checked.
int64_t row_bytes(Napi::Env env, int64_t N, int bits, const char* what) {
  const int64_t b = mul(env, N, bits, what);
  return b / 8 + (b % 8 != 0 ? 1 : 0);
}

std::string oom(qk_status s) { return s == QK_STATUS_OUT_OF_MEMORY ? "Out of memory allocating Dense kernel scratch" : ""; }

// The buffers of a grouped low-bit Dense forward (denseGptq, denseLowbitA8): optional bias [N], then exact lengths
// (x [M*K], w K rows of ceil(bits*N/8) bytes, scale and zero [G*N], y [M*N]) and y disjoint from every input.
struct GroupedDenseArgs {
  View bias;
  const float* bias_ptr = nullptr;
};
GroupedDenseArgs check_grouped_dense(const Napi::CallbackInfo& info, size_t bias_arg, int64_t M, int64_t N, int64_t K,
                                     int bits, int64_t group, const View& x, const View& wq, const char* wq_name,
                                     const View& scale, const View& zero, const View& y) {
  Napi::Env env = info.Env();
  GroupedDenseArgs a;
  if (!info[bias_arg].IsNull() && !info[bias_arg].IsUndefined()) {
    a.bias = typed_array(info, bias_arg, "bias", {napi_float32_array});
    expect_length(env, a.bias, N, "bias");
    a.bias_ptr = static_cast<const float*>(a.bias.data);
  }
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, wq, mul(env, K, row_bytes(env, N, bits, wq_name), wq_name), wq_name);
  const int64_t G = K / group + (K % group != 0 ? 1 : 0);
  expect_length(env, scale, mul(env, G, N, "scale"), "scale");
  expect_length(env, zero, mul(env, G, N, "zero"), "zero");
  expect_length(env, y, mul(env, M, N, "y"), "y");
  expect_disjoint(env, y, "y", x, "x");
  expect_disjoint(env, y, "y", wq, wq_name);
  expect_disjoint(env, y, "y", scale, "scale");
  expect_disjoint(env, y, "y", zero, "zero");
  expect_disjoint(env, y, "y", a.bias, "bias");
  return a;
}

Napi::Value DenseGptq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t M = dim(info, 0, "M"), N = dim(info, 1, "N"), K = dim(info, 2, "K");
  View x = typed_array(info, 3, "x", {napi_float32_array});
  View wq = typed_array(info, 4, "wq", {napi_uint8_array});
  const int bits = read_bits(info, 5);
  View scale = typed_array(info, 6, "scale", {napi_float32_array});
  View zero = typed_array(info, 7, "zero", {napi_uint8_array});
  const int64_t group = dim(info, 8, "group");
  if (group < 1) throw_invalid(env, "Expected a group size >= 1 for group but received " + std::to_string(group));
  View y = typed_array(info, 10, "y", {napi_float32_array});
  const qk::KernelTable& k = kernels_arg(info, 11);
  GroupedDenseArgs a = check_grouped_dense(info, 9, M, N, K, bits, group, x, wq, "wq", scale, zero, y);
  View& bias = a.bias;
  const float* bias_ptr = a.bias_ptr;

  auto fn = k.dense_gptq;
  auto* xp = static_cast<const float*>(x.data);
  auto* wp = static_cast<const uint8_t*>(wq.data);
  auto* sp = static_cast<const float*>(scale.data);
  auto* zp = static_cast<const uint8_t*>(zero.data);
  auto* yp = static_cast<float*>(y.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk_status s = fn(M, N, K, xp, wp, bits, sp, zp, group, bias_ptr, yp, &ThreadPool::global());
    msg = oom(s);
    return s;
  }, {&x, &wq, &scale, &zero, &bias, &y}, static_cast<double>(M) * N * K);
}

Napi::Value GptqRuntimePack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View q = typed_array(info, 0, "q", {napi_uint8_array});
  const int64_t N = dim(info, 1, "N"), K = dim(info, 2, "K");
  View perm;
  const bool has_perm = !info[3].IsNull() && !info[3].IsUndefined();
  if (has_perm) perm = typed_array(info, 3, "perm", {napi_int32_array});
  const int bits = read_bits(info, 4);
  View dst = typed_array(info, 5, "dst", {napi_uint8_array});
  const qk::KernelTable& k = kernels_arg(info, 6);

  expect_length(env, q, mul(env, N, K, "q"), "q");
  expect_length(env, dst, mul(env, K, row_bytes(env, N, bits, "dst"), "dst"), "dst");
  expect_disjoint(env, dst, "dst", q, "q");
  const int32_t* pp = nullptr;
  if (has_perm) {
    expect_length(env, perm, K, "perm");
    expect_disjoint(env, dst, "dst", perm, "perm");
    // A permutation of 0..K-1: every entry in range and none repeated (checked before anything is read).
    pp = static_cast<const int32_t*>(perm.data);
    std::vector<bool> seen(static_cast<size_t>(K), false);
    for (int64_t i = 0; i < K; ++i) {
      const int32_t v = pp[i];
      if (v < 0 || v >= K) {
        throw_invalid(env, "Expected a permutation of 0.." + std::to_string(K - 1) + " for perm but received perm[" +
                               std::to_string(i) + "] = " + std::to_string(v));
      }
      if (seen[static_cast<size_t>(v)]) {
        throw_invalid(env, "Expected a permutation of 0.." + std::to_string(K - 1) + " for perm but received " +
                               std::to_string(v) + " twice (again at perm[" + std::to_string(i) + "])");
      }
      seen[static_cast<size_t>(v)] = true;
    }
  }
  auto fn = k.gptq_runtime_pack;
  auto* qp = static_cast<const uint8_t*>(q.data);
  auto* dp = static_cast<uint8_t*>(dst.data);
  const int64_t total = N * K;
  const int maxq = (1 << bits) - 1;
  return PromiseWorker::start(env, [=](std::string& msg) {
    for (int64_t i = 0; i < total; ++i) {  // levels must fit in `bits` (the kernel would drop the high bits)
      if (qp[i] > maxq) {
        msg = "Expected levels in [0, " + std::to_string(maxq) + "] for q (" + std::to_string(bits) +
              " bits) but received q[" + std::to_string(i) + "] = " + std::to_string(qp[i]);
        return QK_STATUS_INVALID_ARGUMENT;
      }
    }
    fn(qp, N, K, pp, bits, dp);
    return QK_STATUS_OK;
  }, {&q, &perm, &dst});
}

Napi::Value GptqRuntimeUnpack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View src = typed_array(info, 0, "src", {napi_uint8_array});
  const int64_t N = dim(info, 1, "N"), K = dim(info, 2, "K");
  const int bits = read_bits(info, 3);
  View dst = typed_array(info, 4, "dst", {napi_uint8_array});
  const qk::KernelTable& k = kernels_arg(info, 5);
  expect_length(env, src, mul(env, K, row_bytes(env, N, bits, "src"), "src"), "src");
  expect_length(env, dst, mul(env, K, N, "dst"), "dst");
  expect_disjoint(env, dst, "dst", src, "src");
  auto fn = k.gptq_runtime_unpack;
  auto* sp = static_cast<const uint8_t*>(src.data);
  auto* dp = static_cast<uint8_t*>(dst.data);
  return PromiseWorker::start(env, [=](std::string&) {
    fn(sp, N, K, bits, dp);
    return QK_STATUS_OK;
  }, {&src, &dst});
}

Napi::Value DenseLowbitA8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t M = dim(info, 0, "M"), N = dim(info, 1, "N"), K = dim(info, 2, "K");
  View x = typed_array(info, 3, "x", {napi_float32_array});
  View wq = typed_array(info, 4, "w", {napi_uint8_array, napi_int8_array});
  const int bits = read_bits(info, 5);
  const bool keras_signed = boolean(info, 6, "kerasSigned");
  if (keras_signed && bits != 4) {
    throw_invalid(env, "Expected bits = 4 with kerasSigned (Keras int4) but received " + std::to_string(bits));
  }
  View scale = typed_array(info, 7, "scale", {napi_float32_array});
  View zero = typed_array(info, 8, "zero", {keras_signed ? napi_int8_array : napi_uint8_array});
  const int64_t group = dim(info, 9, "group");
  if (group < 1) throw_invalid(env, "Expected a group size >= 1 for group but received " + std::to_string(group));
  if (std::min(group, K) > 65536) {
    throw_invalid(env, "Expected min(group, K) <= 65536 for group but received " + std::to_string(std::min(group, K)));
  }
  View y = typed_array(info, 11, "y", {napi_float32_array});
  const qk::KernelTable& k = kernels_arg(info, 12);
  GroupedDenseArgs a = check_grouped_dense(info, 10, M, N, K, bits, group, x, wq, "w", scale, zero, y);
  View& bias = a.bias;
  const float* bias_ptr = a.bias_ptr;

  auto fn = k.dense_lowbit_a8;
  auto* xp = static_cast<const float*>(x.data);
  auto* wp = static_cast<const uint8_t*>(wq.data);
  auto* sp = static_cast<const float*>(scale.data);
  const void* zp = zero.data;
  auto* yp = static_cast<float*>(y.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk_status s = fn(M, N, K, xp, wp, bits, keras_signed, sp, zp, group, bias_ptr, yp, &ThreadPool::global());
    msg = oom(s);
    return s;
  }, {&x, &wq, &scale, &zero, &bias, &y}, static_cast<double>(M) * N * K);
}

Napi::Value LowbitA8Fast(const Napi::CallbackInfo& info) {
  const qk::KernelTable& k = kernels_arg(info, 0);
  bool fast = false;
#ifdef QK_HAVE_X86_VARIANTS
  fast = k.isa == qk::Isa::kAvx512 && qk::avx512::lowbit_a8_fast();
#endif
  return Napi::Boolean::New(info.Env(), fast);
}

}  // namespace

void register_gptq_dense_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("denseGptq", Napi::Function::New(env, DenseGptq, "denseGptq"));
  exports.Set("gptqRuntimePack", Napi::Function::New(env, GptqRuntimePack, "gptqRuntimePack"));
  exports.Set("denseLowbitA8", Napi::Function::New(env, DenseLowbitA8, "denseLowbitA8"));
  exports.Set("lowbitA8Fast", Napi::Function::New(env, LowbitA8Fast, "lowbitA8Fast"));
  exports.Set("gptqRuntimeUnpack", Napi::Function::New(env, GptqRuntimeUnpack, "gptqRuntimeUnpack"));
}

}  // namespace qkn
