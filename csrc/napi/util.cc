// quantkit — N-API helpers (see util.h).
#include "napi/util.h"

#include <cstdlib>

#include "qk/threadpool.h"

#include <cmath>
#include <new>
#include <sstream>

namespace qkn {

const char* status_code(qk_status s) {
  switch (s) {
    case QK_STATUS_OK: return "QK_OK";
    case QK_STATUS_INVALID_ARGUMENT: return "QK_INVALID_ARGUMENT";
    case QK_STATUS_SHAPE_MISMATCH: return "QK_SHAPE_MISMATCH";
    case QK_STATUS_UNSUPPORTED: return "QK_UNSUPPORTED";
    case QK_STATUS_OUT_OF_MEMORY: return "QK_OUT_OF_MEMORY";
    case QK_STATUS_DEVICE: return "QK_DEVICE";
    case QK_STATUS_INTERNAL: return "QK_INTERNAL";
  }
  return "QK_INTERNAL";
}

void throw_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

std::string format_number(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  std::ostringstream os;
  os.precision(17);
  os << d;
  return os.str();
}

static std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsTypedArray()) return typed_array_name(v.As<Napi::TypedArray>().TypedArrayType());
  if (v.IsArray()) return "an Array";
  if (v.IsNumber()) return format_number(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsFunction()) return "a function";
  return "an object";
}

View typed_array(const Napi::CallbackInfo& info, size_t i, const char* name,
                 std::initializer_list<napi_typedarray_type> allowed) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  std::string expected;
  for (auto t : allowed) {
    if (!expected.empty()) expected += " or ";
    expected += typed_array_name(t);
  }
  if (!v.IsTypedArray()) throw_invalid(env, "Expected " + expected + " for " + name + " but received " + describe(v));
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  bool ok = false;
  for (auto t : allowed) ok = ok || ta.TypedArrayType() == t;
  if (!ok) throw_invalid(env, "Expected " + expected + " for " + name + " but received " + describe(v));
  View out;
  out.type = ta.TypedArrayType();
  out.length = ta.ElementLength();
  out.byte_length = ta.ByteLength();
  Napi::ArrayBuffer ab = ta.ArrayBuffer();
  if (ab.IsDetached() && out.length != 0) {
    throw_invalid(env, std::string("Expected an attached buffer for ") + name + " but its ArrayBuffer is detached");
  }
  out.data = out.length == 0 ? nullptr : static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
  out.value = v;
  return out;
}

int64_t dim(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) throw_invalid(info.Env(), std::string("Expected a non-negative integer for ") + name + " but received " + describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) {
    throw_invalid(info.Env(), std::string("Expected a non-negative integer for ") + name + " but received " + describe(v));
  }
  return static_cast<int64_t>(d);
}

double number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) {
    throw_invalid(info.Env(), std::string("Expected a finite number for ") + name + " but received " + describe(v));
  }
  return v.As<Napi::Number>().DoubleValue();
}

bool boolean(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) throw_invalid(info.Env(), std::string("Expected a boolean for ") + name + " but received " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

int64_t mul(Napi::Env env, int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) {
    throw_invalid(env, std::string("Expected a representable size for ") + what + " but the product of its dimensions overflows 64 bits");
  }
  return r;
}

void expect_length(Napi::Env env, const View& v, int64_t expected, const char* name) {
  if (static_cast<int64_t>(v.length) != expected) {
    throw_shape(env, std::string("Expected ") + std::to_string(expected) + " elements for " + name +
                         " but received " + std::to_string(v.length));
  }
}

void expect_disjoint(Napi::Env env, const View& out, const char* out_name, const View& in, const char* in_name) {
  if (out.data == nullptr || in.data == nullptr || out.byte_length == 0 || in.byte_length == 0) return;
  const auto* o = static_cast<const uint8_t*>(out.data);
  const auto* p = static_cast<const uint8_t*>(in.data);
  if (o < p + in.byte_length && p < o + out.byte_length) {
    throw_invalid(env, std::string("Expected ") + out_name + " not to share memory with " + in_name +
                           " but the two views overlap");
  }
}

const qk::KernelTable& kernels_arg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (v.IsUndefined() || v.IsNull()) return qk::active_kernels();
  if (!v.IsString()) throw_invalid(info.Env(), "Expected an ISA name (ref, avx2, avx512) for isa but received " + describe(v));
  std::string s = v.As<Napi::String>().Utf8Value();
  qk::Isa isa;
  if (!qk::parse_isa(s.c_str(), &isa)) {
    throw_invalid(info.Env(), "Expected an ISA name (ref, avx2, avx512) for isa but received '" + s + "'");
  }
  const qk::KernelTable* t = qk::kernel_table(isa);
  if (t == nullptr) throw_error(info.Env(), "QK_UNSUPPORTED", "The ISA '" + s + "' is not available on this CPU or in this build");
  return *t;
}

PromiseWorker::PromiseWorker(Napi::Env env, Work work)
    : Napi::AsyncWorker(env, "quantkit"), work_(std::move(work)), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::keep(const View& v) { keep(v.value); }
void PromiseWorker::keep(const Napi::Value& v) {
  if (!v.IsEmpty()) refs_.push_back(Napi::Persistent(v));
}

double PromiseWorker::inline_cost_limit() {
  static const double limit = [] {
    const char* e = std::getenv("QK_INLINE_OPS");
    if (e != nullptr && std::string(e) == "0") return -1.0;
    return 65536.0;  // ~1-5 microseconds of single-threaded work
  }();
  return limit;
}

Napi::Value PromiseWorker::start(Napi::Env env, Work work, std::initializer_list<const View*> keep_alive, double cost) {
  if (cost >= 0 && cost <= inline_cost_limit()) {
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    std::string message;
    qk_status status;
    {
      qk::SerialScope serial;
      try {
        status = work(message);
      } catch (const std::bad_alloc&) {
        status = QK_STATUS_OUT_OF_MEMORY;
        message = "Out of memory while running a native op";
      } catch (const std::exception& e) {
        status = QK_STATUS_INTERNAL;
        message = std::string("Internal error in a native op: ") + e.what();
      } catch (...) {
        status = QK_STATUS_INTERNAL;
        message = "Internal error in a native op";
      }
    }
    if (status == QK_STATUS_OK) {
      deferred.Resolve(env.Undefined());
    } else {
      if (message.empty()) message = std::string("Native op failed with ") + status_code(status);
      Napi::Error err = Napi::Error::New(env, message);
      err.Set("code", Napi::String::New(env, status_code(status)));
      deferred.Reject(err.Value());
    }
    return deferred.Promise();
  }
  auto* w = new PromiseWorker(env, std::move(work));
  for (const View* v : keep_alive) w->keep(*v);
  Napi::Promise p = w->promise();
  w->Queue();  // the worker deletes itself after settling
  return p;
}

void PromiseWorker::Execute() {
  try {
    status_ = work_(message_);
  } catch (const std::bad_alloc&) {
    status_ = QK_STATUS_OUT_OF_MEMORY;
    message_ = "Out of memory while running a native op";
  } catch (const std::exception& e) {
    status_ = QK_STATUS_INTERNAL;
    message_ = std::string("Internal error in a native op: ") + e.what();
  } catch (...) {
    status_ = QK_STATUS_INTERNAL;
    message_ = "Internal error in a native op";
  }
  if (status_ != QK_STATUS_OK) {
    if (message_.empty()) message_ = std::string("Native op failed with ") + status_code(status_);
    SetError(message_);
  }
}

void PromiseWorker::OnOK() {
  refs_.clear();
  deferred_.Resolve(Env().Undefined());
}

void PromiseWorker::OnError(const Napi::Error&) {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  refs_.clear();
  Napi::Error err = Napi::Error::New(env, message_);
  err.Set("code", Napi::String::New(env, status_code(status_)));
  deferred_.Reject(err.Value());
}

}  // namespace qkn
