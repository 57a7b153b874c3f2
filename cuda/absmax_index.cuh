// quantkit — work decomposition of the CUDA abs-max kernels (private to cuda/): which elements a block, warp
// and thread handle, and how big the grid is. Pure integer math in __host__ __device__ functions so that a
// host-only unit test (plain g++, no GPU) can check coverage: every (o, l, i) visited exactly once, no index
// past the end, grid sizes within the CUDA limits.
//
// The tensor is the [outer, len, inner] view of qk/kernels.h; the reduction runs along `len`.
//
// Two shapes of work, chosen by make_absmax_plan():
//
//  * ROWS (inner == 1): each slice is `len` contiguous floats. A *tile* is (row o, chunk c): the elements
//    [c * chunk_len, min(len, (c + 1) * chunk_len)) of row o. A tile is served by a *group* of
//    warps_per_tile warps of a 256-thread block: 8 (the whole block: warp shuffles, then a shared-memory
//    reduction across the 8 warps) for long rows, 1 (warp shuffles only; the block's 8 warps take 8
//    different tiles) for rows shorter than kRowsLongLen, where a whole block per row would idle.
//
//  * COLS (inner > 1): the slice elements are `inner` apart, so consecutive threads take consecutive i (one
//    128-byte line per warp per l). A tile is (o, chunk c of len, block of 32 columns ib); the block is
//    32 x 8 threads: threadIdx.x picks the column, threadIdx.y strides over the chunk's l by 8, and a
//    shared-memory reduction over threadIdx.y finishes each column.
//
// When `outer` (times the column blocks) alone gives too few tiles to fill the GPU, `len` is split into
// chunks and the partial maxima are combined with atomicMax on the float bits (exact and order-independent,
// see abs_bits in absmax.cu). Tiles are numbered so that consecutive tile ids touch adjacent memory, and blocks
// walk them in a grid-stride loop, so any tensor size works with a bounded grid.
#ifndef QK_CUDA_ABSMAX_INDEX_CUH_
#define QK_CUDA_ABSMAX_INDEX_CUH_

#include <cstdint>

#ifdef __CUDACC__
#define QK_CUDA_IDX_HD __host__ __device__ __forceinline__
#else
#define QK_CUDA_IDX_HD inline
#endif

namespace qk {
namespace cuda_index {

constexpr int kWarpSize = 32;
constexpr int kBlockThreads = 256;                        // every kernel: 8 warps
constexpr int kWarpsPerBlock = kBlockThreads / kWarpSize;  // 8
constexpr int kColsBlockX = 32;                           // COLS: columns per tile
constexpr int kColsBlockY = kBlockThreads / kColsBlockX;  // COLS: 8 rows of threads stride over l

constexpr int64_t kRowsLongLen = 2048;        // ROWS: at or above this a whole block serves one tile
constexpr int64_t kRowsMinChunk = 8192;       // ROWS: smallest chunk when splitting len (32 KiB of floats)
constexpr int64_t kColsMinChunk = 64;         // COLS: smallest chunk when splitting len (8 l per thread)
constexpr int64_t kTargetTilesPerSm = 8;      // split len until there are about this many tiles per SM
constexpr int64_t kMaxBlocksPerSm = 32;       // grid cap; the grid-stride loop covers the rest
constexpr int64_t kMaxGrid = 0x7FFFFFFF;      // gridDim.x limit

enum class AbsmaxShape : int { kRows = 0, kCols = 1 };

struct AbsmaxPlan {
  AbsmaxShape shape;
  int64_t outer, len, inner;
  int warps_per_tile;      // ROWS: 1 or 8; COLS: 8 (the whole 32 x 8 block)
  int64_t chunk_len;       // >= 1; elements of len per tile
  int64_t num_chunks;      // >= 1; ceil(len / chunk_len), 1 when len == 0
  int64_t col_blocks;      // COLS: ceil(inner / 32); ROWS: 1
  int64_t num_tiles;       // outer * num_chunks * col_blocks
  int64_t tiles_per_block; // kWarpsPerBlock / warps_per_tile (ROWS), 1 (COLS)
  int64_t grid;            // blocks to launch (>= 1 when num_tiles > 0, else 0)
  bool split;              // num_chunks > 1: partial maxima are combined with atomicMax (output zeroed first)
};

QK_CUDA_IDX_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
QK_CUDA_IDX_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
QK_CUDA_IDX_HD int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Dims must be >= 0 with outer * len * inner representable (the launchers check). sm_count < 1 is taken as 1.
QK_CUDA_IDX_HD AbsmaxPlan make_absmax_plan(int64_t outer, int64_t len, int64_t inner, int sm_count) {
  AbsmaxPlan p;
  p.outer = outer;
  p.len = len;
  p.inner = inner;
  const int64_t sms = sm_count < 1 ? 1 : sm_count;
  const int64_t target_tiles = sms * kTargetTilesPerSm;
  int64_t min_chunk;
  if (inner == 1) {
    p.shape = AbsmaxShape::kRows;
    p.warps_per_tile = len >= kRowsLongLen ? kWarpsPerBlock : 1;
    p.col_blocks = 1;
    min_chunk = kRowsMinChunk;
  } else {
    p.shape = AbsmaxShape::kCols;
    p.warps_per_tile = kWarpsPerBlock;
    p.col_blocks = ceil_div(inner, kColsBlockX);
    min_chunk = kColsMinChunk;
  }
  p.tiles_per_block = kWarpsPerBlock / p.warps_per_tile;
  // Split len only when the unsplit tiles cannot fill the GPU, and never into chunks below min_chunk.
  const int64_t base_tiles = outer * p.col_blocks;
  int64_t chunks = 1;
  if (base_tiles > 0 && base_tiles < target_tiles && len > min_chunk) {
    chunks = min64(ceil_div(target_tiles, base_tiles), ceil_div(len, min_chunk));
  }
  p.chunk_len = len > 0 ? ceil_div(len, chunks) : 1;
  if (p.shape == AbsmaxShape::kRows && chunks > 1) p.chunk_len = ceil_div(p.chunk_len, 4) * 4;  // float4 body
  p.num_chunks = len > 0 ? ceil_div(len, p.chunk_len) : 1;
  p.split = p.num_chunks > 1;
  p.num_tiles = base_tiles * p.num_chunks;
  const int64_t want = ceil_div(p.num_tiles, p.tiles_per_block);
  p.grid = min64(min64(want, sms * kMaxBlocksPerSm), kMaxGrid);
  return p;
}

// Where a tile is. ROWS: tile = o * num_chunks + c. COLS: tile = (o * num_chunks + c) * col_blocks + cb, so
// neighbouring tiles read neighbouring 128-byte column blocks of the same rows.
struct AbsmaxTile {
  int64_t o;        // outer index
  int64_t cb;       // column block (COLS), 0 (ROWS)
  int64_t l_begin;  // chunk [l_begin, l_end) of len
  int64_t l_end;
};

QK_CUDA_IDX_HD AbsmaxTile absmax_tile(const AbsmaxPlan& p, int64_t tile) {
  AbsmaxTile t;
  int64_t rest = tile;
  t.cb = rest % p.col_blocks;
  rest /= p.col_blocks;
  const int64_t c = rest % p.num_chunks;
  t.o = rest / p.num_chunks;
  t.l_begin = c * p.chunk_len;
  t.l_end = min64(p.len, t.l_begin + p.chunk_len);
  return t;
}

// The first tile of a thread's group and the stride of the grid-stride loop over tiles.
// group = blockIdx.x * tiles_per_block + (warp index / warps_per_tile).
QK_CUDA_IDX_HD int64_t first_tile(const AbsmaxPlan& p, int64_t block, int thread) {
  return block * p.tiles_per_block + (thread / kWarpSize) / p.warps_per_tile;
}
QK_CUDA_IDX_HD int64_t tile_stride(const AbsmaxPlan& p, int64_t grid) { return grid * p.tiles_per_block; }

// ROWS: the thread's rank inside its group (0 .. 32 * warps_per_tile - 1) and the group size.
QK_CUDA_IDX_HD int rows_rank(const AbsmaxPlan& p, int thread) { return thread % (kWarpSize * p.warps_per_tile); }
QK_CUDA_IDX_HD int rows_group_threads(const AbsmaxPlan& p) { return kWarpSize * p.warps_per_tile; }

// ROWS: the tile's elements are the contiguous flat range [row_begin, row_end) of x.
QK_CUDA_IDX_HD int64_t rows_begin(const AbsmaxPlan& p, const AbsmaxTile& t) { return t.o * p.len + t.l_begin; }
QK_CUDA_IDX_HD int64_t rows_end(const AbsmaxPlan& p, const AbsmaxTile& t) { return t.o * p.len + t.l_end; }

// ROWS, vectorised: the range is split into a scalar head (until the flat index is a multiple of 4, so that
// a 16-byte aligned base makes x + index 16-byte aligned), a float4 body and a scalar tail (< 4 elements).
struct RowsSplit {
  int64_t head_end;  // [begin, head_end) scalar
  int64_t body_end;  // [head_end, body_end) float4, (body_end - head_end) % 4 == 0
};                   // [body_end, end) scalar
QK_CUDA_IDX_HD RowsSplit rows_split(int64_t begin, int64_t end) {
  RowsSplit s;
  s.head_end = min64(end, ceil_div(begin, 4) * 4);
  s.body_end = s.head_end + ((end - s.head_end) / 4) * 4;
  return s;
}

// COLS: the column of thread (tx, ty) in its tile, and the flat index of element (o, l, i).
QK_CUDA_IDX_HD int64_t cols_column(const AbsmaxTile& t, int tx) { return t.cb * kColsBlockX + tx; }
QK_CUDA_IDX_HD int64_t flat_index(const AbsmaxPlan& p, int64_t o, int64_t l, int64_t i) {
  return (o * p.len + l) * p.inner + i;
}

// Element-wise kernels over n items (the scale pass): block count for a grid-stride loop.
QK_CUDA_IDX_HD int64_t elementwise_grid(int64_t n, int sm_count) {
  const int64_t sms = sm_count < 1 ? 1 : sm_count;
  return max64(1, min64(ceil_div(n, kBlockThreads), sms * kMaxBlocksPerSm));
}

}  // namespace cuda_index
}  // namespace qk

#endif  // QK_CUDA_ABSMAX_INDEX_CUH_
