// quantkit — AVX-512 pack_int4 / unpack_int4 / pack_int2 / unpack_int2; bit-exact with qk::ref (pack_ref.cpp).
//
// Same algorithms as pack_avx2.cpp (read its header comment), with 64-byte vectors. AVX-512BW has byte-masked
// loads and stores, which changes two things:
//   * every partial vector is a masked load (masked-off bytes read as 0, which is exactly Keras' zero
//     padding) and a masked store, so there are no scalar tails;
//   * for inner == 1 an odd-length row (int4) or a row whose length is not a multiple of 4 (int2) is just a
//     run whose last packed byte is partially filled: the masked load supplies the zeros. Rows are still fused
//     into one run when len is a multiple of 2 (4), so that short rows cost nothing extra.
// Narrowing 16- or 32-bit lanes to bytes uses vpackuswb/vpackusdw (in-lane) followed by one cross-lane
// permute for full vectors, and vpmovwb/vpmovdb with a masked store for the partial last vector.
#include "avx512_intrin.h"

#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace avx512 {
namespace {

constexpr int64_t kB = 64;  // bytes per __m512i

inline __m512i bcast8(int v) { return _mm512_set1_epi8(static_cast<char>(v)); }

// Byte lanes [0, n) set; n may exceed 64 (all set) or be <= 0 (none).
inline __mmask64 bytes_below(int64_t n) {
  return _cvtu64_mask64(n >= 64 ? ~uint64_t{0} : n <= 0 ? uint64_t{0} : (uint64_t{1} << n) - 1);
}
inline __mmask32 bytes_below32(int64_t n) {
  return _cvtu32_mask32(n >= 32 ? ~uint32_t{0} : n <= 0 ? uint32_t{0} : (uint32_t{1} << n) - 1);
}
inline __mmask16 bytes_below16(int64_t n) {
  return _cvtu32_mask16(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u);
}

// (v ^ m) - m per byte: sign-extends a field whose sign bit is m (8 for int4, 2 for int2) into the byte.
inline __m512i sign_extend(__m512i v, int m) { return _mm512_sub_epi8(_mm512_xor_si512(v, bcast8(m)), bcast8(m)); }

// ---- inner == 1: contiguous runs ----------------------------------------------------------------------------

inline __m512i pack4_words(__m512i v) {  // 64 bytes -> 32 words lo + 16 hi
  return _mm512_maddubs_epi16(_mm512_and_si512(v, bcast8(0x0F)), _mm512_set1_epi16(0x1001));
}

// Packs n source bytes (n may be odd: the last high nibble is then 0) into (n + 1) / 2 bytes.
void pack4_run(const uint8_t* src, int64_t n, uint8_t* dst) {
  const __m512i fix = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);  // undo the in-lane interleave of vpackuswb
  int64_t p = 0;
  for (; p + 2 * kB <= n; p += 2 * kB) {  // 128 source bytes -> 64 packed bytes
    const __m512i a = pack4_words(_mm512_loadu_si512(src + p));
    const __m512i b = pack4_words(_mm512_loadu_si512(src + p + kB));
    _mm512_storeu_si512(dst + p / 2, _mm512_permutexvar_epi64(fix, _mm512_packus_epi16(a, b)));
  }
  for (; p < n; p += kB) {
    const __m512i w = pack4_words(_mm512_maskz_loadu_epi8(bytes_below(n - p), src + p));
    _mm256_mask_storeu_epi8(dst + p / 2, bytes_below32((n - p + 1) / 2), _mm512_cvtepi16_epi8(w));
  }
}

// Unpacks n values (n may be odd) from (n + 1) / 2 packed bytes.
void unpack4_run(const uint8_t* src, int64_t n, bool is_signed, uint8_t* dst) {
  const int64_t nbytes = (n + 1) / 2;
  for (int64_t k = 0; k < nbytes; k += kB / 2) {  // 32 packed bytes -> 64 values
    const __m256i packed = _mm256_maskz_loadu_epi8(bytes_below32(nbytes - k), src + k);
    const __m512i b = _mm512_cvtepu8_epi16(packed);
    __m512i v = _mm512_and_si512(_mm512_or_si512(b, _mm512_slli_epi16(b, 4)), _mm512_set1_epi16(0x0F0F));
    if (is_signed) v = sign_extend(v, 8);
    _mm512_mask_storeu_epi8(dst + 2 * k, bytes_below(n - 2 * k), v);
  }
}

inline __m512i pack2_dwords(__m512i v) {  // 64 bytes -> 16 dwords e0 + 4 e1 + 16 e2 + 64 e3
  const __m512i w = _mm512_maddubs_epi16(_mm512_and_si512(v, bcast8(0x03)), _mm512_set1_epi16(0x0401));
  return _mm512_madd_epi16(w, _mm512_set1_epi32(0x00100001));
}

// Packs n source bytes (the last quad may be partial: missing crumbs are 0) into (n + 3) / 4 bytes.
void pack2_run(const uint8_t* src, int64_t n, uint8_t* dst) {
  // After the two in-lane packs, 128-bit lane L holds dwords (a_L, b_L, c_L, d_L); put dword 4L+m at 4m+L.
  const __m512i fix = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  int64_t p = 0;
  for (; p + 4 * kB <= n; p += 4 * kB) {  // 256 source bytes -> 64 packed bytes
    const __m512i a = pack2_dwords(_mm512_loadu_si512(src + p));
    const __m512i b = pack2_dwords(_mm512_loadu_si512(src + p + kB));
    const __m512i c = pack2_dwords(_mm512_loadu_si512(src + p + 2 * kB));
    const __m512i d = pack2_dwords(_mm512_loadu_si512(src + p + 3 * kB));
    const __m512i r = _mm512_packus_epi16(_mm512_packus_epi32(a, b), _mm512_packus_epi32(c, d));
    _mm512_storeu_si512(dst + p / 4, _mm512_permutexvar_epi32(fix, r));
  }
  for (; p < n; p += kB) {
    const __m512i d = pack2_dwords(_mm512_maskz_loadu_epi8(bytes_below(n - p), src + p));
    _mm_mask_storeu_epi8(dst + p / 4, bytes_below16((n - p + 3) / 4), _mm512_cvtepi32_epi8(d));
  }
}

// Unpacks n values from (n + 3) / 4 packed bytes.
void unpack2_run(const uint8_t* src, int64_t n, bool is_signed, uint8_t* dst) {
  const int64_t nbytes = (n + 3) / 4;
  for (int64_t k = 0; k < nbytes; k += kB / 4) {  // 16 packed bytes -> 64 values
    const __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(bytes_below16(nbytes - k), src + k));
    __m512i v = _mm512_or_si512(_mm512_or_si512(b, _mm512_slli_epi32(b, 6)),
                                _mm512_or_si512(_mm512_slli_epi32(b, 12), _mm512_slli_epi32(b, 18)));
    v = _mm512_and_si512(v, _mm512_set1_epi32(0x03030303));
    if (is_signed) v = sign_extend(v, 2);
    _mm512_mask_storeu_epi8(dst + 4 * k, bytes_below(n - 4 * k), v);
  }
}

// ---- inner > 1: rows of a slice combined vertically ---------------------------------------------------------

// dst[i] = pack(a[i], b[i]) for i < n; b == nullptr means a zero row.
void pack4_rows(const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; i += kB) {
    const __mmask64 m = bytes_below(n - i);
    __m512i r = _mm512_and_si512(_mm512_maskz_loadu_epi8(m, a + i), bcast8(0x0F));
    if (b != nullptr) {
      const __m512i hi = _mm512_slli_epi16(_mm512_maskz_loadu_epi8(m, b + i), 4);
      r = _mm512_or_si512(r, _mm512_and_si512(hi, bcast8(0xF0)));
    }
    _mm512_mask_storeu_epi8(dst + i, m, r);
  }
}

// Unpacks packed row `src` into rows lo (low nibbles) and hi (high nibbles; nullptr: not stored).
void unpack4_rows(const uint8_t* src, int64_t n, bool is_signed, uint8_t* lo, uint8_t* hi) {
  for (int64_t i = 0; i < n; i += kB) {
    const __mmask64 m = bytes_below(n - i);
    const __m512i b = _mm512_maskz_loadu_epi8(m, src + i);
    __m512i l = _mm512_and_si512(b, bcast8(0x0F));
    __m512i h = _mm512_and_si512(_mm512_srli_epi16(b, 4), bcast8(0x0F));
    if (is_signed) {
      l = sign_extend(l, 8);
      h = sign_extend(h, 8);
    }
    _mm512_mask_storeu_epi8(lo + i, m, l);
    if (hi != nullptr) _mm512_mask_storeu_epi8(hi + i, m, h);
  }
}

// dst[i] = pack(r[0][i], .., r[3][i]) for i < n; r[j] == nullptr means a zero row (always a suffix).
void pack2_rows(const uint8_t* const r[4], int64_t n, uint8_t* dst) {
  for (int64_t i = 0; i < n; i += kB) {
    const __mmask64 m = bytes_below(n - i);
    __m512i acc = _mm512_and_si512(_mm512_maskz_loadu_epi8(m, r[0] + i), bcast8(0x03));
    for (int j = 1; j < 4 && r[j] != nullptr; ++j) {
      const __m512i s = _mm512_slli_epi16(_mm512_maskz_loadu_epi8(m, r[j] + i), 2 * j);
      acc = _mm512_or_si512(acc, _mm512_and_si512(s, bcast8(0x03 << (2 * j))));
    }
    _mm512_mask_storeu_epi8(dst + i, m, acc);
  }
}

// Unpacks packed row `src` into rows out[j] = crumb j (out[j] == nullptr: not stored, always a suffix).
void unpack2_rows(const uint8_t* src, int64_t n, bool is_signed, uint8_t* const out[4]) {
  for (int64_t i = 0; i < n; i += kB) {
    const __mmask64 m = bytes_below(n - i);
    const __m512i b = _mm512_maskz_loadu_epi8(m, src + i);
    for (int j = 0; j < 4 && out[j] != nullptr; ++j) {
      __m512i v = _mm512_and_si512(_mm512_srli_epi16(b, 2 * j), bcast8(0x03));
      if (is_signed) v = sign_extend(v, 2);
      _mm512_mask_storeu_epi8(out[j] + i, m, v);
    }
  }
}

}  // namespace

void pack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst) {
  if (outer <= 0 || len <= 0 || inner <= 0) return;
  const int64_t plen = (len + 1) / 2;
  if (inner == 1) {
    if (len % 2 == 0) {
      pack4_run(src, outer * len, dst);
    } else {
      for (int64_t o = 0; o < outer; ++o) pack4_run(src + o * len, len, dst + o * plen);
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
      unpack4_run(src, outer * len, is_signed, dst);
    } else {
      for (int64_t o = 0; o < outer; ++o) unpack4_run(src + o * plen, len, is_signed, dst + o * len);
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
      pack2_run(src, outer * len, dst);
    } else {
      for (int64_t o = 0; o < outer; ++o) pack2_run(src + o * len, len, dst + o * plen);
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
      unpack2_run(src, outer * len, is_signed, dst);
    } else {
      for (int64_t o = 0; o < outer; ++o) unpack2_run(src + o * plen, len, is_signed, dst + o * len);
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

}  // namespace avx512
}  // namespace qk
