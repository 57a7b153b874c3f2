// quantkit — scalar reference for Keras pack_int4 / pack_int2 and their inverses (spec §2.4). One loop nest,
// no threads, no SIMD; the SIMD variants must match these bit for bit.
//
// Layout: the unpacked tensor is [outer, len, inner] and is packed along len into [outer, packed_len, inner]
// with packed_len = ceil(len / 2) (int4) or ceil(len / 4) (int2). Packed row k holds unpacked rows 2k, 2k+1
// (int4, low nibble first) or 4k .. 4k+3 (int2, least significant crumb first); rows past len count as 0.
// Only the low 4 / 2 bits of a source byte are kept, so int8 and uint8 sources pack identically. The element
// math lives in qk/quant_math.h.
#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace ref {
namespace {

// Source element (o, l, i) of an [outer, len, inner] byte tensor, or 0 past the end of the axis (padding).
inline uint8_t at_or_zero(const uint8_t* src, int64_t o, int64_t l, int64_t len, int64_t inner, int64_t i) {
  return l < len ? src[(o * len + l) * inner + i] : 0;
}

}  // namespace

void pack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst) {
  const int64_t packed_len = (len + 1) / 2;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < packed_len; ++k) {
      for (int64_t i = 0; i < inner; ++i) {
        dst[(o * packed_len + k) * inner + i] = qk_pack_nibbles(at_or_zero(src, o, 2 * k, len, inner, i),
                                                                at_or_zero(src, o, 2 * k + 1, len, inner, i));
      }
    }
  }
}

void unpack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, bool is_signed, uint8_t* dst) {
  const int64_t packed_len = (len + 1) / 2;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t l = 0; l < len; ++l) {
      for (int64_t i = 0; i < inner; ++i) {
        const uint8_t byte = src[(o * packed_len + l / 2) * inner + i];
        dst[(o * len + l) * inner + i] = qk_unpack_nibble(byte, static_cast<int>(l % 2), is_signed);
      }
    }
  }
}

void pack_int2(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst) {
  const int64_t packed_len = (len + 3) / 4;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < packed_len; ++k) {
      for (int64_t i = 0; i < inner; ++i) {
        dst[(o * packed_len + k) * inner + i] = qk_pack_crumbs(
            at_or_zero(src, o, 4 * k, len, inner, i), at_or_zero(src, o, 4 * k + 1, len, inner, i),
            at_or_zero(src, o, 4 * k + 2, len, inner, i), at_or_zero(src, o, 4 * k + 3, len, inner, i));
      }
    }
  }
}

void unpack_int2(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, bool is_signed, uint8_t* dst) {
  const int64_t packed_len = (len + 3) / 4;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t l = 0; l < len; ++l) {
      for (int64_t i = 0; i < inner; ++i) {
        const uint8_t byte = src[(o * packed_len + l / 4) * inner + i];
        dst[(o * len + l) * inner + i] = qk_unpack_crumb(byte, static_cast<int>(l % 4), is_signed);
      }
    }
  }
}

}  // namespace ref
}  // namespace qk
