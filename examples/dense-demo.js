#!/usr/bin/env node
// quantkit demo: a Dense layer (1024 -> 1024) quantized in every mode with the Keras-style one-liner
// `await layer.quantize(mode)`. Prints weight bytes (and the ratio to float32), the output error against float32,
// and the median latency at batch 1 and 64.   node examples/dense-demo.js
'use strict';
const qk = require('..');

function randn(n, seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

async function medianMs(fn, runs = 15) {
  await fn();
  const ts = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(runs / 2)];
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
  const [inDim, units] = [1024, 1024];
  const caps = qk.capabilities();
  console.log(`quantkit demo — CPU kernels: ${caps.isa} (${caps.threads} threads), CUDA: ${caps.cuda.compiled ? `compiled, ${caps.cuda.devices.length} device(s)` : 'not compiled'}`);
  const kernel = randn(inDim * units, 1).map((v) => v * 0.03);
  const x1 = new qk.Tensor('float32', [1, inDim], randn(inDim, 2));
  const x64 = new qk.Tensor('float32', [64, inDim], randn(64 * inDim, 3));
  const modes = [
    ['float32', null],
    ['int8', 'int8'],
    ['int4 (g128)', 'int4'],
    ['int4 (per-channel)', new qk.Int4QuantizationConfig({ blockSize: null })],
    ['float8', 'float8'],
  ];
  let reference;
  let floatBytes;
  const rows = [];
  for (const [name, how] of modes) {
    const dense = new qk.Dense({ units, kernelInitializer: () => Float32Array.from(kernel) });
    dense.build([null, inDim]);
    if (typeof how === 'string') await dense.quantize(how);
    else if (how) await dense.quantize({ config: how });
    const bytes = dense.variables.reduce((a, v) => a + v.value.byteLength, 0);
    const y = (await dense.apply(x64)).data;
    if (!reference) {
      reference = y;
      floatBytes = bytes;
    }
    const ms1 = await medianMs(() => dense.apply(x1));
    const ms64 = await medianMs(() => dense.apply(x64));
    rows.push([name, dense.dtypePolicy.name, bytes, floatBytes / bytes, relErr(y, reference), ms1, ms64]);
  }
  console.log(`\nDense ${inDim} -> ${units}`);
  console.log('mode                 policy                   weight bytes  vs fp32   rel. error   batch 1     batch 64');
  for (const [name, policy, bytes, ratio, err, ms1, ms64] of rows) {
    console.log(
      `${name.padEnd(20)} ${policy.padEnd(24)} ${String(bytes).padStart(12)}  ${ratio.toFixed(2).padStart(5)}x  ${err.toExponential(2).padStart(10)}  ${ms1.toFixed(3).padStart(7)} ms  ${ms64.toFixed(3).padStart(7)} ms`,
    );
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
