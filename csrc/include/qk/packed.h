// quantkit — weights packed ONCE into a GEMM micro-kernel's layout ("pre-packed weights"), and the kernels that
// read them. Never includes napi.h.
//
// Why: the blocked fp32 and int8 GEMMs repack every weight of B into the micro-kernel's panel layout inside every
// call (docs/cpu-kernel-limits.md measured that repacking as the limit at M >= 128). Weights are constant, so a
// caller that calls the same projection many times can pack them once and pass the packed copy.
//
// A packed buffer is one block of bytes: a 64-byte header at offset 0, then the payload at `data_offset` (chosen
// by the packer so that the payload starts on a 64-byte boundary of the buffer's memory; 64 <= data_offset < 128).
// Header (little-endian):
//   0  u32 magic 'QKPW'          4  u32 version (1)         8  u32 kind (PackedKind)    12 u32 layout (PackedLayout)
//   16 u64 K                     24 u64 N                   32 u64 payload bytes        40 u32 data_offset
//   44 u32 0                     48 u64 0                   56 u64 FNV-1a 64 of bytes [0, 56)
// The header is written LAST by the packer (after the payload), so a buffer still being packed is rejected.
// Consumers re-validate everything (packed_check) before touching the payload: a mismatched or hostile buffer
// gives a typed error, never an out-of-bounds access.
//
// Layouts (only the AVX-512 kernels have one; other ISAs run their unpacked path):
//   kAvx512F32 (kind kF32, sgemm's 14 x 32 micro-kernel): ceil(N / 32) panels of 32 columns; panel p holds K rows
//     of 32 floats (row k = B[k, 32p .. 32p + 31], columns >= N are 0) at float offset p * K * 32 + k * 32.
//     payload = ceil(N / 32) * K * 128 bytes.
//   kAvx512Vnni (kind kW8A8, the 6 x 64 vpdpbusd micro-kernel of igemm_avx512_kernels.h): Kp = round_up(K, 4);
//     ceil(N / 64) panels of 64 columns; panel p holds Kp / 4 k-groups of 256 bytes at byte p * Kp * 64 + g * 256:
//     zmm v (bytes 64v .. 64v + 63), dword i = (b'(4g, c), b'(4g + 1, c), b'(4g + 2, c), b'(4g + 3, c)),
//     c = 64p + 16v + i, b' = b + 128 (u8); padding (k >= K or c >= N) is the byte 0. The +128 bias is thus
//     precomputed; its correction is 128 * rowsum(qx) per activation row, which the kernels compute while they
//     quantize the activations (a per-row, not per-column, compensation: the signed operand is the activation).
//     payload = ceil(N / 64) * Kp * 64 bytes.
#ifndef QK_PACKED_H_
#define QK_PACKED_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "qk/kernels.h"
#include "qk/status.h"

namespace qk {

enum class PackedKind : uint32_t { kF32 = 1, kW8A8 = 2 };
enum class PackedLayout : uint32_t { kAvx512F32 = 1, kAvx512Vnni = 2 };

constexpr uint32_t kPackedMagic = 0x57504B51u;  // "QKPW" little-endian
constexpr uint32_t kPackedVersion = 1;
constexpr int64_t kPackedHeaderBytes = 64;
constexpr int64_t kPackedAlign = 64;
// Bytes a packed buffer needs besides the payload: the header plus up to 63 bytes of alignment slack.
constexpr int64_t kPackedOverhead = kPackedHeaderBytes + kPackedAlign;
constexpr int64_t kPackedF32Nr = 32;   // == avx512::SgemmTile::NR (static_assert in sgemm_avx512.cpp)
constexpr int64_t kPackedVnniNr = 64;  // == the VNNI kNR (static_assert in dense_int8_avx512.cpp)

struct PackedHeader {
  uint32_t magic, version, kind, layout;
  uint64_t K, N, payload_bytes;
  uint32_t data_offset, zero0;
  uint64_t zero1, check;
};
static_assert(sizeof(PackedHeader) == kPackedHeaderBytes, "packed header is 64 bytes");

// The layout an ISA's kernels read for a kind, or false when that ISA has none (its unpacked path is used).
inline bool packed_layout_for(PackedKind kind, Isa isa, PackedLayout* out) {
  if (isa != Isa::kAvx512) return false;
  *out = kind == PackedKind::kF32 ? PackedLayout::kAvx512F32 : PackedLayout::kAvx512Vnni;
  return true;
}

// Payload bytes of a layout for K x N weights; -1 if it would not fit in int64 (caller: invalid argument).
inline int64_t packed_payload_bytes(PackedLayout layout, int64_t K, int64_t N) {
  if (K < 0 || N < 0) return -1;
  const int64_t limit = int64_t{1} << 52;
  if (K > limit || N > limit) return -1;
  if (layout == PackedLayout::kAvx512F32) {
    const int64_t panels = (N + kPackedF32Nr - 1) / kPackedF32Nr;
    if (panels != 0 && K > limit / (panels * kPackedF32Nr * 4)) return -1;
    return panels * K * kPackedF32Nr * 4;
  }
  const int64_t kp = (K + 3) / 4 * 4;
  const int64_t panels = (N + kPackedVnniNr - 1) / kPackedVnniNr;
  if (panels != 0 && kp > limit / (panels * kPackedVnniNr)) return -1;
  return panels * kp * kPackedVnniNr;
}

inline uint64_t packed_header_check(const PackedHeader& h) {
  unsigned char bytes[56];
  std::memcpy(bytes, &h, sizeof bytes);
  uint64_t x = 0xcbf29ce484222325ull;
  for (unsigned char b : bytes) x = (x ^ b) * 0x100000001b3ull;
  return x;
}

// The header to write (last) into a buffer whose memory starts at `base`; data_offset puts the payload on a
// 64-byte boundary.
inline PackedHeader packed_make_header(PackedKind kind, PackedLayout layout, int64_t K, int64_t N, const void* base) {
  PackedHeader h{};
  h.magic = kPackedMagic;
  h.version = kPackedVersion;
  h.kind = static_cast<uint32_t>(kind);
  h.layout = static_cast<uint32_t>(layout);
  h.K = static_cast<uint64_t>(K);
  h.N = static_cast<uint64_t>(N);
  h.payload_bytes = static_cast<uint64_t>(packed_payload_bytes(layout, K, N));
  const auto addr = reinterpret_cast<std::uintptr_t>(base) + kPackedHeaderBytes;
  h.data_offset = static_cast<uint32_t>(kPackedHeaderBytes + ((kPackedAlign - addr % kPackedAlign) % kPackedAlign));
  h.check = packed_header_check(h);
  return h;
}

// Outcome of checking a packed buffer against a call.
enum class PackedUse {
  kUse,        // valid, the layout of the call's ISA, aligned: payload may be read
  kFallBack,   // valid, but another layout/ISA, or the payload is not 64-byte aligned (the buffer was copied):
               // run the unpacked path
  kBadBuffer,  // not a packed buffer of this kind (message says why): invalid argument
  kMismatch,   // a packed buffer of another K / N: shape mismatch
};

// Validates bytes[0, size) as a packed buffer of `kind` for a K x N call running `isa`. On kUse, *payload points
// at the payload. Never reads past size.
inline PackedUse packed_check(const void* bytes, std::size_t size, PackedKind kind, Isa isa, int64_t K, int64_t N,
                              const void** payload, std::string* message) {
  if (bytes == nullptr || size < static_cast<std::size_t>(kPackedHeaderBytes)) {
    *message = "Expected a packed weights buffer (at least 64 bytes, from packWeights) for packed but received " +
               std::to_string(size) + " bytes";
    return PackedUse::kBadBuffer;
  }
  PackedHeader h;
  std::memcpy(&h, bytes, sizeof h);
  if (h.magic != kPackedMagic || h.check != packed_header_check(h)) {
    *message = "Expected a packed weights buffer made by packWeights for packed but its header is not one (bad magic or checksum)";
    return PackedUse::kBadBuffer;
  }
  if (h.version != kPackedVersion) {
    *message = "Expected packed weights of format version " + std::to_string(kPackedVersion) + " for packed but received version " +
               std::to_string(h.version);
    return PackedUse::kBadBuffer;
  }
  const char* want = kind == PackedKind::kF32 ? "f32" : "w8a8";
  if (h.kind != static_cast<uint32_t>(kind)) {
    *message = std::string("Expected packed weights of kind ") + want + " for packed but received kind " + std::to_string(h.kind);
    return PackedUse::kBadBuffer;
  }
  const bool layout_known = h.layout == static_cast<uint32_t>(PackedLayout::kAvx512F32) ||
                            h.layout == static_cast<uint32_t>(PackedLayout::kAvx512Vnni);
  PackedLayout expect_kind_layout;
  packed_layout_for(kind, Isa::kAvx512, &expect_kind_layout);
  if (!layout_known || (h.layout != static_cast<uint32_t>(expect_kind_layout))) {
    *message = "Expected a known layout for packed weights of kind " + std::string(want) + " for packed but received layout " +
               std::to_string(h.layout);
    return PackedUse::kBadBuffer;
  }
  if (h.K != static_cast<uint64_t>(K) || h.N != static_cast<uint64_t>(N)) {
    *message = "Expected packed weights of shape [" + std::to_string(K) + ", " + std::to_string(N) +
               "] for packed but received [" + std::to_string(h.K) + ", " + std::to_string(h.N) + "]";
    return PackedUse::kMismatch;
  }
  const int64_t need = packed_payload_bytes(static_cast<PackedLayout>(h.layout), K, N);
  if (need < 0 || h.payload_bytes != static_cast<uint64_t>(need) || h.data_offset < kPackedHeaderBytes ||
      h.data_offset >= kPackedHeaderBytes + kPackedAlign || h.data_offset > size ||
      size - h.data_offset < static_cast<uint64_t>(need)) {
    *message = "Expected " + std::to_string(need) + " payload bytes after the header of packed but the buffer (" +
               std::to_string(size) + " bytes) does not hold them as its header says";
    return PackedUse::kBadBuffer;
  }
  PackedLayout mine;
  const unsigned char* data = static_cast<const unsigned char*>(bytes) + h.data_offset;
  if (!packed_layout_for(kind, isa, &mine) || static_cast<uint32_t>(mine) != h.layout ||
      reinterpret_cast<std::uintptr_t>(data) % kPackedAlign != 0) {
    return PackedUse::kFallBack;
  }
  *payload = data;
  return PackedUse::kUse;
}

// Defined in the qk::avx512 units; call them only where QK_HAVE_X86_VARIANTS is set and isa_available(kAvx512).
namespace avx512 {
// Packs B [K, N] (row-major, ld = N) into the layout's payload (dst 64-byte aligned, packed_payload_bytes long).
void pack_f32_weights(int64_t K, int64_t N, const float* w, float* dst, ThreadPool* pool);
void pack_w8a8_weights(int64_t K, int64_t N, const int8_t* w, uint8_t* dst, ThreadPool* pool);
// sgemm / igemm_s8s8s32 / dense_w8a8 (kernels.h) with B given as packed payload. Any M >= 0 (the blocked path is
// used for every M; callers keep decode and small M on the unpacked kernels, which read B in place). Results:
// sgemm_packed is bit-identical to sgemm for M > 16 (same blocking, same FMA order), the int8 ones bit-exact.
Status sgemm_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bp, float* C,
                    int64_t ldc, ThreadPool* pool);
Status igemm_packed(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const uint8_t* Bp, int32_t* C,
                    int64_t ldc, ThreadPool* pool);
Status dense_w8a8_packed(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* wp, const float* w_scale,
                         const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool);
}  // namespace avx512

}  // namespace qk

#endif  // QK_PACKED_H_
