// quantkit — JS entry points for the CUDA backend. Compiled in every build; without QK_WITH_CUDA (no nvcc, or
// QK_CUDA=off) the entry points report "not compiled" and the ops reject with QK_UNSUPPORTED.
#include <napi.h>

#include <string>

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

}  // namespace

void register_cuda_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaAbsmax", Napi::Function::New(env, CudaAbsmax, "cudaAbsmax"));
  exports.Set("cudaAbsmaxQuantize", Napi::Function::New(env, CudaAbsmaxQuantize, "cudaAbsmaxQuantize"));
}

}  // namespace qkn
