// quantkit — fused W8A8 / W4A8 Dense forward, AVX2 (qk::avx2). Bit-exact with ref/dense_int8_ref.cpp.
//
// Same three phases as dense_int8_avx512.cpp (see dense_int8_common.h):
//   1. Prologue: qk::avx2::absmax_quantize on the axis view [rows, K, 1] (bit-exact with the reference by that
//      kernel's contract) gives qx [M, K] and sx [M]; rows are split over the pool. (The AVX2 engine multiplies
//      signed int16 pairs, so no compensation term is needed.)
//   2. The AVX2 GEMM engine of igemm_avx2_kernels.h on qx and the weights. int4 weights go through
//      Int4Source below: 8 packed bytes become the 16 int8 columns of one panel row in registers while the
//      B block is packed, so the int4 kernel is never expanded as a whole. The int32 accumulators live in y
//      (reinterpreted; only touched through vector intrinsics, whose types may alias anything).
//   3. Epilogue after each item's last K block: d = w_scale[j] * sx_i; v = cvt(acc) / d; y = v + bias[j];
//      NaN -> canonical NaN. vcvtdq2ps rounds by MXCSR like the scalar conversion and vmulps / vdivps /
//      vaddps are the reference's IEEE operations (built with -ffp-contract=off, nothing fused), so the
//      outputs are bit-identical.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "dense_int8_common.h"
#include "igemm_avx2_kernels.h"
#include "qk/kernels.h"
#include "qk/quant_math.h"
#include "qk/threadpool.h"

namespace qk {
namespace avx2 {
namespace {

// B source for Keras int4 Dense storage w4 [K, ldw = (N+1)/2]: element (k, j) is the signed nibble j % 2
// (0 = low) of byte k * ldw + j / 2. Item column offsets are multiples of kNR = 16, so a panel of 16 columns
// starts on a byte boundary and spans 8 bytes.
struct Int4Source {
  const uint8_t* w4;
  int64_t ldw;
  const int8_t* row(int64_t k, int64_t j) const { return reinterpret_cast<const int8_t*>(w4 + k * ldw + j / 2); }
  int64_t ld() const { return ldw; }
  static int64_t bytes(int64_t ncols) { return (ncols + 1) / 2; }
  // Columns [16p, 16p + 16) of the row at r as 16 int8 values; columns at or past n (n in [1, 16]) are 0, and
  // only the ceil(n / 2) bytes holding columns below n are read.
  static __m128i load(const int8_t* r, int64_t p, int64_t n) {
    const int8_t* s = r + p * (kNR / 2);
    __m128i packed;
    if (n >= 16) {
      packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s));
    } else {
      alignas(16) int8_t tmp[16] = {};
      std::memcpy(tmp, s, static_cast<std::size_t>((n + 1) / 2));
      packed = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
    }
    // Word t = packed byte t; rebuild it as (low nibble, high nibble) = bytes (2t, 2t+1), i.e. columns in
    // natural order, each an unsigned nibble u; then sign-extend: (u ^ 8) - 8 (qk_sign_extend4).
    const __m128i w = _mm_cvtepu8_epi16(packed);
    const __m128i nib = _mm_or_si128(_mm_and_si128(w, _mm_set1_epi16(0x000F)),
                                     _mm_and_si128(_mm_slli_epi16(w, 4), _mm_set1_epi16(0x0F00)));
    const __m128i eight = _mm_set1_epi8(8);
    __m128i v = _mm_sub_epi8(_mm_xor_si128(nib, eight), eight);
    if (n < 16) {  // an odd n leaves the high nibble of the last byte (padding) in column n: clear it
      const __m128i iota = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      v = _mm_and_si128(v, _mm_cmpgt_epi8(_mm_set1_epi8(static_cast<char>(n)), iota));
    }
    return v;
  }
};

// In place over one row segment of n outputs: y = (float)acc / (ws * sx) + b (b may be null), where acc is
// the int32 accumulator stored in y's bytes; NaN results become the canonical NaN. The tail uses vmaskmov
// (no access past n).
void descale_row(float* yr, const float* ws, const float* b, float sx, int64_t n) {
  const __m256 sv = _mm256_set1_ps(sx);
  const __m256 nan = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(kQkCanonicalNanBits)));
  const auto step = [&](__m256i acc, __m256 w, __m256 bb) {
    __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(w, sv));
    if (b != nullptr) v = _mm256_add_ps(v, bb);
    return _mm256_blendv_ps(v, nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yr + j));
    const __m256 bb = b != nullptr ? _mm256_loadu_ps(b + j) : _mm256_setzero_ps();
    _mm256_storeu_ps(yr + j, step(acc, _mm256_loadu_ps(ws + j), bb));
  }
  if (j < n) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - j)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i acc = _mm256_maskload_epi32(reinterpret_cast<const int*>(yr + j), m);
    // Masked-off lanes hold 0 / 0 = NaN; they are never stored.
    const __m256 bb = b != nullptr ? _mm256_maskload_ps(b + j, m) : _mm256_setzero_ps();
    _mm256_maskstore_ps(yr + j, m, step(acc, _mm256_maskload_ps(ws + j, m), bb));
  }
}

template <class Src>
Status dense_a8(int64_t M, int64_t N, int64_t K, const float* x, const Src& src, const float* w_scale,
                const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return kOk;
  dense_int8_common::ActScratch act(M, K);
  if (!act.ok()) return QK_STATUS_OUT_OF_MEMORY;
  int8_t* qx = act.qx();
  float* sx = act.sx();

  const auto epilogue = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    for (int64_t i = i0; i < i1; ++i)
      descale_row(y + i * N + j0, w_scale + j0, bias != nullptr ? bias + j0 : nullptr, sx[i], j1 - j0);
  };
  if (K <= 0) {  // empty rows: amax = 0, acc = 0 (int32 0 has the bits of +0.0f)
    for (int64_t i = 0; i < M; ++i) sx[i] = qk_absmax_scale(0.0f, act_hi, act_eps);
    std::memset(y, 0, static_cast<std::size_t>(M * N) * sizeof(float));
    epilogue(0, M, 0, N);
    return kOk;
  }

  dense_int8_common::for_rows(pool, M, K, [&](int64_t b, int64_t e) {
    absmax_quantize(x + b * K, e - b, K, 1, act_lo, act_hi, act_eps, qx + b * K, sx + b);
  });
  return igemm_driver(M, N, K, qx, K, src, reinterpret_cast<int32_t*>(y), N, pool, epilogue);
}

}  // namespace

Status dense_w8a8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,
                  const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool) {
  return dense_a8(M, N, K, x, Int8Source{w, N}, w_scale, bias, act_lo, act_hi, act_eps, y, pool);
}

Status dense_w4a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,
                  const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool) {
  return dense_a8(M, N, K, x, Int4Source{w4, (N + 1) / 2}, w_scale, bias, act_lo, act_hi, act_eps, y, pool);
}

}  // namespace avx2
}  // namespace qk
