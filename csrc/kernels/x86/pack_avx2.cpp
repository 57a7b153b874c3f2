// quantkit — AVX2 pack_int4 / unpack_int4 / pack_int2 / unpack_int2; bit-exact with qk::ref (pack_ref.cpp).
//
// Layout: unpacked [outer, len, inner] <-> packed [outer, ceil(len / 2 or 4), inner] (see kernels.h and
// pack_ref.cpp). Two loop shapes:
//   * inner == 1: packing pairs (quads) of neighbouring bytes of a contiguous row. When len is a multiple of 2
//     (4), consecutive rows are back to back in both tensors, so all outer rows form one contiguous run and are
//     processed as a single stream (short rows cost nothing extra). Otherwise each row is a run plus one
//     partially filled byte, done with the scalar helper (its missing elements are the zero padding).
//       pack_int4:   bytes & 0x0F, then vpmaddubsw with weights (1, 16) gives lo + 16*hi per 16-bit lane,
//                    narrowed back to bytes with vpackuswb (values <= 255, no saturation).
//       pack_int2:   bytes & 0x03, vpmaddubsw with (1, 4) then vpmaddwd with (1, 16) gives e0 + 4e1 + 16e2 + 64e3
//                    per 32-bit lane; a byte shuffle + dword permute gathers the low bytes.
//       unpack_int4: zero-extend bytes to 16 bits (b), (b | b << 4) & 0x0F0F puts the low nibble in the low
//                    byte and the high nibble in the high byte, i.e. the two outputs in memory order.
//       unpack_int2: zero-extend bytes to 32 bits (b), (b | b << 6 | b << 12 | b << 18) & 0x03030303 puts
//                    crumb j in byte j.
//     Sign extension of a nibble/crumb v held in a byte: (v ^ 8) - 8 / (v ^ 2) - 2 with byte arithmetic.
//   * inner > 1: the rows 2k, 2k+1 (4k .. 4k+3) of a slice are contiguous runs of `inner` bytes, combined
//     vertically 32 columns at a time with shifts and masks (16-bit shifts followed by a byte mask, so bits
//     shifted across byte boundaries are discarded). Rows past len are treated as zeros.
// Tails shorter than a vector (AVX2 has no byte-masked loads or stores) use the scalar helpers of
// quant_math.h, so nothing is read or written out of bounds.
#include <immintrin.h>

#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace avx2 {
namespace {

constexpr int64_t kB = 32;  // bytes per __m256i

inline __m256i loadu(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline void storeu(uint8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
inline __m256i bcast8(int v) { return _mm256_set1_epi8(static_cast<char>(v)); }

// (v ^ m) - m per byte: sign-extends a field whose sign bit is m (8 for int4, 2 for int2) into the byte.
inline __m256i sign_extend(__m256i v, int m) { return _mm256_sub_epi8(_mm256_xor_si256(v, bcast8(m)), bcast8(m)); }

// ---- inner == 1: contiguous runs ----------------------------------------------------------------------------

// dst[k] = pack(src[2k], src[2k+1]) for k < npairs.
void pack4_run(const uint8_t* src, int64_t npairs, uint8_t* dst) {
  const __m256i w = _mm256_set1_epi16(0x1001);  // byte weights 1 (even byte), 16 (odd byte)
  int64_t k = 0;
  for (; k + kB <= npairs; k += kB) {  // 64 source bytes -> 32 packed bytes
    const __m256i a = _mm256_maddubs_epi16(_mm256_and_si256(loadu(src + 2 * k), bcast8(0x0F)), w);
    const __m256i b = _mm256_maddubs_epi16(_mm256_and_si256(loadu(src + 2 * k + kB), bcast8(0x0F)), w);
    storeu(dst + k, _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  for (; k < npairs; ++k) dst[k] = qk_pack_nibbles(src[2 * k], src[2 * k + 1]);
}

// dst[2k], dst[2k+1] = nibbles of src[k] for k < nbytes.
void unpack4_run(const uint8_t* src, int64_t nbytes, bool is_signed, uint8_t* dst) {
  int64_t k = 0;
  for (; k + 16 <= nbytes; k += 16) {  // 16 packed bytes -> 32 values
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k)));
    __m256i v = _mm256_and_si256(_mm256_or_si256(b, _mm256_slli_epi16(b, 4)), _mm256_set1_epi16(0x0F0F));
    if (is_signed) v = sign_extend(v, 8);
    storeu(dst + 2 * k, v);
  }
  for (; k < nbytes; ++k) {
    dst[2 * k] = qk_unpack_nibble(src[k], 0, is_signed);
    dst[2 * k + 1] = qk_unpack_nibble(src[k], 1, is_signed);
  }
}

// dst[k] = pack(src[4k .. 4k+3]) for k < nquads.
void pack2_run(const uint8_t* src, int64_t nquads, uint8_t* dst) {
  const __m256i w2 = _mm256_set1_epi16(0x0401);      // e0 + 4 e1 per 16-bit lane
  const __m256i w4 = _mm256_set1_epi32(0x00100001);  // lo16 + 16 hi16 per 32-bit lane
  // Low byte of each dword -> bytes 0..3 of each 128-bit lane, then dwords 0 and 4 -> the low 8 bytes.
  const __m256i gather = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  int64_t k = 0;
  for (; k + kB / 4 <= nquads; k += kB / 4) {  // 32 source bytes -> 8 packed bytes
    const __m256i v = _mm256_and_si256(loadu(src + 4 * k), bcast8(0x03));
    const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(v, w2), w4);
    const __m256i g = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(d, gather), _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + k), _mm256_castsi256_si128(g));
  }
  for (; k < nquads; ++k) dst[k] = qk_pack_crumbs(src[4 * k], src[4 * k + 1], src[4 * k + 2], src[4 * k + 3]);
}

// dst[4k + j] = crumb j of src[k] for k < nbytes.
void unpack2_run(const uint8_t* src, int64_t nbytes, bool is_signed, uint8_t* dst) {
  int64_t k = 0;
  for (; k + 8 <= nbytes; k += 8) {  // 8 packed bytes -> 32 values
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + k)));
    __m256i v = _mm256_or_si256(_mm256_or_si256(b, _mm256_slli_epi32(b, 6)),
                                _mm256_or_si256(_mm256_slli_epi32(b, 12), _mm256_slli_epi32(b, 18)));
    v = _mm256_and_si256(v, _mm256_set1_epi32(0x03030303));
    if (is_signed) v = sign_extend(v, 2);
    storeu(dst + 4 * k, v);
  }
  for (; k < nbytes; ++k) {
    for (int j = 0; j < 4; ++j) dst[4 * k + j] = qk_unpack_crumb(src[k], j, is_signed);
  }
}

// ---- inner > 1: rows of a slice combined vertically ---------------------------------------------------------

// dst[i] = pack(a[i], b[i]) for i < n; b == nullptr means a zero row.
void pack4_rows(const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* dst) {
  int64_t i = 0;
  for (; i + kB <= n; i += kB) {
    __m256i r = _mm256_and_si256(loadu(a + i), bcast8(0x0F));
    if (b != nullptr) r = _mm256_or_si256(r, _mm256_and_si256(_mm256_slli_epi16(loadu(b + i), 4), bcast8(0xF0)));
    storeu(dst + i, r);
  }
  for (; i < n; ++i) dst[i] = qk_pack_nibbles(a[i], b != nullptr ? b[i] : 0);
}

// Unpacks packed row `src` into rows lo (low nibbles) and hi (high nibbles; nullptr: not stored).
void unpack4_rows(const uint8_t* src, int64_t n, bool is_signed, uint8_t* lo, uint8_t* hi) {
  int64_t i = 0;
  for (; i + kB <= n; i += kB) {
    const __m256i b = loadu(src + i);
    __m256i l = _mm256_and_si256(b, bcast8(0x0F));
    __m256i h = _mm256_and_si256(_mm256_srli_epi16(b, 4), bcast8(0x0F));
    if (is_signed) {
      l = sign_extend(l, 8);
      h = sign_extend(h, 8);
    }
    storeu(lo + i, l);
    if (hi != nullptr) storeu(hi + i, h);
  }
  for (; i < n; ++i) {
    lo[i] = qk_unpack_nibble(src[i], 0, is_signed);
    if (hi != nullptr) hi[i] = qk_unpack_nibble(src[i], 1, is_signed);
  }
}

// dst[i] = pack(r[0][i], .., r[3][i]) for i < n; r[j] == nullptr means a zero row.
void pack2_rows(const uint8_t* const r[4], int64_t n, uint8_t* dst) {
  int64_t i = 0;
  for (; i + kB <= n; i += kB) {
    __m256i acc = _mm256_and_si256(loadu(r[0] + i), bcast8(0x03));
    for (int j = 1; j < 4; ++j) {
      if (r[j] == nullptr) break;  // rows past len are always a suffix
      const __m256i s = _mm256_slli_epi16(loadu(r[j] + i), 2 * j);
      acc = _mm256_or_si256(acc, _mm256_and_si256(s, bcast8(0x03 << (2 * j))));
    }
    storeu(dst + i, acc);
  }
  for (; i < n; ++i) {
    dst[i] = qk_pack_crumbs(r[0][i], r[1] != nullptr ? r[1][i] : 0, r[2] != nullptr ? r[2][i] : 0,
                            r[3] != nullptr ? r[3][i] : 0);
  }
}

// Unpacks packed row `src` into rows out[j] = crumb j (out[j] == nullptr: not stored).
void unpack2_rows(const uint8_t* src, int64_t n, bool is_signed, uint8_t* const out[4]) {
  int64_t i = 0;
  for (; i + kB <= n; i += kB) {
    const __m256i b = loadu(src + i);
    for (int j = 0; j < 4; ++j) {
      if (out[j] == nullptr) break;
      __m256i v = _mm256_and_si256(_mm256_srli_epi16(b, 2 * j), bcast8(0x03));
      if (is_signed) v = sign_extend(v, 2);
      storeu(out[j] + i, v);
    }
  }
  for (; i < n; ++i) {
    for (int j = 0; j < 4 && out[j] != nullptr; ++j) out[j][i] = qk_unpack_crumb(src[i], j, is_signed);
  }
}

}  // namespace

void pack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst) {
  if (outer <= 0 || len <= 0 || inner <= 0) return;
  const int64_t plen = (len + 1) / 2;
  if (inner == 1) {
    if (len % 2 == 0) {
      pack4_run(src, outer * plen, dst);
    } else {
      for (int64_t o = 0; o < outer; ++o) {
        const uint8_t* s = src + o * len;
        pack4_run(s, len / 2, dst + o * plen);
        dst[o * plen + plen - 1] = qk_pack_nibbles(s[len - 1], 0);
      }
    }
    return;
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < plen; ++k) {
      const uint8_t* a = src + (o * len + 2 * k) * inner;
      pack4_rows(a, 2 * k + 1 < len ? a + inner : nullptr, inner, dst + (o * plen + k) * inner);
    }
  }
}

void unpack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, bool is_signed, uint8_t* dst) {
  if (outer <= 0 || len <= 0 || inner <= 0) return;
  const int64_t plen = (len + 1) / 2;
  if (inner == 1) {
    if (len % 2 == 0) {
      unpack4_run(src, outer * plen, is_signed, dst);
    } else {
      for (int64_t o = 0; o < outer; ++o) {
        uint8_t* d = dst + o * len;
        unpack4_run(src + o * plen, len / 2, is_signed, d);
        d[len - 1] = qk_unpack_nibble(src[o * plen + plen - 1], 0, is_signed);
      }
    }
    return;
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < plen; ++k) {
      uint8_t* lo = dst + (o * len + 2 * k) * inner;
      unpack4_rows(src + (o * plen + k) * inner, inner, is_signed, lo, 2 * k + 1 < len ? lo + inner : nullptr);
    }
  }
}

void pack_int2(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst) {
  if (outer <= 0 || len <= 0 || inner <= 0) return;
  const int64_t plen = (len + 3) / 4;
  if (inner == 1) {
    if (len % 4 == 0) {
      pack2_run(src, outer * plen, dst);
    } else {
      const int64_t full = len / 4, rest = len % 4;
      for (int64_t o = 0; o < outer; ++o) {
        const uint8_t* s = src + o * len + 4 * full;
        pack2_run(src + o * len, full, dst + o * plen);
        dst[o * plen + full] = qk_pack_crumbs(s[0], rest > 1 ? s[1] : 0, rest > 2 ? s[2] : 0, 0);
      }
    }
    return;
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < plen; ++k) {
      const uint8_t* r[4];
      for (int j = 0; j < 4; ++j) r[j] = 4 * k + j < len ? src + (o * len + 4 * k + j) * inner : nullptr;
      pack2_rows(r, inner, dst + (o * plen + k) * inner);
    }
  }
}

void unpack_int2(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, bool is_signed, uint8_t* dst) {
  if (outer <= 0 || len <= 0 || inner <= 0) return;
  const int64_t plen = (len + 3) / 4;
  if (inner == 1) {
    if (len % 4 == 0) {
      unpack2_run(src, outer * plen, is_signed, dst);
    } else {
      const int64_t full = len / 4, rest = len % 4;
      for (int64_t o = 0; o < outer; ++o) {
        uint8_t* d = dst + o * len;
        unpack2_run(src + o * plen, full, is_signed, d);
        for (int64_t j = 0; j < rest; ++j) d[4 * full + j] = qk_unpack_crumb(src[o * plen + full], static_cast<int>(j), is_signed);
      }
    }
    return;
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < plen; ++k) {
      uint8_t* out[4];
      for (int j = 0; j < 4; ++j) out[j] = 4 * k + j < len ? dst + (o * len + 4 * k + j) * inner : nullptr;
      unpack2_rows(src + (o * plen + k) * inner, inner, is_signed, out);
    }
  }
}

}  // namespace avx2
}  // namespace qk
