// quantkit — status codes shared by the CPU kernels, the CUDA launchers and the N-API glue.
// Plain C so that cuda/ launchers (C ABI) can return it too. Values are stable: lib/errors.ts maps them.
#ifndef QK_STATUS_H_
#define QK_STATUS_H_

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qk_status {
  QK_STATUS_OK = 0,
  QK_STATUS_INVALID_ARGUMENT = 1,  // a value is outside what the op accepts
  QK_STATUS_SHAPE_MISMATCH = 2,    // shapes/lengths disagree
  QK_STATUS_UNSUPPORTED = 3,       // valid request the build/device cannot serve
  QK_STATUS_OUT_OF_MEMORY = 4,     // an allocation failed
  QK_STATUS_DEVICE = 5,            // CUDA runtime/driver error
  QK_STATUS_INTERNAL = 6           // a bug: should never be seen
} qk_status;

#ifdef __cplusplus
}  // extern "C"
#endif

#ifdef __cplusplus
namespace qk {
using Status = qk_status;
constexpr Status kOk = QK_STATUS_OK;
}  // namespace qk
#endif

#endif  // QK_STATUS_H_
