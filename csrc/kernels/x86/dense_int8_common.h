// quantkit — ISA-independent helpers of the fused W8A8 / W4A8 Dense kernels (private to dense_int8_avx2.cpp and
// dense_int8_avx512.cpp; anonymous namespace, so every ISA unit gets its own copy compiled with its flags).
//
// Both ISA variants run the same three phases (see those files):
//   1. prologue: per-row abs-max quantization of x into an int8 copy qx [M, K] (+ the row scales sx [M] and,
//      for VNNI, the row compensation), rows split over the pool;
//   2. the blocked int8 GEMM of igemm_<isa>_kernels.h on qx and the weights (read from their Keras layout by a
//      B "source" that unpacks int4 while packing), with int32 accumulators stored in y itself (y has the
//      M x N x 4 bytes an int32 C needs, so no separate accumulator buffer);
//   3. epilogue per finished item: y[i, j] = (float)acc / (w_scale[j] * sx_i) + bias[j], in place.
#ifndef QK_KERNELS_X86_DENSE_INT8_COMMON_H_
#define QK_KERNELS_X86_DENSE_INT8_COMMON_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "igemm_common.h"
#include "qk/threadpool.h"

namespace qk {
namespace dense_int8_common {
namespace {

// One allocation holding the activation side: qx [M, K] int8 (row stride K), sx [M] float32, comp [M] int32.
// ok() is false if the allocation failed.
class ActScratch {
 public:
  ActScratch(int64_t M, int64_t K)
      : q_bytes_(static_cast<std::size_t>(igemm_common::round_up(M * K, 64))),
        v_bytes_(static_cast<std::size_t>(igemm_common::round_up(M * 4, 64))),
        buf_(q_bytes_ + 2 * v_bytes_) {}
  bool ok() const { return buf_.data() != nullptr; }
  int8_t* qx() const { return reinterpret_cast<int8_t*>(buf_.data()); }
  float* sx() const { return reinterpret_cast<float*>(buf_.data() + q_bytes_); }
  int32_t* comp() const { return reinterpret_cast<int32_t*>(buf_.data() + q_bytes_ + v_bytes_); }

 private:
  std::size_t q_bytes_, v_bytes_;
  igemm_common::Scratch buf_;
};

// Runs fn(begin, end) over the rows [0, M), split over the pool when the prologue is big enough to pay for a
// parallel region (each chunk >= ~32K elements).
template <class Fn>
void for_rows(ThreadPool* pool, int64_t M, int64_t K, const Fn& fn) {
  const int64_t work = M * std::max<int64_t>(K, 1);
  if (pool == nullptr || pool->num_threads() <= 1 || M < 2 || work < (int64_t{1} << 16)) {
    fn(int64_t{0}, M);
    return;
  }
  pool->parallel_for(M, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(K, 1)), fn);
}

}  // namespace
}  // namespace dense_int8_common
}  // namespace qk

#endif  // QK_KERNELS_X86_DENSE_INT8_COMMON_H_
