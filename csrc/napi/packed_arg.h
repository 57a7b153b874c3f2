// quantkit — the optional `packed` argument of the GEMM entry points (pre-packed weights, qk/packed.h).
#ifndef QK_NAPI_PACKED_ARG_H_
#define QK_NAPI_PACKED_ARG_H_

#include <napi.h>

#include "napi/util.h"
#include "qk/packed.h"

namespace qkn {

// info[i]: undefined / null (-> nullptr) or an ArrayBuffer made by packWeights. It is validated against the kind, K
// and N (bad header or size -> QK_INVALID_ARGUMENT, other K / N -> QK_SHAPE_MISMATCH) before anything is read past
// the header. Returns the payload when the call's ISA (t) reads that layout and the payload is 64-byte aligned;
// otherwise nullptr: the caller runs its unpacked path on the Keras-layout weights it also received. On a
// non-null return, keep->value holds the buffer (pass keep to PromiseWorker::start).
const void* packed_arg(const Napi::CallbackInfo& info, size_t i, qk::PackedKind kind, const qk::KernelTable& t,
                       int64_t K, int64_t N, View* keep);

}  // namespace qkn

#endif  // QK_NAPI_PACKED_ARG_H_
