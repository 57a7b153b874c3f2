/* quantkit — the run-time capability predicate of the CUDA backend: which code path a device of compute
 * capability cc (major * 10 + minor) can run. Plain C++ (no CUDA headers) so the host test checks it, and the
 * launchers (the .cu files of cuda/) consult it before choosing a kernel; the kernels themselves guard arch-specific
 * instructions with __CUDA_ARCH__ so that every SASS target compiles.
 *
 *   feature            needs     why
 *   int8 mma           cc >= 75  mma.sync m8n8k16 .s8 (Turing); m16n8k32 .s8 from cc 80
 *   int8 mma m16n8k32  cc >= 80  the Ampere shape (and cp.async for the B tiles)
 *   f16/bf16 mma       cc >= 80  mma.sync m16n8k16 .f16/.bf16 (the W4A16 / GPTQ Tensor-Core GEMM; sm_75 uses
 *                                CUDA cores for those)
 *   fp8 e4m3 mma       cc >= 89  mma.sync m16n8k32 .e4m3 exists on Ada (8.9) and Hopper (9.0) and later
 *   everything else    cc >= 75  the oldest architecture this build (CUDA 13) can target
 */
#ifndef QK_CUDA_ARCH_H_
#define QK_CUDA_ARCH_H_

namespace qk {
namespace cuda_arch {

enum class Feature : int { kBase = 0, kInt8Mma = 1, kInt8MmaM16N8K32 = 2, kCpAsync = 3, kFp8Mma = 4, kF16Mma = 5 };

inline int min_cc(Feature f) {
  switch (f) {
    case Feature::kBase: return 75;
    case Feature::kInt8Mma: return 75;
    case Feature::kInt8MmaM16N8K32: return 80;
    case Feature::kCpAsync: return 80;
    case Feature::kFp8Mma: return 89;
    case Feature::kF16Mma: return 80;
  }
  return 1000;
}

inline bool supports(int cc, Feature f) { return cc >= min_cc(f); }

inline const char* feature_name(Feature f) {
  switch (f) {
    case Feature::kBase: return "the CUDA backend";
    case Feature::kInt8Mma: return "int8 Tensor-Core GEMM";
    case Feature::kInt8MmaM16N8K32: return "int8 mma.m16n8k32";
    case Feature::kCpAsync: return "cp.async";
    case Feature::kFp8Mma: return "float8 (e4m3) Tensor-Core GEMM";
    case Feature::kF16Mma: return "float16/bfloat16 Tensor-Core GEMM";
  }
  return "?";
}

}  // namespace cuda_arch
}  // namespace qk

#endif  // QK_CUDA_ARCH_H_
