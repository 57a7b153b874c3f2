// quantkit — the packed-once low-bit layout (qk/lowbit_pack.h): its packing (pure data movement, every ISA uses
// this one) and the scalar reference of the decode GEMV that reads it. One loop nest per row, no threads, no SIMD.
#include <cstring>
#include <vector>

#include "qk/kernels.h"
#include "qk/lowbit_pack.h"
#include "qk/quant_math.h"
#include "qk/threadpool.h"

namespace qk {

namespace {

// Byte and shift of u(k, j) inside a block (k relative to its group's padded start is kk, chunk ch = kk / KQ).
inline int64_t packed_byte(const LowbitPackInfo& in, int64_t g, int64_t kk, int64_t jj, int* shift) {
  const int64_t ch = kk / in.KQ, rem = kk % in.KQ;
  const int64_t p = rem / 4, r = rem % 4;
  *shift = static_cast<int>(p * in.sb);
  return in.group_offset(g) + ch * 256 + (jj / 16) * 64 + (jj % 16) * 4 + r;
}

}  // namespace

void lowbit_pack(const LowbitPackInfo& in, const uint8_t* w, const float* scale, const void* zero, uint8_t* dst,
                 ThreadPool* pool) {
  lowbit_pack_write_header(in, dst);
  const int64_t rb = in.kind == kLowbitGptq ? gptq_runtime_row_bytes(in.N, in.bits) : (in.N + 1) / 2;
  const int mask = (1 << in.bits) - 1;
  const int flip = in.kind == kLowbitGptq ? 0 : 8;
  // One column block per task: it reads a 64-column slice of every row (bits * 8 bytes) and writes its own block.
  const auto pack_block = [&](int64_t b) {
    uint8_t* blk = dst + kLowbitPackHeader + b * in.block_bytes;
    std::memset(blk, 0, static_cast<size_t>(in.block_bytes));
    const int64_t j0 = b * kLowbitPackNB;
    const int64_t nj = in.N - j0 < kLowbitPackNB ? in.N - j0 : kLowbitPackNB;
    for (int64_t g = 0; g < in.G; ++g) {
      const int64_t k0 = in.group_start(g), len = in.group_len(g);
      uint8_t* gw = blk + in.group_offset(g);
      for (int64_t kk = 0; kk < len; ++kk) {
        const uint8_t* row = w + (k0 + kk) * rb;
        const int64_t rem = kk % in.KQ;
        const int sh = static_cast<int>(rem / 4 * in.sb);
        uint8_t* out = gw + kk / in.KQ * 256 + rem % 4;
        for (int64_t jj = 0; jj < nj; ++jj) {
          const int64_t bit = in.bits * (j0 + jj);
          const int bs = static_cast<int>(bit % 8);
          int v = row[bit / 8] >> bs;
          if (bs + in.bits > 8) v |= row[bit / 8 + 1] << (8 - bs);
          v = (v & mask) ^ flip;
          out[(jj / 16) * 64 + (jj % 16) * 4] |= static_cast<uint8_t>(v << sh);
        }
      }
      uint8_t* params = gw + in.group_padded(g) / in.KQ * 256;
      for (int64_t jj = 0; jj < nj; ++jj) {
        const int64_t j = j0 + jj;
        const float s = in.kind == kLowbitInt4Channel ? scale[j] : scale[g * in.N + j];
        int c = 8;
        if (in.kind == kLowbitKerasGrouped) c = static_cast<const int8_t*>(zero)[g * in.N + j] + 8;
        if (in.kind == kLowbitGptq) c = static_cast<const uint8_t*>(zero)[g * in.N + j];
        const int16_t nc = static_cast<int16_t>(-c);
        std::memcpy(params + jj * 4, &s, 4);
        std::memcpy(params + kLowbitPackNB * 4 + jj * 2, &nc, 2);
      }
    }
  };
  if (pool != nullptr && in.nblocks > 1) {
    pool->run(in.nblocks, pack_block);
  } else {
    for (int64_t b = 0; b < in.nblocks; ++b) pack_block(b);
  }
}

namespace ref {

Status lowbit_packed_gemv(const LowbitPackInfo& in, int64_t M, const float* x, const uint8_t* packed,
                          const float* bias, float act_lo, float act_hi, float act_eps, float* y,
                          ThreadPool* /*pool*/) {
  const int64_t K = in.K, N = in.N;
  std::vector<int8_t> xq;
  try {
    xq.resize(static_cast<size_t>(K));
  } catch (...) {
    return QK_STATUS_OUT_OF_MEMORY;
  }
  const int mask = (1 << in.sb) - 1;
  for (int64_t i = 0; i < M; ++i) {
    const float* xr = x + i * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = qk_absmax_step(amax, xr[k]);
    const float sx = qk_absmax_scale(amax, act_hi, act_eps);
    for (int64_t k = 0; k < K; ++k) xq[k] = qk_quantize_clip(xr[k], sx, act_lo, act_hi);
    for (int64_t j = 0; j < N; ++j) {
      const uint8_t* blk = packed + kLowbitPackHeader + (j / kLowbitPackNB) * in.block_bytes;
      const int64_t jj = j % kLowbitPackNB;
      float f = 0.0f;
      float out = 0.0f;
      for (int64_t g = 0; g < in.G; ++g) {
        const int64_t k0 = in.group_start(g), len = in.group_len(g);
        uint32_t rs = 0, acc = 0;
        for (int64_t kk = 0; kk < len; ++kk) {
          int sh = 0;
          const int64_t at = packed_byte(in, g, kk, jj, &sh);  // sets sh: read it only after the call
          const int u = (blk[at] >> sh) & mask;
          rs += static_cast<uint32_t>(int32_t{xq[k0 + kk]});
          acc += static_cast<uint32_t>(xq[k0 + kk] * u);
        }
        const uint8_t* params = blk + in.group_offset(g) + in.group_padded(g) / in.KQ * 256;
        float s;
        int16_t nc;
        std::memcpy(&s, params + jj * 4, 4);
        std::memcpy(&nc, params + kLowbitPackNB * 4 + jj * 2, 2);
        if (in.kind == kLowbitInt4Channel) {
          const int32_t a = static_cast<int32_t>(acc - 8u * rs);
          out = static_cast<float>(a) / (s * sx);
        } else {
          const float t = std::fmaf(static_cast<float>(nc), static_cast<float>(static_cast<int32_t>(rs)),
                                    static_cast<float>(static_cast<int32_t>(acc)));
          f = std::fmaf(s, t, f);
        }
      }
      const float v = in.kind == kLowbitInt4Channel ? out : f / sx;
      const float o = bias != nullptr ? v + bias[j] : v;
      y[i * N + j] = qk_is_nan(o) ? qk_canonical_nan() : o;
    }
  }
  return kOk;
}

}  // namespace ref
}  // namespace qk
