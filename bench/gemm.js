#!/usr/bin/env node
// GEMM benchmark: fp32 (GFLOP/s) and int8 x int8 -> int32 (GOP/s) for every ISA variant, through the public API.
// Median of several timed runs after a warm-up. Writes bench/results/<date>-<host>-gemm.json and prints a table.
//   node bench/gemm.js [--quick]
'use strict';
const os = require('os');
const fs = require('fs');
const path = require('path');
const { execSync } = require('child_process');
const qk = require('..');

const quick = process.argv.includes('--quick');
const shapes = quick
  ? [[256, 256, 256], [1, 1024, 1024], [64, 1024, 1024]]
  : [[512, 512, 512], [1024, 1024, 1024], [2048, 2048, 2048], [1, 4096, 4096], [16, 4096, 4096], [128, 4096, 4096], [512, 4096, 4096]];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(fn, minRuns, budgetMs) {
  await fn(); // warm-up (packing buffers, page faults, thread start)
  const ts = [];
  const start = performance.now();
  while (ts.length < minRuns || (performance.now() - start < budgetMs && ts.length < 50)) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
    if (performance.now() - start > budgetMs * 4) break;
  }
  return { medianMs: median(ts), runs: ts.length };
}

function fill(arr, seed) {
  let s = seed >>> 0;
  for (let i = 0; i < arr.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    arr[i] = arr instanceof Float32Array ? (s / 2 ** 32) * 2 - 1 : (s >>> 24) - 128;
  }
  return arr;
}

async function main() {
  const caps = qk.capabilities();
  const rows = [];
  for (const [M, K, N] of shapes) {
    const flops = 2 * M * N * K;
    const af = new qk.Tensor('float32', [M, K], fill(new Float32Array(M * K), 1));
    const bf = new qk.Tensor('float32', [K, N], fill(new Float32Array(K * N), 2));
    const ai = new qk.Tensor('int8', [M, K], fill(new Int8Array(M * K), 3));
    const bi = new qk.Tensor('int8', [K, N], fill(new Int8Array(K * N), 4));
    for (const isa of caps.isasAvailable) {
      if (isa === 'ref' && flops > 2 * 512 ** 3) continue; // the reference is the spec, not a contender
      const f = await time(() => qk.matmul(af, bf, { isa }), 3, 400);
      const i = await time(() => qk.matmulInt8(ai, bi, { isa }), 3, 400);
      rows.push({ M, K, N, isa, fp32_ms: f.medianMs, fp32_gflops: flops / f.medianMs / 1e6, int8_ms: i.medianMs, int8_gops: flops / i.medianMs / 1e6 });
      const r = rows[rows.length - 1];
      console.log(
        `M=${String(M).padStart(4)} K=${String(K).padStart(4)} N=${String(N).padStart(4)} ${isa.padEnd(6)}` +
          `  fp32 ${r.fp32_ms.toFixed(2).padStart(8)} ms ${r.fp32_gflops.toFixed(1).padStart(7)} GFLOP/s` +
          `  int8 ${r.int8_ms.toFixed(2).padStart(8)} ms ${r.int8_gops.toFixed(1).padStart(7)} GOP/s` +
          `  (int8/fp32 speed-up ${(r.fp32_ms / r.int8_ms).toFixed(2)}x)`,
      );
    }
  }
  let sha = 'unknown';
  try {
    sha = execSync('git rev-parse --short HEAD', { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch (_) {}
  const result = {
    date: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, isa: caps.isa, threads: caps.threads, node: process.version, sha },
    rows,
  };
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${result.date.slice(0, 10)}-${os.hostname()}-gemm.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2));
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
