// quantkit — JS entry points for the Llama float-path kernels (csrc/kernels/*/llama_*; contracts in
// qk/kernels.h, QK_DECLARE_LLAMA_KERNELS). Every argument and length is checked here, with overflow-checked
// products, before any memory is touched; the work then runs in a PromiseWorker on zero-copy views (outputs are
// the caller's arrays). Position arrays are copied at validation time, so a caller mutating them while the
// worker runs cannot move a cache write out of bounds.
//
//   rmsnorm(x: F32 [rows*n], weight: F32 [n], rows, n, eps, y: F32 [rows*n], isa?)
//   rope(x: F32 [rows*heads*headDim], rows, heads, headDim, positions: I32 [rows], theta, isa?)      in place
//   softmaxRows(x: F32 [rows*n], rows, n, isa?)                                                    in place
//   siluMul(gate: F32 [n], up: F32 [n], out: F32 [n], isa?)
//   kvCacheWrite(k: F32 [T*kvHeads*headDim], v: same, T, kvHeads, headDim, positions: I32 [T],
//                kCache: F32 [kvHeads*maxSeq*headDim], vCache: same, maxSeq, isa?)
//   attentionDecode(q: F32 [T*heads*headDim], T, heads, kvHeads, headDim, kCache, vCache, maxSeq, pos0,
//                   out: F32 [T*heads*headDim], isa?)
// All return Promise<void>.
#include <napi.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "napi/util.h"
#include "qk/threadpool.h"

namespace qkn {
namespace {

using qk::KernelTable;
using qk::ThreadPool;

// Element-wise work below this many elements runs on one thread (as csrc/napi/ops.cc).
constexpr int64_t kGrain = 1 << 16;

int64_t row_grain(int64_t per_row) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, per_row)); }

const float* cf(const View& v) { return static_cast<const float*>(v.data); }
float* mf(const View& v) { return static_cast<float*>(v.data); }

// A copy of an Int32Array of `count` positions, each in [0, limit) (limit < 0: no upper bound).
std::shared_ptr<std::vector<int32_t>> positions_arg(Napi::Env env, const View& p, int64_t count, int64_t limit,
                                                    const char* name, const std::string& limit_what) {
  expect_length(env, p, count, name);
  auto out = std::make_shared<std::vector<int32_t>>(static_cast<size_t>(count));
  if (count > 0) std::copy_n(static_cast<const int32_t*>(p.data), count, out->data());
  for (int64_t i = 0; i < count; ++i) {
    const int32_t v = (*out)[static_cast<size_t>(i)];
    if (v < 0 || (limit >= 0 && v >= limit)) {
      const std::string range = limit >= 0 ? "[0, " + std::to_string(limit) + ")" : "non-negative integers";
      throw_invalid(env, std::string("Expected positions in ") + range + limit_what + " for " + name + "[" +
                             std::to_string(i) + "] but received " + std::to_string(v));
    }
  }
  return out;
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View x = typed_array(info, 0, "x", {napi_float32_array});
  View w = typed_array(info, 1, "weight", {napi_float32_array});
  const int64_t rows = dim(info, 2, "rows"), n = dim(info, 3, "n");
  const double eps = number(info, 4, "eps");
  View y = typed_array(info, 5, "y", {napi_float32_array});
  const KernelTable& k = kernels_arg(info, 6);
  if (eps < 0) throw_invalid(env, "Expected a finite number >= 0 for eps but received " + format_number(eps));
  const int64_t total = mul(env, rows, n, "x");
  expect_length(env, x, total, "x");
  expect_length(env, w, n, "weight");
  expect_length(env, y, total, "y");
  auto fn = k.rmsnorm;
  const float* xp = cf(x);
  const float* wp = cf(w);
  float* yp = mf(y);
  const float e = static_cast<float>(eps);
  return PromiseWorker::start(env, [=](std::string&) {
    ThreadPool::global().parallel_for(rows, row_grain(n), [&](int64_t b, int64_t end) {
      fn(xp + b * n, wp, end - b, n, e, yp + b * n);
    });
    return QK_STATUS_OK;
  }, {&x, &w, &y}, static_cast<double>(total));
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View x = typed_array(info, 0, "x", {napi_float32_array});
  const int64_t rows = dim(info, 1, "rows"), heads = dim(info, 2, "heads"), hd = dim(info, 3, "headDim");
  View p = typed_array(info, 4, "positions", {napi_int32_array});
  const double theta = number(info, 5, "theta");
  const KernelTable& k = kernels_arg(info, 6);
  if (hd < 2 || hd % 2 != 0) {
    throw_invalid(env, "Expected an even integer >= 2 for headDim (RoPE rotates pairs) but received " + std::to_string(hd));
  }
  if (!(theta > 0) || !(theta <= 3.4028234663852886e38)) {
    throw_invalid(env, "Expected a positive float32-representable number for theta but received " + format_number(theta));
  }
  const int64_t per_row = mul(env, heads, hd, "x");
  expect_length(env, x, mul(env, rows, per_row, "x"), "x");
  auto pos = positions_arg(env, p, rows, -1, "positions", "");
  auto fn = k.rope;
  float* xp = mf(x);
  const float th = static_cast<float>(theta);
  return PromiseWorker::start(env, [=](std::string&) {
    const int32_t* pp = pos->data();
    // Trig costs about as much per pair as rotating a few heads; count it in the grain.
    ThreadPool::global().parallel_for(rows, row_grain(per_row + 16 * hd), [&](int64_t b, int64_t end) {
      fn(xp + b * per_row, end - b, heads, hd, pp + b, th);
    });
    return QK_STATUS_OK;
  }, {&x}, static_cast<double>(rows) * static_cast<double>(per_row) * 8);
}

Napi::Value SoftmaxRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View x = typed_array(info, 0, "x", {napi_float32_array});
  const int64_t rows = dim(info, 1, "rows"), n = dim(info, 2, "n");
  const KernelTable& k = kernels_arg(info, 3);
  expect_length(env, x, mul(env, rows, n, "x"), "x");
  auto fn = k.softmax_rows;
  float* xp = mf(x);
  return PromiseWorker::start(env, [=](std::string&) {
    ThreadPool::global().parallel_for(rows, row_grain(n), [&](int64_t b, int64_t end) { fn(xp + b * n, end - b, n); });
    return QK_STATUS_OK;
  }, {&x}, static_cast<double>(rows) * static_cast<double>(n) * 4);
}

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View g = typed_array(info, 0, "gate", {napi_float32_array});
  View u = typed_array(info, 1, "up", {napi_float32_array});
  View o = typed_array(info, 2, "out", {napi_float32_array});
  const KernelTable& k = kernels_arg(info, 3);
  const int64_t n = static_cast<int64_t>(g.length);
  expect_length(env, u, n, "up");
  expect_length(env, o, n, "out");
  auto fn = k.silu_mul;
  const float* gp = cf(g);
  const float* up = cf(u);
  float* op = mf(o);
  return PromiseWorker::start(env, [=](std::string&) {
    ThreadPool::global().parallel_for(n, kGrain, [&](int64_t b, int64_t end) { fn(gp + b, up + b, end - b, op + b); });
    return QK_STATUS_OK;
  }, {&g, &u, &o}, static_cast<double>(n) * 8);
}

// Cache geometry shared by kvCacheWrite and attentionDecode: both caches [kvHeads, maxSeq, headDim].
void check_caches(Napi::Env env, const View& kc, const View& vc, int64_t kv_heads, int64_t max_seq, int64_t hd) {
  const int64_t n = mul(env, mul(env, kv_heads, max_seq, "kCache"), hd, "kCache");
  expect_length(env, kc, n, "kCache");
  expect_length(env, vc, n, "vCache");
}

Napi::Value KvCacheWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View kn = typed_array(info, 0, "k", {napi_float32_array});
  View vn = typed_array(info, 1, "v", {napi_float32_array});
  const int64_t T = dim(info, 2, "T"), kv_heads = dim(info, 3, "kvHeads"), hd = dim(info, 4, "headDim");
  View p = typed_array(info, 5, "positions", {napi_int32_array});
  View kc = typed_array(info, 6, "kCache", {napi_float32_array});
  View vc = typed_array(info, 7, "vCache", {napi_float32_array});
  const int64_t max_seq = dim(info, 8, "maxSeq");
  const KernelTable& k = kernels_arg(info, 9);
  if (kv_heads < 1) throw_invalid(env, "Expected a positive integer for kvHeads but received " + std::to_string(kv_heads));
  if (hd < 1) throw_invalid(env, "Expected a positive integer for headDim but received " + std::to_string(hd));
  const int64_t rows = mul(env, mul(env, T, kv_heads, "k"), hd, "k");
  expect_length(env, kn, rows, "k");
  expect_length(env, vn, rows, "v");
  check_caches(env, kc, vc, kv_heads, max_seq, hd);
  auto pos = positions_arg(env, p, T, max_seq, "positions", " (inside the cache of maxSeq rows)");
  auto fn = k.kv_cache_write;
  const float* kp = cf(kn);
  const float* vp = cf(vn);
  float* kcp = mf(kc);
  float* vcp = mf(vc);
  return PromiseWorker::start(env, [=](std::string&) {
    fn(kp, vp, T, kv_heads, hd, pos->data(), max_seq, kcp, vcp);
    return QK_STATUS_OK;
  }, {&kn, &vn, &kc, &vc}, static_cast<double>(rows));
}

Napi::Value AttentionDecode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View q = typed_array(info, 0, "q", {napi_float32_array});
  const int64_t T = dim(info, 1, "T"), heads = dim(info, 2, "heads"), kv_heads = dim(info, 3, "kvHeads");
  const int64_t hd = dim(info, 4, "headDim");
  View kc = typed_array(info, 5, "kCache", {napi_float32_array});
  View vc = typed_array(info, 6, "vCache", {napi_float32_array});
  const int64_t max_seq = dim(info, 7, "maxSeq"), pos0 = dim(info, 8, "pos0");
  View o = typed_array(info, 9, "out", {napi_float32_array});
  const KernelTable& k = kernels_arg(info, 10);
  if (heads < 1) throw_invalid(env, "Expected a positive integer for heads but received " + std::to_string(heads));
  if (kv_heads < 1) throw_invalid(env, "Expected a positive integer for kvHeads but received " + std::to_string(kv_heads));
  if (heads % kv_heads != 0) {
    throw_invalid(env, "Expected kvHeads to divide heads (" + std::to_string(heads) + ") for kvHeads but received " +
                           std::to_string(kv_heads));
  }
  if (hd < 1) throw_invalid(env, "Expected a positive integer for headDim but received " + std::to_string(hd));
  if (pos0 > max_seq || T > max_seq - pos0) {
    throw_invalid(env, "Expected pos0 + T <= maxSeq = " + std::to_string(max_seq) +
                           " (every query position inside the cache) for pos0 but received pos0 = " +
                           std::to_string(pos0) + " with T = " + std::to_string(T));
  }
  const int64_t qn = mul(env, mul(env, T, heads, "q"), hd, "q");
  expect_length(env, q, qn, "q");
  expect_length(env, o, qn, "out");
  check_caches(env, kc, vc, kv_heads, max_seq, hd);
  auto fn = k.attention_decode;
  const float* qp = cf(q);
  const float* kcp = cf(kc);
  const float* vcp = cf(vc);
  float* op = mf(o);
  return PromiseWorker::start(env, [=](std::string& msg) {
    qk_status s = fn(qp, T, heads, kv_heads, hd, kcp, vcp, max_seq, pos0, op, &ThreadPool::global());
    if (s == QK_STATUS_OUT_OF_MEMORY) msg = "Out of memory allocating attention score scratch";
    return s;
  }, {&q, &kc, &vc, &o}, static_cast<double>(qn) * static_cast<double>(pos0 + T) * 2);
}

}  // namespace

void register_llama_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsnorm", Napi::Function::New(env, RmsNorm, "rmsnorm"));
  exports.Set("rope", Napi::Function::New(env, Rope, "rope"));
  exports.Set("softmaxRows", Napi::Function::New(env, SoftmaxRows, "softmaxRows"));
  exports.Set("siluMul", Napi::Function::New(env, SiluMul, "siluMul"));
  exports.Set("kvCacheWrite", Napi::Function::New(env, KvCacheWrite, "kvCacheWrite"));
  exports.Set("attentionDecode", Napi::Function::New(env, AttentionDecode, "attentionDecode"));
}

}  // namespace qkn
