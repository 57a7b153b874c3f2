#!/usr/bin/env node
// quantkit demo: quantize the kernel of a Dense layer (1024 -> 1024) to int8 and int4 with Keras semantics, run
// the int8 path (per-token activation quantization + int8 GEMM + descale) and compare with float32:
// weight bytes, output error and latency.   npm start   (or: node examples/demo.js)
'use strict';
const qk = require('..');

function randn(n, seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

async function timeIt(fn, runs = 7) {
  await fn();
  const ts = [];
  let out;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    out = await fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return { ms: ts[Math.floor(runs / 2)], out };
}

function relErr(y, ref) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (y[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

async function main() {
  const [batch, inDim, units] = [64, 1024, 1024];
  const caps = qk.capabilities();
  console.log(`quantkit demo — CPU kernels: ${caps.isa} (${caps.threads} threads), CUDA: ${caps.cuda.compiled ? `${caps.cuda.devices.length} device(s)` : 'not compiled'}`);
  const kernel = new qk.Tensor('float32', [inDim, units], randn(inDim * units, 1).map((v) => v * 0.05));
  const x = new qk.Tensor('float32', [batch, inDim], randn(batch * inDim, 2));

  // float32 reference
  const f32 = await timeIt(() => qk.matmul(x, kernel));

  // int8 (W8A8): per-output-channel weights (axis 0), per-token activations (axis -1), as Keras Dense does
  const { quantized: qw, scale: sw } = await qk.absMaxQuantize(kernel, 0);
  const int8 = await timeIt(async () => {
    const { quantized: qx, scale: sx } = await qk.absMaxQuantize(x, -1);
    const acc = await qk.matmulInt8(qx, qw);
    const y = new Float32Array(batch * units);
    for (let i = 0; i < batch; i++) for (let j = 0; j < units; j++) y[i * units + j] = acc.data[i * units + j] / (sw.data[j] * sx.data[i]);
    return y;
  });

  // int4 per-channel (range [-8, 7]), packed two per byte along the output axis
  const { quantized: q4, scale: s4 } = await qk.absMaxQuantize(kernel, 0, { valueRange: [-8, 7] });
  const { packed } = await qk.packInt4(q4, 1);
  const unpacked = await qk.unpackInt4(packed, units, 1, 'int8');
  const deq = new Float32Array(inDim * units);
  for (let k = 0; k < inDim; k++) for (let j = 0; j < units; j++) deq[k * units + j] = unpacked.data[k * units + j] / s4.data[j];
  const y4 = await qk.matmul(x, new qk.Tensor('float32', [inDim, units], deq));

  const rows = [
    ['float32', kernel.byteLength, 1, 0, f32.ms],
    ['int8 (W8A8)', qw.byteLength + sw.byteLength, 0, relErr(int8.out, f32.out.data), int8.ms],
    ['int4 (per-channel)', packed.byteLength + s4.byteLength, 0, relErr(y4.data, f32.out.data), NaN],
  ];
  console.log(`\nDense ${inDim} -> ${units}, batch ${batch}`);
  console.log('mode                 weight bytes   vs float32   output rel. error   latency (median of 7)');
  for (const [name, bytes, , err, ms] of rows) {
    console.log(
      `${name.padEnd(20)} ${String(bytes).padStart(12)}   ${(kernel.byteLength / bytes).toFixed(2).padStart(8)}x   ${err.toExponential(2).padStart(17)}   ${Number.isNaN(ms) ? '(fused int4 GEMM: next release)' : `${ms.toFixed(2)} ms`}`,
    );
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
