// quantkit — scalar reference for the weight-only quantized Dense forwards (the specification of
// qk::*::dense_w8, dense_w4, dense_w4g, dense_fp8; see kernels.h).
//
// y[i][j] = epilogue_j( sum_{k=0}^{K-1} x[i][k] * What[k][j] ), the sum accumulated in float32 in ascending k
// order starting from 0, every multiply and add separately rounded (-ffp-contract=off), where What is the
// float the weight stands for:
//   dense_w8   What = (float)w[k][j]                               epilogue: acc / w_scale[j] + bias[j]
//   dense_w4   What = (float)q[k][j], q the signed nibble           epilogue: acc / w_scale[j] + bias[j]
//   dense_w4g  What = (float)(q[k][j] - zero[g][j]) * scale[g][j],  g = k / group
//                                                                   epilogue: acc + bias[j]
//   dense_fp8  What = dec(w8[k][j]) and x replaced by dec(e4m3fn(clip(x / x_scale, -448, 448)))
//                                                                   epilogue: acc * (x_scale * w_scale) + bias[j]
// Int4 layout (Keras int4 Dense): [K, (N+1)/2] bytes, element (k, j) in byte k*((N+1)/2) + j/2, low nibble for
// even j, sign-extended with (v ^ 8) - 8. No threads, no SIMD: the pool argument is ignored.
// The optimised variants use FMA and other summation orders and are compared against this by tolerance.
#include "qk/fp_convert.h"
#include "qk/kernels.h"
#include "qk/quant_math.h"

namespace qk {
namespace ref {
namespace {

inline int int4_at(const uint8_t* w4, int64_t N, int64_t k, int64_t j) {
  const uint8_t byte = w4[k * ((N + 1) / 2) + j / 2];
  return static_cast<int8_t>(qk_unpack_nibble(byte, static_cast<int>(j & 1), true));
}

}  // namespace

Status dense_w8(int64_t M, int64_t N, int64_t K, const float* x, const int8_t* w, const float* w_scale,
                const float* bias, float* y, ThreadPool* /*pool*/) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) sum += x[i * K + k] * static_cast<float>(w[k * N + j]);
      float v = sum / w_scale[j];
      if (bias != nullptr) v += bias[j];
      y[i * N + j] = v;
    }
  }
  return kOk;
}

Status dense_w4(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* w_scale,
                const float* bias, float* y, ThreadPool* /*pool*/) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) sum += x[i * K + k] * static_cast<float>(int4_at(w4, N, k, j));
      float v = sum / w_scale[j];
      if (bias != nullptr) v += bias[j];
      y[i * N + j] = v;
    }
  }
  return kOk;
}

Status dense_w4g(int64_t M, int64_t N, int64_t K, const float* x, const uint8_t* w4, const float* scale,
                 const int8_t* zero, int64_t group, const float* bias, float* y, ThreadPool* /*pool*/) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = k / group;
        const int qz = int4_at(w4, N, k, j) - static_cast<int>(zero[g * N + j]);
        const float what = static_cast<float>(qz) * scale[g * N + j];
        sum += x[i * K + k] * what;
      }
      if (bias != nullptr) sum += bias[j];
      y[i * N + j] = sum;
    }
  }
  return kOk;
}

Status dense_fp8(int64_t M, int64_t N, int64_t K, const float* x, float x_scale, const uint8_t* w8,
                 float w_scale, const float* bias, float* y, ThreadPool* /*pool*/) {
  const float out_scale = x_scale * w_scale;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        float t = x[i * K + k] / x_scale;
        if (t < -448.0f) t = -448.0f;  // clip; NaN compares false and stays NaN (-> the NaN code)
        if (t > 448.0f) t = 448.0f;
        const float xq = fp::e4m3fn_to_f32_one(fp::f32_to_e4m3fn_one(t));
        sum += xq * fp::e4m3fn_to_f32_one(w8[k * N + j]);
      }
      float v = sum * out_scale;
      if (bias != nullptr) v += bias[j];
      y[i * N + j] = v;
    }
  }
  return kOk;
}

}  // namespace ref
}  // namespace qk
