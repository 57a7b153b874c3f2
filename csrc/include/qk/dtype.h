// quantkit — the dtype table shared by the kernels, the N-API glue and (through dtypeTable()) lib/dtype.ts.
// A test asserts that the TypeScript table equals this one, so add entries in both places.
#ifndef QK_DTYPE_H_
#define QK_DTYPE_H_

#include <cstdint>

namespace qk {

enum class DType : int {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  kInt8 = 3,
  kUInt8 = 4,
  kInt32 = 5,
  kInt4 = 6,    // packed: two signed nibbles per byte, low nibble first (Keras pack_int4 layout)
  kUInt4 = 7,   // packed: two unsigned nibbles per byte
  kFloat8E4M3FN = 8,
  kFloat8E5M2 = 9,
};
constexpr int kNumDTypes = 10;

struct DTypeInfo {
  DType id;
  const char* name;      // Keras / ml_dtypes spelling
  int bits;              // bits per logical element
  const char* container; // JS TypedArray that carries the bytes
};

inline constexpr DTypeInfo kDTypeTable[kNumDTypes] = {
    {DType::kFloat32, "float32", 32, "Float32Array"},
    {DType::kFloat16, "float16", 16, "Uint16Array"},
    {DType::kBFloat16, "bfloat16", 16, "Uint16Array"},
    {DType::kInt8, "int8", 8, "Int8Array"},
    {DType::kUInt8, "uint8", 8, "Uint8Array"},
    {DType::kInt32, "int32", 32, "Int32Array"},
    {DType::kInt4, "int4", 4, "Int8Array"},
    {DType::kUInt4, "uint4", 4, "Uint8Array"},
    {DType::kFloat8E4M3FN, "float8_e4m3fn", 8, "Uint8Array"},
    {DType::kFloat8E5M2, "float8_e5m2", 8, "Uint8Array"},
};

static_assert(sizeof(float) == 4, "float must be IEEE binary32");
static_assert(kDTypeTable[0].id == DType::kFloat32 && kDTypeTable[9].id == DType::kFloat8E5M2,
              "kDTypeTable must be indexed by DType");

}  // namespace qk

#endif  // QK_DTYPE_H_
