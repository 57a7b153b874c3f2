// quantkit — the packed-once weight layout of the low-bit decode GEMV (int8-compute path for M < 16 rows) and
// its kernels. See docs/lowbit-a8.md ("Decode GEMV").
//
// Why: the Keras int4 / GPTQ runtime layouts keep the levels of one input row contiguous along N, so a
// `vpdpbusd`-ready operand (16 outputs x 4 consecutive inputs) must be gathered from 4 rows a row stride apart.
// dense_lowbit_a8 does that per call (fine for GEMM, where it is amortized over rows); a decode GEMV must stream
// each weight byte once, so the weights are repacked ONCE (lowbit_pack, at first use) into this layout.
//
// Kinds (what the packed weights came from, and the epilogue):
//   kLowbitKerasGrouped (1): Keras int4 grouped (bits 4): u = nibble ^ 8 (= q + 8), c = zero + 8 (zero int8).
//   kLowbitGptq (2):         GPTQ runtime layout, bits 2/3/4/8: u = the level, c = zero (uint8).
//   kLowbitInt4Channel (3):  Keras int4 per-channel (bits 4, group = K >= 1): u = q + 8, scale = the [N] multipliers.
//
// Layout (little-endian; all sizes from lowbit_pack_geometry):
//   [64-byte header] then ceil(N / 64) column blocks of `block_bytes` each, block b = outputs 64b .. 64b + 63.
//   sb = storage bits (bits, except 3 -> 4), P = 8 / sb planes, KQ = 4 * P inputs per chunk.
//   Group g (inputs [g*group, min(K, (g+1)*group)) ) is padded to Lg = roundup(len_g, KQ) inputs (G groups).
//   Inside a block, group g = Lg / KQ chunks of 256 bytes, then 64 float32 scales, then 64 int16 nc.
//   Chunk ch: 4 vectors of 64 bytes, vector s = outputs 64b + 16s .. +15; byte 4c + r of vector s holds, in its
//   bits [sb*p, sb*p + sb), u(k, j) for j = 64b + 16s + c and k = g*group + ch*KQ + 4p + r (p = 0..P-1, r = 0..3):
//   one load, a shift by sb*p and an and give the unsigned vpdpbusd operand of 16 outputs x 4 inputs.
//   Padding (k beyond the group, j >= N) holds u = 0, scale 0, nc 0.
//   Params: scale[j] (grouped: the divisor-convention group scale; per-channel: the [N] multiplier) and
//   nc[j] = -c (grouped: -(zero + 8) or -zero; per-channel: -8).
//   Header: u32 magic 'QKLP', u16 version 1, u8 kind, u8 bits, i64 K, i64 N, i64 group, i64 total_bytes, zeros.
//   The layout is the same for every ISA (the reference reads it too); `version` names it.
//
// lowbit_packed_gemv(info, M, x, packed, bias, act_lo, act_hi, act_eps, y, pool) — y[M, N]:
//   per row i: amax, sx, xq exactly as absmax_quantize with (act_lo, act_hi, act_eps) (= dense_lowbit_a8's step 1
//   with the constants of qk/lowbit_a8.h).
//   Grouped kinds: f = sum over groups in ascending order of fmaf(scale, fmaf(nc, rs, (float)acc), f), starting at
//     +0.0f, acc = sum_k xq[k] * u(k, j) and rs = sum_k xq[k] over the group's real inputs (exact int32);
//     v = f / sx; out = bias ? v + bias[j] : v; NaN -> canonical NaN. With act = (-127, 127, 1e-7) this is
//     EXACTLY qk::ref::dense_lowbit_a8 (the same function of x for every M).
//   Per-channel: a = (int32)(acc - 8 * rs) (mod 2^32; = sum_k xq[k] * q(k, j)), v = (float)a / (scale[j] * sx),
//     out = bias ? v + bias[j] : v, NaN -> canonical NaN: EXACTLY qk::ref::dense_w4a8 with the same act.
//   Every variant is bit-exact with the reference. `info` must come from lowbit_pack_read_header on `packed`.
#ifndef QK_LOWBIT_PACK_H_
#define QK_LOWBIT_PACK_H_

#include <cstdint>
#include <cstring>

#include "qk/status.h"

namespace qk {

class ThreadPool;

enum LowbitPackKind : int { kLowbitKerasGrouped = 1, kLowbitGptq = 2, kLowbitInt4Channel = 3 };

constexpr uint32_t kLowbitPackMagic = 0x504C4B51u;  // "QKLP"
constexpr uint16_t kLowbitPackVersion = 1;
constexpr int64_t kLowbitPackHeader = 64;
constexpr int64_t kLowbitPackNB = 64;  // outputs per column block

struct LowbitPackInfo {
  int kind = 0, bits = 0;
  int64_t K = 0, N = 0, group = 1, total = 0;
  // derived
  int sb = 0, P = 0, KQ = 0;
  int64_t G = 0, Lfull = 0, Llast = 0, Kp = 0, nblocks = 0;
  int64_t gbytes_full = 0;  // bytes of a full group inside a block (chunks + params)
  int64_t block_bytes = 0;
  int64_t group_start(int64_t g) const { return g * group; }
  int64_t group_len(int64_t g) const { return (g + 1 == G) ? K - g * group : group; }
  int64_t group_padded(int64_t g) const { return (g + 1 == G) ? Llast : Lfull; }
  int64_t group_offset(int64_t g) const { return g * gbytes_full; }  // inside a block
  int64_t xq_offset(int64_t g) const { return g * Lfull; }           // inside a padded activation row
};

constexpr int64_t kLowbitParamBytes = kLowbitPackNB * 4 + kLowbitPackNB * 2;

// Fills the derived fields; false when the arguments are invalid or a size overflows int64 (or exceeds 2^52).
inline bool lowbit_pack_geometry(int kind, int bits, int64_t K, int64_t N, int64_t group, LowbitPackInfo* out) {
  LowbitPackInfo in;
  if (kind != kLowbitKerasGrouped && kind != kLowbitGptq && kind != kLowbitInt4Channel) return false;
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) return false;
  if (kind != kLowbitGptq && bits != 4) return false;
  const int64_t kLim = int64_t{1} << 40;
  if (K < 0 || N < 0 || K > kLim || N > kLim || group < 1 || group > kLim) return false;
  if (kind == kLowbitInt4Channel && (K == 0 || group != K)) return false;  // one group: its params hold the scales
  in.kind = kind;
  in.bits = bits;
  in.K = K;
  in.N = N;
  in.group = group;
  in.sb = bits == 3 ? 4 : bits;
  in.P = 8 / in.sb;
  in.KQ = 4 * in.P;
  in.G = K == 0 ? 0 : (K + group - 1) / group;
  const int64_t gfull = group < K ? group : K;
  in.Lfull = (gfull + in.KQ - 1) / in.KQ * in.KQ;
  in.Llast = in.G == 0 ? 0 : (K - (in.G - 1) * group + in.KQ - 1) / in.KQ * in.KQ;
  in.Kp = in.G == 0 ? 0 : (in.G - 1) * in.Lfull + in.Llast;
  in.nblocks = (N + kLowbitPackNB - 1) / kLowbitPackNB;
  in.gbytes_full = in.Lfull / in.KQ * 256 + kLowbitParamBytes;
  // Kp <= K + G * KQ <= 2^40 + 2^40 * 32: products below stay far from 2^63; cap the total at 2^52 bytes.
  const double total = static_cast<double>(in.G) * kLowbitParamBytes + static_cast<double>(in.Kp) / in.KQ * 256;
  if (total * static_cast<double>(in.nblocks) > 4503599627370496.0) return false;
  in.block_bytes = in.Kp / in.KQ * 256 + in.G * kLowbitParamBytes;
  in.total = kLowbitPackHeader + in.nblocks * in.block_bytes;
  *out = in;
  return true;
}

inline void lowbit_pack_write_header(const LowbitPackInfo& in, uint8_t* dst) {
  std::memset(dst, 0, kLowbitPackHeader);
  const uint32_t magic = kLowbitPackMagic;
  const uint16_t version = kLowbitPackVersion;
  std::memcpy(dst, &magic, 4);
  std::memcpy(dst + 4, &version, 2);
  dst[6] = static_cast<uint8_t>(in.kind);
  dst[7] = static_cast<uint8_t>(in.bits);
  std::memcpy(dst + 8, &in.K, 8);
  std::memcpy(dst + 16, &in.N, 8);
  std::memcpy(dst + 24, &in.group, 8);
  std::memcpy(dst + 32, &in.total, 8);
}

// Validates a packed buffer of `bytes` bytes before anything else reads it: header size, magic, version, kind,
// bits, dims, the recomputed total equal to both the header's and `bytes`, reserved bytes zero. Returns nullptr
// and fills `out` on success, else a static message saying what is wrong.
inline const char* lowbit_pack_read_header(const uint8_t* buf, int64_t bytes, LowbitPackInfo* out) {
  if (buf == nullptr || bytes < kLowbitPackHeader) return "shorter than the 64-byte header";
  uint32_t magic;
  uint16_t version;
  std::memcpy(&magic, buf, 4);
  std::memcpy(&version, buf + 4, 2);
  if (magic != kLowbitPackMagic) return "no packed low-bit weights (bad magic)";
  if (version != kLowbitPackVersion) return "an unknown layout version";
  int64_t K, N, group, total;
  std::memcpy(&K, buf + 8, 8);
  std::memcpy(&N, buf + 16, 8);
  std::memcpy(&group, buf + 24, 8);
  std::memcpy(&total, buf + 32, 8);
  for (int i = 40; i < kLowbitPackHeader; ++i) {
    if (buf[i] != 0) return "non-zero reserved header bytes";
  }
  LowbitPackInfo in;
  if (!lowbit_pack_geometry(buf[6], buf[7], K, N, group, &in)) return "an invalid kind, bits, K, N or group";
  if (in.total != total || total != bytes) return "a length that does not match its header";
  *out = in;
  return nullptr;
}

// One-time packing (ref only: pure data movement). w: Keras int4 [K, ceil(N/2)] bytes (kinds 1 and 3) or the GPTQ
// runtime rows (kind 2, K rows of ceil(bits*N/8) bytes); scale float32 [G*N] (kind 3: [N]); zero int8 [G*N]
// (kind 1), uint8 [G*N] (kind 2) or unused (kind 3). dst: info.total bytes, every byte written. Column blocks are
// packed in parallel through pool (null = one thread).
void lowbit_pack(const LowbitPackInfo& info, const uint8_t* w, const float* scale, const void* zero, uint8_t* dst,
                 ThreadPool* pool);

#define QK_DECLARE_LOWBIT_PACKED_GEMV                                                                          \
  Status lowbit_packed_gemv(const LowbitPackInfo& info, int64_t M, const float* x, const uint8_t* packed,      \
                            const float* bias, float act_lo, float act_hi, float act_eps, float* y,           \
                            ThreadPool* pool);

namespace ref {
QK_DECLARE_LOWBIT_PACKED_GEMV
}  // namespace ref
namespace avx512 {
QK_DECLARE_LOWBIT_PACKED_GEMV
}  // namespace avx512

}  // namespace qk

#endif  // QK_LOWBIT_PACK_H_
