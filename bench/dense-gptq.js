#!/usr/bin/env node
// GPTQ inference benchmark (raw binding, so only the kernels are timed): y = x @ W_hat for a K x N projection
// (default K = N = 4096, group 128) at M = 1 (decode GEMV), 16 and 128, for dense_gptq at 2, 3, 4 and 8 bits,
// against the grouped-int4 kernel dense_w4g and the fp32 sgemm Dense (denseF32). Median of several runs after a
// warm-up; prints milliseconds per call and, at M = 1, the effective weight-bytes bandwidth.
//   node bench/dense-gptq.js [--k=4096] [--n=4096] [--group=128] [--isa=ref|avx2|avx512] [--runs=N]
// Needs the native addon (`npm run build:native`).
'use strict';
const path = require('path');

function loadBinding() {
  try {
    return require('../dist/native/load.js').loadNative();
  } catch (_) {
    return require(path.join(__dirname, '..', 'build', 'Release', 'quantkit.node'));
  }
}
const n = loadBinding();

const arg = (name, def) => {
  const a = process.argv.find((s) => s.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
};
const K = Number(arg('k', 4096));
const N = Number(arg('n', 4096));
const GROUP = Number(arg('group', 128));
const ISA = arg('isa', undefined);
const RUNS = arg('runs', undefined);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(fn, runs) {
  await fn();
  const t = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(t);
}

function fill(arr, seed, f) {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < arr.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    arr[i] = f((s >>> 0) / 4294967296);
  }
  return arr;
}

(async () => {
  const G = Math.ceil(K / GROUP);
  const w = fill(new Float32Array(K * N), 1, (u) => u - 0.5);
  const w4 = fill(new Uint8Array(K * Math.ceil(N / 2)), 2, (u) => Math.floor(u * 256));
  const s = fill(new Float32Array(G * N), 3, (u) => 0.001 + 0.01 * u);
  const z8 = fill(new Int8Array(G * N), 4, (u) => Math.floor(u * 16) - 8);
  const zu = fill(new Uint8Array(G * N), 5, (u) => Math.floor(u * 4));
  const packed = {};
  for (const bits of [2, 3, 4, 8]) {
    const levels = fill(new Uint8Array(N * K), 10 + bits, (u) => Math.floor(u * (1 << bits)));
    packed[bits] = new Uint8Array(K * Math.ceil((bits * N) / 8));
    await n.gptqRuntimePack(levels, N, K, null, bits, packed[bits]);
  }
  const caps = n.capabilities();
  console.log(`dense_gptq bench: K=${K} N=${N} group=${GROUP} isa=${ISA ?? caps.isa} threads=${caps.threads}`);
  const cols = ['fp32', 'w4g', 'gptq2', 'gptq3', 'gptq4', 'gptq8'];
  console.log(['M', ...cols].map((c) => c.padStart(9)).join(''));
  for (const M of [1, 16, 128]) {
    const runs = Number(RUNS ?? (M === 1 ? 51 : M === 16 ? 15 : 7));
    const x = fill(new Float32Array(M * K), 6, (u) => u - 0.5);
    const y = new Float32Array(M * N);
    const row = [];
    row.push(await time(() => n.denseF32(M, N, K, x, w, null, y, ISA), runs));
    row.push(await time(() => n.denseW4G(M, N, K, x, w4, s, z8, GROUP, null, y, ISA), runs));
    for (const bits of [2, 3, 4, 8]) {
      row.push(await time(() => n.denseGptq(M, N, K, x, packed[bits], bits, s, zu, GROUP, null, y, ISA), runs));
    }
    console.log([String(M).padStart(9), ...row.map((v) => v.toFixed(3).padStart(9))].join(''));
    if (M === 1) {
      const bytes = [4 * K * N, K * Math.ceil(N / 2), ...[2, 3, 4, 8].map((b) => packed[b].length)];
      console.log(['GB/s'.padStart(9), ...bytes.map((b, i) => (b / row[i] / 1e6).toFixed(1).padStart(9))].join(''));
    }
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
