// quantkit — Tensor-Core fragment layouts, as the PTX ISA documents them ("Matrix Fragments for mma.m16n8k32",
// "mma.m16n8k16", "mma.m8n8k16", "ldmatrix"), written as __host__ __device__ functions. The CUDA GEMM kernels
// (gemm_mma.cu) place and read fragments only through these functions, and test/cuda/host/layout_test.cpp
// checks them on the host (g++, no GPU): against entries transcribed from the PTX ISA figures, for bijectivity,
// and through a model of one warp's mma that multiplies through the layouts and must equal a plain product.
//
// Notation of the PTX ISA: lane = %laneid (0..31), groupID = lane >> 2, threadID_in_group = lane % 4.
// A fragment "element e" is the e-th scalar a thread holds, in register order (register e / per_reg, lane of
// the register e % per_reg, low bits first). Every function returns the (row, col) of the element in the
// operand matrix: A is M x K (row-major, ".row"), B is K x N (".col": each thread holds consecutive k), C/D is
// M x N.
#ifndef QK_CUDA_MMA_LAYOUT_CUH_
#define QK_CUDA_MMA_LAYOUT_CUH_

#ifdef __CUDACC__
#define QK_LAYOUT_HD __host__ __device__ __forceinline__
#else
#define QK_LAYOUT_HD inline
#endif

namespace qk {
namespace mma {

struct RC {
  int row;
  int col;
};

QK_LAYOUT_HD int group_id(int lane) { return lane >> 2; }
QK_LAYOUT_HD int thread_in_group(int lane) { return lane & 3; }

// ---- mma.m16n8k32 with 8-bit operands (.s8/.u8 on sm_80+, .e4m3/.e5m2 on sm_89+) -------------------------
// A: 16 x 32, four .b32 registers of four 8-bit elements: 16 elements per thread.
//   row = groupID for e in [0,4) and [8,12), groupID + 8 otherwise
//   col = threadID_in_group * 4 + (e & 3), + 16 for e >= 8
constexpr int kM16N8K32_A_ELEMS = 16;
QK_LAYOUT_HD RC m16n8k32_a(int lane, int e) {
  return RC{group_id(lane) + ((e >> 2) & 1) * 8, thread_in_group(lane) * 4 + (e & 3) + (e >= 8 ? 16 : 0)};
}
// B: 32 x 8, two .b32 registers: 8 elements per thread.
//   row (k) = threadID_in_group * 4 + (e & 3), + 16 for e >= 4;  col (n) = groupID
constexpr int kM16N8K32_B_ELEMS = 8;
QK_LAYOUT_HD RC m16n8k32_b(int lane, int e) {
  return RC{thread_in_group(lane) * 4 + (e & 3) + (e >= 4 ? 16 : 0), group_id(lane)};
}

// ---- C / D of every m16n8 shape (.s32 or .f32 accumulators): 16 x 8, four elements per thread -------------
//   row = groupID for e < 2, groupID + 8 otherwise;  col = threadID_in_group * 2 + (e & 1)
constexpr int kM16N8_C_ELEMS = 4;
QK_LAYOUT_HD RC m16n8_c(int lane, int e) {
  return RC{group_id(lane) + (e >= 2 ? 8 : 0), thread_in_group(lane) * 2 + (e & 1)};
}

// ---- mma.m16n8k16 with 16-bit operands (.f16/.bf16, sm_80+) -------------------------------------------------
// A: 16 x 16, four .f16x2 registers: 8 elements per thread.
//   row = groupID for e in {0,1,4,5}, groupID + 8 otherwise;  col = threadID_in_group * 2 + (e & 1), + 8 for e >= 4
constexpr int kM16N8K16_A_ELEMS = 8;
QK_LAYOUT_HD RC m16n8k16_a(int lane, int e) {
  return RC{group_id(lane) + ((e >> 1) & 1) * 8, thread_in_group(lane) * 2 + (e & 1) + (e >= 4 ? 8 : 0)};
}
// B: 16 x 8, two .f16x2 registers: 4 elements per thread.
//   row (k) = threadID_in_group * 2 + (e & 1), + 8 for e >= 2;  col (n) = groupID
constexpr int kM16N8K16_B_ELEMS = 4;
QK_LAYOUT_HD RC m16n8k16_b(int lane, int e) {
  return RC{thread_in_group(lane) * 2 + (e & 1) + (e >= 2 ? 8 : 0), group_id(lane)};
}

// ---- mma.m8n8k16 with .s8/.u8 operands (sm_75: the Turing integer Tensor-Core shape) ------------------------
// A: 8 x 16, one .b32 register (4 elements): row = groupID, col = threadID_in_group * 4 + e
// B: 16 x 8, one .b32 register (4 elements): row (k) = threadID_in_group * 4 + e, col (n) = groupID
// C: 8 x 8 .s32, two elements: row = groupID, col = threadID_in_group * 2 + e
QK_LAYOUT_HD RC m8n8k16_a(int lane, int e) { return RC{group_id(lane), thread_in_group(lane) * 4 + e}; }
QK_LAYOUT_HD RC m8n8k16_b(int lane, int e) { return RC{thread_in_group(lane) * 4 + e, group_id(lane)}; }
QK_LAYOUT_HD RC m8n8k16_c(int lane, int e) { return RC{group_id(lane), thread_in_group(lane) * 2 + e}; }

// How the sm_75 path computes one m16n8k32 8-bit mma with four m8n8k16 mmas on the SAME registers: comparing the
// layouts above, register r of the m16n8k32 A fragment is an m8n8k16 A fragment of the 8 x 16 sub-block
// (rows (r & 1) * 8.., cols (r >> 1) * 16..), register r of B is the m8n8k16 B fragment of k-block r, and C
// elements {0,1} / {2,3} are the m8n8 C fragments of row blocks 0 / 1. So step s = 0..3 multiplies
// A register sm75_a_reg(s) by B register sm75_b_reg(s) into C elements 2 * sm75_c_half(s) + {0, 1}.
QK_LAYOUT_HD int sm75_a_reg(int s) { return s; }           // (row block s & 1, k block s >> 1)
QK_LAYOUT_HD int sm75_b_reg(int s) { return s >> 1; }      // k block
QK_LAYOUT_HD int sm75_c_half(int s) { return s & 1; }      // row block

// ---- ldmatrix.sync.aligned.m8n8.{x1,x2,x4}.shared.b16 (no .trans) ----------------------------------------
// Lane l supplies the shared-memory address of row (l % 8) of matrix (l / 8) (x1: lanes 0-7, x2: 0-15, x4:
// all). Each matrix row is 16 contiguous bytes. Destination register j of lane l receives from matrix j the
// row l / 4 and its bytes 4 * (l % 4) .. 4 * (l % 4) + 3 (two b16 elements; for 8-bit data four bytes).
QK_LAYOUT_HD int ldmatrix_src_matrix(int lane) { return lane >> 3; }
QK_LAYOUT_HD int ldmatrix_src_row(int lane) { return lane & 7; }
// (row of matrix, byte within the 16-byte row) delivered in byte b (0..3) of a destination register of `lane`.
QK_LAYOUT_HD RC ldmatrix_dst(int lane, int b) { return RC{lane >> 2, (lane & 3) * 4 + b}; }

}  // namespace mma
}  // namespace qk

#endif  // QK_CUDA_MMA_LAYOUT_CUH_
