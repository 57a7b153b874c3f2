// quantkit — module initialisation. Node-API modules are context-aware: this runs once per context
// (main thread, each worker_thread, each jest module registry) and keeps no mutable globals.
#include <napi.h>

#include <thread>

#include "napi/util.h"
#include "qk/dispatch.h"
#include "qk/dtype.h"
#include "qk/threadpool.h"

namespace qkn {
void register_ops(Napi::Env env, Napi::Object exports);
void register_cuda_ops(Napi::Env env, Napi::Object exports);
void register_dense_ops(Napi::Env env, Napi::Object exports);
void register_gptq_ops(Napi::Env env, Napi::Object exports);
void register_gptq_dense_ops(Napi::Env env, Napi::Object exports);
void register_llama_ops(Napi::Env env, Napi::Object exports);
void register_packed_ops(Napi::Env env, Napi::Object exports);
void register_lowbit_pack_ops(Napi::Env env, Napi::Object exports);
Napi::Value cuda_info(Napi::Env env);
}  // namespace qkn

namespace {

#ifndef QK_BUILT_BY
#define QK_BUILT_BY "unknown"
#endif

Napi::Value Capabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("isa", qk::isa_name(qk::active_isa()));
  out.Set("bestIsa", qk::isa_name(qk::best_isa()));
  Napi::Array avail = Napi::Array::New(env);
  uint32_t n = 0;
  for (int i = 0; i < qk::kNumIsas; ++i) {
    if (qk::isa_available(static_cast<qk::Isa>(i))) avail.Set(n++, qk::isa_name(static_cast<qk::Isa>(i)));
  }
  out.Set("isasAvailable", avail);
  Napi::Array compiled = Napi::Array::New(env);
  compiled.Set(0u, "ref");
#ifdef QK_HAVE_X86_VARIANTS
  compiled.Set(1u, "avx2");
  compiled.Set(2u, "avx512");
#endif
  out.Set("isasCompiled", compiled);
  const std::string& warn = qk::forced_isa_warning();
  out.Set("warning", warn.empty() ? env.Null() : Napi::String::New(env, warn));
  out.Set("threads", qk::ThreadPool::global().num_threads());
  out.Set("hardwareConcurrency", static_cast<double>(std::thread::hardware_concurrency()));
  const qk::CpuFeatures& f = qk::cpu_features();
  Napi::Object feat = Napi::Object::New(env);
  feat.Set("avx2", f.avx2);
  feat.Set("fma", f.fma);
  feat.Set("f16c", f.f16c);
  feat.Set("avx512f", f.avx512f);
  feat.Set("avx512bw", f.avx512bw);
  feat.Set("avx512vl", f.avx512vl);
  feat.Set("avx512dq", f.avx512dq);
  feat.Set("avx512vnni", f.avx512vnni);
  feat.Set("avx512bf16", f.avx512bf16);
  feat.Set("avxvnni", f.avxvnni);
  out.Set("cpuFeatures", feat);
  out.Set("builtBy", QK_BUILT_BY);
  out.Set("napiVersion", NAPI_VERSION);
  out.Set("cuda", qkn::cuda_info(env));
  return out;
}

Napi::Value DTypeTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array arr = Napi::Array::New(env, qk::kNumDTypes);
  for (int i = 0; i < qk::kNumDTypes; ++i) {
    const qk::DTypeInfo& d = qk::kDTypeTable[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", static_cast<int>(d.id));
    o.Set("name", d.name);
    o.Set("bits", d.bits);
    o.Set("container", d.container);
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("capabilities", Napi::Function::New(env, Capabilities, "capabilities"));
  exports.Set("dtypeTable", Napi::Function::New(env, DTypeTable, "dtypeTable"));
  qkn::register_ops(env, exports);
  qkn::register_cuda_ops(env, exports);
  qkn::register_dense_ops(env, exports);
  qkn::register_gptq_ops(env, exports);
  qkn::register_gptq_dense_ops(env, exports);
  qkn::register_llama_ops(env, exports);
  qkn::register_packed_ops(env, exports);
  qkn::register_lowbit_pack_ops(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(quantkit, Init)
