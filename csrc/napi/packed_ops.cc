// quantkit — JS entry points for pre-packed weights (qk/packed.h) and the argument check the GEMM entry points
// share (napi/packed_arg.h).
//
//   packWeightsBytes(kind: 'f32' | 'w8a8', K, N, isa?) -> number   bytes of the ArrayBuffer packWeights fills,
//       0 when the ISA (default: the active one) has no packed layout for the kind (then nothing is packed)
//   packWeights(kind, K, N, w: F32 | I8 [K, N], dst: ArrayBuffer, isa?) -> Promise<void>   payload, then header
#include <napi.h>

#include <cstring>
#include <string>

#include "napi/packed_arg.h"
#include "napi/util.h"
#include "qk/packed.h"
#include "qk/threadpool.h"

namespace qkn {

namespace {

qk::PackedKind kind_arg(const Napi::CallbackInfo& info, size_t i) {
  const std::string s = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : std::string();
  if (s == "f32") return qk::PackedKind::kF32;
  if (s == "w8a8") return qk::PackedKind::kW8A8;
  throw_invalid(info.Env(), "Expected 'f32' or 'w8a8' for kind but received " +
                                (info[i].IsString() ? "'" + s + "'" : std::string("a non-string")));
}

// Payload bytes for (kind, K, N) on the table's ISA, or 0 when it has no layout (*layout unset then).
int64_t payload_for(const Napi::CallbackInfo& info, qk::PackedKind kind, int64_t K, int64_t N, const qk::KernelTable& t,
                    qk::PackedLayout* layout) {
  if (!qk::packed_layout_for(kind, t.isa, layout)) return 0;
  const int64_t bytes = qk::packed_payload_bytes(*layout, K, N);
  if (bytes < 0 || bytes > (int64_t{1} << 52)) {
    throw_invalid(info.Env(), "Expected packed weights of at most 2^52 bytes for K x N but received K = " + std::to_string(K) +
                                  ", N = " + std::to_string(N));
  }
  return bytes;
}

Napi::Value PackWeightsBytes(const Napi::CallbackInfo& info) {
  const qk::PackedKind kind = kind_arg(info, 0);
  const int64_t K = dim(info, 1, "K"), N = dim(info, 2, "N");
  const qk::KernelTable& t = kernels_arg(info, 3);
  qk::PackedLayout layout;
  if (!qk::packed_layout_for(kind, t.isa, &layout)) return Napi::Number::New(info.Env(), 0.0);
  const int64_t bytes = payload_for(info, kind, K, N, t, &layout);
  return Napi::Number::New(info.Env(), static_cast<double>(bytes + qk::kPackedOverhead));
}

Napi::Value PackWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const qk::PackedKind kind = kind_arg(info, 0);
  const int64_t K = dim(info, 1, "K"), N = dim(info, 2, "N");
  View w = typed_array(info, 3, "w", {kind == qk::PackedKind::kF32 ? napi_float32_array : napi_int8_array});
  expect_length(env, w, mul(env, K, N, "w"), "w");
  if (!info[4].IsArrayBuffer()) throw_invalid(env, "Expected an ArrayBuffer (of packWeightsBytes bytes) for dst");
  Napi::ArrayBuffer dst = info[4].As<Napi::ArrayBuffer>();
  const qk::KernelTable& t = kernels_arg(info, 5);
  qk::PackedLayout layout;
  const int64_t payload = payload_for(info, kind, K, N, t, &layout);
  if (!qk::packed_layout_for(kind, t.isa, &layout)) {
    throw_error(env, "QK_UNSUPPORTED", std::string("The ISA '") + qk::isa_name(t.isa) +
                                           "' has no packed weight layout (packWeightsBytes returns 0 for it)");
  }
  const int64_t need = payload + qk::kPackedOverhead;
  if (dst.Data() == nullptr || static_cast<int64_t>(dst.ByteLength()) != need) {
    throw_shape(env, "Expected an ArrayBuffer of " + std::to_string(need) + " bytes for dst but received " +
                         std::to_string(dst.ByteLength()) + " bytes");
  }
  unsigned char* base = static_cast<unsigned char*>(dst.Data());
  const qk::PackedHeader h = qk::packed_make_header(kind, layout, K, N, base);
  View keep_dst;
  keep_dst.value = dst;
  const void* wp = w.data;
  return PromiseWorker::start(env, [=](std::string&) {
#ifdef QK_HAVE_X86_VARIANTS
    qk::ThreadPool* pool = &qk::ThreadPool::global();
    if (kind == qk::PackedKind::kF32) {
      qk::avx512::pack_f32_weights(K, N, static_cast<const float*>(wp), reinterpret_cast<float*>(base + h.data_offset), pool);
    } else {
      qk::avx512::pack_w8a8_weights(K, N, static_cast<const int8_t*>(wp), base + h.data_offset, pool);
    }
    std::memcpy(base, &h, sizeof h);  // last: a buffer is valid only once its payload is complete
    return QK_STATUS_OK;
#else
    (void)wp;
    (void)base;
    return QK_STATUS_UNSUPPORTED;
#endif
  }, {&w, &keep_dst}, static_cast<double>(K) * static_cast<double>(N));
}

}  // namespace

const void* packed_arg(const Napi::CallbackInfo& info, size_t i, qk::PackedKind kind, const qk::KernelTable& t,
                       int64_t K, int64_t N, View* keep) {
  Napi::Value v = info[i];
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  Napi::Env env = info.Env();
  if (!v.IsArrayBuffer()) throw_invalid(env, "Expected an ArrayBuffer from packWeights (or null) for packed");
  Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
  const void* payload = nullptr;
  std::string message;
  switch (qk::packed_check(ab.Data(), ab.ByteLength(), kind, t.isa, K, N, &payload, &message)) {
    case qk::PackedUse::kUse:
      keep->value = ab;
      return payload;
    case qk::PackedUse::kFallBack:
      return nullptr;
    case qk::PackedUse::kMismatch:
      throw_shape(env, message);
    case qk::PackedUse::kBadBuffer:
      break;
  }
  throw_invalid(env, message);
}

void register_packed_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("packWeightsBytes", Napi::Function::New(env, PackWeightsBytes, "packWeightsBytes"));
  exports.Set("packWeights", Napi::Function::New(env, PackWeights, "packWeights"));
}

}  // namespace qkn
