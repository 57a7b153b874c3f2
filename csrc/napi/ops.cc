// quantkit — JS entry points for the CPU kernels. Each one: check every argument (types, integer dims, length
// products against the buffers), then run the kernel in a PromiseWorker on zero-copy views. No maths here.
//
// JS signatures (lib/native/binding.ts is the typed description):
//   absmax(x: Float32Array, outer, len, inner, out: Float32Array, isa?) -> Promise<void>
//   absmaxQuantize(x, outer, len, inner, lo, hi, eps, q: Int8Array, scale: Float32Array, isa?) -> Promise<void>
//   packInt4 / packInt2(src: Int8Array|Uint8Array, outer, len, inner, dst: Int8Array|Uint8Array, isa?)
//   unpackInt4 / unpackInt2(src, outer, len, inner, signed: boolean, dst, isa?)
//   convert(kind: string, src, dst, isa?) -> Promise<void>;  convertSync(kind, src, dst, isa?) -> undefined
//   sgemm(M, N, K, A: Float32Array, B: Float32Array, C: Float32Array, isa?, packed?) -> Promise<void>
//   igemm(M, N, K, A: Int8Array, B: Int8Array, C: Int32Array, isa?, packed?) -> Promise<void>
//     packed: optional ArrayBuffer from packWeights('f32' | 'w8a8', K, N, B) (napi/packed_arg.h); used for M > 16
//     (sgemm) / M >= 2 (igemm) when the call's ISA reads its layout, else B is.
//   kernelImpls(op: string) -> string[]   (testing hook: the ISAs whose variant can run here)
#include <napi.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "napi/packed_arg.h"
#include "napi/util.h"
#include "qk/dispatch.h"
#include "qk/threadpool.h"

namespace qkn {
namespace {

using qk::KernelTable;
using qk::ThreadPool;

constexpr int64_t kMaxIgemmK = 131071;
// Element-wise work below this many elements runs on one thread.
constexpr int64_t kParallelGrain = 1 << 16;

// Splits an axis view over `outer` when it is large, so memory-bound kernels use every core.
template <typename Fn>
void over_outer(int64_t outer, int64_t per_outer, Fn fn) {
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, per_outer));
  ThreadPool::global().parallel_for(outer, grain, fn);
}

Napi::Value Absmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View x = typed_array(info, 0, "x", {napi_float32_array});
  int64_t outer = dim(info, 1, "outer"), len = dim(info, 2, "len"), inner = dim(info, 3, "inner");
  View out = typed_array(info, 4, "out", {napi_float32_array});
  const KernelTable& k = kernels_arg(info, 5);
  expect_length(env, x, mul(env, mul(env, outer, len, "x"), inner, "x"), "x");
  expect_length(env, out, mul(env, outer, inner, "out"), "out");
  auto* xp = static_cast<const float*>(x.data);
  auto* op = static_cast<float*>(out.data);
  auto fn = k.absmax;
  return PromiseWorker::start(env, [=](std::string&) {
    over_outer(outer, len * inner, [&](int64_t b, int64_t e) {
      fn(xp + b * len * inner, e - b, len, inner, op + b * inner);
    });
    return QK_STATUS_OK;
  }, {&x, &out});
}

Napi::Value AbsmaxQuantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View x = typed_array(info, 0, "x", {napi_float32_array});
  int64_t outer = dim(info, 1, "outer"), len = dim(info, 2, "len"), inner = dim(info, 3, "inner");
  double lo = number(info, 4, "valueRange[0]"), hi = number(info, 5, "valueRange[1]");
  double eps = number(info, 6, "epsilon");
  View q = typed_array(info, 7, "q", {napi_int8_array});
  View scale = typed_array(info, 8, "scale", {napi_float32_array});
  const KernelTable& k = kernels_arg(info, 9);
  if (lo != static_cast<int>(lo) || hi != static_cast<int>(hi) || lo < -128 || hi > 127 || lo >= hi || hi <= 0) {
    throw_invalid(env, "Expected integers -128 <= lo < hi <= 127 with hi > 0 for valueRange but received [" +
                           format_number(lo) + ", " + format_number(hi) + "]");
  }
  if (eps < 0) throw_invalid(env, "Expected a non-negative number for epsilon but received " + format_number(eps));
  const int64_t total = mul(env, mul(env, outer, len, "x"), inner, "x");
  expect_length(env, x, total, "x");
  expect_length(env, q, total, "q");
  expect_length(env, scale, mul(env, outer, inner, "scale"), "scale");
  auto* xp = static_cast<const float*>(x.data);
  auto* qp = static_cast<int8_t*>(q.data);
  auto* sp = static_cast<float*>(scale.data);
  auto fn = k.absmax_quantize;
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi), feps = static_cast<float>(eps);
  return PromiseWorker::start(env, [=](std::string&) {
    over_outer(outer, len * inner, [&](int64_t b, int64_t e) {
      fn(xp + b * len * inner, e - b, len, inner, flo, fhi, feps, qp + b * len * inner, sp + b * inner);
    });
    return QK_STATUS_OK;
  }, {&x, &q, &scale});
}

// per: values per byte (2 for int4, 4 for int2).
Napi::Value Pack(const Napi::CallbackInfo& info, int per) {
  Napi::Env env = info.Env();
  View src = typed_array(info, 0, "src", {napi_int8_array, napi_uint8_array});
  int64_t outer = dim(info, 1, "outer"), len = dim(info, 2, "len"), inner = dim(info, 3, "inner");
  View dst = typed_array(info, 4, "dst", {napi_int8_array, napi_uint8_array});
  const KernelTable& k = kernels_arg(info, 5);
  const int64_t plen = len / per + (len % per != 0);
  expect_length(env, src, mul(env, mul(env, outer, len, "src"), inner, "src"), "src");
  expect_length(env, dst, mul(env, mul(env, outer, plen, "dst"), inner, "dst"), "dst");
  auto fn = per == 2 ? k.pack_int4 : k.pack_int2;
  auto* sp = static_cast<const uint8_t*>(src.data);
  auto* dp = static_cast<uint8_t*>(dst.data);
  return PromiseWorker::start(env, [=](std::string&) {
    over_outer(outer, len * inner, [&](int64_t b, int64_t e) {
      fn(sp + b * len * inner, e - b, len, inner, dp + b * plen * inner);
    });
    return QK_STATUS_OK;
  }, {&src, &dst});
}

Napi::Value Unpack(const Napi::CallbackInfo& info, int per) {
  Napi::Env env = info.Env();
  View src = typed_array(info, 0, "src", {napi_int8_array, napi_uint8_array});
  int64_t outer = dim(info, 1, "outer"), len = dim(info, 2, "len"), inner = dim(info, 3, "inner");
  bool is_signed = boolean(info, 4, "signed");
  View dst = typed_array(info, 5, "dst", {napi_int8_array, napi_uint8_array});
  const KernelTable& k = kernels_arg(info, 6);
  const int64_t plen = len / per + (len % per != 0);
  expect_length(env, src, mul(env, mul(env, outer, plen, "src"), inner, "src"), "src");
  expect_length(env, dst, mul(env, mul(env, outer, len, "dst"), inner, "dst"), "dst");
  auto fn = per == 2 ? k.unpack_int4 : k.unpack_int2;
  auto* sp = static_cast<const uint8_t*>(src.data);
  auto* dp = static_cast<uint8_t*>(dst.data);
  return PromiseWorker::start(env, [=](std::string&) {
    over_outer(outer, len * inner, [&](int64_t b, int64_t e) {
      fn(sp + b * plen * inner, e - b, len, inner, is_signed, dp + b * len * inner);
    });
    return QK_STATUS_OK;
  }, {&src, &dst});
}

Napi::Value PackInt4(const Napi::CallbackInfo& info) { return Pack(info, 2); }
Napi::Value PackInt2(const Napi::CallbackInfo& info) { return Pack(info, 4); }
Napi::Value UnpackInt4(const Napi::CallbackInfo& info) { return Unpack(info, 2); }
Napi::Value UnpackInt2(const Napi::CallbackInfo& info) { return Unpack(info, 4); }

// ---- conversions ------------------------------------------------------------------------------------
struct Conversion {
  std::function<void(int64_t, int64_t)> run;  // runs elements [b, e)
};

Conversion make_conversion(const Napi::CallbackInfo& info, View& src, View& dst) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_invalid(env, "Expected a conversion name for kind but received a non-string");
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  const KernelTable& k = kernels_arg(info, 3);
  auto want = [&](napi_typedarray_type s, napi_typedarray_type d) {
    src = typed_array(info, 1, "src", {s});
    dst = typed_array(info, 2, "dst", {d});
    expect_length(env, dst, static_cast<int64_t>(src.length), "dst");
  };
  Conversion c;
  if (kind == "f32_to_f16" || kind == "f32_to_bf16") {
    want(napi_float32_array, napi_uint16_array);
    auto fn = kind == "f32_to_f16" ? k.f32_to_f16 : k.f32_to_bf16;
    auto* s = static_cast<const float*>(src.data);
    auto* d = static_cast<uint16_t*>(dst.data);
    c.run = [=](int64_t b, int64_t e) { fn(s + b, d + b, e - b); };
  } else if (kind == "f16_to_f32" || kind == "bf16_to_f32") {
    want(napi_uint16_array, napi_float32_array);
    auto fn = kind == "f16_to_f32" ? k.f16_to_f32 : k.bf16_to_f32;
    auto* s = static_cast<const uint16_t*>(src.data);
    auto* d = static_cast<float*>(dst.data);
    c.run = [=](int64_t b, int64_t e) { fn(s + b, d + b, e - b); };
  } else if (kind == "f32_to_e4m3fn" || kind == "f32_to_e5m2") {
    want(napi_float32_array, napi_uint8_array);
    auto fmt = kind == "f32_to_e4m3fn" ? qk::Fp8Format::kE4M3FN : qk::Fp8Format::kE5M2;
    auto fn = k.f32_to_fp8;
    auto* s = static_cast<const float*>(src.data);
    auto* d = static_cast<uint8_t*>(dst.data);
    c.run = [=](int64_t b, int64_t e) { fn(s + b, d + b, e - b, fmt); };
  } else if (kind == "e4m3fn_to_f32" || kind == "e5m2_to_f32") {
    want(napi_uint8_array, napi_float32_array);
    auto fmt = kind == "e4m3fn_to_f32" ? qk::Fp8Format::kE4M3FN : qk::Fp8Format::kE5M2;
    auto fn = k.fp8_to_f32;
    auto* s = static_cast<const uint8_t*>(src.data);
    auto* d = static_cast<float*>(dst.data);
    c.run = [=](int64_t b, int64_t e) { fn(s + b, d + b, e - b, fmt); };
  } else {
    throw_invalid(env, "Expected one of f32_to_f16, f16_to_f32, f32_to_bf16, bf16_to_f32, f32_to_e4m3fn, "
                       "e4m3fn_to_f32, f32_to_e5m2, e5m2_to_f32 for kind but received '" + kind + "'");
  }
  return c;
}

Napi::Value Convert(const Napi::CallbackInfo& info) {
  View src, dst;
  Conversion c = make_conversion(info, src, dst);
  const int64_t n = static_cast<int64_t>(src.length);
  return PromiseWorker::start(info.Env(), [c, n](std::string&) {
    ThreadPool::global().parallel_for(n, kParallelGrain, c.run);
    return QK_STATUS_OK;
  }, {&src, &dst});
}

Napi::Value ConvertSync(const Napi::CallbackInfo& info) {
  View src, dst;
  Conversion c = make_conversion(info, src, dst);
  c.run(0, static_cast<int64_t>(src.length));
  return info.Env().Undefined();
}

// ---- GEMMs -------------------------------------------------------------------------------------------
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t M = dim(info, 0, "M"), N = dim(info, 1, "N"), K = dim(info, 2, "K");
  View a = typed_array(info, 3, "a", {napi_float32_array});
  View b = typed_array(info, 4, "b", {napi_float32_array});
  View c = typed_array(info, 5, "out", {napi_float32_array});
  const KernelTable& k = kernels_arg(info, 6);
  expect_length(env, a, mul(env, M, K, "a"), "a");
  expect_length(env, b, mul(env, K, N, "b"), "b");
  expect_length(env, c, mul(env, M, N, "out"), "out");
  View keep_packed;
  const auto* pk = static_cast<const float*>(packed_arg(info, 7, qk::PackedKind::kF32, k, K, N, &keep_packed));
  if (M <= 16) pk = nullptr;  // sgemm's small-M path reads B in place (sgemm_common.h)
  auto fn = k.sgemm;
  auto* ap = static_cast<const float*>(a.data);
  auto* bp = static_cast<const float*>(b.data);
  auto* cp = static_cast<float*>(c.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
#ifdef QK_HAVE_X86_VARIANTS
    qk_status s = pk != nullptr ? qk::avx512::sgemm_packed(M, N, K, ap, K, pk, cp, N, &ThreadPool::global())
                                : fn(M, N, K, ap, K, bp, N, cp, N, &ThreadPool::global());
#else
    qk_status s = fn(M, N, K, ap, K, bp, N, cp, N, &ThreadPool::global());
#endif
    if (s == QK_STATUS_OUT_OF_MEMORY) msg = "Out of memory allocating GEMM packing buffers";
    return s;
  }, {&a, &b, &c, &keep_packed});
}

Napi::Value Igemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t M = dim(info, 0, "M"), N = dim(info, 1, "N"), K = dim(info, 2, "K");
  View a = typed_array(info, 3, "a", {napi_int8_array});
  View b = typed_array(info, 4, "b", {napi_int8_array});
  View c = typed_array(info, 5, "out", {napi_int32_array});
  const KernelTable& k = kernels_arg(info, 6);
  if (K > kMaxIgemmK) {
    throw_invalid(env, "Expected K <= " + std::to_string(kMaxIgemmK) +
                           " for an int8 GEMM (int32 accumulation must not overflow) but received " + std::to_string(K));
  }
  expect_length(env, a, mul(env, M, K, "a"), "a");
  expect_length(env, b, mul(env, K, N, "b"), "b");
  expect_length(env, c, mul(env, M, N, "out"), "out");
  View keep_packed;
  const auto* pk = static_cast<const uint8_t*>(packed_arg(info, 7, qk::PackedKind::kW8A8, k, K, N, &keep_packed));
  if (M < 2) pk = nullptr;
  auto fn = k.igemm_s8s8s32;
  auto* ap = static_cast<const int8_t*>(a.data);
  auto* bp = static_cast<const int8_t*>(b.data);
  auto* cp = static_cast<int32_t*>(c.data);
  return PromiseWorker::start(env, [=](std::string& msg) {
#ifdef QK_HAVE_X86_VARIANTS
    qk_status s = pk != nullptr ? qk::avx512::igemm_packed(M, N, K, ap, K, pk, cp, N, &ThreadPool::global())
                                : fn(M, N, K, ap, K, bp, N, cp, N, &ThreadPool::global());
#else
    qk_status s = fn(M, N, K, ap, K, bp, N, cp, N, &ThreadPool::global());
#endif
    if (s == QK_STATUS_OUT_OF_MEMORY) msg = "Out of memory allocating GEMM packing buffers";
    return s;
  }, {&a, &b, &c, &keep_packed});
}

const char* const kOps[] = {"absmax", "absmax_quantize", "pack_int4", "unpack_int4", "pack_int2", "unpack_int2",
                            "convert", "sgemm", "igemm", "dense_w8a8", "dense_w4a8", "dense_w8", "dense_w4",
                            "dense_w4g", "dense_fp8", "hessian_accumulate", "hessian_finalize", "cholesky_lower",
                            "triangular_inverse_lower", "cholesky_inverse_upper", "gptq_quantize_matrix",
                            "dense_gptq", "gptq_runtime_pack", "gptq_runtime_unpack", "rmsnorm", "rope",
                            "softmax_rows", "silu_mul", "attention_decode", "kv_cache_write"};

Napi::Value KernelImpls(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string op = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : std::string();
  bool known = false;
  for (const char* o : kOps) known = known || op == o;
  if (!known) {
    std::string list;
    for (const char* o : kOps) list += (list.empty() ? "" : ", ") + std::string(o);
    throw_invalid(env, "Expected one of " + list + " for op but received '" + op + "'");
  }
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int i = 0; i < qk::kNumIsas; ++i) {
    if (qk::isa_available(static_cast<qk::Isa>(i))) out.Set(n++, qk::isa_name(static_cast<qk::Isa>(i)));
  }
  return out;
}

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("absmax", Napi::Function::New(env, Absmax, "absmax"));
  exports.Set("absmaxQuantize", Napi::Function::New(env, AbsmaxQuantize, "absmaxQuantize"));
  exports.Set("packInt4", Napi::Function::New(env, PackInt4, "packInt4"));
  exports.Set("unpackInt4", Napi::Function::New(env, UnpackInt4, "unpackInt4"));
  exports.Set("packInt2", Napi::Function::New(env, PackInt2, "packInt2"));
  exports.Set("unpackInt2", Napi::Function::New(env, UnpackInt2, "unpackInt2"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("convertSync", Napi::Function::New(env, ConvertSync, "convertSync"));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("igemm", Napi::Function::New(env, Igemm, "igemm"));
  exports.Set("kernelImpls", Napi::Function::New(env, KernelImpls, "kernelImpls"));
}

}  // namespace qkn
