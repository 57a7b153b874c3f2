#!/usr/bin/env node
// CUDA benchmark: the GEMM / GEMV shapes of the CPU benches (K x N = 4096 x 4096 and 4096 x 11008 projections at
// M = 1 decode, 16 and 128 prefill rows) on the device: int8 W8A8 (Tensor Cores), fp8 e4m3 (sm_89+), and the fused
// dequantize GEMM/GEMV for GPTQ 4-bit / grouped int4 with float16 activations on both paths (CUDA cores 'simt',
// Tensor Cores 'mma' on sm_80+). Reports milliseconds per call (median), TFLOP/s and weight GB/s.
// The timed calls are the host-pointer ops (upload x and the weight, run, download y on the worker stream), so the
// numbers include PCIe transfers; they are an upper bound on the kernel time, not the kernel time.
// Without a CUDA device (or a build without CUDA) it prints "no device" with the reason, writes that result and exits 0.
//   node bench/cuda.js [--quick]
'use strict';
const C = require('./common');

async function main() {
  const { qk, native } = C.loadQuantkit();
  const caps = qk.capabilities();
  const quick = process.argv.includes('--quick');
  if (!qk.cudaAvailable()) {
    const why = caps.cuda.compiled ? `no CUDA device (${caps.cuda.error || 'none found'})` : 'quantkit was built without CUDA';
    console.log(`cuda bench: no device: ${why}`);
    C.writePart('cuda', { device: null, reason: why, rows: [] });
    return;
  }
  const dev = caps.cuda.devices[0];
  console.log(`cuda bench on ${dev.name} (cc ${dev.computeCapability || ''}), load ${require('os').loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  const shapes = quick ? [[4096, 4096]] : [[4096, 4096], [4096, 11008]];
  const rows = [];
  const disposeAfter = [];
  for (const [K, N] of shapes) {
    for (const M of quick ? [1, 16] : [1, 16, 128]) {
      const x = C.randFloat(M * K, 1);
      const xh = new Uint16Array(M * K);
      native.convertSync('f32_to_f16', x, xh);
      const flops = 2 * M * N * K;
      const w8 = C.randInts(K * N, -127, 127, Int8Array, 2);
      const ws = C.randFloat(N, 3).map((v) => Math.abs(v) + 0.5);
      const group = 128, G = K / group;
      const scale = C.randFloat(G * N, 4, 0.05);
      const zero = C.randInts(G * N, 0, 15, Uint8Array, 5);
      const wq = C.randInts(K * (N / 2), 0, 255, Uint8Array, 6);
      const cases = [
        ['int8 W8A8', K * N, () => qk.cudaDenseW8A8(x, w8, ws, M, N, K)],
        ['gptq4 f16 simt', K * N / 2, () => qk.cudaDenseWq(xh, wq, 4, false, scale, zero, group, M, N, K, { dtype: 'float16', path: 'simt' })],
      ];
      // float32 SIMT GEMM with host arrays (weights uploaded per call), and the resident projections of
      // Layer.to('cuda') (weights on the device; only x and y cross PCIe per call)
      const wf = C.randFloat(K * N, 8, 0.02);
      const resF32 = await qk.ResidentProjection.upload({ format: 'float32', kernel: wf }, K, N, null, 0);
      const resW8 = await qk.ResidentProjection.upload({ format: 'int8', kernel: w8, scale: ws, activation: { valueRange: [-127, 127], epsilon: 1e-7 } }, K, N, null, 0);
      cases.push(
        ['f32 simt', K * N * 4, () => qk.cudaDenseF32(x, wf, M, N, K)],
        ['f32 resident', K * N * 4, () => resF32.forward(x, M)],
        ['int8 resident', K * N, () => resW8.forward(x, M)],
      );
      disposeAfter.push(resF32, resW8);
      if (qk.cudaDeviceHas('f16Mma')) {
        cases.push(['gptq4 f16 mma', K * N / 2, () => qk.cudaDenseWq(xh, wq, 4, false, scale, zero, group, M, N, K, { dtype: 'float16', path: 'mma' })]);
      }
      if (qk.cudaDeviceHas('fp8Mma')) {
        const w8f = C.randInts(K * N, 0, 0x7e, Uint8Array, 7);
        cases.push(['fp8 e4m3', K * N, () => qk.cudaDenseFp8(x, 0.05, w8f, 0.5, M, N, K)]);
      }
      for (const [name, wbytes, fn] of cases) {
        const { ms } = await C.timeit(fn, { warmup: 2, minRuns: 5, budgetMs: quick ? 300 : 1500 });
        const row = { op: name, M, N, K, ms, tflops: flops / (ms * 1e9), weightGBs: wbytes / (ms * 1e6) };
        rows.push(row);
        console.log(`${name.padEnd(16)} M=${String(M).padStart(3)} K=${K} N=${N}: ${C.fmt(ms)} ms  ${C.fmt(row.tflops)} TFLOP/s  ${C.fmt(row.weightGBs)} GB/s weights (incl. transfers)`);
      }
    }
  }
  for (const p of disposeAfter) p.dispose();
  C.writePart('cuda', { device: dev, rows });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
