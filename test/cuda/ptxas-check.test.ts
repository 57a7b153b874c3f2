// scripts/cuda-ptxas-check.js (run by .ci/run after the CUDA build): parses ptxas -v logs, fails on spills in GEMM /
// GEMV kernels and on kernels missing an arch. Synthetic logs, so this runs everywhere (no nvcc needed).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const script = path.resolve(__dirname, '../../scripts/cuda-ptxas-check.js');

function entry(name: string, arch: string, regs: number, spill: number): string {
  return [
    `ptxas info    : Compiling entry function '${name}' for '${arch}'`,
    `ptxas info    : Function properties for ${name}`,
    `    0 bytes stack frame, ${spill} bytes spill stores, ${spill} bytes spill loads`,
    `ptxas info    : Used ${regs} registers, used 1 barriers, 9728 bytes smem, 457 bytes cmem[0]`,
  ].join('\n');
}

function run(files: Record<string, string>, extra: string[] = []): { status: number | null; out: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-ptxas-'));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), text);
  const r = spawnSync(process.execPath, [script, '--dir', dir, ...extra], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  return { status: r.status, out: r.stdout + r.stderr };
}

const MMA = '_ZN12_GLOBAL__N_113wq_mma_kernelI6__halfEEvPKt';
const OTHER = '_ZN12_GLOBAL__N_113to_fp8_kernelEPKfPhl';

describe('cuda-ptxas-check', () => {
  test('clean logs pass and the table names kernel, registers per arch and shared memory', () => {
    const r = run({ 'wq_mma.cu.o.ptxas.log': [entry(MMA, 'sm_80', 128, 0), entry(MMA, 'sm_89', 126, 0)].join('\n') });
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/wq_mma_kernel<__half>` \| 128 \| 126 \| 9728 \| 0 \| 0 \|/);
  });
  test('a spill in a GEMM/GEMV kernel fails, naming kernel and arch', () => {
    const r = run({ 'wq_mma.cu.o.ptxas.log': [entry(MMA, 'sm_80', 255, 0), entry(MMA, 'sm_89', 255, 16)].join('\n') });
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/error: wq_mma.cu: wq_mma_kernel<__half> \(sm_89\): 16 bytes spill stores/);
  });
  test('a spill elsewhere is a warning; a kernel missing an arch is an error', () => {
    const warn = run({ 'convert.cu.o.ptxas.log': entry(OTHER, 'sm_80', 40, 8) });
    expect(warn.status).toBe(0);
    expect(warn.out).toMatch(/warning: convert.cu: to_fp8_kernel/);
    const missing = run({ 'a.cu.o.ptxas.log': [entry(MMA, 'sm_80', 100, 0), entry(OTHER, 'sm_80', 20, 0), entry(OTHER, 'sm_90', 20, 0)].join('\n') });
    expect(missing.status).toBe(1);
    expect(missing.out).toMatch(/wq_mma_kernel<__half> has no sm_90 code/);
  });
  test('--require fails without logs; without it there is nothing to check', () => {
    expect(run({}, ['--require']).status).toBe(1);
    expect(run({}).status).toBe(0);
  });
});
