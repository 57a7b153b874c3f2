#!/usr/bin/env node
// Dense layer benchmark through the public API: a 4096 x 4096 Dense at M = 1, 16, 128 in float32, int8 (W8A8),
// int8 weight-only, int4 grouped g128, int4 per-channel, and float8. Median latency of several runs, speed-up
// vs float32 measured in the same run. Writes bench/results/<date>-<host>-dense.json.
//   node bench/dense.js [--quick]
'use strict';
const os = require('os');
const fs = require('fs');
const path = require('path');
const qk = require('..');

const quick = process.argv.includes('--quick');
const K = quick ? 1024 : 4096;
const N = quick ? 1024 : 4096;
const Ms = [1, 16, 128];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(fn, budgetMs) {
  await fn();
  await fn();
  const ts = [];
  const start = performance.now();
  while (ts.length < 5 || (performance.now() - start < budgetMs && ts.length < 200)) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function randn(n, seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

async function main() {
  const caps = qk.capabilities();
  const modes = [
    ['float32', null],
    ['int8 (W8A8)', { mode: 'int8' }],
    ['int8 weight-only', { config: new qk.Int8QuantizationConfig({ activationQuantizer: null }) }],
    ['int4 g128', { mode: 'int4' }],
    ['int4 per-channel', { config: new qk.Int4QuantizationConfig({ blockSize: null }) }],
    ['float8', { mode: 'float8' }],
  ];
  const kernel = randn(K * N, 1).map((v) => v * 0.02);
  const results = [];
  for (const [name, q] of modes) {
    const layer = new qk.Dense({ units: N, kernelInitializer: () => Float32Array.from(kernel) });
    layer.build([null, K]);
    if (q) await layer.quantize(q.mode ?? null, q.config ? { config: q.config } : {});
    const bytes = layer.variables.reduce((a, v) => a + v.value.byteLength, 0);
    for (const M of Ms) {
      const x = new qk.Tensor('float32', [M, K], randn(M * K, M + 7));
      const ms = await time(() => layer.apply(x), quick ? 300 : 1500);
      results.push({ mode: name, M, K, N, ms, weightBytes: bytes });
    }
  }
  console.log(`Dense ${K} x ${N} through the public API (isa ${caps.isa}, ${caps.threads} threads); median ms, speed-up vs float32`);
  console.log('mode                 weights MiB ' + Ms.map((m) => `   M=${String(m).padEnd(4)}       `).join(''));
  for (const [name] of modes) {
    const rows = results.filter((r) => r.mode === name);
    const cells = rows.map((r) => {
      const base = results.find((b) => b.mode === 'float32' && b.M === r.M).ms;
      return `${r.ms.toFixed(3).padStart(8)} (${(base / r.ms).toFixed(2)}x)`;
    });
    console.log(`${name.padEnd(20)} ${(rows[0].weightBytes / 2 ** 20).toFixed(1).padStart(10)}  ${cells.join('  ')}`);
  }
  const file = path.join(__dirname, 'results', `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-dense.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), isa: caps.isa, threads: caps.threads, cpu: os.cpus()[0]?.model, results }, null, 2));
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
