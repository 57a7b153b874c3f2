// quantkit — N-API helpers: argument checking, typed errors, and the Promise-returning worker.
// Everything here turns JS values into plain C++ values and re-checks every size that could corrupt memory.
#ifndef QK_NAPI_UTIL_H_
#define QK_NAPI_UTIL_H_

#include <napi.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "qk/dispatch.h"
#include "qk/status.h"

namespace qkn {

// Stable error codes (lib/errors.ts maps them to QkError subclasses).
const char* status_code(qk_status s);

// Throws a JS Error (as a C++ Napi::Error) with `code` set.
[[noreturn]] void throw_error(Napi::Env env, const char* code, const std::string& message);
[[noreturn]] inline void throw_invalid(Napi::Env env, const std::string& message) {
  throw_error(env, "QK_INVALID_ARGUMENT", message);
}
[[noreturn]] inline void throw_shape(Napi::Env env, const std::string& message) {
  throw_error(env, "QK_SHAPE_MISMATCH", message);
}

// A zero-copy view of a TypedArray argument.
struct View {
  void* data = nullptr;
  size_t length = 0;      // elements
  size_t byte_length = 0;
  napi_typedarray_type type = napi_uint8_array;
  Napi::Value value;      // the JS object, to keep alive while a worker runs
};

// A number as JavaScript would print it (NaN, Infinity, 17 significant digits).
std::string format_number(double d);
const char* typed_array_name(napi_typedarray_type t);
// Requires info[i] to be a TypedArray of one of `allowed` types; the message names `name`.
View typed_array(const Napi::CallbackInfo& info, size_t i, const char* name,
                 std::initializer_list<napi_typedarray_type> allowed);
// A non-negative integer no larger than 2^53 - 1.
int64_t dim(const Napi::CallbackInfo& info, size_t i, const char* name);
// A finite number.
double number(const Napi::CallbackInfo& info, size_t i, const char* name);
bool boolean(const Napi::CallbackInfo& info, size_t i, const char* name);
// a * b, throwing QK_INVALID_ARGUMENT naming `what` on int64 overflow.
int64_t mul(Napi::Env env, int64_t a, int64_t b, const char* what);
// Requires view.length == expected, else QK_SHAPE_MISMATCH naming `name`.
void expect_length(Napi::Env env, const View& v, int64_t expected, const char* name);
// Outputs must not share memory with inputs (the kernels read inputs while writing outputs): else
// QK_INVALID_ARGUMENT naming both. Empty views never overlap.
void expect_disjoint(Napi::Env env, const View& out, const char* out_name, const View& in, const char* in_name);
// The kernel table for the optional ISA argument at info[i] (undefined, -1 or a name -> the active table).
const qk::KernelTable& kernels_arg(const Napi::CallbackInfo& info, size_t i);

// Runs `work` on the libuv thread pool and settles a Promise. Arguments passed to keep() stay referenced
// (so their buffers cannot be collected) until the Promise settles. `work` returns a Status and may fill
// `message`; C++ exceptions thrown by it are turned into QK_OUT_OF_MEMORY / QK_INTERNAL.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<qk_status(std::string& message)>;
  PromiseWorker(Napi::Env env, Work work);
  void keep(const View& v);
  void keep(const Napi::Value& v);
  Napi::Promise promise() const { return deferred_.Promise(); }
  // Queue and return the promise. `cost` estimates the work (multiply-adds or bytes touched); tiny ops
  // (0 <= cost <= inline_cost_limit()) run inline on the calling thread, single-threaded, and return an already
  // settled promise: a thread hand-off costs more than they do. QK_INLINE_OPS=0 disables this.
  static Napi::Value start(Napi::Env env, Work work, std::initializer_list<const View*> keep_alive, double cost = -1);
  static double inline_cost_limit();

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  Work work_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  qk_status status_ = QK_STATUS_OK;
  std::string message_;
};

}  // namespace qkn

#endif  // QK_NAPI_UTIL_H_
