// quantkit — every CPU kernel's signature, once. Never includes napi.h.
//
// Each op has a scalar reference in namespace qk::ref (csrc/kernels/ref/<op>_ref.cpp: the specification, one
// loop nest, no threads, no SIMD) and optional optimised variants with the identical signature in qk::avx2
// (csrc/kernels/x86/<op>_avx2.cpp, compiled with -mavx2 -mfma -mf16c) and qk::avx512
// (csrc/kernels/x86/<op>_avx512.cpp, compiled with -mavx512f/bw/vl/vnni/bf16 + the AVX2 flags).
// csrc/kernels/dispatch.cpp assembles them into one KernelTable per ISA.
//
// Conventions
// * "Axis views": a row-major tensor reduced or packed along one axis is seen as [outer, len, inner]
//   (outer = product of dims before the axis, inner = product after). Element (o, l, i) is at
//   x[(o * len + l) * inner + i].
// * Rounding is round-half-to-even everywhere (the default FP environment; std::nearbyint).
// * No kernel allocates unless it returns a Status. Callers have validated sizes; kernels may assume
//   non-negative dims and buffers of the documented sizes. Zero-sized dims are legal and do nothing.
// * Floating-point contraction is disabled for all kernels (-ffp-contract=off) so that element-wise kernels
//   are bit-exact across ISAs; GEMMs use explicit FMA and are compared by tolerance.
#ifndef QK_KERNELS_H_
#define QK_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include "qk/gptq.h"
#include "qk/lowbit_a8.h"
#include "qk/status.h"

namespace qk {

class ThreadPool;

enum class Isa : int { kRef = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr int kNumIsas = 3;
const char* isa_name(Isa isa);

// fp8 formats (the byte encodings of ml_dtypes' float8_e4m3fn and float8_e5m2).
enum class Fp8Format : int { kE4M3FN = 0, kE5M2 = 1 };

#define QK_DECLARE_KERNELS                                                                                    \
  /* out[o*inner+i] = max_l |x(o,l,i)|. NaN anywhere in the slice gives NaN (as numpy.max). */              \
  void absmax(const float* x, int64_t outer, int64_t len, int64_t inner, float* out);                         \
  /* Keras abs_max_quantize along the axis view:                                                             \
     amax = max_l |x|; scale = hi / (amax + eps) (float32); q = clip(rne(x * scale), lo, hi).               \
     scale has shape [outer, inner]. A NaN product (NaN input, or 0*inf) quantizes to 0.                     \
     lo/hi are integers within [-128, 127] (validated by the caller). */                                     \
  void absmax_quantize(const float* x, int64_t outer, int64_t len, int64_t inner, float lo, float hi,         \
                       float eps, int8_t* q, float* scale);                                                   \
  /* Keras pack_int4: dst is [outer, (len+1)/2, inner]; dst(o,k,i) = (src(o,2k,i) & 0xF) |                  \
     ((src(o,2k+1,i) & 0xF) << 4), a missing odd element counts as 0. src bytes are int8 or uint8 values. */ \
  void pack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst);               \
  /* Inverse of pack_int4; len is the original (unpadded) length. is_signed: sign-extend nibbles          \
     ((v ^ 8) - 8) into int8, else zero-extend into uint8. */                                                \
  void unpack_int4(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, bool is_signed,            \
                   uint8_t* dst);                                                                             \
  /* Keras pack_int2: dst is [outer, (len+3)/4, inner]; element 4k+j goes to bits [2j, 2j+1]. */             \
  void pack_int2(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, uint8_t* dst);               \
  /* Inverse of pack_int2; signed values use (v ^ 2) - 2. */                                                 \
  void unpack_int2(const uint8_t* src, int64_t outer, int64_t len, int64_t inner, bool is_signed,            \
                   uint8_t* dst);                                                                             \
  /* float32 <-> IEEE binary16, RNE, NaN stays NaN (quiet, sign kept), overflow -> +-inf. */                 \
  void f32_to_f16(const float* src, uint16_t* dst, int64_t n);                                                \
  void f16_to_f32(const uint16_t* src, float* dst, int64_t n);                                                \
  /* float32 <-> bfloat16, RNE, NaN stays NaN (quiet), denormals kept (not flushed). */                      \
  void f32_to_bf16(const float* src, uint16_t* dst, int64_t n);                                               \
  void bf16_to_f32(const uint16_t* src, float* dst, int64_t n);                                               \
  /* float32 <-> fp8 as ml_dtypes: RNE with subnormals. e4m3fn has no inf: NaN, +-inf and values that round \
     past 448 become NaN (0x7F / 0xFF keeping the sign). e5m2: overflow -> +-inf, NaN -> quiet NaN. */       \
  void f32_to_fp8(const float* src, uint8_t* dst, int64_t n, Fp8Format fmt);                                  \
  void fp8_to_f32(const uint8_t* src, float* dst, int64_t n, Fp8Format fmt);                                  \
  /* C[M,N] = A[M,K] * B[K,N], float32, row-major with leading dimensions (>= the row length).             \
     pool may be null (single thread). Returns QK_STATUS_OUT_OF_MEMORY if scratch cannot be allocated. */    \
  Status sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,      \
               float* C, int64_t ldc, ThreadPool* pool);                                                      \
  /* C[M,N] = A[M,K] * B[K,N] with int8 operands and exact int32 accumulation (K <= 131071, checked by the  \
     caller, keeps every partial sum in range). Any int8 values, including -128, give the exact result. */  \
  Status igemm_s8s8s32(int64_t M, int64_t N, int64_t K, const int8_t* A, int64_t lda, const int8_t* B,         \
                       int64_t ldb, int32_t* C, int64_t ldc, ThreadPool* pool);                               \
  QK_DECLARE_DENSE_KERNELS                                                                                    \
  QK_DECLARE_LLAMA_KERNELS

// Quantized Dense forward kernels (y[M,N] = x[M,K] "@" W + bias). x, y are float32 row-major and contiguous
// (ld = K and N). Weights are in the Keras storage layouts (spec §2.3-§2.5), never copied to float per call.
// bias may be null. All are multithreaded through pool (null = one thread) and return OUT_OF_MEMORY if scratch
// cannot be allocated.
//
// dense_w8a8 (Keras int8 Dense, W8A8 dynamic): per row i, amax_i = max_k |x[i,k]| (NaN -> NaN),
//   sx_i = act_hi / (amax_i + act_eps), qx = clip(rne(x * sx_i), act_lo, act_hi) (NaN product -> 0) -- exactly
//   qk_absmax_scale / qk_quantize_clip of quant_math.h; acc = sum_k qx[i,k] * w[k,j] in exact int32;
//   then, in float32 and in this order: d = w_scale[j] * sx_i; v = (float)acc / d; y = v + bias[j].
//   BIT-EXACT across ISAs (no FMA, true division). w: int8 [K, N]; w_scale: [N] multipliers.
// dense_w4a8: the same with w given as Keras int4 Dense storage: signed nibbles packed along N,
//   w4: [K, (N+1)/2] bytes, element (k, j) in byte k*((N+1)/2) + j/2, low nibble for even j. BIT-EXACT.
// dense_w8 (weight-only int8): y[i,j] = (sum_k x[i,k] * w[k,j]) / w_scale[j] + bias[j]; float accumulation
//   (compared by tolerance).
// dense_w4 (per-channel int4 weight-only): as dense_w8 with the w4 layout above.
// dense_w4g (grouped int4, W4A16/W4A32): W_hat[k,j] = (q[k,j] - zero[k/group, j]) * scale[k/group, j] with q
//   from the w4 layout, scale float32 [G, N] (a divisor convention: w ~ (q - z) * s), zero int8 [G, N] in
//   [-8, 7], G = ceil(K / group), group >= 1; y = x @ W_hat + bias. Tolerance.
// dense_fp8: xq[i,k] = e4m3fn(clip(x[i,k] / x_scale, -448, 448)) (RNE; NaN stays NaN), w8: e4m3fn codes
//   [K, N]; y = (sum_k dec(xq) * dec(w8)) * (x_scale * w_scale) + bias[j]. x_scale, w_scale > 0 finite.
//   Tolerance.
// dense_gptq (GPTQ weight-only, 2/3/4/8 bits): W_hat[k,j] = (float(q[k,j]) - float(zero[g,j])) * scale[g,j]
//   (one float32 subtraction, then one float32 product), g = k / group, q from the GPTQ runtime layout below,
//   scale float32 [G, N], zero uint8 [G, N] (any byte works; GPTQ produces [0, 2^bits - 1]), G = ceil(K / group),
//   group >= 1 (group = K: one group); y = x @ W_hat + bias. bits is 2, 3, 4 or 8 (validated by the caller).
//   Tolerance (the optimised GEMV sums t = sum_k x * (q - c) per group, c = 2^(bits-1), and adds
//   s * (t - (z - c) * sum_k x) at the group's end: its rounding scales with sum_k |x| * s * (|q - c| + |z - c|)).
//
// GPTQ runtime layout (in memory only, never on disk; made once by gptq_runtime_pack at quantize/load time).
// Row k = 0..K-1 is input k in RUNTIME order (after act-order permutation), levels q in [0, 2^bits - 1] packed
// along N (the outputs); row k starts at byte k * gptq_runtime_row_bytes(N, bits) = ceil(bits * N / 8). One rule
// for every width: the row is a little-endian bit stream (bit b is bit b % 8 of byte b / 8) and q[k,j] is its bits
// [bits*j, bits*j + bits - 1]. Padding bits (the end of the last byte) are 0. Spelled out:
//   bits 8: row = N bytes, q[k,j] = byte j.
//   bits 4: row = ceil(N/2) bytes, q[k,j] = nibble of byte j/2: low nibble for even j, high for odd (unsigned).
//   bits 2: row = ceil(N/4) bytes, q[k,j] = bits [2*(j%4), 2*(j%4)+1] of byte j/4.
//   bits 3: row = ceil(3N/8) bytes (exactly 3 bits per weight): the row is one little-endian bit stream (bit b is
//     bit b % 8 of byte b / 8) and q[k,j] is its bits [3j, 3j+2] (a level may straddle two bytes).
//     Why this is SIMD friendly: 48 bytes hold 128 columns; one vpermd moves each 12-byte run into its own
//     128-bit lane and one vpshufb gives every dword lane its 3 bytes = 8 consecutive levels; then, as for 2 and
//     4 bits, a shift by 3c and a table vpermps yield level c of all 16 lanes, and the AVX-512 GEMV combines
//     three rows' levels into a 5-bit + a 4-bit table index (dense_gptq_avx512.cpp), fewer instructions per
//     weight than 4 bits. (A two-plane 2 + 1-bit layout was tried: it measured slower.)
// gptq_runtime_pack (ref only, in every table): q = levels [N, K] one per byte (the Keras GPTQ [out, in] layout,
//   unpacked), perm = null (identity) or a permutation of 0..K-1 (validated by the caller): runtime row k takes
//   input perm[k], q_rt[k, j] = q[j, perm[k]]; only the low `bits` bits of each level are kept. dst: K rows of
//   gptq_runtime_row_bytes(N, bits) bytes, every byte written (padding 0).
// gptq_runtime_unpack: the exact inverse of the bit packing: dst [K, N] one level per byte, in runtime row order
//   (dst[k*N + j] = q_rt[k, j]; the permutation is not undone).
#define QK_DECLARE_DENSE_KERNELS                                                                              \
  Status dense_w8a8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,   \
                    const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool);  \
  Status dense_w4a8(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,  \
                    const float* bias, float act_lo, float act_hi, float act_eps, float* y, ThreadPool* pool);  \
  Status dense_w8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,     \
                  const float* bias, float* y, ThreadPool* pool);                                             \
  Status dense_w4(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,    \
                  const float* bias, float* y, ThreadPool* pool);                                             \
  Status dense_w4g(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* scale,     \
                   const int8_t* zero, int64_t group, const float* bias, float* y, ThreadPool* pool);          \
  Status dense_fp8(int64_t M, int64_t N, int64_t K, const float* x, float x_scale, const uint8_t* w8,          \
                   float w_scale, const float* bias, float* y, ThreadPool* pool);                              \
  Status dense_gptq(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* wq, int bits,              \
                    const float* scale, const uint8_t* zero, int64_t group, const float* bias, float* y,        \
                    ThreadPool* pool);

// Llama float-path kernels (csrc/kernels/ref/llama_ref.cpp is the specification, in llama2.c's float32 order of
// operations; csrc/kernels/x86/llama_common.h says what the optimised variants reproduce exactly). float32,
// row-major, contiguous. Single-threaded unless they take a pool (callers split rows across threads).
// rmsnorm: per row of x [rows, n]: ss = sum_j x[j]^2 (ref: sequential float32 sum, j ascending), ss /= n,
//   ss += eps, ss = 1 / sqrtf(ss); y[j] = weight[j] * (ss * x[j]). y may be x itself. SIMD: tolerance (sum order).
// rope: x [rows, heads, head_dim] in place, head_dim even; llama2.c's interleaved pairs: pair i = elements
//   (2i, 2i+1) of every head of row r is rotated by angle positions[r] * inv_freq_i with (c, s) from
//   qk/llama_math.h: (x0, x1) -> (x0 * c - x1 * s, x0 * s + x1 * c). BIT-EXACT across ISAs.
// softmax_rows: x [rows, n] in place: m = max, x = expf(x - m), x /= sum (n = 0: nothing). A NaN in a row makes
//   the row NaN; a row of -inf gives NaN (as run.c). SIMD: vector exp, tolerance.
// silu_mul: out[i] = (g * (1 / (1 + expf(-g)))) * up[i], g = gate[i]; out may be gate or up itself. SIMD:
//   vector exp, tolerance.
// attention_decode: causal grouped-query attention of T query rows over a KV cache.
//   q, out: [T, heads, head_dim]; k_cache, v_cache: [kv_heads, max_seq, head_dim] (head-major: the rows of one
//   kv head are contiguous); heads % kv_heads == 0 and query head h reads kv head h / (heads / kv_heads).
//   Query row t is at absolute position pos0 + t and attends to cache positions 0 .. pos0 + t (so
//   pos0 + T <= max_seq; the caller has written those rows). score_j = dot(q_h, k_j) / sqrtf(head_dim),
//   p = softmax(score) (as softmax_rows), out_h = sum_j p_j v_j. out may be q itself (not the caches).
//   Multithreaded over (kv head, t, chunks of the group's heads) through pool (null = one thread); returns
//   OUT_OF_MEMORY if score scratch cannot be allocated. SIMD: FMA dot products, tolerance.
// kv_cache_write (ref only, in every table: pure data movement): k, v [T, kv_heads, head_dim] (the K and V
//   projections of T tokens) go to rows positions[t] of each kv head: cache[g, positions[t], :] = k[t, g, :];
//   every positions[t] is in [0, max_seq) (validated by the caller); duplicates: the last t wins.
#define QK_DECLARE_LLAMA_KERNELS                                                                              \
  void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y);            \
  void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int32_t* positions, float theta);  \
  void softmax_rows(float* x, int64_t rows, int64_t n);                                                       \
  void silu_mul(const float* gate, const float* up, int64_t n, float* out);                                   \
  Status attention_decode(const float* q, int64_t T, int64_t heads, int64_t kv_heads, int64_t head_dim,       \
                          const float* k_cache, const float* v_cache, int64_t max_seq, int64_t pos0,          \
                          float* out, ThreadPool* pool);

// Bytes per runtime row of the GPTQ runtime layout (above); 0 for unsupported bits.
inline int64_t gptq_runtime_row_bytes(int64_t N, int bits) {
  switch (bits) {
    case 8: return N;
    case 4: return (N + 1) / 2;
    case 2: return (N + 3) / 4;
    case 3: return (3 * N + 7) / 8;
    default: return 0;
  }
}

namespace ref {
QK_DECLARE_KERNELS
// One-time conversions of the GPTQ runtime layout (see above); the tables of every ISA point at these.
void gptq_runtime_pack(const uint8_t* q, int64_t N, int64_t K, const int32_t* perm, int bits, uint8_t* dst);
void gptq_runtime_unpack(const uint8_t* src, int64_t N, int64_t K, int bits, uint8_t* dst);
// Writes new K/V rows into a Llama KV cache (see QK_DECLARE_LLAMA_KERNELS); the tables of every ISA point here.
void kv_cache_write(const float* k, const float* v, int64_t T, int64_t kv_heads, int64_t head_dim,
                    const int32_t* positions, int64_t max_seq, float* k_cache, float* v_cache);
}  // namespace ref
namespace avx2 {
QK_DECLARE_KERNELS
}  // namespace avx2
namespace avx512 {
QK_DECLARE_KERNELS
}  // namespace avx512

// One function pointer per op; every ISA's table is complete (an op without an optimised variant points at
// the best lower variant). `own` records which ops have a variant of their own at this ISA, so that the
// parity tests run each distinct implementation.
struct KernelTable {
  Isa isa;
  decltype(&ref::absmax) absmax;
  decltype(&ref::absmax_quantize) absmax_quantize;
  decltype(&ref::pack_int4) pack_int4;
  decltype(&ref::unpack_int4) unpack_int4;
  decltype(&ref::pack_int2) pack_int2;
  decltype(&ref::unpack_int2) unpack_int2;
  decltype(&ref::f32_to_f16) f32_to_f16;
  decltype(&ref::f16_to_f32) f16_to_f32;
  decltype(&ref::f32_to_bf16) f32_to_bf16;
  decltype(&ref::bf16_to_f32) bf16_to_f32;
  decltype(&ref::f32_to_fp8) f32_to_fp8;
  decltype(&ref::fp8_to_f32) fp8_to_f32;
  decltype(&ref::sgemm) sgemm;
  decltype(&ref::igemm_s8s8s32) igemm_s8s8s32;
  decltype(&ref::dense_w8a8) dense_w8a8;
  decltype(&ref::dense_w4a8) dense_w4a8;
  decltype(&ref::dense_w8) dense_w8;
  decltype(&ref::dense_w4) dense_w4;
  decltype(&ref::dense_w4g) dense_w4g;
  decltype(&ref::dense_fp8) dense_fp8;
  // GPTQ calibration (qk/gptq.h).
  decltype(&ref::hessian_accumulate) hessian_accumulate;
  decltype(&ref::hessian_finalize) hessian_finalize;
  decltype(&ref::cholesky_lower) cholesky_lower;
  decltype(&ref::triangular_inverse_lower) triangular_inverse_lower;
  decltype(&ref::cholesky_inverse_upper) cholesky_inverse_upper;
  decltype(&ref::gptq_quantize_matrix) gptq_quantize_matrix;
  // GPTQ inference: fused dequantize-in-register Dense over the runtime layout, and its one-time (un)packing.
  decltype(&ref::dense_gptq) dense_gptq;
  decltype(&ref::gptq_runtime_pack) gptq_runtime_pack;
  decltype(&ref::gptq_runtime_unpack) gptq_runtime_unpack;
  // Llama float path (QK_DECLARE_LLAMA_KERNELS).
  decltype(&ref::rmsnorm) rmsnorm;
  decltype(&ref::rope) rope;
  decltype(&ref::softmax_rows) softmax_rows;
  decltype(&ref::silu_mul) silu_mul;
  decltype(&ref::attention_decode) attention_decode;
  decltype(&ref::kv_cache_write) kv_cache_write;
  // int8-compute path of the low-bit weight-only forwards (qk/lowbit_a8.h; avx2 uses the reference).
  decltype(&ref::dense_lowbit_a8) dense_lowbit_a8;
};

}  // namespace qk

#endif  // QK_KERNELS_H_
