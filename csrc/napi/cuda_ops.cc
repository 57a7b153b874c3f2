// quantkit — JS entry points for the CUDA backend. Compiled in every build; without QK_WITH_CUDA (no nvcc, or
// QK_CUDA=off) the entry points report "not compiled" and the ops reject with QK_UNSUPPORTED.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "napi/util.h"

#ifdef QK_WITH_CUDA
#include "qk_cuda.h"
#endif

namespace qkn {

Napi::Value cuda_info(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
#ifdef QK_WITH_CUDA
  o.Set("compiled", true);
  Napi::Array archs = Napi::Array::New(env);
  {
    std::string list = qk_cuda_compiled_archs();
    uint32_t n = 0;
    size_t pos = 0;
    while (pos < list.size()) {
      size_t end = list.find(' ', pos);
      if (end == std::string::npos) end = list.size();
      if (end > pos) archs.Set(n++, list.substr(pos, end - pos));
      pos = end + 1;
    }
  }
  o.Set("archs", archs);
  o.Set("runtimeVersion", qk_cuda_runtime_version());
  o.Set("driverVersion", qk_cuda_driver_version());
  int count = 0;
  char why[512] = {0};
  qk_cuda_device_count(&count, why, sizeof why);
  o.Set("error", why[0] ? Napi::Value(Napi::String::New(env, why)) : env.Null());
  uint32_t n = 0;
  for (int d = 0; d < count; ++d) {
    qk_cuda_device_info di;
    char err[512] = {0};
    if (qk_cuda_device_get_info(d, &di, err, sizeof err) != QK_STATUS_OK) continue;
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d);
    dev.Set("name", di.name);
    dev.Set("computeCapability", std::to_string(di.cc_major) + "." + std::to_string(di.cc_minor));
    dev.Set("totalMemory", static_cast<double>(di.total_memory));
    dev.Set("multiProcessorCount", di.sm_count);
    dev.Set("supported", di.supported != 0);
    devices.Set(n++, dev);
  }
#else
  o.Set("compiled", false);
  o.Set("archs", Napi::Array::New(env));
  o.Set("error", "quantkit was built without CUDA (nvcc not found or QK_CUDA=off)");
#endif
  o.Set("devices", devices);
  return o;
}

namespace {

Napi::Value CudaAbsmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t device = dim(info, 0, "device");
  if (device > 1024) throw_invalid(env, "Expected a device index <= 1024 for device but received " + std::to_string(device));
  View x = typed_array(info, 1, "x", {napi_float32_array});
  int64_t outer = dim(info, 2, "outer"), len = dim(info, 3, "len"), inner = dim(info, 4, "inner");
  View out = typed_array(info, 5, "out", {napi_float32_array});
  expect_length(env, x, mul(env, mul(env, outer, len, "x"), inner, "x"), "x");
  expect_length(env, out, mul(env, outer, inner, "out"), "out");
#ifdef QK_WITH_CUDA
  auto* xp = static_cast<const float*>(x.data);
  auto* op = static_cast<float*>(out.data);
  const int dev = static_cast<int>(device);
  return PromiseWorker::start(env, [=](std::string& msg) {
    char err[512] = {0};
    qk_status s = qk_cuda_absmax(dev, xp, outer, len, inner, op, err, sizeof err);
    msg = err;
    return s;
  }, {&x, &out});
#else
  (void)device;
  throw_error(env, "QK_UNSUPPORTED", "CUDA is not available: quantkit was built without CUDA");
#endif
}

Napi::Value CudaAbsmaxQuantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t device = dim(info, 0, "device");
  if (device > 1024) throw_invalid(env, "Expected a device index <= 1024 for device but received " + std::to_string(device));
  View x = typed_array(info, 1, "x", {napi_float32_array});
  int64_t outer = dim(info, 2, "outer"), len = dim(info, 3, "len"), inner = dim(info, 4, "inner");
  double lo = number(info, 5, "valueRange[0]"), hi = number(info, 6, "valueRange[1]");
  double eps = number(info, 7, "epsilon");
  View q = typed_array(info, 8, "q", {napi_int8_array});
  View scale = typed_array(info, 9, "scale", {napi_float32_array});
  if (lo != static_cast<int>(lo) || hi != static_cast<int>(hi) || lo < -128 || hi > 127 || lo >= hi || hi <= 0) {
    throw_invalid(env, "Expected integers -128 <= lo < hi <= 127 with hi > 0 for valueRange");
  }
  if (eps < 0) throw_invalid(env, "Expected a non-negative number for epsilon");
  const int64_t total = mul(env, mul(env, outer, len, "x"), inner, "x");
  expect_length(env, x, total, "x");
  expect_length(env, q, total, "q");
  expect_length(env, scale, mul(env, outer, inner, "scale"), "scale");
#ifdef QK_WITH_CUDA
  auto* xp = static_cast<const float*>(x.data);
  auto* qp = static_cast<int8_t*>(q.data);
  auto* sp = static_cast<float*>(scale.data);
  const int dev = static_cast<int>(device);
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi), feps = static_cast<float>(eps);
  return PromiseWorker::start(env, [=](std::string& msg) {
    char err[512] = {0};
    qk_status s = qk_cuda_absmax_quantize(dev, xp, outer, len, inner, flo, fhi, feps, qp, sp, err, sizeof err);
    msg = err;
    return s;
  }, {&x, &q, &scale});
#else
  (void)device;
  throw_error(env, "QK_UNSUPPORTED", "CUDA is not available: quantkit was built without CUDA");
#endif
}

// ---- dense GEMMs, packing, fp8 (cuda/gemm_mma.cu, wq_gemm.cu, convert.cu) ----------------------------------

#ifdef QK_WITH_CUDA
#define QK_CUDA_WORK(call_expr, ...)                                        \
  PromiseWorker::start(env, [=](std::string& msg) {                         \
    char err[512] = {0};                                                    \
    const qk_status s = (call_expr);                                        \
    msg = err;                                                              \
    return s;                                                               \
  }, {__VA_ARGS__})
#endif

[[noreturn]] void not_built(Napi::Env env) {
  throw_error(env, "QK_UNSUPPORTED", "CUDA is not available: quantkit was built without CUDA");
}

int device_arg(const Napi::CallbackInfo& info, size_t i) {
  const int64_t d = dim(info, i, "device");
  if (d > 1024) throw_invalid(info.Env(), "Expected a device index <= 1024 for device but received " + std::to_string(d));
  return static_cast<int>(d);
}

// Optional Float32Array bias at info[i] (undefined / null -> none) of length n.
View optional_bias(const Napi::CallbackInfo& info, size_t i, int64_t n) {
  View b;
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return b;
  b = typed_array(info, i, "bias", {napi_float32_array});
  expect_length(info.Env(), b, n, "bias");
  return b;
}

// cudaDenseW8A8(device, x, M, N, K, w: Int8Array [K, N], wScale [N], bias | null, lo, hi, eps, y [M, N])
Napi::Value CudaDenseW8A8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  View x = typed_array(info, 1, "x", {napi_float32_array});
  const int64_t M = dim(info, 2, "M"), N = dim(info, 3, "N"), K = dim(info, 4, "K");
  View w = typed_array(info, 5, "w", {napi_int8_array});
  View ws = typed_array(info, 6, "wScale", {napi_float32_array});
  View b = optional_bias(info, 7, N);
  const double lo = number(info, 8, "lo"), hi = number(info, 9, "hi"), eps = number(info, 10, "eps");
  View y = typed_array(info, 11, "y", {napi_float32_array});
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, w, mul(env, K, N, "w"), "w");
  expect_length(env, ws, N, "wScale");
  expect_length(env, y, mul(env, M, N, "y"), "y");
#ifdef QK_WITH_CUDA
  const auto* xp = static_cast<const float*>(x.data);
  const auto* wp = static_cast<const int8_t*>(w.data);
  const auto* sp = static_cast<const float*>(ws.data);
  const auto* bp = static_cast<const float*>(b.data);
  auto* yp = static_cast<float*>(y.data);
  const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi), feps = static_cast<float>(eps);
  return QK_CUDA_WORK(qk_cuda_dense_w8a8(dev, xp, M, N, K, wp, sp, bp, flo, fhi, feps, yp, err, sizeof err),
                      &x, &w, &ws, &b, &y);
#else
  (void)dev, (void)lo, (void)hi, (void)eps, (void)b;
  not_built(env);
#endif
}

// cudaDenseFp8(device, x, M, N, K, xScale, w8: Uint8Array [K, N], wScale, bias | null, y)
Napi::Value CudaDenseFp8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  View x = typed_array(info, 1, "x", {napi_float32_array});
  const int64_t M = dim(info, 2, "M"), N = dim(info, 3, "N"), K = dim(info, 4, "K");
  const double xs = number(info, 5, "xScale");
  View w = typed_array(info, 6, "w8", {napi_uint8_array});
  const double wsc = number(info, 7, "wScale");
  View b = optional_bias(info, 8, N);
  View y = typed_array(info, 9, "y", {napi_float32_array});
  if (!(xs > 0) || !(wsc > 0)) throw_invalid(env, "Expected positive finite numbers for xScale and wScale");
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, w, mul(env, K, N, "w8"), "w8");
  expect_length(env, y, mul(env, M, N, "y"), "y");
#ifdef QK_WITH_CUDA
  const auto* xp = static_cast<const float*>(x.data);
  const auto* wp = static_cast<const uint8_t*>(w.data);
  const auto* bp = static_cast<const float*>(b.data);
  auto* yp = static_cast<float*>(y.data);
  const float fxs = static_cast<float>(xs), fws = static_cast<float>(wsc);
  return QK_CUDA_WORK(qk_cuda_dense_fp8(dev, xp, M, N, K, fxs, wp, fws, bp, yp, err, sizeof err), &x, &w, &b, &y);
#else
  (void)dev, (void)b;
  not_built(env);
#endif
}

// cudaDenseWq(device, dtype 0|1|2, x, M, N, K, wq: Uint8Array, bits, isSigned, scale [G, N], zero [G, N],
//             group, bias | null, y[, gIdx: Int32Array [K] | null[, path 0|1|2]]). x / y: Float32Array (dtype 0)
//             or Uint16Array (1 = float16, 2 = bfloat16); path = QK_CUDA_WQ_* (0 auto). gIdx entries are checked
//             against [0, G) by the launcher (QK_INVALID_ARGUMENT naming the entry).
Napi::Value CudaDenseWq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const int64_t dtype = dim(info, 1, "dtype");
  if (dtype > 2) throw_invalid(env, "Expected 0 (float32), 1 (float16) or 2 (bfloat16) for dtype");
  const napi_typedarray_type at = dtype == 0 ? napi_float32_array : napi_uint16_array;
  View x = typed_array(info, 2, "x", {at});
  const int64_t M = dim(info, 3, "M"), N = dim(info, 4, "N"), K = dim(info, 5, "K");
  View wq = typed_array(info, 6, "wq", {napi_uint8_array, napi_int8_array});
  const int64_t bits = dim(info, 7, "bits");
  const bool is_signed = boolean(info, 8, "isSigned");
  View scale = typed_array(info, 9, "scale", {napi_float32_array});
  View zero = typed_array(info, 10, "zero", {napi_uint8_array, napi_int8_array});
  const int64_t group = dim(info, 11, "group");
  View b = optional_bias(info, 12, N);
  View y = typed_array(info, 13, "y", {at});
  View gi;
  if (info.Length() > 14 && !info[14].IsUndefined() && !info[14].IsNull()) {
    gi = typed_array(info, 14, "gIdx", {napi_int32_array});
    expect_length(env, gi, K, "gIdx");
  }
  const int64_t path = info.Length() > 15 && !info[15].IsUndefined() ? dim(info, 15, "path") : 0;
  if (path > 2) throw_invalid(env, "Expected 0 (auto), 1 (CUDA cores) or 2 (Tensor Cores) for path but received " + std::to_string(path));
  if (!(bits == 2 || bits == 3 || bits == 4 || bits == 8) || (is_signed && bits != 4)) {
    throw_invalid(env, "Expected bits 2, 3, 4 or 8 (4 for signed int4) but received " + std::to_string(bits));
  }
  if (group < 1) throw_invalid(env, "Expected a group size >= 1 for group");
  const int64_t G = K == 0 ? 0 : (K + group - 1) / group;
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, wq, mul(env, K, (bits * N + 7) / 8, "wq"), "wq");
  expect_length(env, scale, mul(env, G, N, "scale"), "scale");
  expect_length(env, zero, mul(env, G, N, "zero"), "zero");
  expect_length(env, y, mul(env, M, N, "y"), "y");
#ifdef QK_WITH_CUDA
  const void* xp = x.data;
  const auto* wp = static_cast<const uint8_t*>(wq.data);
  const auto* sp = static_cast<const float*>(scale.data);
  const auto* zp = static_cast<const uint8_t*>(zero.data);
  const auto* bp = static_cast<const float*>(b.data);
  void* yp = y.data;
  const auto* gp = static_cast<const int32_t*>(gi.data);
  const int dt = static_cast<int>(dtype), nb = static_cast<int>(bits), sg = is_signed ? 1 : 0;
  const int pt = static_cast<int>(path);
  return QK_CUDA_WORK(qk_cuda_dense_wq(dev, dt, xp, M, N, K, wp, nb, sg, sp, zp, group, gp, bp, yp, pt, err, sizeof err),
                      &x, &wq, &scale, &zero, &b, &y, &gi);
#else
  (void)dev, (void)group, (void)b, (void)gi;
  not_built(env);
#endif
}

// cudaLlama(device, op 0..4, a, b | null, c | null, positions | null, dims: Float64Array [rows, n, heads, kvHeads,
//           headDim, maxSeq, pos0, T], eps, theta, out): QK_CUDA_LLAMA_* of qk_cuda.h, host arrays, float32.
Napi::Value CudaLlama(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const int64_t op = dim(info, 1, "op");
  if (op > 4) throw_invalid(env, "Expected a Llama op 0..4 for op but received " + std::to_string(op));
  View a = typed_array(info, 2, "a", {napi_float32_array});
  View b, c, pos;
  if (!info[3].IsNull() && !info[3].IsUndefined()) b = typed_array(info, 3, "b", {napi_float32_array});
  if (!info[4].IsNull() && !info[4].IsUndefined()) c = typed_array(info, 4, "c", {napi_float32_array});
  if (!info[5].IsNull() && !info[5].IsUndefined()) pos = typed_array(info, 5, "positions", {napi_int32_array});
  View dims = typed_array(info, 6, "dims", {napi_float64_array});
  expect_length(env, dims, 8, "dims");
  const double eps = number(info, 7, "eps"), theta = number(info, 8, "theta");
  View out = typed_array(info, 9, "out", {napi_float32_array});
  int64_t d[8];
  for (int i = 0; i < 8; ++i) {
    const double v = static_cast<const double*>(dims.data)[i];
    if (!(v >= 0) || v > 9007199254740991.0 || v != std::floor(v)) {
      throw_invalid(env, "Expected non-negative integers in dims but received " + format_number(v));
    }
    d[i] = static_cast<int64_t>(v);
  }
  const int64_t rows = d[0], n = d[1], heads = d[2], kvh = d[3], hd = d[4], max_seq = d[5], pos0 = d[6], T = d[7];
  auto need = [&](const View& v, const char* name) {
    if (v.data == nullptr && v.length == 0) throw_invalid(env, std::string("Expected a Float32Array for ") + name);
  };
  switch (op) {
    case 0:  // rmsnorm
      need(b, "weight");
      expect_length(env, a, mul(env, rows, n, "x"), "x");
      expect_length(env, b, n, "weight");
      expect_length(env, out, mul(env, rows, n, "out"), "out");
      break;
    case 1: {  // rope
      if (hd % 2 != 0) throw_invalid(env, "Expected an even headDim but received " + std::to_string(hd));
      const int64_t total = mul(env, mul(env, rows, heads, "x"), hd, "x");
      expect_length(env, a, total, "x");
      expect_length(env, pos, rows, "positions");
      expect_length(env, out, total, "out");
      break;
    }
    case 2:  // softmax
      expect_length(env, a, mul(env, rows, n, "x"), "x");
      expect_length(env, out, mul(env, rows, n, "out"), "out");
      break;
    case 3:  // silu_mul
      need(b, "up");
      expect_length(env, a, n, "gate");
      expect_length(env, b, n, "up");
      expect_length(env, out, n, "out");
      break;
    default: {  // attention
      need(b, "kCache");
      need(c, "vCache");
      if (kvh < 1 || heads % kvh != 0) throw_invalid(env, "Expected heads to be a multiple of kvHeads (>= 1)");
      if (pos0 + T > max_seq) throw_invalid(env, "Expected pos0 + T <= maxSeq");
      const int64_t qn = mul(env, mul(env, T, heads, "q"), hd, "q");
      const int64_t cache = mul(env, mul(env, kvh, max_seq, "kCache"), hd, "kCache");
      expect_length(env, a, qn, "q");
      expect_length(env, b, cache, "kCache");
      expect_length(env, c, cache, "vCache");
      expect_length(env, out, qn, "out");
    }
  }
#ifdef QK_WITH_CUDA
  qk_cuda_llama_args args{static_cast<const float*>(a.data), static_cast<const float*>(b.data),
                          static_cast<const float*>(c.data), static_cast<const int32_t*>(pos.data),
                          static_cast<float*>(out.data), rows, n, heads, kvh, hd, max_seq, pos0, T,
                          static_cast<float>(eps), static_cast<float>(theta)};
  const int o = static_cast<int>(op);
  return QK_CUDA_WORK(qk_cuda_llama(dev, o, &args, err, sizeof err), &a, &b, &c, &pos, &out);
#else
  (void)dev, (void)eps, (void)theta;
  not_built(env);
#endif
}

// cudaPack(device, op 0..5, src, outer, len, inner, dst): QK_CUDA_PACK_* of qk_cuda.h.
Napi::Value CudaPack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const int64_t op = dim(info, 1, "op");
  if (op > 5) throw_invalid(env, "Expected a pack op 0..5 for op");
  View src = typed_array(info, 2, "src", {napi_uint8_array, napi_int8_array});
  const int64_t outer = dim(info, 3, "outer"), len = dim(info, 4, "len"), inner = dim(info, 5, "inner");
  View dst = typed_array(info, 6, "dst", {napi_uint8_array, napi_int8_array});
  const int64_t per = op <= 2 ? 2 : 4;
  const int64_t full = mul(env, mul(env, outer, len, "src"), inner, "src");
  const int64_t packed = mul(env, mul(env, outer, (len + per - 1) / per, "dst"), inner, "dst");
  const bool pack = op == 0 || op == 3;
  expect_length(env, src, pack ? full : packed, "src");
  expect_length(env, dst, pack ? packed : full, "dst");
#ifdef QK_WITH_CUDA
  const auto* sp = static_cast<const uint8_t*>(src.data);
  auto* dp = static_cast<uint8_t*>(dst.data);
  const int o = static_cast<int>(op);
  return QK_CUDA_WORK(qk_cuda_pack(dev, o, sp, outer, len, inner, dp, err, sizeof err), &src, &dst);
#else
  (void)dev;
  not_built(env);
#endif
}

// cudaFp8(device, toFp8: boolean, fmt 0 (e4m3fn) | 1 (e5m2), src, dst): Float32Array <-> Uint8Array.
Napi::Value CudaFp8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const bool to_fp8 = boolean(info, 1, "toFp8");
  const int64_t fmt = dim(info, 2, "fmt");
  if (fmt > 1) throw_invalid(env, "Expected 0 (e4m3fn) or 1 (e5m2) for fmt");
  View src = typed_array(info, 3, "src", {to_fp8 ? napi_float32_array : napi_uint8_array});
  View dst = typed_array(info, 4, "dst", {to_fp8 ? napi_uint8_array : napi_float32_array});
  expect_length(env, dst, static_cast<int64_t>(src.length), "dst");
#ifdef QK_WITH_CUDA
  const int64_t n = static_cast<int64_t>(src.length);
  const int f = static_cast<int>(fmt);
  const void* sp = src.data;
  void* dp = dst.data;
  if (to_fp8) {
    return QK_CUDA_WORK(qk_cuda_f32_to_fp8(dev, static_cast<const float*>(sp), static_cast<uint8_t*>(dp), n, f, err,
                                           sizeof err), &src, &dst);
  }
  return QK_CUDA_WORK(qk_cuda_fp8_to_f32(dev, static_cast<const uint8_t*>(sp), static_cast<float*>(dp), n, f, err,
                                         sizeof err), &src, &dst);
#else
  (void)dev, (void)to_fp8;
  not_built(env);
#endif
}

// ---- device buffers (cuda/memory.cu) ----------------------------------------------------------------------
// A buffer is a Napi::External<DeviceBufferHandle>. The External's finalizer frees a block the JS side never
// disposed (the TS DeviceBuffer also has a FinalizationRegistry that calls cudaBufferFree earlier). `busy`
// counts queued uploads/downloads; freeing a busy buffer is refused.
struct DeviceBufferHandle {
  int device = 0;
  void* ptr = nullptr;
  size_t bytes = 0;
  std::atomic<int> busy{0};
};

#ifdef QK_WITH_CUDA
void finalize_buffer(Napi::Env, DeviceBufferHandle* h) {
  if (h->ptr != nullptr) qk_cuda_free(h->device, h->ptr, nullptr, 0);
  delete h;
}
#endif

DeviceBufferHandle* buffer_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsExternal()) throw_invalid(info.Env(), "Expected a CUDA buffer handle for buffer");
  return info[i].As<Napi::External<DeviceBufferHandle>>().Data();
}

// cudaBufferAlloc(device, bytes) -> handle (synchronous: the caching allocator makes repeated allocations cheap).
Napi::Value CudaBufferAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const int64_t bytes = dim(info, 1, "bytes");
#ifdef QK_WITH_CUDA
  char err[512] = {0};
  void* ptr = nullptr;
  const qk_status s = qk_cuda_malloc(dev, static_cast<size_t>(bytes), &ptr, err, sizeof err);
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
  auto* h = new DeviceBufferHandle();
  h->device = dev;
  h->ptr = ptr;
  h->bytes = static_cast<size_t>(bytes);
  return Napi::External<DeviceBufferHandle>::New(env, h, finalize_buffer);
#else
  (void)dev, (void)bytes;
  not_built(env);
#endif
}

// cudaBufferFree(handle): returns the block to the cache now; idempotent.
Napi::Value CudaBufferFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBufferHandle* h = buffer_arg(info, 0);
  if (h->busy.load() > 0) throw_invalid(env, "Expected an idle buffer for dispose() but a copy is still running");
#ifdef QK_WITH_CUDA
  if (h->ptr != nullptr) qk_cuda_free(h->device, h->ptr, nullptr, 0);
#endif
  h->ptr = nullptr;
  return env.Undefined();
}

// cudaBufferCopy(handle, toDevice: boolean, host: TypedArray, byteOffset): upload / download of host.byteLength
// bytes at byteOffset of the buffer, on the worker's stream.
Napi::Value CudaBufferCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBufferHandle* h = buffer_arg(info, 0);
  const bool to_device = boolean(info, 1, "toDevice");
  View host = typed_array(info, 2, "host", {napi_int8_array, napi_uint8_array, napi_uint8_clamped_array,
                                            napi_int16_array, napi_uint16_array, napi_int32_array,
                                            napi_uint32_array, napi_float32_array, napi_float64_array});
  const int64_t offset = dim(info, 3, "byteOffset");
  if (h->ptr == nullptr) throw_error(env, "QK_DISPOSED", "Expected a live CUDA buffer but it was disposed");
  if (static_cast<uint64_t>(offset) + host.byte_length > h->bytes) {
    throw_shape(env, "Expected byteOffset + host.byteLength <= " + std::to_string(h->bytes) + " for the copy but received " +
                         std::to_string(offset) + " + " + std::to_string(host.byte_length));
  }
#ifdef QK_WITH_CUDA
  h->busy.fetch_add(1);
  Napi::Value handle = info[0];
  View keep_handle;
  keep_handle.value = handle;
  void* dptr = static_cast<uint8_t*>(h->ptr) + offset;
  void* hp = host.data;
  const size_t n = host.byte_length;
  const int dev = h->device;
  return PromiseWorker::start(env, [=](std::string& msg) {
    char err[512] = {0};
    const qk_status s = to_device ? qk_cuda_memcpy_h2d(dev, dptr, hp, n, err, sizeof err)
                                  : qk_cuda_memcpy_d2h(dev, hp, dptr, n, err, sizeof err);
    h->busy.fetch_sub(1);
    msg = err;
    return s;
  }, {&host, &keep_handle});
#else
  (void)to_device;
  not_built(env);
#endif
}

// Optional buffer handle at info[i] (undefined / null -> nullptr).
DeviceBufferHandle* optional_buffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return nullptr;
  if (!info[i].IsExternal()) throw_invalid(info.Env(), std::string("Expected a CUDA buffer handle or null for ") + name);
  return info[i].As<Napi::External<DeviceBufferHandle>>().Data();
}

// A live buffer of `device` holding at least `bytes` bytes (the resident-weight ops trust nothing else).
void expect_buffer(Napi::Env env, const DeviceBufferHandle* h, int device, uint64_t bytes, const char* name) {
  if (h == nullptr) throw_invalid(env, std::string("Expected a CUDA buffer for ") + name);
  if (h->ptr == nullptr) throw_error(env, "QK_DISPOSED", std::string("Expected a live CUDA buffer for ") + name + " but it was disposed");
  if (h->device != device) {
    throw_invalid(env, std::string("Expected a buffer of CUDA device ") + std::to_string(device) + " for " + name +
                           " but it lives on device " + std::to_string(h->device));
  }
  if (h->bytes < bytes) {
    throw_shape(env, std::string("Expected at least ") + std::to_string(bytes) + " bytes in " + name + " but it holds " +
                         std::to_string(h->bytes));
  }
}

// cudaDenseF32(device, x, M, N, K, w: Float32Array [K, N], bias | null, y): the float32 SIMT GEMM, host arrays.
Napi::Value CudaDenseF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  View x = typed_array(info, 1, "x", {napi_float32_array});
  const int64_t M = dim(info, 2, "M"), N = dim(info, 3, "N"), K = dim(info, 4, "K");
  View w = typed_array(info, 5, "w", {napi_float32_array});
  View b = optional_bias(info, 6, N);
  View y = typed_array(info, 7, "y", {napi_float32_array});
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, w, mul(env, K, N, "w"), "w");
  expect_length(env, y, mul(env, M, N, "y"), "y");
#ifdef QK_WITH_CUDA
  const auto* xp = static_cast<const float*>(x.data);
  const auto* wp = static_cast<const float*>(w.data);
  const auto* bp = static_cast<const float*>(b.data);
  auto* yp = static_cast<float*>(y.data);
  return QK_CUDA_WORK(qk_cuda_dense_f32(dev, xp, M, N, K, wp, bp, yp, err, sizeof err), &x, &w, &b, &y);
#else
  (void)dev, (void)b;
  not_built(env);
#endif
}

// cudaRepackNk64(src, K, N, dst): the Keras [K, N] byte matrix in buffer src -> the NK64 layout of the 8-bit
// Tensor-Core GEMMs in buffer dst (N * round_up(K, 64) bytes), on the worker stream; resolves when done.
Napi::Value CudaRepackNk64(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceBufferHandle* src = buffer_arg(info, 0);
  const int64_t K = dim(info, 1, "K"), N = dim(info, 2, "N");
  DeviceBufferHandle* dst = optional_buffer(info, 3, "dst");
  if (K > 131071) throw_invalid(env, "Expected K <= 131071 for the 8-bit Tensor-Core GEMM but received " + std::to_string(K));
  const int64_t kp = (K + 63) / 64 * 64;
  expect_buffer(env, src, src->device, static_cast<uint64_t>(mul(env, K, N, "src")), "src");
  expect_buffer(env, dst, src->device, static_cast<uint64_t>(mul(env, kp, N, "dst")), "dst");
#ifdef QK_WITH_CUDA
  View keep_src, keep_dst;
  keep_src.value = info[0];
  keep_dst.value = info[3];
  src->busy.fetch_add(1);
  dst->busy.fetch_add(1);
  const int dev = src->device;
  const auto* sp = static_cast<const uint8_t*>(src->ptr);
  auto* dp = static_cast<uint8_t*>(dst->ptr);
  return PromiseWorker::start(env, [=](std::string& msg) {
    char err[512] = {0};
    void* st = nullptr;
    qk_status s = qk_cuda_worker_stream(dev, &st, err, sizeof err);
    if (s == QK_STATUS_OK) s = qk_cuda_repack_nk64_dev(sp, K, N, dp, st, err, sizeof err);
    if (s == QK_STATUS_OK) s = qk_cuda_worker_sync(dev, err, sizeof err);
    src->busy.fetch_sub(1);
    dst->busy.fetch_sub(1);
    msg = err;
    return s;
  }, {&keep_src, &keep_dst});
#else
  (void)K, (void)N;
  not_built(env);
#endif
}

// cudaDenseResident(device, kind, x: Float32Array [M, K], M, N, K, w, scale | null, zero | null, gIdx | null,
//                   bias | null, params: Float64Array [8], y: Float32Array [M, N])
// A Dense forward with weights resident in device buffers (handles from cudaBufferAlloc): x is uploaded, the
// kernel runs on the worker stream with the resident weights, y is downloaded. kind:
//   0 float32: w float32 [K, N] (qk_cuda_dense_f32_dev)
//   1 int8 W8A8: w NK64 int8, scale float32 [N]; params [lo, hi, eps] (qk_cuda_dense_w8a8_dev)
//   2 float8 e4m3: w NK64 codes; params [xScale, wScale] (qk_cuda_dense_fp8_dev; compute capability 8.9+)
//   3 weight-only packed (qk_cuda_dense_wq_dev, float32 activations): w the packed rows, scale float32 [G, N],
//     zero [G, N] bytes, gIdx int32 [K] or null; params [bits, isSigned, group]
Napi::Value CudaDenseResident(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const int64_t kind = dim(info, 1, "kind");
  if (kind > 3) throw_invalid(env, "Expected a kind 0..3 for kind but received " + std::to_string(kind));
  View x = typed_array(info, 2, "x", {napi_float32_array});
  const int64_t M = dim(info, 3, "M"), N = dim(info, 4, "N"), K = dim(info, 5, "K");
  DeviceBufferHandle* w = optional_buffer(info, 6, "w");
  DeviceBufferHandle* sc = optional_buffer(info, 7, "scale");
  DeviceBufferHandle* z = optional_buffer(info, 8, "zero");
  DeviceBufferHandle* gi = optional_buffer(info, 9, "gIdx");
  DeviceBufferHandle* b = optional_buffer(info, 10, "bias");
  View params = typed_array(info, 11, "params", {napi_float64_array});
  expect_length(env, params, 8, "params");
  View y = typed_array(info, 12, "y", {napi_float32_array});
  expect_length(env, x, mul(env, M, K, "x"), "x");
  expect_length(env, y, mul(env, M, N, "y"), "y");
  const double* pr = static_cast<const double*>(params.data);
  const double p0 = pr[0], p1 = pr[1], p2 = pr[2];
  if (b != nullptr) expect_buffer(env, b, dev, static_cast<uint64_t>(N) * 4, "bias");
  int bits = 0, is_signed = 0;
  int64_t group = 1;
  switch (kind) {
    case 0:
      expect_buffer(env, w, dev, static_cast<uint64_t>(mul(env, mul(env, K, N, "w"), 4, "w")), "w");
      break;
    case 1:
    case 2: {
      if (K > 131071) throw_invalid(env, "Expected K <= 131071 for the 8-bit Tensor-Core GEMM but received " + std::to_string(K));
      expect_buffer(env, w, dev, static_cast<uint64_t>(mul(env, (K + 63) / 64 * 64, N, "w")), "w");
      if (kind == 1) {
        expect_buffer(env, sc, dev, static_cast<uint64_t>(N) * 4, "scale");
        if (p0 != std::floor(p0) || p1 != std::floor(p1) || p0 < -128 || p1 > 127 || p0 >= p1 || p1 <= 0) {
          throw_invalid(env, "Expected integers -128 <= lo < hi <= 127 with hi > 0 for the activation valueRange");
        }
        if (!(p2 >= 0)) throw_invalid(env, "Expected a non-negative number for epsilon");
      } else if (!(p0 > 0) || !(p1 > 0) || !std::isfinite(p0) || !std::isfinite(p1)) {
        throw_invalid(env, "Expected positive finite numbers for xScale and wScale");
      }
      break;
    }
    default: {
      if (!(p0 == 2 || p0 == 3 || p0 == 4 || p0 == 8) || !(p1 == 0 || p1 == 1) || (p1 == 1 && p0 != 4)) {
        throw_invalid(env, "Expected bits 2, 3, 4 or 8 (4 for signed int4) and isSigned 0 or 1 in params");
      }
      bits = static_cast<int>(p0);
      is_signed = static_cast<int>(p1);
      if (!(p2 >= 1) || p2 != std::floor(p2) || p2 > 9007199254740991.0) throw_invalid(env, "Expected a group size >= 1 in params");
      group = static_cast<int64_t>(p2);
      const int64_t G = K == 0 ? 0 : (K + group - 1) / group;
      expect_buffer(env, w, dev, static_cast<uint64_t>(mul(env, K, (bits * N + 7) / 8, "w")), "w");
      expect_buffer(env, sc, dev, static_cast<uint64_t>(mul(env, mul(env, G, N, "scale"), 4, "scale")), "scale");
      expect_buffer(env, z, dev, static_cast<uint64_t>(mul(env, G, N, "zero")), "zero");
      if (gi != nullptr) expect_buffer(env, gi, dev, static_cast<uint64_t>(K) * 4, "gIdx");
    }
  }
#ifdef QK_WITH_CUDA
  // g_idx entries were checked against [0, G) when they were uploaded (lib/cuda/resident.ts).
  View keep[5];
  DeviceBufferHandle* hs[5] = {w, sc, z, gi, b};
  for (int i = 0; i < 5; ++i) {
    if (hs[i] == nullptr) continue;
    keep[i].value = info[6 + i];
    hs[i]->busy.fetch_add(1);
  }
  const auto* xp = static_cast<const float*>(x.data);
  auto* yp = static_cast<float*>(y.data);
  const void* wp = w->ptr;
  const void* sp = sc != nullptr ? sc->ptr : nullptr;
  const void* zp = z != nullptr ? z->ptr : nullptr;
  const void* gp = gi != nullptr ? gi->ptr : nullptr;
  const void* bp = b != nullptr ? b->ptr : nullptr;
  const int kd = static_cast<int>(kind);
  return PromiseWorker::start(env, [=](std::string& msg) {
    char err[512] = {0};
    void* dx = nullptr;
    void* dy = nullptr;
    void* st = nullptr;
    const auto* bf = static_cast<const float*>(bp);
    qk_status s = qk_cuda_worker_stream(dev, &st, err, sizeof err);
    if (s == QK_STATUS_OK) s = qk_cuda_malloc(dev, static_cast<size_t>(M * K) * 4, &dx, err, sizeof err);
    if (s == QK_STATUS_OK) s = qk_cuda_malloc(dev, static_cast<size_t>(M * N) * 4, &dy, err, sizeof err);
    if (s == QK_STATUS_OK) s = qk_cuda_memcpy_h2d(dev, dx, xp, static_cast<size_t>(M * K) * 4, err, sizeof err);
    if (s == QK_STATUS_OK) {
      auto* xd = static_cast<const float*>(dx);
      auto* yd = static_cast<float*>(dy);
      switch (kd) {
        case 0:
          s = qk_cuda_dense_f32_dev(xd, M, N, K, static_cast<const float*>(wp), bf, yd, st, err, sizeof err);
          break;
        case 1:
          s = qk_cuda_dense_w8a8_dev(xd, M, N, K, static_cast<const uint8_t*>(wp), static_cast<const float*>(sp), bf,
                                     static_cast<float>(p0), static_cast<float>(p1), static_cast<float>(p2), yd, st, err,
                                     sizeof err);
          break;
        case 2:
          s = qk_cuda_dense_fp8_dev(xd, M, N, K, static_cast<float>(p0), static_cast<const uint8_t*>(wp),
                                    static_cast<float>(p1), bf, yd, st, err, sizeof err);
          break;
        default:
          s = qk_cuda_dense_wq_dev(QK_CUDA_F32, xd, M, N, K, static_cast<const uint8_t*>(wp), bits, is_signed,
                                   static_cast<const float*>(sp), static_cast<const uint8_t*>(zp), group,
                                   static_cast<const int32_t*>(gp), bf, yd, QK_CUDA_WQ_AUTO, st, err, sizeof err);
      }
    }
    if (s == QK_STATUS_OK) s = qk_cuda_memcpy_d2h(dev, yp, dy, static_cast<size_t>(M * N) * 4, err, sizeof err);
    if (s != QK_STATUS_OK) qk_cuda_worker_sync(dev, nullptr, 0);  // nothing queued may still use dx / dy
    if (dx != nullptr) qk_cuda_free(dev, dx, nullptr, 0);
    if (dy != nullptr) qk_cuda_free(dev, dy, nullptr, 0);
    for (DeviceBufferHandle* h : hs) {
      if (h != nullptr) h->busy.fetch_sub(1);
    }
    msg = err;
    return s;
  }, {&x, &y, &keep[0], &keep[1], &keep[2], &keep[3], &keep[4]});
#else
  (void)gi, (void)bits, (void)is_signed, (void)group, (void)p0, (void)p1, (void)p2;
  not_built(env);
#endif
}

// ---- a queue of device ops (the Llama decode on the device, lib/cuda/queue.ts) -----------------------------------
// The JS thread enqueues kernels without waiting on its own worker stream (cudaQueueStream); one async op at the end
// downloads the result and synchronizes that stream (cudaQueueDownload / cudaQueueSync). Every enqueue checks its
// buffers (live, on this device, large enough) first; kernels only ever touch buffers of the sizes checked here.
struct QueueStream {
  int device = 0;
  void* stream = nullptr;
};

QueueStream* queue_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsExternal()) throw_invalid(info.Env(), "Expected a CUDA queue handle for queue");
  return info[i].As<Napi::External<QueueStream>>().Data();
}

// cudaQueueStream(device) -> queue handle: the calling (JS) thread's worker stream on `device`.
Napi::Value CudaQueueStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
#ifdef QK_WITH_CUDA
  char err[512] = {0};
  void* st = nullptr;
  const qk_status s = qk_cuda_worker_stream(dev, &st, err, sizeof err);
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
  auto* q = new QueueStream{dev, st};
  return Napi::External<QueueStream>::New(env, q, [](Napi::Env, QueueStream* p) { delete p; });
#else
  (void)dev;
  not_built(env);
#endif
}

// cudaEnqueue(queue, op, buffers: Array<handle | null>, nums: Float64Array): one kernel on the queue's stream.
//   1 rmsnorm   [x, w, y]                  [rows, n, eps]
//   2 rope      [x, positions(int32)]      [rows, heads, headDim, theta]
//   3 kvWrite   [k, v, positions, kc, vc]  [T, kvHeads, headDim, maxSeq]
//   4 attention [q, kc, vc, out, scratch]  [T, heads, kvHeads, headDim, maxSeq, pos0]
//   5 siluMul   [gate, up, out]            [n]
//   6 add       [y, x]                     [n]            (y += x)
//   7 dense     [x, w, scale, zero, bias, y]  [kind, M, N, K, p0, p1, p2] (kinds of cudaDenseResident)
Napi::Value CudaEnqueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QueueStream* q = queue_arg(info, 0);
#ifndef QK_WITH_CUDA
  (void)q;
  not_built(env);  // no queue handle exists without CUDA (cudaQueueStream refuses)
#else
  const int64_t op = dim(info, 1, "op");
  if (info.Length() <= 2 || !info[2].IsArray()) throw_invalid(env, "Expected an array of CUDA buffers for buffers");
  Napi::Array arr = info[2].As<Napi::Array>();
  View nums = typed_array(info, 3, "nums", {napi_float64_array});
  const double* d = static_cast<const double*>(nums.data);
  std::vector<DeviceBufferHandle*> b(arr.Length(), nullptr);
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (v.IsNull() || v.IsUndefined()) continue;
    if (!v.IsExternal()) throw_invalid(env, "Expected CUDA buffer handles or null in buffers");
    b[i] = v.As<Napi::External<DeviceBufferHandle>>().Data();
  }
  auto need = [&](size_t nb, size_t nn) {
    if (b.size() != nb || nums.length != nn) {
      throw_invalid(env, "Expected " + std::to_string(nb) + " buffers and " + std::to_string(nn) + " numbers for op " + std::to_string(op));
    }
  };
  auto count = [&](size_t i, const char* name) -> int64_t {
    const double v = d[i];
    if (!(v >= 0) || v > 9007199254740991.0 || v != std::floor(v)) {
      throw_invalid(env, std::string("Expected a non-negative integer for ") + name + " but received " + format_number(v));
    }
    return static_cast<int64_t>(v);
  };
  const int dev = q->device;
  auto buf = [&](size_t i, int64_t elems, const char* name) -> void* {
    expect_buffer(env, b[i], dev, static_cast<uint64_t>(mul(env, elems, 4, name)), name);
    return b[i]->ptr;
  };
  char err[512] = {0};
  qk_status s = QK_STATUS_OK;
  void* st = q->stream;
  // the launchers launch on the calling thread's current device
  s = qk_cuda_use_device(dev, err, sizeof err);
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
#define QK_Q(call) s = (call)
  switch (op) {
    case 1: {
      need(3, 3);
      const int64_t rows = count(0, "rows"), n = count(1, "n");
      const int64_t total = mul(env, rows, n, "x");
      auto* x = static_cast<const float*>(buf(0, total, "x"));
      auto* w = static_cast<const float*>(buf(1, n, "weight"));
      auto* y = static_cast<float*>(buf(2, total, "y"));
      const float eps = static_cast<float>(d[2]);
      QK_Q(qk_cuda_rmsnorm_dev(x, w, rows, n, eps, y, st, err, sizeof err));
      break;
    }
    case 2: {
      need(2, 4);
      const int64_t rows = count(0, "rows"), heads = count(1, "heads"), hd = count(2, "headDim");
      if (hd % 2 != 0) throw_invalid(env, "Expected an even headDim");
      auto* x = static_cast<float*>(buf(0, mul(env, mul(env, rows, heads, "x"), hd, "x"), "x"));
      auto* pos = static_cast<const int32_t*>(buf(1, rows, "positions"));
      const float theta = static_cast<float>(d[3]);
      QK_Q(qk_cuda_rope_dev(x, rows, heads, hd, pos, theta, st, err, sizeof err));
      break;
    }
    case 3: {
      need(5, 4);
      const int64_t T = count(0, "T"), kvh = count(1, "kvHeads"), hd = count(2, "headDim"), ms = count(3, "maxSeq");
      const int64_t kn = mul(env, mul(env, T, kvh, "k"), hd, "k"), cn = mul(env, mul(env, kvh, ms, "cache"), hd, "cache");
      auto* k = static_cast<const float*>(buf(0, kn, "k"));
      auto* v = static_cast<const float*>(buf(1, kn, "v"));
      auto* pos = static_cast<const int32_t*>(buf(2, T, "positions"));
      auto* kc = static_cast<float*>(buf(3, cn, "kCache"));
      auto* vc = static_cast<float*>(buf(4, cn, "vCache"));
      // positions are written by the caller (lib/cuda/queue.ts) as pos0 .. pos0 + T - 1 < maxSeq
      QK_Q(qk_cuda_kv_cache_write_dev(k, v, T, kvh, hd, pos, ms, kc, vc, st, err, sizeof err));
      break;
    }
    case 4: {
      need(5, 6);
      const int64_t T = count(0, "T"), h = count(1, "heads"), kvh = count(2, "kvHeads"), hd = count(3, "headDim");
      const int64_t ms = count(4, "maxSeq"), pos0 = count(5, "pos0");
      if (kvh < 1 || h % kvh != 0) throw_invalid(env, "Expected heads to be a multiple of kvHeads (>= 1)");
      if (pos0 + T > ms) throw_invalid(env, "Expected pos0 + T <= maxSeq");
      const int64_t qn = mul(env, mul(env, T, h, "q"), hd, "q"), cn = mul(env, mul(env, kvh, ms, "cache"), hd, "cache");
      auto* qp = static_cast<const float*>(buf(0, qn, "q"));
      auto* kc = static_cast<const float*>(buf(1, cn, "kCache"));
      auto* vc = static_cast<const float*>(buf(2, cn, "vCache"));
      auto* out = static_cast<float*>(buf(3, qn, "out"));
      auto* sc = static_cast<float*>(buf(4, mul(env, mul(env, T, h, "scratch"), pos0 + T, "scratch"), "scratch"));
      QK_Q(qk_cuda_attention_decode_dev(qp, T, h, kvh, hd, kc, vc, ms, pos0, out, sc, st, err, sizeof err));
      break;
    }
    case 5: {
      need(3, 1);
      const int64_t n = count(0, "n");
      auto* g = static_cast<const float*>(buf(0, n, "gate"));
      auto* u = static_cast<const float*>(buf(1, n, "up"));
      auto* o = static_cast<float*>(buf(2, n, "out"));
      QK_Q(qk_cuda_silu_mul_dev(g, u, n, o, st, err, sizeof err));
      break;
    }
    case 6: {
      need(2, 1);
      const int64_t n = count(0, "n");
      auto* y = static_cast<float*>(buf(0, n, "y"));
      auto* x = static_cast<const float*>(buf(1, n, "x"));
      QK_Q(qk_cuda_add_dev(y, x, n, st, err, sizeof err));
      break;
    }
    case 7: {
      need(6, 7);
      const int64_t kind = count(0, "kind"), M = count(1, "M"), N = count(2, "N"), K = count(3, "K");
      const double p0 = d[4], p1 = d[5], p2 = d[6];
      auto* x = static_cast<const float*>(buf(0, mul(env, M, K, "x"), "x"));
      auto* y = static_cast<float*>(buf(5, mul(env, M, N, "y"), "y"));
      const float* bias = b[4] != nullptr ? static_cast<const float*>(buf(4, N, "bias")) : nullptr;
      switch (kind) {
        case 0: {
          auto* w = static_cast<const float*>(buf(1, mul(env, K, N, "w"), "w"));
          QK_Q(qk_cuda_dense_f32_dev(x, M, N, K, w, bias, y, st, err, sizeof err));
          break;
        }
        case 1:
        case 2: {
          if (K > 131071) throw_invalid(env, "Expected K <= 131071 for the 8-bit Tensor-Core GEMM");
          expect_buffer(env, b[1], dev, static_cast<uint64_t>(mul(env, (K + 63) / 64 * 64, N, "w")), "w");
          auto* w = static_cast<const uint8_t*>(b[1]->ptr);
          if (kind == 1) {
            if (p0 != std::floor(p0) || p1 != std::floor(p1) || p0 < -128 || p1 > 127 || p0 >= p1 || p1 <= 0 || !(p2 >= 0)) {
              throw_invalid(env, "Expected integers -128 <= lo < hi <= 127 with hi > 0 and epsilon >= 0");
            }
            auto* sc = static_cast<const float*>(buf(2, N, "scale"));
            QK_Q(qk_cuda_dense_w8a8_dev(x, M, N, K, w, sc, bias, static_cast<float>(p0), static_cast<float>(p1),
                                        static_cast<float>(p2), y, st, err, sizeof err));
          } else {
            if (!(p0 > 0) || !(p1 > 0) || !std::isfinite(p0) || !std::isfinite(p1)) throw_invalid(env, "Expected positive finite xScale and wScale");
            QK_Q(qk_cuda_dense_fp8_dev(x, M, N, K, static_cast<float>(p0), w, static_cast<float>(p1), bias, y, st, err, sizeof err));
          }
          break;
        }
        case 3: {
          if (!(p0 == 2 || p0 == 3 || p0 == 4 || p0 == 8) || !(p1 == 0 || p1 == 1) || (p1 == 1 && p0 != 4) || !(p2 >= 1) ||
              p2 != std::floor(p2) || p2 > 9007199254740991.0) {
            throw_invalid(env, "Expected bits 2, 3, 4 or 8 (4 for signed int4), isSigned 0 or 1 and a group >= 1");
          }
          const int bits = static_cast<int>(p0);
          const int64_t group = static_cast<int64_t>(p2), G = K == 0 ? 0 : (K + group - 1) / group;
          expect_buffer(env, b[1], dev, static_cast<uint64_t>(mul(env, K, (bits * N + 7) / 8, "w")), "w");
          auto* sc = static_cast<const float*>(buf(2, mul(env, G, N, "scale"), "scale"));
          expect_buffer(env, b[3], dev, static_cast<uint64_t>(mul(env, G, N, "zero")), "zero");
          QK_Q(qk_cuda_dense_wq_dev(QK_CUDA_F32, x, M, N, K, static_cast<const uint8_t*>(b[1]->ptr), bits,
                                    static_cast<int>(p1), sc, static_cast<const uint8_t*>(b[3]->ptr), group, nullptr, bias,
                                    y, QK_CUDA_WQ_AUTO, st, err, sizeof err));
          break;
        }
        default:
          throw_invalid(env, "Expected a dense kind 0..3 but received " + std::to_string(kind));
      }
      break;
    }
    default:
      throw_invalid(env, "Expected a queue op 1..7 but received " + std::to_string(op));
  }
#undef QK_Q
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
  return env.Undefined();
#endif
}

// cudaQueueUpload(queue, dst, host: Float32Array | Int32Array): host -> dst (from byte 0), enqueued; the host array may
// be reused at once (pageable memory is staged before the call returns).
Napi::Value CudaQueueUpload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QueueStream* q = queue_arg(info, 0);
  DeviceBufferHandle* dst = buffer_arg(info, 1);
  View host = typed_array(info, 2, "host", {napi_float32_array, napi_int32_array});
  expect_buffer(env, dst, q->device, host.byte_length, "dst");
#ifdef QK_WITH_CUDA
  char err[512] = {0};
  const qk_status s = qk_cuda_memcpy_async(q->device, dst->ptr, host.data, host.byte_length, 1, q->stream, err, sizeof err);
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
  return env.Undefined();
#else
  not_built(env);
#endif
}

// cudaQueueDownload(queue, src | null, host | null): resolves when everything queued so far has run and (with src)
// host holds the first host.byteLength bytes of src. Execution errors of the queued kernels reject here.
Napi::Value CudaQueueDownload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  QueueStream* q = queue_arg(info, 0);
  DeviceBufferHandle* src = nullptr;
  View host;
  if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) {
    src = buffer_arg(info, 1);
    host = typed_array(info, 2, "host", {napi_float32_array});
    expect_buffer(env, src, q->device, host.byte_length, "src");
  }
#ifdef QK_WITH_CUDA
  View keep_src, keep_q;
  keep_q.value = info[0];
  if (src != nullptr) {
    keep_src.value = info[1];
    src->busy.fetch_add(1);
  }
  const int dev = q->device;
  void* st = q->stream;
  void* hp = host.data;
  const size_t n = host.byte_length;
  const void* sp = src != nullptr ? src->ptr : nullptr;
  return PromiseWorker::start(env, [=](std::string& msg) {
    char err[512] = {0};
    qk_status s = QK_STATUS_OK;
    if (sp != nullptr) s = qk_cuda_memcpy_async(dev, hp, sp, n, 0, st, err, sizeof err);
    const qk_status s2 = qk_cuda_stream_sync(dev, st, s == QK_STATUS_OK ? err : nullptr, s == QK_STATUS_OK ? sizeof err : 0);
    if (s == QK_STATUS_OK) s = s2;
    if (src != nullptr) src->busy.fetch_sub(1);
    msg = err;
    return s;
  }, {&host, &keep_src, &keep_q});
#else
  not_built(env);
#endif
}

// cudaMemoryStats(device) -> { inUseBytes, cachedBytes, backendAllocs, cacheHits }; cudaEmptyCache(device).
Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
#ifdef QK_WITH_CUDA
  char err[512] = {0};
  qk_cuda_memory_stats st;
  const qk_status s = qk_cuda_get_memory_stats(dev, &st, err, sizeof err);
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("inUseBytes", static_cast<double>(st.in_use_bytes));
  o.Set("cachedBytes", static_cast<double>(st.cached_bytes));
  o.Set("backendAllocs", static_cast<double>(st.backend_allocs));
  o.Set("cacheHits", static_cast<double>(st.cache_hits));
  return o;
#else
  (void)dev;
  not_built(env);
#endif
}

Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
#ifdef QK_WITH_CUDA
  char err[512] = {0};
  const qk_status s = qk_cuda_empty_cache(dev, err, sizeof err);
  if (s != QK_STATUS_OK) throw_error(env, status_code(s), err);
  return env.Undefined();
#else
  (void)dev;
  not_built(env);
#endif
}

// cudaDeviceHas(device, feature) -> boolean: the run-time capability predicate (QK_CUDA_FEATURE_*).
Napi::Value CudaDeviceHas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int dev = device_arg(info, 0);
  const int64_t f = dim(info, 1, "feature");
#ifdef QK_WITH_CUDA
  return Napi::Boolean::New(env, qk_cuda_device_has(dev, static_cast<int>(f)) != 0);
#else
  (void)dev, (void)f;
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace

void register_cuda_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaAbsmax", Napi::Function::New(env, CudaAbsmax, "cudaAbsmax"));
  exports.Set("cudaAbsmaxQuantize", Napi::Function::New(env, CudaAbsmaxQuantize, "cudaAbsmaxQuantize"));
  exports.Set("cudaDenseW8A8", Napi::Function::New(env, CudaDenseW8A8, "cudaDenseW8A8"));
  exports.Set("cudaDenseFp8", Napi::Function::New(env, CudaDenseFp8, "cudaDenseFp8"));
  exports.Set("cudaDenseWq", Napi::Function::New(env, CudaDenseWq, "cudaDenseWq"));
  exports.Set("cudaPack", Napi::Function::New(env, CudaPack, "cudaPack"));
  exports.Set("cudaLlama", Napi::Function::New(env, CudaLlama, "cudaLlama"));
  exports.Set("cudaFp8", Napi::Function::New(env, CudaFp8, "cudaFp8"));
  exports.Set("cudaBufferAlloc", Napi::Function::New(env, CudaBufferAlloc, "cudaBufferAlloc"));
  exports.Set("cudaBufferFree", Napi::Function::New(env, CudaBufferFree, "cudaBufferFree"));
  exports.Set("cudaBufferCopy", Napi::Function::New(env, CudaBufferCopy, "cudaBufferCopy"));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, CudaMemoryStats, "cudaMemoryStats"));
  exports.Set("cudaEmptyCache", Napi::Function::New(env, CudaEmptyCache, "cudaEmptyCache"));
  exports.Set("cudaDenseF32", Napi::Function::New(env, CudaDenseF32, "cudaDenseF32"));
  exports.Set("cudaRepackNk64", Napi::Function::New(env, CudaRepackNk64, "cudaRepackNk64"));
  exports.Set("cudaDenseResident", Napi::Function::New(env, CudaDenseResident, "cudaDenseResident"));
  exports.Set("cudaQueueStream", Napi::Function::New(env, CudaQueueStream, "cudaQueueStream"));
  exports.Set("cudaEnqueue", Napi::Function::New(env, CudaEnqueue, "cudaEnqueue"));
  exports.Set("cudaQueueUpload", Napi::Function::New(env, CudaQueueUpload, "cudaQueueUpload"));
  exports.Set("cudaQueueDownload", Napi::Function::New(env, CudaQueueDownload, "cudaQueueDownload"));
  exports.Set("cudaDeviceHas", Napi::Function::New(env, CudaDeviceHas, "cudaDeviceHas"));
}

}  // namespace qkn
