// quantkit — host checks of the CUDA backend's index, fragment-layout, tiling and element math (no GPU needed).
// Built with plain g++ by test/cuda/host-layout.test.ts together with the CPU reference kernels it compares
// against (csrc/kernels/ref/dense_int8_ref.cpp, dense_float_ref.cpp, dense_gptq_ref.cpp). Prints one line per
// check ("ok <name>" / "FAIL <name>: ...") and exits non-zero on any failure.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "arch.h"
#include "caching_allocator.h"
#include "gemm_f32_tiling.cuh"
#include "gemm_tiling.cuh"
#include "mma_layout.cuh"
#include "qk/kernels.h"
#include "wq_layout.cuh"
#include "wq_mma_layout.cuh"
#include "gptq_sweep.cuh"

namespace mm = qk::mma;
namespace g = qk::gemm;
namespace w = qk::wq;

static int g_failures = 0, g_checks = 0;
static void check(bool ok, const std::string& name, const std::string& detail = "") {
  ++g_checks;
  if (ok) {
    std::printf("ok %s\n", name.c_str());
  } else {
    ++g_failures;
    std::printf("FAIL %s: %s\n", name.c_str(), detail.c_str());
  }
}
static bool eq(mm::RC a, int r, int c) { return a.row == r && a.col == c; }

// ---- 1. entries transcribed from the PTX ISA fragment figures ------------------------------------------------
static void test_ptx_figures() {
  // m16n8k32 .s8 A ("Figure: MMA .m16n8k32 fragment layout for matrix A with .s8/.u8"): T0 holds a0..a3 at row 0
  // cols 0..3, a4..a7 at row 8, a8..a11 at row 0 cols 16..19; T5 (group 1, thread 1) a0 at (1, 4); T31 a15 at (15, 31).
  bool ok = eq(mm::m16n8k32_a(0, 0), 0, 0) && eq(mm::m16n8k32_a(0, 3), 0, 3) && eq(mm::m16n8k32_a(0, 4), 8, 0) &&
            eq(mm::m16n8k32_a(0, 8), 0, 16) && eq(mm::m16n8k32_a(0, 12), 8, 16) && eq(mm::m16n8k32_a(5, 0), 1, 4) &&
            eq(mm::m16n8k32_a(31, 15), 15, 31) && eq(mm::m16n8k32_a(3, 1), 0, 13);
  check(ok, "ptx figure m16n8k32 A (8-bit)");
  // B: T0 b0..b3 = rows 0..3 of col 0, b4..b7 = rows 16..19; T4 (group 1) column 1; T31 b7 at (31, 7).
  ok = eq(mm::m16n8k32_b(0, 0), 0, 0) && eq(mm::m16n8k32_b(0, 4), 16, 0) && eq(mm::m16n8k32_b(4, 0), 0, 1) &&
       eq(mm::m16n8k32_b(1, 0), 4, 0) && eq(mm::m16n8k32_b(31, 7), 31, 7);
  check(ok, "ptx figure m16n8k32 B (8-bit)");
  // C/D: T0 c0, c1 at (0, 0), (0, 1), c2, c3 at (8, 0), (8, 1); T1 c0 at (0, 2); T31 c3 at (15, 7).
  ok = eq(mm::m16n8_c(0, 0), 0, 0) && eq(mm::m16n8_c(0, 1), 0, 1) && eq(mm::m16n8_c(0, 2), 8, 0) &&
       eq(mm::m16n8_c(1, 0), 0, 2) && eq(mm::m16n8_c(31, 3), 15, 7);
  check(ok, "ptx figure m16n8 C/D");
  // m16n8k16 .f16 A: T0 a0,a1 (0,0),(0,1); a2,a3 (8,0),(8,1); a4,a5 (0,8),(0,9); a6,a7 (8,8),(8,9). B: T0 b0,b1 rows 0,1,
  // b2,b3 rows 8,9 of col 0.
  ok = eq(mm::m16n8k16_a(0, 1), 0, 1) && eq(mm::m16n8k16_a(0, 2), 8, 0) && eq(mm::m16n8k16_a(0, 4), 0, 8) &&
       eq(mm::m16n8k16_a(0, 7), 8, 9) && eq(mm::m16n8k16_a(6, 0), 1, 4) && eq(mm::m16n8k16_b(0, 2), 8, 0) &&
       eq(mm::m16n8k16_b(7, 1), 7, 1) && eq(mm::m16n8k16_b(31, 3), 15, 7);
  check(ok, "ptx figure m16n8k16 A/B (16-bit)");
  // m8n8k16 .s8: T0 a0..a3 (0, 0..3), T1 a0 (0, 4); B T1 b0 (4, 0); C T1 c0 (0, 2).
  ok = eq(mm::m8n8k16_a(1, 0), 0, 4) && eq(mm::m8n8k16_a(31, 3), 7, 15) && eq(mm::m8n8k16_b(1, 0), 4, 0) &&
       eq(mm::m8n8k16_c(1, 0), 0, 2) && eq(mm::m8n8k16_c(31, 1), 7, 7);
  check(ok, "ptx figure m8n8k16 (8-bit)");
  // ldmatrix: "each thread receives ... row lane / 4, elements 2 * (lane % 4), +1": T5 gets row 1, bytes 4..7.
  ok = eq(mm::ldmatrix_dst(5, 0), 1, 4) && eq(mm::ldmatrix_dst(31, 3), 7, 15) && mm::ldmatrix_src_matrix(17) == 2 &&
       mm::ldmatrix_src_row(17) == 1;
  check(ok, "ptx figure ldmatrix");
}

// ---- 2. every layout is a bijection between (lane, element) and the matrix ------------------------------------
template <class F>
static bool bijective(F f, int elems, int rows, int cols) {
  std::vector<int> seen(rows * cols, 0);
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < elems; ++e) {
      const mm::RC rc = f(l, e);
      if (rc.row < 0 || rc.row >= rows || rc.col < 0 || rc.col >= cols) return false;
      ++seen[rc.row * cols + rc.col];
    }
  for (int v : seen)
    if (v != 1) return false;
  return true;
}
static void test_bijections() {
  check(bijective(mm::m16n8k32_a, 16, 16, 32), "bijection m16n8k32 A");
  check(bijective(mm::m16n8k32_b, 8, 32, 8), "bijection m16n8k32 B");
  check(bijective(mm::m16n8_c, 4, 16, 8), "bijection m16n8 C");
  check(bijective(mm::m16n8k16_a, 8, 16, 16), "bijection m16n8k16 A");
  check(bijective(mm::m16n8k16_b, 4, 16, 8), "bijection m16n8k16 B");
  check(bijective(mm::m8n8k16_a, 4, 8, 16) && bijective(mm::m8n8k16_b, 4, 16, 8) && bijective(mm::m8n8k16_c, 2, 8, 8),
        "bijection m8n8k16 A/B/C");
  check(bijective(mm::ldmatrix_dst, 4, 8, 16), "bijection ldmatrix destination");
}

// ---- 3. warp MMA models ---------------------------------------------------------------------------------------
// Registers of one warp: reg[lane][e] = one scalar per element (the model keeps elements unpacked).
static std::mt19937 rng(12345);
static int rnd(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// The hardware: D = A * B + C where operand element (r, c) is whatever the lane/element the layout names holds.
template <class FA, class FB, class FC>
static void mma_model(FA fa, int ea, FB fb, int eb, FC fc, int ec, int M, int N, int K,
                      const std::vector<std::vector<int>>& ra, const std::vector<std::vector<int>>& rb,
                      std::vector<std::vector<int64_t>>& rc) {
  std::vector<int> A(M * K), B(K * N);
  for (int l = 0; l < 32; ++l) {
    for (int e = 0; e < ea; ++e) A[fa(l, e).row * K + fa(l, e).col] = ra[l][e];
    for (int e = 0; e < eb; ++e) B[fb(l, e).row * N + fb(l, e).col] = rb[l][e];
  }
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < ec; ++e) {
      const mm::RC o = fc(l, e);
      int64_t s = 0;
      for (int k = 0; k < K; ++k) s += int64_t{A[o.row * K + k]} * B[k * N + o.col];
      rc[l][e] += s;
    }
}

static void test_warp_mma() {
  // m16n8k32: fill fragments from random matrices through the layouts, multiply with the model, compare every
  // output (read back through the C layout) with the plain product.
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> A(16 * 32), B(32 * 8);
    for (int& v : A) v = rnd(-128, 127);
    for (int& v : B) v = rnd(-128, 127);
    std::vector<std::vector<int>> ra(32, std::vector<int>(16)), rb(32, std::vector<int>(8));
    for (int l = 0; l < 32; ++l) {
      for (int e = 0; e < 16; ++e) ra[l][e] = A[mm::m16n8k32_a(l, e).row * 32 + mm::m16n8k32_a(l, e).col];
      for (int e = 0; e < 8; ++e) rb[l][e] = B[mm::m16n8k32_b(l, e).row * 8 + mm::m16n8k32_b(l, e).col];
    }
    std::vector<std::vector<int64_t>> rc(32, std::vector<int64_t>(4, 0));
    mma_model(mm::m16n8k32_a, 16, mm::m16n8k32_b, 8, mm::m16n8_c, 4, 16, 8, 32, ra, rb, rc);
    // sm_75 path: four m8n8k16 on the same registers.
    std::vector<std::vector<int64_t>> rc75(32, std::vector<int64_t>(4, 0));
    for (int s = 0; s < 4; ++s) {
      std::vector<std::vector<int>> sa(32, std::vector<int>(4)), sb(32, std::vector<int>(4));
      for (int l = 0; l < 32; ++l)
        for (int b = 0; b < 4; ++b) {
          sa[l][b] = ra[l][4 * mm::sm75_a_reg(s) + b];
          sb[l][b] = rb[l][4 * mm::sm75_b_reg(s) + b];
        }
      std::vector<std::vector<int64_t>> c2(32, std::vector<int64_t>(2, 0));
      mma_model(mm::m8n8k16_a, 4, mm::m8n8k16_b, 4, mm::m8n8k16_c, 2, 8, 8, 16, sa, sb, c2);
      for (int l = 0; l < 32; ++l)
        for (int e = 0; e < 2; ++e) rc75[l][2 * mm::sm75_c_half(s) + e] += c2[l][e];
    }
    bool ok = true, ok75 = true;
    for (int l = 0; l < 32; ++l)
      for (int e = 0; e < 4; ++e) {
        const mm::RC o = mm::m16n8_c(l, e);
        int64_t want = 0;
        for (int k = 0; k < 32; ++k) want += int64_t{A[o.row * 32 + k]} * B[k * 8 + o.col];
        ok = ok && rc[l][e] == want;
        ok75 = ok75 && rc75[l][e] == want;
      }
    if (trial == 19 || !ok || !ok75) {
      check(ok, "warp mma m16n8k32 through the layouts = plain product");
      check(ok75, "sm_75: 4 x m8n8k16 on the m16n8k32 registers = plain product");
      break;
    }
  }
  // m16n8k16 (16-bit; small integers stand for the half values).
  std::vector<int> A(16 * 16), B(16 * 8);
  for (int& v : A) v = rnd(-50, 50);
  for (int& v : B) v = rnd(-50, 50);
  std::vector<std::vector<int>> ra(32, std::vector<int>(8)), rb(32, std::vector<int>(4));
  for (int l = 0; l < 32; ++l) {
    for (int e = 0; e < 8; ++e) ra[l][e] = A[mm::m16n8k16_a(l, e).row * 16 + mm::m16n8k16_a(l, e).col];
    for (int e = 0; e < 4; ++e) rb[l][e] = B[mm::m16n8k16_b(l, e).row * 8 + mm::m16n8k16_b(l, e).col];
  }
  std::vector<std::vector<int64_t>> rc(32, std::vector<int64_t>(4, 0));
  mma_model(mm::m16n8k16_a, 8, mm::m16n8k16_b, 4, mm::m16n8_c, 4, 16, 8, 16, ra, rb, rc);
  bool ok = true;
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < 4; ++e) {
      const mm::RC o = mm::m16n8_c(l, e);
      int64_t want = 0;
      for (int k = 0; k < 16; ++k) want += int64_t{A[o.row * 16 + k]} * B[k * 8 + o.col];
      ok = ok && rc[l][e] == want;
    }
  check(ok, "warp mma m16n8k16 through the layouts = plain product");
}

// ---- 4. tiling: global->shared mapping, swizzle, ldmatrix sources, bank conflicts --------------------------------
// ldmatrix model: destination register j of lane l, byte b = smem[address supplied by lane 8j + l/4 + (l%4)*4 + b].
static uint32_t ldm_reg(const std::vector<uint8_t>& smem, const int (&addr)[32], int lane, int j) {
  const mm::RC d = mm::ldmatrix_dst(lane, 0);
  const int base = addr[j * 8 + d.row] + d.col;
  return uint32_t{smem[base]} | uint32_t{smem[base + 1]} << 8 | uint32_t{smem[base + 2]} << 16 |
         uint32_t{smem[base + 3]} << 24;
}
static int byte_of(uint32_t r, int b) { return static_cast<int8_t>((r >> (8 * b)) & 0xFF); }

static void test_tiling() {
  // The load mapping covers each (row, chunk) of a tile exactly once; the swizzle is a bijection on tile bytes.
  std::vector<int> seen(g::kBM * g::kChunksPerRow, 0);
  for (int t = 0; t < g::kThreads; ++t)
    for (int j = 0; j < g::kLoadsPerThread; ++j) {
      const mm::RC c = g::load_chunk(t, j);
      ++seen[c.row * g::kChunksPerRow + c.col];
    }
  bool ok = true;
  for (int v : seen) ok = ok && v == 1;
  check(ok, "tile loads cover every chunk once");
  std::set<int> offs;
  for (int r = 0; r < g::kBM; ++r)
    for (int c = 0; c < g::kChunksPerRow; ++c) offs.insert(g::swizzle(r, c));
  ok = static_cast<int>(offs.size()) == g::kBM * g::kChunksPerRow && *offs.rbegin() == g::kTileBytes - 16;
  for (int o : offs) ok = ok && o % 16 == 0;
  check(ok, "swizzle is a bijection onto 16-byte aligned chunks");

  // Bank conflicts: an 8-lane phase of ldmatrix reads 8 rows of 16 bytes; a 16-byte store phase is 8 threads.
  // Conflict-free <=> the 8 addresses fall into 8 distinct 16-byte units of the 128-byte bank line.
  auto distinct_units = [](const int* a) {
    std::set<int> u;
    for (int i = 0; i < 8; ++i) u.insert((a[i] / 16) % 8);
    return u.size() == 8;
  };
  ok = true;
  for (int warp = 0; warp < g::kWarps; ++warp)
    for (int ks = 0; ks < g::kKSteps; ++ks) {
      for (int mt = 0; mt < g::kMTiles; ++mt) {
        int a[32];
        for (int l = 0; l < 32; ++l) a[l] = g::swizzle(g::a_ldmatrix_src(warp, mt, ks, l).row, g::a_ldmatrix_src(warp, mt, ks, l).col);
        for (int ph = 0; ph < 4; ++ph) ok = ok && distinct_units(a + 8 * ph);
      }
      for (int np = 0; np < g::kNTiles / 2; ++np) {
        int a[32];
        for (int l = 0; l < 32; ++l) a[l] = g::swizzle(g::b_ldmatrix_src(warp, np, ks, l).row, g::b_ldmatrix_src(warp, np, ks, l).col);
        for (int ph = 0; ph < 4; ++ph) ok = ok && distinct_units(a + 8 * ph);
      }
    }
  check(ok, "ldmatrix phases are bank-conflict free");
  ok = true;
  for (int t0 = 0; t0 < g::kThreads; t0 += 8)
    for (int j = 0; j < g::kLoadsPerThread; ++j) {
      int a[8];
      for (int i = 0; i < 8; ++i) a[i] = g::swizzle(g::load_chunk(t0 + i, j).row, g::load_chunk(t0 + i, j).col);
      ok = ok && distinct_units(a);
    }
  check(ok, "16-byte shared stores are bank-conflict free");
  int unswizzled_conflicts = 0;
  {
    int a[8];
    for (int i = 0; i < 8; ++i) a[i] = i * g::kBK;  // 8 rows, chunk 0, no swizzle
    unswizzled_conflicts = distinct_units(a) ? 0 : 1;
  }
  check(unswizzled_conflicts == 1, "without the swizzle the same reads would conflict (the test can fail)");

  // ldmatrix through the swizzle delivers exactly the mma fragments of the warp's sub-tiles.
  std::vector<uint8_t> sa(g::kTileBytes), sb(g::kTileBytes);
  std::vector<int> TA(g::kBM * g::kBK), TB(g::kBN * g::kBK);  // logical tiles [row][k byte]
  for (int r = 0; r < g::kBM; ++r)
    for (int k = 0; k < g::kBK; ++k) {
      TA[r * g::kBK + k] = rnd(-128, 127);
      TB[r * g::kBK + k] = rnd(-128, 127);
      sa[g::swizzle(r, k / 16) + k % 16] = static_cast<uint8_t>(TA[r * g::kBK + k]);
      sb[g::swizzle(r, k / 16) + k % 16] = static_cast<uint8_t>(TB[r * g::kBK + k]);
    }
  ok = true;
  for (int warp = 0; warp < g::kWarps; ++warp)
    for (int ks = 0; ks < g::kKSteps; ++ks) {
      for (int mt = 0; mt < g::kMTiles; ++mt) {
        int addr[32];
        for (int l = 0; l < 32; ++l) addr[l] = g::swizzle(g::a_ldmatrix_src(warp, mt, ks, l).row, g::a_ldmatrix_src(warp, mt, ks, l).col);
        for (int l = 0; l < 32; ++l)
          for (int e = 0; e < 16; ++e) {
            const mm::RC rc = mm::m16n8k32_a(l, e);
            const int want = TA[(g::warp_m(warp) * g::kWarpTileM + mt * 16 + rc.row) * g::kBK + ks * 32 + rc.col];
            ok = ok && byte_of(ldm_reg(sa, addr, l, e / 4), e % 4) == want;
          }
      }
      for (int np = 0; np < g::kNTiles / 2; ++np) {
        int addr[32];
        for (int l = 0; l < 32; ++l) addr[l] = g::swizzle(g::b_ldmatrix_src(warp, np, ks, l).row, g::b_ldmatrix_src(warp, np, ks, l).col);
        for (int l = 0; l < 32; ++l)
          for (int half = 0; half < 2; ++half)
            for (int e = 0; e < 8; ++e) {
              const mm::RC rc = mm::m16n8k32_b(l, e);  // (k, n) within the n8 tile
              const int n = g::warp_n(warp) * g::kWarpTileN + (np * 2 + half) * 8 + rc.col;
              const int want = TB[n * g::kBK + ks * 32 + rc.row];
              ok = ok && byte_of(ldm_reg(sb, addr, l, half * 2 + e / 4), e % 4) == want;
            }
      }
    }
  check(ok, "ldmatrix.x4 through the swizzle yields the A and B fragments");
  // Accumulator coordinates cover the block tile once.
  std::vector<int> cov(g::kBM * g::kBN, 0);
  for (int warp = 0; warp < g::kWarps; ++warp)
    for (int mt = 0; mt < g::kMTiles; ++mt)
      for (int nt = 0; nt < g::kNTiles; ++nt)
        for (int l = 0; l < 32; ++l)
          for (int e = 0; e < 4; ++e) {
            const mm::RC c = g::acc_coord(warp, mt, nt, l, e);
            ++cov[c.row * g::kBN + c.col];
          }
  ok = true;
  for (int v : cov) ok = ok && v == 1;
  check(ok, "accumulators cover the block tile once");
}

// ---- 5. a whole thread block of gemm8_kernel on the host ----------------------------------------------------
// Mirrors gemm_mma.cu step by step with the same functions: prologue scales, tile loads into swizzled shared
// memory, ldmatrix, mma (the model), epilogue. kFp8 selects the fp8 variant (float accumulation per k32 step).
template <bool kFp8>
static void block_model(const std::vector<float>& x, int64_t M, int64_t N, int64_t K, const std::vector<uint8_t>& wt,
                        const std::vector<float>& w_scale, const float* bias, float lo, float hi, float eps, float xs,
                        float out_scale, std::vector<float>& y) {
  const int64_t Kp = g::pad_k(K);
  for (int64_t m0 = 0; m0 < M; m0 += g::kBM)
    for (int64_t n0 = 0; n0 < N; n0 += g::kBN) {
      float row_scale[g::kBM] = {};
      if (!kFp8) {
        for (int warp = 0; warp < g::kWarps; ++warp)
          for (int r = g::prologue_first_row(warp); r < g::kBM; r += g::kPrologueRowStride) {
            uint32_t m = 0;
            if (m0 + r < M)
              for (int64_t k = 0; k < K; ++k) m = std::max(m, qk::qk_float_to_bits(x[(m0 + r) * K + k]) & 0x7FFFFFFFu);
            const float amax = m > 0x7F800000u ? qk::qk_canonical_nan() : qk::qk_bits_to_float(m);
            row_scale[r] = g::w8a8_row_scale(amax, hi, eps);
          }
      }
      std::vector<int64_t> acci(g::kBM * g::kBN, 0);
      std::vector<double> accf(g::kBM * g::kBN, 0.0);
      std::vector<float> accf32(g::kBM * g::kBN, 0.0f);
      for (int64_t kt = 0; kt < Kp / g::kBK; ++kt) {
        std::vector<uint8_t> sa(g::kTileBytes, 0xEE), sb(g::kTileBytes, 0xEE);
        for (int tid = 0; tid < g::kThreads; ++tid)
          for (int j = 0; j < g::kLoadsPerThread; ++j) {
            const mm::RC c = g::load_chunk(tid, j);
            const int64_t row = m0 + c.row, k = kt * g::kBK + c.col * 16, n = n0 + c.row;
            for (int e = 0; e < 16; ++e) {
              uint8_t byte = 0;
              if (row < M && k + e < K) {
                const float xv = x[row * K + k + e];
                byte = kFp8 ? g::fp8_quantize(xv, xs) : g::w8a8_quantize(xv, row_scale[c.row], lo, hi);
              }
              sa[g::swizzle(c.row, c.col) + e] = byte;
              sb[g::swizzle(c.row, c.col) + e] = n < N ? wt[g::nk64_index(n, k + e, Kp)] : 0;
            }
          }
        for (int warp = 0; warp < g::kWarps; ++warp)
          for (int ks = 0; ks < g::kKSteps; ++ks) {
            uint32_t a[g::kMTiles][32][4], b[g::kNTiles][32][2];
            for (int mt = 0; mt < g::kMTiles; ++mt) {
              int addr[32];
              for (int l = 0; l < 32; ++l) addr[l] = g::swizzle(g::a_ldmatrix_src(warp, mt, ks, l).row, g::a_ldmatrix_src(warp, mt, ks, l).col);
              for (int l = 0; l < 32; ++l)
                for (int r = 0; r < 4; ++r) a[mt][l][r] = ldm_reg(sa, addr, l, r);
            }
            for (int np = 0; np < g::kNTiles / 2; ++np) {
              int addr[32];
              for (int l = 0; l < 32; ++l) addr[l] = g::swizzle(g::b_ldmatrix_src(warp, np, ks, l).row, g::b_ldmatrix_src(warp, np, ks, l).col);
              for (int l = 0; l < 32; ++l) {
                b[2 * np][l][0] = ldm_reg(sb, addr, l, 0);
                b[2 * np][l][1] = ldm_reg(sb, addr, l, 1);
                b[2 * np + 1][l][0] = ldm_reg(sb, addr, l, 2);
                b[2 * np + 1][l][1] = ldm_reg(sb, addr, l, 3);
              }
            }
            // The mma (hardware model): operands reassembled through the fragment layouts.
            for (int mt = 0; mt < g::kMTiles; ++mt)
              for (int nt = 0; nt < g::kNTiles; ++nt) {
                uint8_t A[16][32], B[32][8];
                for (int l = 0; l < 32; ++l) {
                  for (int e = 0; e < 16; ++e) {
                    const mm::RC rc = mm::m16n8k32_a(l, e);
                    A[rc.row][rc.col] = static_cast<uint8_t>(a[mt][l][e / 4] >> (8 * (e % 4)));
                  }
                  for (int e = 0; e < 8; ++e) {
                    const mm::RC rc = mm::m16n8k32_b(l, e);
                    B[rc.row][rc.col] = static_cast<uint8_t>(b[nt][l][e / 4] >> (8 * (e % 4)));
                  }
                }
                for (int l = 0; l < 32; ++l)
                  for (int e = 0; e < 4; ++e) {
                    const mm::RC o = g::acc_coord(warp, mt, nt, l, e);
                    const mm::RC f = mm::m16n8_c(l, e);
                    if (kFp8) {
                      double s = 0;
                      for (int k = 0; k < 32; ++k)
                        s += double(qk::fp::e4m3fn_to_f32_one(A[f.row][k])) * qk::fp::e4m3fn_to_f32_one(B[k][f.col]);
                      accf32[o.row * g::kBN + o.col] += static_cast<float>(s);
                    } else {
                      int64_t s = 0;
                      for (int k = 0; k < 32; ++k) s += int64_t{static_cast<int8_t>(A[f.row][k])} * static_cast<int8_t>(B[k][f.col]);
                      acci[o.row * g::kBN + o.col] += s;
                    }
                  }
              }
          }
      }
      for (int warp = 0; warp < g::kWarps; ++warp)
        for (int mt = 0; mt < g::kMTiles; ++mt)
          for (int nt = 0; nt < g::kNTiles; ++nt)
            for (int l = 0; l < 32; ++l)
              for (int e = 0; e < 4; ++e) {
                const mm::RC c = g::acc_coord(warp, mt, nt, l, e);
                const int64_t row = m0 + c.row, col = n0 + c.col;
                if (row >= M || col >= N) continue;
                y[row * N + col] =
                    kFp8 ? g::fp8_epilogue(accf32[c.row * g::kBN + c.col], out_scale, bias, col)
                         : g::w8a8_epilogue(static_cast<int32_t>(acci[c.row * g::kBN + c.col]), w_scale[col],
                                            row_scale[c.row], bias, col);
              }
    }
}

static std::vector<uint8_t> repack_nk64(const std::vector<uint8_t>& w, int64_t K, int64_t N) {
  const int64_t Kp = g::pad_k(K);
  std::vector<uint8_t> wt(N * Kp, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) wt[g::nk64_index(n, k, Kp)] = w[k * N + n];
  return wt;
}

static std::vector<float> rand_f(size_t n, float scale) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& f : v) f = d(rng);
  return v;
}

static void test_block_gemm() {
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 70, 100}, {3, 64, 64}, {65, 130, 129}, {17, 8, 300}, {128, 64, 0}, {2, 5, 7}};
  int idx = 0;
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    std::vector<float> x = rand_f(M * K, 3.0f);
    if (M > 2 && K > 3) x[2 * K + 3] = NAN;  // a NaN row: its outputs are the canonical NaN
    std::vector<uint8_t> w(K * N);
    for (auto& b : w) b = static_cast<uint8_t>(rnd(-127, 127));
    std::vector<float> ws = rand_f(N, 1.0f), bias = rand_f(N, 2.0f);
    for (float& v : ws) v = std::fabs(v) + 0.5f;
    const bool with_bias = idx % 2 == 0;
    std::vector<float> want(M * N), got(M * N, -1.0f);
    qk::ref::dense_w8a8(M, N, K, x.data(), reinterpret_cast<const int8_t*>(w.data()), ws.data(),
                        with_bias ? bias.data() : nullptr, -127.0f, 127.0f, 1e-7f, want.data(), nullptr);
    block_model<false>(x, M, N, K, repack_nk64(w, K, N), ws, with_bias ? bias.data() : nullptr, -127.0f, 127.0f, 1e-7f,
                       0, 0, got);
    const bool ok = std::memcmp(want.data(), got.data(), want.size() * 4) == 0;
    check(ok, "block model of the int8 GEMM = qk::ref::dense_w8a8 bit for bit, M,N,K = " + std::to_string(M) + "," +
                  std::to_string(N) + "," + std::to_string(K));
    // fp8: codes of random weights; tolerance relative to sum |x_k w_k| (the Tensor-Core sum order differs).
    std::vector<uint8_t> w8(K * N);
    for (auto& b : w8) b = qk::fp::f32_to_e4m3fn_one(rand_f(1, 4.0f)[0]);
    std::vector<float> xf = rand_f(M * K, 3.0f);
    const float xs = 0.05f, wsc = 0.5f;
    qk::ref::dense_fp8(M, N, K, xf.data(), xs, w8.data(), wsc, with_bias ? bias.data() : nullptr, want.data(), nullptr);
    block_model<true>(xf, M, N, K, repack_nk64(w8, K, N), ws, with_bias ? bias.data() : nullptr, 0, 0, 0, xs, xs * wsc, got);
    double worst = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double mag = 1e-30;
        for (int64_t k = 0; k < K; ++k)
          mag += std::fabs(qk::fp::e4m3fn_to_f32_one(g::fp8_quantize(xf[i * K + k], xs)) *
                           qk::fp::e4m3fn_to_f32_one(w8[k * N + j])) * xs * wsc;
        worst = std::max(worst, std::fabs(double(want[i * N + j]) - got[i * N + j]) / (mag + 1e-6));
      }
    check(worst < 1e-5, "block model of the fp8 GEMM ~ qk::ref::dense_fp8 (rel " + std::to_string(worst) + ")");
    ++idx;
  }
}

// ---- 6. GPTQ / int4 addressing and the fused dequantize GEMV ----------------------------------------------------
static void test_wq() {
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t N : {1, 7, 8, 13, 64, 257}) {
      const int64_t K = 5;
      std::vector<uint8_t> q(N * K), packed(K * qk::gptq_runtime_row_bytes(N, bits)), unp(K * N);
      for (auto& v : q) v = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
      qk::ref::gptq_runtime_pack(q.data(), N, K, nullptr, bits, packed.data());
      bool ok = w::row_bytes(N, bits) == qk::gptq_runtime_row_bytes(N, bits);
      const int64_t rb = w::row_bytes(N, bits);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < N; ++j) {
          const uint64_t v = w::load_chunk8(packed.data() + k * rb, j / w::kCols, bits, rb);
          ok = ok && w::chunk_level(v, static_cast<int>(j % w::kCols), bits) == q[j * K + k];
        }
      check(ok, "GPTQ runtime layout: chunk decode = gptq_runtime_pack, bits " + std::to_string(bits) + " N " + std::to_string(N));
    }
  }
  // Keras int4 (dense_w4g layout) decodes to the signed nibble of qk_unpack_nibble.
  {
    const int64_t N = 11, K = 3, rb = (N + 1) / 2;
    std::vector<uint8_t> w4(K * rb);
    for (auto& b : w4) b = static_cast<uint8_t>(rnd(0, 255));
    bool ok = w::row_bytes(N, 4) == rb;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) {
        const int lvl = w::chunk_level(w::load_chunk8(w4.data() + k * rb, j / 8, 4, rb), static_cast<int>(j % 8), 4);
        const float got = w::dequant(lvl, 0, 1.0f, true);
        ok = ok && got == static_cast<float>(static_cast<int8_t>(qk::qk_unpack_nibble(w4[k * rb + j / 2], j & 1, true)));
      }
    check(ok, "Keras int4 layout: chunk decode = signed nibble");
  }
  // K slices of the warps cover [0, K) once, in order.
  bool ok = true;
  for (int64_t K : {0, 1, 7, 8, 9, 100, 4097}) {
    int64_t next = 0;
    for (int wp = 0; wp < w::kWarps; ++wp) {
      ok = ok && w::k_begin(K, wp) == next && w::k_end(K, wp) >= w::k_begin(K, wp);
      next = w::k_end(K, wp);
    }
    ok = ok && next == K;
  }
  check(ok, "wq K slices partition [0, K)");
  // The whole kernel on the host (every block, warp, lane, then the reduction) vs the CPU references.
  const int64_t cases[][4] = {{1, 300, 256, 128}, {5, 17, 100, 32}, {2, 513, 70, 70}, {1, 8, 1, 1}, {3, 40, 129, 7}};
  for (const auto& cs : cases)
    for (int bits : {2, 3, 4, 8}) {
      for (int is_signed = 0; is_signed < (bits == 4 ? 2 : 1); ++is_signed) {
        const int64_t M = cs[0], N = cs[1], K = cs[2], group = cs[3], G = (K + group - 1) / group;
        std::vector<float> x = rand_f(M * K, 1.0f), scale = rand_f(G * N, 0.1f), bias = rand_f(N, 1.0f);
        std::vector<uint8_t> zero(G * N), wq;
        std::vector<float> want(M * N), got(M * N, 0.0f);
        if (is_signed) {
          for (auto& z : zero) z = static_cast<uint8_t>(static_cast<int8_t>(rnd(-8, 7)));
          wq.resize(K * ((N + 1) / 2));
          for (auto& b : wq) b = static_cast<uint8_t>(rnd(0, 255));
          qk::ref::dense_w4g(M, N, K, x.data(), wq.data(), scale.data(), reinterpret_cast<const int8_t*>(zero.data()),
                             group, bias.data(), want.data(), nullptr);
        } else {
          for (auto& z : zero) z = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
          std::vector<uint8_t> q(N * K);
          for (auto& v : q) v = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
          wq.resize(K * qk::gptq_runtime_row_bytes(N, bits));
          qk::ref::gptq_runtime_pack(q.data(), N, K, nullptr, bits, wq.data());
          qk::ref::dense_gptq(M, N, K, x.data(), wq.data(), bits, scale.data(), zero.data(), group, bias.data(),
                              want.data(), nullptr);
        }
        const w::Problem p{M, N, K, wq.data(), bits, is_signed != 0, scale.data(), zero.data(), group, nullptr, G};
        auto xload = [&](int64_t i, int64_t k) { return x[i * K + k]; };
        for (int64_t bx = 0; bx < (N + w::kBlockCols - 1) / w::kBlockCols; ++bx)
          for (int64_t m0 = 0; m0 < M; m0 += w::kRows) {
            std::vector<float> part(w::kWarps * w::kRows * w::kCols * 32, 0.0f);
            for (int wp = 0; wp < w::kWarps; ++wp)
              for (int l = 0; l < 32; ++l) {
                float acc[w::kRows][w::kCols] = {};
                const int64_t c = bx * 32 + l;
                if (c * w::kCols < N) w::accumulate(p, xload, m0, c, w::k_begin(K, wp), w::k_end(K, wp), acc);
                for (int r = 0; r < w::kRows; ++r)
                  for (int t = 0; t < w::kCols; ++t) part[wp * w::kRows * w::kCols * 32 + (r * w::kCols + t) * 32 + l] = acc[r][t];
              }
            for (int r = 0; r < w::kRows; ++r)
              for (int l = 0; l < 32; ++l)
                for (int t = 0; t < w::kCols; ++t) {
                  const int64_t row = m0 + r, col = (bx * 32 + l) * w::kCols + t;
                  if (row < M && col < N)
                    got[row * N + col] = w::finish(&part[(r * w::kCols + t) * 32 + l], w::kRows * w::kCols * 32, bias.data(), col);
                }
          }
        double worst = 0;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double mag = std::fabs(bias[j]) + 1e-6;
            for (int64_t k = 0; k < K; ++k) mag += std::fabs(x[i * K + k]) * std::fabs(scale[(k / group) * N + j]) * 255;
            worst = std::max(worst, std::fabs(double(want[i * N + j]) - got[i * N + j]) / mag);
          }
        check(worst < 2e-6, std::string("wq kernel model ~ ") + (is_signed ? "dense_w4g" : "dense_gptq") + " bits " +
                                std::to_string(bits) + " M,N,K,group " + std::to_string(M) + "," + std::to_string(N) +
                                "," + std::to_string(K) + "," + std::to_string(group) + " (rel " + std::to_string(worst) + ")");
      }
    }
}


// ---- 7. g_idx addressing -------------------------------------------------------------------------------------
// A GPTQ checkpoint with act-order keeps its rows in input order and says per row which group it belongs to
// (g_idx[i] = position of input i in the act order / group). The same layer in the runtime layout has its rows
// permuted (gptq_runtime_pack with perm) and groups k / group. Both must give the same y, and both must equal
// the direct formula y = sum_i x[i] * (q[i] - z[g_idx[i]]) * s[g_idx[i]].
static void test_g_idx() {
  bool ok_fn = w::group_index(5, 4, nullptr, 3) == 1 && w::group_index(0, 7, nullptr, 1) == 0;
  const int32_t gi[4] = {2, 0, 1, -1};
  ok_fn = ok_fn && w::group_index(0, 1, gi, 3) == 2 && w::group_index(2, 1, gi, 3) == 1 &&
          w::group_index(3, 1, gi, 3) == 0 && w::group_index(0, 1, gi, 2) == 0;  // out of range -> 0, never OOB
  check(ok_fn, "group_index: k / group, g_idx[k], out-of-range entries clamp to group 0");
  for (int bits : {2, 3, 4, 8}) {
    const int64_t M = 3, N = 37, K = 70, group = 16, G = (K + group - 1) / group;
    std::vector<int32_t> perm(K);  // act order: a random permutation
    for (int64_t i = 0; i < K; ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> g_idx(K);
    for (int64_t j = 0; j < K; ++j) g_idx[perm[j]] = static_cast<int32_t>(j / group);
    std::vector<uint8_t> q(N * K), zero(G * N);  // q: Keras [out, in]
    for (auto& v : q) v = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
    for (auto& v : zero) v = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
    std::vector<float> x = rand_f(M * K, 1.0f), scale = rand_f(G * N, 0.1f);
    const int64_t rb = w::row_bytes(N, bits);
    std::vector<uint8_t> rt(K * rb), inorder(K * rb);
    qk::ref::gptq_runtime_pack(q.data(), N, K, perm.data(), bits, rt.data());
    qk::ref::gptq_runtime_pack(q.data(), N, K, nullptr, bits, inorder.data());
    std::vector<float> xp(M * K);  // x in runtime order
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) xp[i * K + k] = x[i * K + perm[k]];
    std::vector<float> y_rt(M * N);
    qk::ref::dense_gptq(M, N, K, xp.data(), rt.data(), bits, scale.data(), zero.data(), group, nullptr, y_rt.data(),
                        nullptr);
    // The kernel's per-thread loop on the in-order rows with g_idx (one thread per 8 columns, whole K).
    const w::Problem p{M, N, K, inorder.data(), bits, false, scale.data(), zero.data(), group, g_idx.data(), G};
    auto xload = [&](int64_t i, int64_t k) { return x[i * K + k]; };
    double worst_rt = 0, worst_direct = 0;
    for (int64_t c = 0; c * 8 < N; ++c) {
      float acc[w::kRows][w::kCols] = {};
      w::accumulate(p, xload, 0, c, 0, K, acc);
      for (int r = 0; r < M; ++r)
        for (int t = 0; t < 8 && c * 8 + t < N; ++t) {
          const int64_t j = c * 8 + t;
          double direct = 0, mag = 1e-9;
          for (int64_t i = 0; i < K; ++i) {
            const int64_t gg = g_idx[i];
            const double wv = (double(q[j * K + i]) - zero[gg * N + j]) * scale[gg * N + j];
            direct += double(x[r * K + i]) * wv;
            mag += std::fabs(x[r * K + i] * wv);
          }
          worst_rt = std::max(worst_rt, std::fabs(double(acc[r][t]) - y_rt[r * N + j]) / mag);
          worst_direct = std::max(worst_direct, std::fabs(double(acc[r][t]) - direct) / mag);
        }
    }
    check(worst_rt < 1e-6 && worst_direct < 1e-6,
          "g_idx rows in input order = runtime layout with perm = direct formula, bits " + std::to_string(bits) +
              " (rel " + std::to_string(worst_rt) + ", " + std::to_string(worst_direct) + ")");
  }
}

// ---- 8. the Tensor-Core dequantize GEMM (wq_mma.cu) --------------------------------------------------------------
namespace t16 = qk::wqmma;

static void test_wq_mma_tiling() {
  // Loads cover the A and B tiles once, in 16-byte runs.
  std::vector<int> sa(t16::kBM * (t16::kBK / 8), 0), sb(t16::kBK * (t16::kBN / 8), 0);
  for (int tid = 0; tid < t16::kThreads; ++tid) {
    for (int j = 0; j < t16::kAChunks; ++j) ++sa[t16::a_load(tid, j).row * (t16::kBK / 8) + t16::a_load(tid, j).col];
    for (int j = 0; j < t16::kBChunks; ++j) ++sb[t16::b_load(tid, j).row * (t16::kBN / 8) + t16::b_load(tid, j).col];
  }
  bool ok = true;
  for (int v : sa) ok = ok && v == 1;
  for (int v : sb) ok = ok && v == 1;
  check(ok, "wq mma: tile loads cover every 8-element run once");
  // Eight consecutive threads read eight consecutive chunks of one packed weight row (coalesced bits * 8 bytes).
  ok = true;
  for (int t0 = 0; t0 < t16::kThreads; t0 += 8)
    for (int j = 0; j < t16::kBChunks; ++j)
      for (int i = 0; i < 8; ++i)
        ok = ok && t16::b_load(t0 + i, j).row == t16::b_load(t0, j).row && t16::b_load(t0 + i, j).col == i;
  check(ok, "wq mma: 8 consecutive threads read one contiguous run of a packed row");
  // Fragment elements: 2r and 2r+1 are adjacent in shared memory (one 32-bit load for A), and every warp's
  // fragments cover its 32 x 16 A / 16 x 32 B sub-tiles of each k16 step exactly once.
  ok = true;
  for (int warp = 0; warp < 4; ++warp)
    for (int ks = 0; ks < t16::kKSteps; ++ks) {
      std::vector<int> ca(t16::kBM * t16::kBK, 0), cb(t16::kBK * t16::kBN, 0);
      for (int l = 0; l < 32; ++l) {
        for (int mt = 0; mt < t16::kMTiles; ++mt)
          for (int e = 0; e < 8; ++e) {
            const mm::RC rc = t16::a_frag(warp, mt, ks, l, e);
            ++ca[rc.row * t16::kBK + rc.col];
            if (e % 2 == 1) {
              const mm::RC lo = t16::a_frag(warp, mt, ks, l, e - 1);
              ok = ok && t16::a_offset(rc.row, rc.col) == t16::a_offset(lo.row, lo.col) + 1 &&
                   t16::a_offset(lo.row, lo.col) % 2 == 0;
            }
          }
        for (int nt = 0; nt < t16::kNTiles; ++nt)
          for (int e = 0; e < 4; ++e) {
            const mm::RC rc = t16::b_frag(warp, nt, ks, l, e);
            ++cb[rc.row * t16::kBN + rc.col];
          }
      }
      for (int r = 0; r < t16::kBM; ++r)
        for (int k = 0; k < t16::kBK; ++k) {
          const bool mine = r / 32 == t16::warp_m(warp) && k / 16 == ks;
          ok = ok && ca[r * t16::kBK + k] == (mine ? 1 : 0);
        }
      for (int k = 0; k < t16::kBK; ++k)
        for (int n = 0; n < t16::kBN; ++n) {
          const bool mine = n / 32 == t16::warp_n(warp) && k / 16 == ks;
          ok = ok && cb[k * t16::kBN + n] == (mine ? 1 : 0);
        }
    }
  check(ok, "wq mma: fragments cover each warp's sub-tiles once; A register pairs are 32-bit aligned");
  std::vector<int> cov(t16::kBM * t16::kBN, 0);
  for (int warp = 0; warp < 4; ++warp)
    for (int mt = 0; mt < t16::kMTiles; ++mt)
      for (int nt = 0; nt < t16::kNTiles; ++nt)
        for (int l = 0; l < 32; ++l)
          for (int e = 0; e < 4; ++e) ++cov[t16::acc_coord(warp, mt, nt, l, e).row * t16::kBN + t16::acc_coord(warp, mt, nt, l, e).col];
  ok = true;
  for (int v : cov) ok = ok && v == 1;
  check(ok, "wq mma: accumulators cover the block tile once");
  // Bank conflicts. 32-bit fragment loads: lanes hitting one bank must read one word. 16-bit B loads: same rule
  // on the containing word. 16-byte stores: each 8-thread phase covers 8 distinct 16-byte units of 128 bytes.
  auto conflict_free_words = [](const int* byte_addr) {
    std::map<int, int> word_of_bank;
    for (int l = 0; l < 32; ++l) {
      const int word = byte_addr[l] / 4, bank = word % 32;
      auto it = word_of_bank.find(bank);
      if (it != word_of_bank.end() && it->second != word) return false;
      word_of_bank[bank] = word;
    }
    return true;
  };
  ok = true;
  for (int warp = 0; warp < 4; ++warp)
    for (int ks = 0; ks < t16::kKSteps; ++ks) {
      for (int mt = 0; mt < t16::kMTiles; ++mt)
        for (int r = 0; r < 4; ++r) {
          int a[32];
          for (int l = 0; l < 32; ++l) {
            const mm::RC rc = t16::a_frag(warp, mt, ks, l, 2 * r);
            a[l] = 2 * t16::a_offset(rc.row, rc.col);
          }
          ok = ok && conflict_free_words(a);
        }
      for (int nt = 0; nt < t16::kNTiles; ++nt)
        for (int e = 0; e < 4; ++e) {
          int a[32];
          for (int l = 0; l < 32; ++l) {
            const mm::RC rc = t16::b_frag(warp, nt, ks, l, e);
            a[l] = 2 * t16::b_offset(rc.row, rc.col);
          }
          ok = ok && conflict_free_words(a);
        }
    }
  check(ok, "wq mma: fragment loads from shared memory are bank-conflict free");
  auto distinct_units = [](const int* a) {
    std::set<int> u;
    for (int i = 0; i < 8; ++i) u.insert((a[i] / 16) % 8);
    return u.size() == 8;
  };
  int a_conflicts = 0, b_conflicts = 0;
  for (int t0 = 0; t0 < t16::kThreads; t0 += 8)
    for (int j = 0; j < t16::kAChunks; ++j) {
      int a[8], b[8];
      for (int i = 0; i < 8; ++i) {
        a[i] = 2 * t16::a_offset(t16::a_load(t0 + i, j).row, t16::a_load(t0 + i, j).col * 8);
        b[i] = 2 * t16::b_offset(t16::b_load(t0 + i, j).row, t16::b_load(t0 + i, j).col * 8);
      }
      a_conflicts += distinct_units(a) ? 0 : 1;
      b_conflicts += distinct_units(b) ? 0 : 1;
    }
  // The A stores (80-byte rows) are allowed one 2-way conflict per phase; the B stores must be free.
  check(b_conflicts == 0, "wq mma: 16-byte weight stores are bank-conflict free");
  check(a_conflicts <= t16::kThreads / 8 * t16::kAChunks, "wq mma: activation stores (<= one 2-way conflict per phase)");
}

// One thread block of wq_mma_kernel on the host: loads through a_load / b_load and the element functions into
// modelled shared memory (16-bit codes), fragments through a_frag / b_frag with the kernel's register pairing,
// the mma through the PTX m16n8k16 layouts (products of two 16-bit floats are exact in float32; the sum is
// formed in float32), epilogue through acc_coord. Returns y as float (after the 16-bit rounding of the output).
static void wq_mma_block_model(const std::vector<uint16_t>& x, const w::Problem& p, const float* bias, t16::Op16 ty,
                               std::vector<float>& y) {
  const int64_t gx = (p.N + t16::kBN - 1) / t16::kBN, gy = (p.M + t16::kBM - 1) / t16::kBM;
  const int64_t rb = w::row_bytes(p.N, p.bits);
  for (int64_t by = 0; by < gy; ++by)
    for (int64_t bx = 0; bx < gx; ++bx) {
      const int64_t m0 = by * t16::kBM, n0 = bx * t16::kBN;
      std::vector<float> acc(4 * 32 * t16::kMTiles * t16::kNTiles * 4, 0.0f);  // [warp][lane][mt][nt][e]
      auto A = [&](int wp, int l, int mt, int nt, int e) -> float& {
        return acc[(((wp * 32 + l) * t16::kMTiles + mt) * t16::kNTiles + nt) * 4 + e];
      };
      for (int64_t k0 = 0; k0 < p.K; k0 += t16::kBK) {
        std::vector<uint16_t> As(t16::kBM * t16::kAStride, 0xFFFF), Bs(t16::kBK * t16::kBStride, 0xFFFF);
        for (int tid = 0; tid < t16::kThreads; ++tid) {
          for (int j = 0; j < t16::kAChunks; ++j) {
            const mm::RC rc = t16::a_load(tid, j);
            const int64_t row = m0 + rc.row, k = k0 + rc.col * 8;
            for (int e = 0; e < 8; ++e)
              As[t16::a_offset(rc.row, rc.col * 8 + e)] = (row < p.M && k + e < p.K) ? x[row * p.K + k + e] : 0;
          }
          for (int j = 0; j < t16::kBChunks; ++j) {
            const mm::RC rc = t16::b_load(tid, j);
            const int64_t k = k0 + rc.row, c = n0 / 8 + rc.col;
            for (int e = 0; e < 8; ++e) {
              uint16_t v = 0;
              if (k < p.K && c * 8 < p.N) {
                const int64_t g = w::group_index(k, p.group, p.g_idx, p.G);
                const uint64_t q = w::load_chunk8(p.wq + k * rb, c, p.bits, rb);
                v = t16::to_op16(t16::b_weight(p, q, g, c * 8 + e, e), ty);
              }
              Bs[t16::b_offset(rc.row, rc.col * 8 + e)] = v;
            }
          }
        }
        for (int wp = 0; wp < 4; ++wp)
          for (int ks = 0; ks < t16::kKSteps; ++ks)
            for (int mt = 0; mt < t16::kMTiles; ++mt)
              for (int nt = 0; nt < t16::kNTiles; ++nt) {
                // Registers as the kernel loads them: A reg r = As[off(2r)], As[off(2r) + 1]; B reg r = two loads.
                float ra[32][8], rbv[32][4];
                for (int l = 0; l < 32; ++l) {
                  for (int r = 0; r < 4; ++r) {
                    const mm::RC rc = t16::a_frag(wp, mt, ks, l, 2 * r);
                    const int off = t16::a_offset(rc.row, rc.col);
                    ra[l][2 * r] = t16::from_op16(As[off], ty);
                    ra[l][2 * r + 1] = t16::from_op16(As[off + 1], ty);
                  }
                  for (int e = 0; e < 4; ++e) {
                    const mm::RC rc = t16::b_frag(wp, nt, ks, l, e);
                    rbv[l][e] = t16::from_op16(Bs[t16::b_offset(rc.row, rc.col)], ty);
                  }
                }
                // The hardware: operand (r, c) is what the PTX layout says the lane/element holds.
                float Am[16][16], Bm[16][8];
                for (int l = 0; l < 32; ++l) {
                  for (int e = 0; e < 8; ++e) Am[mm::m16n8k16_a(l, e).row][mm::m16n8k16_a(l, e).col] = ra[l][e];
                  for (int e = 0; e < 4; ++e) Bm[mm::m16n8k16_b(l, e).row][mm::m16n8k16_b(l, e).col] = rbv[l][e];
                }
                for (int l = 0; l < 32; ++l)
                  for (int e = 0; e < 4; ++e) {
                    const mm::RC o = mm::m16n8_c(l, e);
                    float s = A(wp, l, mt, nt, e);
                    for (int k = 0; k < 16; ++k) s += Am[o.row][k] * Bm[k][o.col];
                    A(wp, l, mt, nt, e) = s;
                  }
              }
      }
      for (int wp = 0; wp < 4; ++wp)
        for (int mt = 0; mt < t16::kMTiles; ++mt)
          for (int nt = 0; nt < t16::kNTiles; ++nt)
            for (int l = 0; l < 32; ++l)
              for (int e = 0; e < 4; ++e) {
                const mm::RC rc = t16::acc_coord(wp, mt, nt, l, e);
                const int64_t row = m0 + rc.row, col = n0 + rc.col;
                if (row < p.M && col < p.N)
                  y[row * p.N + col] = t16::from_op16(t16::to_op16(t16::epilogue(A(wp, l, mt, nt, e), bias, col), ty), ty);
              }
    }
}

static void test_wq_mma_block() {
  // vs the CPU references (dense_gptq / dense_w4g on the 16-bit activations widened to float32): the model differs
  // by the rounding of W_hat to the 16-bit type (relative 2^-11 / 2^-8 per term), the float32 sum order and the
  // output rounding. The bound is those three terms; a wrong fragment layout or address is off by O(1).
  const int64_t cases[][4] = {{16, 64, 32, 32}, {70, 130, 100, 32}, {33, 8, 257, 64}, {64, 200, 64, 7}, {1, 5, 3, 1}};
  int n_ok = 0, n_runs = 0;
  for (const auto& cs : cases)
    for (int bits : {2, 3, 4, 8})
      for (int is_signed = 0; is_signed < (bits == 4 ? 2 : 1); ++is_signed)
        for (int tyi = 0; tyi < 2; ++tyi)
          for (int use_gidx = 0; use_gidx < (is_signed ? 1 : 2); ++use_gidx) {
            const t16::Op16 ty = tyi == 0 ? t16::Op16::kF16 : t16::Op16::kBF16;
            const int64_t M = cs[0], N = cs[1], K = cs[2], group = cs[3], G = (K + group - 1) / group;
            std::vector<float> xf = rand_f(M * K, 1.0f), scale = rand_f(G * N, 0.05f), bias = rand_f(N, 1.0f);
            std::vector<uint16_t> x16(M * K);
            for (int64_t i = 0; i < M * K; ++i) {
              x16[i] = t16::to_op16(xf[i], ty);
              xf[i] = t16::from_op16(x16[i], ty);
            }
            std::vector<uint8_t> zero(G * N), wq;
            std::vector<int32_t> g_idx;
            std::vector<float> want(M * N), got(M * N, 0.0f);
            if (is_signed) {
              for (auto& z : zero) z = static_cast<uint8_t>(static_cast<int8_t>(rnd(-8, 7)));
              wq.resize(K * ((N + 1) / 2));
              for (auto& b : wq) b = static_cast<uint8_t>(rnd(0, 255));
              qk::ref::dense_w4g(M, N, K, xf.data(), wq.data(), scale.data(),
                                 reinterpret_cast<const int8_t*>(zero.data()), group, bias.data(), want.data(), nullptr);
            } else {
              for (auto& z : zero) z = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
              std::vector<uint8_t> q(N * K);
              for (auto& v : q) v = static_cast<uint8_t>(rnd(0, (1 << bits) - 1));
              wq.resize(K * qk::gptq_runtime_row_bytes(N, bits));
              if (use_gidx) {
                // Rows in input order with a g_idx; the reference runs the runtime layout (perm) on permuted x.
                std::vector<int32_t> perm(K);
                for (int64_t i = 0; i < K; ++i) perm[i] = static_cast<int32_t>(i);
                std::shuffle(perm.begin(), perm.end(), rng);
                g_idx.resize(K);
                for (int64_t j = 0; j < K; ++j) g_idx[perm[j]] = static_cast<int32_t>(j / group);
                qk::ref::gptq_runtime_pack(q.data(), N, K, nullptr, bits, wq.data());
                std::vector<uint8_t> rt(wq.size());
                qk::ref::gptq_runtime_pack(q.data(), N, K, perm.data(), bits, rt.data());
                std::vector<float> xp(M * K);
                for (int64_t i = 0; i < M; ++i)
                  for (int64_t k = 0; k < K; ++k) xp[i * K + k] = xf[i * K + perm[k]];
                qk::ref::dense_gptq(M, N, K, xp.data(), rt.data(), bits, scale.data(), zero.data(), group, bias.data(),
                                    want.data(), nullptr);
              } else {
                qk::ref::gptq_runtime_pack(q.data(), N, K, nullptr, bits, wq.data());
                qk::ref::dense_gptq(M, N, K, xf.data(), wq.data(), bits, scale.data(), zero.data(), group, bias.data(),
                                    want.data(), nullptr);
              }
            }
            const w::Problem p{M, N, K, wq.data(), bits, is_signed != 0, scale.data(), zero.data(), group,
                               use_gidx ? g_idx.data() : nullptr, G};
            wq_mma_block_model(x16, p, bias.data(), ty, got);
            const double u = ty == t16::Op16::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
            double worst = 0;
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                double mag = 0;  // sum_k |x * W_hat|
                for (int64_t k = 0; k < K; ++k) {
                  const int64_t g = use_gidx ? g_idx[k] : k / group;
                  mag += std::fabs(xf[i * K + k]) * std::fabs(scale[g * N + j]) * ((1 << bits) + 8);
                }
                const double bound = u * (mag + std::fabs(want[i * N + j])) + 1e-6 * mag + 1e-30;
                worst = std::max(worst, std::fabs(double(want[i * N + j]) - got[i * N + j]) / bound);
              }
            ++n_runs;
            if (worst <= 1.0) ++n_ok;
            else
              check(false, "wq mma block model M,N,K,group " + std::to_string(M) + "," + std::to_string(N) + "," +
                               std::to_string(K) + "," + std::to_string(group) + " bits " + std::to_string(bits) +
                               (is_signed ? " int4" : " gptq") + (tyi ? " bf16" : " f16") + (use_gidx ? " g_idx" : "") +
                               " (error / bound " + std::to_string(worst) + ")");
          }
  check(n_ok == n_runs && n_runs == 90, "wq mma block model ~ dense_gptq / dense_w4g (f16, bf16, g_idx) over " +
                                            std::to_string(n_runs) + " cases");
  // The test can fail: swapping the B fragment's two k halves (a plausible layout bug) is caught.
  {
    const int64_t M = 16, N = 8, K = 16;
    std::vector<float> xf = rand_f(M * K, 1.0f);
    std::vector<float> Am(M * K), Bm(K * N);
    for (int64_t i = 0; i < M * K; ++i) Am[i] = xf[i];
    for (auto& v : Bm) v = static_cast<float>(rnd(-3, 3));
    double diff = 0;
    for (int l = 0; l < 32; ++l)
      for (int e = 0; e < 4; ++e) {
        const mm::RC o = mm::m16n8_c(l, e);
        float good = 0, bad = 0;
        for (int k = 0; k < K; ++k) {
          good += Am[o.row * K + k] * Bm[k * N + o.col];
          bad += Am[o.row * K + k] * Bm[((k + 8) % 16) * N + o.col];
        }
        diff = std::max(diff, double(std::fabs(good - bad)));
      }
    check(diff > 0.1, "a swapped k half would be detected by the block model (the test can fail)");
  }
}

// ---- 9. GPTQ on the device: the kernels' per-thread functions, in the kernels' order, vs qk::ref bit for bit ------
namespace gd = qk::gptq_dev;

// The device cholesky_inverse_upper (gptq.cu: rotate, damp, column launches with the delayed diagonal, inverse
// from a pristine L, rotate, upper) on the host. Returns false if never positive definite.
static bool device_chol_inverse_upper(std::vector<double>& H, int64_t n, const std::vector<double>& diag, double damp,
                                      int max_tries, double* damp_used, int* tries) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += diag[i];
  const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  std::vector<double> rot(n * n), piv(n);
  for (int64_t e = 0; e < n * n; ++e) rot[n * n - 1 - e] = H[e];
  double cur = damp;
  for (int attempt = 1; attempt <= max_tries; ++attempt) {
    if (attempt > 1) cur = cur > 0.0 ? cur * 10.0 : 1e-4;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        if (j < i && attempt > 1) rot[i * n + j] = rot[j * n + i];
        if (j == i) rot[i * n + i] = diag[n - 1 - i] + cur * mean;
      }
    bool bad = false;
    for (int64_t j = 0; j < n && !bad; ++j) {
      if (j > 0) rot[(j - 1) * n + (j - 1)] = piv[j - 1];
      const double s = gd::chol_pivot(rot.data(), n, j);
      if (!gd::chol_pivot_ok(s)) {
        bad = true;
        break;
      }
      const double d = std::sqrt(s);
      for (int64_t i = n - 1; i > j; --i) rot[i * n + j] = gd::chol_entry(rot.data(), n, i, j, d);  // any order
      piv[j] = d;
    }
    if (bad) continue;
    rot[(n - 1) * n + (n - 1)] = piv[n - 1];
    std::vector<double> L = rot, Y = rot;
    for (int64_t j = n - 1; j >= 0; --j) gd::trinv_column(L.data(), Y.data(), n, j);  // columns in any order
    for (int64_t e = 0; e < n * n; ++e) rot[n * n - 1 - e] = Y[e];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) H[i * n + j] = j >= i ? rot[i * n + j] : 0.0;
    *damp_used = cur;
    *tries = attempt;
    return true;
  }
  return false;
}

static void test_gptq_device() {
  // Hessian: the per-entry function over two batches = qk::ref::hessian_accumulate (bit for bit).
  {
    const int64_t rows = 37, cols = 29;
    std::vector<float> X = rand_f(rows * cols, 2.0f);
    std::vector<double> Href(cols * cols, 0.0), Hdev(cols * cols, 0.0);
    int64_t seen = 0;
    qk::ref::hessian_accumulate(X.data(), 20, cols, Href.data(), &seen, nullptr);
    qk::ref::hessian_accumulate(X.data() + 20 * cols, rows - 20, cols, Href.data(), &seen, nullptr);
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double h = gd::hessian_entry(X.data(), 20, cols, i, j, 0.0);
        Hdev[i * cols + j] = gd::hessian_entry(X.data() + 20 * cols, rows - 20, cols, i, j, h);
      }
    check(std::memcmp(Href.data(), Hdev.data(), Href.size() * sizeof(double)) == 0,
          "gptq device: Hessian entries = ref hessian_accumulate bit for bit");
  }
  // Cholesky + inverse: column launches and per-column inverse = ref cholesky_lower / triangular_inverse_lower.
  {
    const int64_t n = 45, rows = 80;
    std::vector<float> X = rand_f(rows * n, 1.0f);
    std::vector<double> H(n * n, 0.0);
    int64_t seen = 0;
    qk::ref::hessian_accumulate(X.data(), rows, n, H.data(), &seen, nullptr);
    qk::ref::hessian_finalize(H.data(), n, seen);
    std::vector<double> diag(n);
    for (int64_t i = 0; i < n; ++i) diag[i] = H[i * n + i];
    std::vector<double> Href = H, Hdev = H;
    double du_ref = 0, du_dev = 0;
    int tr_ref = 0, tr_dev = 0;
    const qk::Status st = qk::ref::cholesky_inverse_upper(Href.data(), n, 0.01, 4, &du_ref, &tr_ref, nullptr);
    const bool ok = device_chol_inverse_upper(Hdev, n, diag, 0.01, 4, &du_dev, &tr_dev);
    check(st == qk::kOk && ok && du_ref == du_dev && tr_ref == tr_dev &&
              std::memcmp(Href.data(), Hdev.data(), Href.size() * sizeof(double)) == 0,
          "gptq device: Cholesky column launches + per-column inverse = ref cholesky_inverse_upper bit for bit");
    // A rank-deficient H needs retries with more damping: the retry path agrees too.
    std::vector<double> R(n * n, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) R[i * n + j] = double(X[i]) * X[j];  // rank 1
    for (int64_t i = 0; i < n; ++i) diag[i] = R[i * n + i];
    Href = R;
    Hdev = R;
    const qk::Status st2 = qk::ref::cholesky_inverse_upper(Href.data(), n, 0.0, 6, &du_ref, &tr_ref, nullptr);
    const bool ok2 = device_chol_inverse_upper(Hdev, n, diag, 0.0, 6, &du_dev, &tr_dev);
    check(st2 == qk::kOk && ok2 && tr_ref > 1 && tr_ref == tr_dev && du_ref == du_dev &&
              std::memcmp(Href.data(), Hdev.data(), Href.size() * sizeof(double)) == 0,
          "gptq device: damping retries = ref (tries " + std::to_string(tr_ref) + ")");
  }
  // The whole quantize_matrix: prepare, U, lazy-block sweep kernels (block, flush, loss) = ref bit for bit.
  int runs = 0, good = 0;
  for (int bits : {2, 3, 4, 8})
    for (int64_t group : {int64_t{-1}, int64_t{7}, int64_t{32}, int64_t{128}, int64_t{200}})
      for (int act = 0; act < 2; ++act) {
        const bool sym = (bits + act) % 3 == 0;
        const int64_t in = 300, out = 9, rows = 64;
        std::vector<float> X = rand_f(rows * in, 1.0f), W = rand_f(in * out, 0.5f);
        for (int64_t t = 0; t < rows; ++t) X[t * in + 5] = 0.0f;  // a dead input
        std::vector<double> H(in * in, 0.0);
        int64_t seen = 0;
        qk::ref::hessian_accumulate(X.data(), rows, in, H.data(), &seen, nullptr);
        qk::ref::hessian_finalize(H.data(), in, seen);
        qk::GptqOptions opt;
        opt.bits = bits;
        opt.group_size = group;
        opt.symmetric = sym;
        opt.act_order = act != 0;
        const int64_t G = qk::gptq_num_groups(in, group), g = group < 0 ? in : group;
        std::vector<uint8_t> qr(out * in), zr(out * G), qd(out * in), zd(out * G);
        std::vector<float> sr(out * G), sd(out * G), whr(in * out), whd(in * out);
        std::vector<int32_t> gir(in);
        qk::GptqResult rr;
        std::vector<double> Hr = H, Hd = H;
        const qk::Status st = qk::ref::gptq_quantize_matrix(W.data(), in, out, Hr.data(), &opt, qr.data(), sr.data(),
                                                            zr.data(), gir.data(), whr.data(), &rr, nullptr);
        gd::Prepared pre;
        gd::prepare(W.data(), in, out, Hd.data(), opt.act_order, false, &pre);
        double du = 0;
        int tries = 0;
        std::vector<double> U = pre.Hp;
        const bool ok = device_chol_inverse_upper(U, in, pre.diag, opt.damp, opt.max_damp_tries, &du, &tries);
        std::vector<float> E(gd::kLazyBlock * out), sz(2 * out, 0.0f);
        const gd::SweepArgs a{in, out, G, g, bits, sym, U.data(), pre.Wt.data(), E.data(), qd.data(), sd.data(),
                              zd.data(), whd.data(), pre.perm.data()};
        double loss = 0.0;
        int nblocks = 0;
        for (int64_t j0 = 0; j0 < in; j0 = gd::block_end(j0, in, g), ++nblocks) {
          const int64_t j1 = gd::block_end(j0, in, g);
          for (int64_t o = out - 1; o >= 0; --o) gd::sweep_block(a, o, j0, j1, &sz[2 * o], &sz[2 * o + 1]);
          for (int64_t k = in - 1; k >= j1; --k)
            for (int64_t o = 0; o < out; ++o) gd::sweep_flush(a, o, j0, j1, k);
          loss = gd::block_loss(E.data(), j1 - j0, out, loss);
        }
        const bool same = st == qk::kOk && ok && qr == qd && zr == zd && sr == sd && whr == whd && loss == rr.loss &&
                          du == rr.damp_used && tries == rr.damp_tries && pre.dead == rr.dead_inputs && U == Hr;
        ++runs;
        if (same) ++good;
        else
          check(false, "gptq device sweep bits " + std::to_string(bits) + " group " + std::to_string(group) +
                           (act ? " act-order" : "") + " differs from ref (blocks " + std::to_string(nblocks) + ")");
      }
  check(good == runs && runs == 40, "gptq device: lazy-block sweep = ref gptq_quantize_matrix bit for bit (levels, "
                                    "scales, zeros, w_hat, loss, U) over " + std::to_string(runs) + " configurations");
  // Blocks never separate a group start from its group unless the group starts at the block start.
  bool ok = true;
  for (int64_t in : {1, 127, 128, 129, 300, 1000})
    for (int64_t g : {1, 7, 32, 100, 128, 129, 200, 1000}) {
      int64_t j0 = 0;
      while (j0 < in) {
        const int64_t j1 = gd::block_end(j0, in, g);
        ok = ok && j1 > j0 && j1 - j0 <= gd::kLazyBlock;
        for (int64_t j = j0 + 1; j < j1; ++j)
          if (j % g == 0) ok = ok && std::min(j + g, in) <= j1;
        j0 = j1;
      }
    }
  check(ok, "gptq device: lazy blocks keep every group inside one block or starting at a block start");
}

// ---- 10. caching allocator and the capability predicate --------------------------------------------------------
struct FakeDevice {
  size_t limit, used = 0;
  int allocs = 0, frees = 0;
  std::map<void*, size_t> sizes;
};
static qk_status fake_alloc(void* ctx, size_t bytes, void** p) {
  auto* d = static_cast<FakeDevice*>(ctx);
  if (d->used + bytes > d->limit) return QK_STATUS_OUT_OF_MEMORY;
  d->used += bytes;
  ++d->allocs;
  *p = std::malloc(bytes);
  d->sizes[*p] = bytes;
  return QK_STATUS_OK;
}
static void fake_free(void* ctx, void* p) {
  auto* d = static_cast<FakeDevice*>(ctx);
  ++d->frees;
  d->used -= d->sizes[p];
  d->sizes.erase(p);
  std::free(p);
}
static void test_allocator() {
  namespace cm = qk::cuda_mem;
  check(cm::round_size(0) == 512 && cm::round_size(1) == 512 && cm::round_size(513) == 1024 &&
            cm::round_size((1 << 20) - 1) == (1 << 20) && cm::round_size((1 << 20) + 1) == (2 << 20),
        "allocator size classes");
  FakeDevice dev{4 << 20};
  cm::Backend b{fake_alloc, fake_free, &dev};
  {
    cm::CachingAllocator a(b);
    void *p1, *p2, *p3;
    bool ok = a.allocate(1000, &p1) == QK_STATUS_OK && a.block_size(p1) == 1024;
    ok = ok && a.deallocate(p1) == QK_STATUS_OK && a.allocate(900, &p2) == QK_STATUS_OK && p2 == p1;  // cache hit
    ok = ok && a.stats().cache_hits == 1 && a.stats().backend_allocs == 1;
    ok = ok && a.deallocate(p2) == QK_STATUS_OK && a.deallocate(p2) == QK_STATUS_INVALID_ARGUMENT;  // double free
    ok = ok && a.allocate(100, &p3) == QK_STATUS_OK && p3 != p1;  // 512 does not take the cached 1024 (waste > 1/4)
    check(ok, "allocator reuses cached blocks, rejects double free");
    a.deallocate(p3);
  }
  {
    FakeDevice d2{4 << 20};
    cm::Backend b2{fake_alloc, fake_free, &d2};
    cm::CachingAllocator a(b2);
    void *p1, *p2, *p3;
    bool ok = a.allocate(2 << 20, &p1) == QK_STATUS_OK && a.allocate(2 << 20, &p2) == QK_STATUS_OK;
    ok = ok && a.allocate(1, &p3) == QK_STATUS_OUT_OF_MEMORY && p3 == nullptr;  // device full, nothing cached
    a.deallocate(p1);
    // 4 MiB does not fit next to the live 2 MiB block: the cached block is released, the retry still fails ->
    // a clean QK_STATUS_OUT_OF_MEMORY and an empty cache.
    ok = ok && a.allocate(4 << 20, &p3) == QK_STATUS_OUT_OF_MEMORY && d2.frees == 1 && a.stats().cached_bytes == 0;
    // With only cached blocks in the way, the release makes room and the retry succeeds.
    a.deallocate(p2);
    ok = ok && a.stats().cached_bytes == (2u << 20);
    ok = ok && a.allocate(4 << 20, &p3) == QK_STATUS_OK && d2.frees == 2 && a.stats().in_use_bytes == (4u << 20);
    check(ok, "allocator: out of memory releases the cache and retries, then reports OUT_OF_MEMORY");
    a.deallocate(p3);
  }
  namespace ca = qk::cuda_arch;
  check(ca::supports(75, ca::Feature::kInt8Mma) && !ca::supports(75, ca::Feature::kInt8MmaM16N8K32) &&
            ca::supports(86, ca::Feature::kCpAsync) && !ca::supports(86, ca::Feature::kFp8Mma) &&
            ca::supports(89, ca::Feature::kFp8Mma) && ca::supports(90, ca::Feature::kFp8Mma) &&
            !ca::supports(70, ca::Feature::kBase) && !ca::supports(75, ca::Feature::kF16Mma) &&
            ca::supports(80, ca::Feature::kF16Mma),
        "capability predicate");
}

// ---- float32 SIMT GEMM (gemm_f32_tiling.cuh) -------------------------------------------------------------------
// Max number of distinct 4-byte words that the lanes of one warp access in the same bank (1 = conflict-free).
static int bank_degree(const std::vector<int>& word_offsets) {
  std::map<int, std::set<int>> banks;
  for (int o : word_offsets) banks[o % 32].insert(o);
  int worst = 0;
  for (auto& b : banks) worst = std::max(worst, static_cast<int>(b.second.size()));
  return worst;
}

static void test_sgemm() {
  namespace sg = qk::sgemm;
  // Coverage: the loads cover each tile element exactly once, the threads own each output exactly once.
  std::vector<int> ca(sg::kBM * sg::kBK, 0), cb(sg::kBK * sg::kBN, 0), co(sg::kBM * sg::kBN, 0);
  for (int t = 0; t < sg::kThreads; ++t) {
    for (int r = 0; r < sg::kLoadsA; ++r) {
      const sg::RC e = sg::a_load(t, r);
      if (e.row >= 0 && e.row < sg::kBM && e.col >= 0 && e.col < sg::kBK) ++ca[e.row * sg::kBK + e.col];
    }
    for (int r = 0; r < sg::kLoadsB; ++r) {
      const sg::RC e = sg::b_load(t, r);
      if (e.row >= 0 && e.row < sg::kBK && e.col >= 0 && e.col < sg::kBN) ++cb[e.row * sg::kBN + e.col];
    }
    for (int i = 0; i < sg::kTM; ++i)
      for (int j = 0; j < sg::kTN; ++j) {
        const int r = sg::out_row(t, i), c = sg::out_col(t, j);
        if (r >= 0 && r < sg::kBM && c >= 0 && c < sg::kBN) ++co[r * sg::kBN + c];
      }
  }
  auto all_one = [](const std::vector<int>& v) { return std::all_of(v.begin(), v.end(), [](int x) { return x == 1; }); };
  check(all_one(ca), "sgemm A-tile loads cover the tile once");
  check(all_one(cb), "sgemm B-tile loads cover the tile once");
  check(all_one(co), "sgemm thread outputs cover the block tile once");
  // Shared-memory slots are distinct and inside the arrays.
  std::set<int> sa, sb;
  bool inside = true;
  for (int r = 0; r < sg::kBM; ++r)
    for (int k = 0; k < sg::kBK; ++k) {
      const int o = sg::a_smem(r, k);
      inside = inside && o >= 0 && o < sg::kSmemAFloats;
      sa.insert(o);
    }
  for (int k = 0; k < sg::kBK; ++k)
    for (int c = 0; c < sg::kBN; ++c) {
      const int o = sg::b_smem(k, c);
      inside = inside && o >= 0 && o < sg::kSmemBFloats;
      sb.insert(o);
    }
  check(inside && sa.size() == static_cast<size_t>(sg::kBM * sg::kBK) && sb.size() == static_cast<size_t>(sg::kBK * sg::kBN),
        "sgemm shared-memory slots are distinct and in bounds");
  // Bank conflicts per warp: stores of A at most 2-way (the k-major transpose), stores of B and every read of the
  // multiply loop conflict-free.
  int worst_as = 0, worst_bs = 0, worst_ar = 0, worst_br = 0;
  for (int wbase = 0; wbase < sg::kThreads; wbase += 32) {
    for (int r = 0; r < sg::kLoadsA; ++r) {
      std::vector<int> v;
      for (int l = 0; l < 32; ++l) { const sg::RC e = sg::a_load(wbase + l, r); v.push_back(sg::a_smem(e.row, e.col)); }
      worst_as = std::max(worst_as, bank_degree(v));
    }
    for (int r = 0; r < sg::kLoadsB; ++r) {
      std::vector<int> v;
      for (int l = 0; l < 32; ++l) { const sg::RC e = sg::b_load(wbase + l, r); v.push_back(sg::b_smem(e.row, e.col)); }
      worst_bs = std::max(worst_bs, bank_degree(v));
    }
    for (int k = 0; k < sg::kBK; ++k) {
      for (int i = 0; i < sg::kTM; ++i) {
        std::vector<int> v;
        for (int l = 0; l < 32; ++l) v.push_back(sg::a_smem(sg::out_row(wbase + l, i), k));
        worst_ar = std::max(worst_ar, bank_degree(v));
      }
      for (int j = 0; j < sg::kTN; ++j) {
        std::vector<int> v;
        for (int l = 0; l < 32; ++l) v.push_back(sg::b_smem(k, sg::out_col(wbase + l, j)));
        worst_br = std::max(worst_br, bank_degree(v));
      }
    }
  }
  check(worst_as <= 2 && worst_bs == 1 && worst_ar == 1 && worst_br == 1, "sgemm shared-memory bank conflicts",
        "A store " + std::to_string(worst_as) + ", B store " + std::to_string(worst_bs) + ", A read " +
            std::to_string(worst_ar) + ", B read " + std::to_string(worst_br));
  // Host model of the kernel: every block, every thread, through the functions above; must be bit-identical to a
  // direct fmaf-over-k-in-order computation (zero padding is inert) and close to a double-precision product.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  const int shapes[][3] = {{1, 1, 1}, {1, 70, 33}, {5, 64, 16}, {64, 64, 64}, {67, 130, 45}, {3, 17, 200}};
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], N = sh[1], K = sh[2];
    std::vector<float> x(M * K), wv(K * N), bias(N), y(M * N, -1.f);
    for (auto& v : x) v = U(rng);
    for (auto& v : wv) v = U(rng);
    for (auto& v : bias) v = U(rng);
    std::vector<float> as(sg::kSmemAFloats), bs(sg::kSmemBFloats);
    for (int64_t bm = 0; bm < sg::blocks_m(M); ++bm)
      for (int64_t bn = 0; bn < sg::blocks_n(N); ++bn) {
        const int64_t m0 = bm * sg::kBM, n0 = bn * sg::kBN;
        std::vector<std::array<std::array<float, sg::kTN>, sg::kTM>> acc(sg::kThreads);
        for (auto& a : acc) for (auto& r : a) r.fill(0.f);
        for (int64_t k0 = 0; k0 < K; k0 += sg::kBK) {
          for (int t = 0; t < sg::kThreads; ++t) {
            for (int r = 0; r < sg::kLoadsA; ++r) {
              const sg::RC e = sg::a_load(t, r);
              const int64_t gm = m0 + e.row, gk = k0 + e.col;
              as[sg::a_smem(e.row, e.col)] = (gm < M && gk < K) ? x[gm * K + gk] : 0.f;
            }
            for (int r = 0; r < sg::kLoadsB; ++r) {
              const sg::RC e = sg::b_load(t, r);
              const int64_t gk = k0 + e.row, gn = n0 + e.col;
              bs[sg::b_smem(e.row, e.col)] = (gk < K && gn < N) ? wv[gk * N + gn] : 0.f;
            }
          }
          for (int t = 0; t < sg::kThreads; ++t) {
            float a[sg::kTM][sg::kTN];
            for (int i = 0; i < sg::kTM; ++i) for (int j = 0; j < sg::kTN; ++j) a[i][j] = acc[t][i][j];
            sg::mac_tile(as.data(), bs.data(), t, a);
            for (int i = 0; i < sg::kTM; ++i) for (int j = 0; j < sg::kTN; ++j) acc[t][i][j] = a[i][j];
          }
        }
        for (int t = 0; t < sg::kThreads; ++t)
          for (int i = 0; i < sg::kTM; ++i)
            for (int j = 0; j < sg::kTN; ++j) {
              const int64_t gm = m0 + sg::out_row(t, i), gn = n0 + sg::out_col(t, j);
              if (gm < M && gn < N) y[gm * N + gn] = acc[t][i][j] + bias[gn];
            }
      }
    bool exact = true;
    double worst = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float s = 0.f;
        double d = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          s = std::fma(x[i * K + k], wv[k * N + j], s);
          d += static_cast<double>(x[i * K + k]) * wv[k * N + j];
          mag += std::fabs(static_cast<double>(x[i * K + k]) * wv[k * N + j]);
        }
        const float ref = s + bias[j];
        exact = exact && std::memcmp(&ref, &y[i * N + j], 4) == 0;
        worst = std::max(worst, std::fabs(y[i * N + j] - (d + bias[j])) / (mag + std::fabs(bias[j]) + 1e-30));
      }
    const std::string shape = std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
    check(exact, "sgemm block model bit-identical to in-order fmaf, " + shape);
    check(worst < 1e-5, "sgemm block model vs double, " + shape, "relative error " + std::to_string(worst));
  }
}

int main() {
  test_ptx_figures();
  test_bijections();
  test_warp_mma();
  test_tiling();
  test_block_gemm();
  test_wq();
  test_g_idx();
  test_wq_mma_tiling();
  test_wq_mma_block();
  test_gptq_device();
  test_allocator();
  test_sgemm();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
