// Host-side checks of the CUDA backend (no GPU needed, runs in CI): builds test/cuda/host/layout_test.cpp with the
// host C++ compiler against the __host__ __device__ headers of cuda/ (fragment layouts of mma.sync/ldmatrix,
// shared-memory swizzle, GEMM tiling, GPTQ/int4 addressing, caching allocator, capability predicate) and the CPU
// reference kernels, runs it, and requires every check to pass. The checks include host models of a whole
// thread block of the int8 GEMM (bit-exact with qk::ref::dense_w8a8), of the fp8 GEMM, of the fused
// dequantize GEMV (tolerance vs qk::ref::dense_fp8 / dense_gptq / dense_w4g) and of the Tensor-Core W4A16 / GPTQ
// GEMM (float16 / bfloat16 mma.m16n8k16 modelled through the PTX fragment layouts, with and without g_idx), and
// the device GPTQ's per-thread functions run in the kernels' order (Hessian, Cholesky column launches, inverse,
// lazy-block sweep) bit-identical with qk::ref's GPTQ core.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '../..');
const cxx = process.env.CXX || 'g++';
const hasCxx = spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasCxx) {
  // eslint-disable-next-line no-console
  console.log(`CUDA host layout tests skipped: no C++ compiler (${cxx})`);
}

(hasCxx ? describe : describe.skip)('CUDA layouts, tiling and element math on the host', () => {
  let output = '';
  let status: number | null = null;

  beforeAll(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-cuda-host-'));
    const exe = path.join(dir, 'layout_test');
    const build = spawnSync(
      cxx,
      [
        '-std=c++17', '-O2', '-ffp-contract=off', '-Wall', '-Werror',
        `-I${path.join(root, 'cuda')}`, `-I${path.join(root, 'csrc/include')}`,
        path.join(root, 'test/cuda/host/layout_test.cpp'),
        path.join(root, 'csrc/kernels/ref/dense_int8_ref.cpp'),
        path.join(root, 'csrc/kernels/ref/dense_float_ref.cpp'),
        path.join(root, 'csrc/kernels/ref/dense_gptq_ref.cpp'),
        path.join(root, 'csrc/kernels/ref/gptq_ref.cpp'),
        '-o', exe,
      ],
      { encoding: 'utf8' },
    );
    if (build.status !== 0) throw new Error(`building the host test failed:\n${build.stderr}`);
    const run = spawnSync(exe, [], { encoding: 'utf8', timeout: 60000 });
    output = run.stdout;
    status = run.status;
    fs.rmSync(dir, { recursive: true, force: true });
  }, 120000);

  test('every check passes', () => {
    const failures = output.split('\n').filter((l) => l.startsWith('FAIL'));
    expect(failures).toEqual([]);
    expect(status).toBe(0);
  });

  test.each([
    'ptx figure m16n8k32 A (8-bit)',
    'warp mma m16n8k32 through the layouts = plain product',
    'sm_75: 4 x m8n8k16 on the m16n8k32 registers = plain product',
    'warp mma m16n8k16 through the layouts = plain product',
    'ldmatrix phases are bank-conflict free',
    'ldmatrix.x4 through the swizzle yields the A and B fragments',
    'allocator: out of memory releases the cache and retries, then reports OUT_OF_MEMORY',
    'capability predicate',
    'group_index: k / group, g_idx[k], out-of-range entries clamp to group 0',
    'wq mma: tile loads cover every 8-element run once',
    'wq mma: fragments cover each warp\'s sub-tiles once; A register pairs are 32-bit aligned',
    'wq mma: fragment loads from shared memory are bank-conflict free',
    'wq mma: 16-byte weight stores are bank-conflict free',
    'wq mma block model ~ dense_gptq / dense_w4g (f16, bf16, g_idx) over 90 cases',
    'a swapped k half would be detected by the block model (the test can fail)',
    'gptq device: Hessian entries = ref hessian_accumulate bit for bit',
    'gptq device: Cholesky column launches + per-column inverse = ref cholesky_inverse_upper bit for bit',
    'gptq device: lazy-block sweep = ref gptq_quantize_matrix bit for bit (levels, scales, zeros, w_hat, loss, U) over 40 configurations',
    'gptq device: lazy blocks keep every group inside one block or starting at a block start',
  ])('%s', (name) => {
    expect(output).toContain(`ok ${name}\n`);
  });

  test('whole-block models ran for every shape and width', () => {
    expect(output.match(/^ok block model of the int8 GEMM/gm)?.length).toBe(7);
    expect(output.match(/^ok block model of the fp8 GEMM/gm)?.length).toBe(7);
    expect(output.match(/^ok wq kernel model/gm)?.length).toBe(25);
    expect(output.match(/^ok GPTQ runtime layout/gm)?.length).toBe(24);
    expect(output.match(/^ok g_idx rows in input order = runtime layout with perm = direct formula/gm)?.length).toBe(4);
  });
});
