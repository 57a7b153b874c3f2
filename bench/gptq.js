#!/usr/bin/env node
// GPTQ benchmark through the TypeScript API (gptqHessian / GptqHessian / gptqQuantizeMatrix, lib/gptq/matrix.ts):
//   * GPTQ wall time of one layer with the Hessian given (built once from random correlated activations; only
//     gptqQuantizeMatrix is timed, which includes its copy of H): in=4096 x out=4096 and in=4096 x out=11008,
//     4 bits, group 128, with and without activation order;
//   * the inverse-Hessian factor alone (Cholesky + triangular inverse, n = 4096, raw binding);
//   * Hessian accumulation throughput for a 2048 x 4096 batch (GptqHessian.update into a running sum).
// Median of several runs after one warm-up (fewer runs for the slow cases). Writes
// bench/results/<date>-<host>-gptq.json.
//   node bench/gptq.js [--quick] [--isa=ref|avx2|avx512]
// Needs the built library (`npm run build`, or `npm run build:ts` after `npm run build:native`).
'use strict';
const os = require('os');
const fs = require('fs');
const path = require('path');
const { execSync } = require('child_process');
const qk = require('..');

function loadGptq() {
  if (typeof qk.gptqQuantizeMatrix === 'function') return qk; // once the package exports it
  try {
    return require('../dist/gptq/matrix.js');
  } catch (e) {
    throw new Error(`bench/gptq.js needs dist/gptq/matrix.js: run \`npm run build:ts\` first (${e.message})`);
  }
}
const { GptqHessian, gptqQuantizeMatrix } = loadGptq();
const { loadNative } = require('../dist/native/load.js');

const quick = process.argv.includes('--quick');
const isaArg = process.argv.find((a) => a.startsWith('--isa='));
const IN = quick ? 1024 : 4096;
const OUTS = quick ? [1024, 2752] : [4096, 11008];
const CALIB_ROWS = quick ? 2048 : 8192; // rows of activations behind the Hessian used for the GPTQ timings
const ACC_ROWS = 2048; // batch of the accumulation throughput measurement

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(fn, runs) {
  await fn(); // warm-up
  const ts = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return { medianMs: median(ts), runs: ts.length, allMs: ts };
}

function randn(n, seed, scale = 1) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    out[i] = r * Math.cos(t) * scale;
    if (i + 1 < n) out[i + 1] = r * Math.sin(t) * scale;
  }
  return out;
}

/**
 * Correlated activations X = Z · A with Z standard normal [rows, cols] and A = 0.3·I + N(0, 0.7²/cols) [cols, cols]
 * (native fp32 GEMM), columns scaled by factors in [e^-1.5, e^1.5]: H = 2/N XᵀX is dense and its diagonal spans
 * about three orders of magnitude, as for real transformer activations.
 */
async function makeMixing(cols) {
  const A = randn(cols * cols, 7, 0.7 / Math.sqrt(cols));
  let s = 99;
  const colScale = new Float32Array(cols);
  for (let j = 0; j < cols; j++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    colScale[j] = Math.exp((s / 2 ** 32) * 3 - 1.5);
  }
  for (let i = 0; i < cols; i++) {
    A[i * cols + i] += 0.3;
    for (let j = 0; j < cols; j++) A[i * cols + j] *= colScale[j];
  }
  return new qk.Tensor('float32', [cols, cols], A);
}

async function activations(rows, cols, A, seed) {
  const Z = new qk.Tensor('float32', [rows, cols], randn(rows * cols, seed));
  return qk.matmul(Z, A);
}

async function main() {
  const caps = qk.capabilities();
  const isa = isaArg ? isaArg.slice(6) : caps.isa;
  const opt = isaArg ? { isa } : {};
  const results = { hessian: null, factor: null, gptq: [] };
  const loadBefore = os.loadavg();
  console.log(`GPTQ bench (isa ${isa}, ${caps.threads} threads${quick ? ', --quick' : ''})`);

  // Calibration Hessian, built once.
  const A = await makeMixing(IN);
  const acc = new GptqHessian(IN, opt);
  const batches = [];
  for (let b = 0; b < CALIB_ROWS / 2048; b++) batches.push(await activations(2048, IN, A, 1000 + b));
  const t0 = performance.now();
  for (const x of batches) await acc.update(x);
  const H = await acc.finalize();
  console.log(`Hessian of ${CALIB_ROWS} correlated rows x ${IN} built in ${((performance.now() - t0) / 1000).toFixed(2)} s`);

  // Hessian accumulation throughput: one [ACC_ROWS, IN] batch into a running sum.
  {
    const x = batches[0].shape[0] === ACC_ROWS ? batches[0] : await activations(ACC_ROWS, IN, A, 5);
    const h = new GptqHessian(IN, opt);
    const t = await time(() => h.update(x), 5);
    // Flop convention: the symmetric rank-k update of the lower triangle incl. the diagonal, as BLAS dsyrk counts
    // it: rows * cols * (cols + 1) (one multiply + one add per stored entry and row).
    const flops = ACC_ROWS * IN * (IN + 1);
    results.hessian = { rows: ACC_ROWS, cols: IN, flopConvention: 'rows*cols*(cols+1) (dsyrk, lower triangle incl. diagonal)', ms: t.medianMs, runs: t.runs, gflops: flops / t.medianMs / 1e6 };
    console.log(
      `Hessian accumulation ${ACC_ROWS} x ${IN}: ${t.medianMs.toFixed(1)} ms, ${results.hessian.gflops.toFixed(1)} GFLOP/s ` +
        `(flops = rows*cols*(cols+1), the dsyrk count; median of ${t.runs})`,
    );
  }

  // The inverse-Hessian factor alone (damping, Cholesky, triangular inverse), raw binding.
  {
    const native = loadNative();
    const work = new Float64Array(H.length);
    const res = new Float64Array(2);
    const t = await time(async () => {
      work.set(H);
      await native.gptqCholeskyInverseUpper(work, IN, 0.01, 6, res, isaArg ? isa : undefined);
    }, 3);
    results.factor = { n: IN, ms: t.medianMs, runs: t.runs, dampTries: res[1], note: 'includes an 8*n^2-byte copy of H per run' };
    console.log(`inverse-Hessian factor n=${IN} (Cholesky + triangular inverse): ${t.medianMs.toFixed(0)} ms (median of ${t.runs}, damping tries ${res[1]})`);
  }

  // GPTQ of one layer, Hessian given.
  for (const out of OUTS) {
    const kernel = new qk.Tensor('float32', [IN, out], randn(IN * out, out + 3, 0.02));
    for (const activationOrder of [false, true]) {
      const runs = out * IN > 4096 * 4096 ? 3 : 5;
      let last = null;
      const t = await time(async () => {
        last = await gptqQuantizeMatrix(kernel, H, { weightBits: 4, groupSize: 128, activationOrder, ...opt });
      }, runs);
      const row = { in: IN, out, bits: 4, groupSize: 128, activationOrder, ms: t.medianMs, runs: t.runs, allMs: t.allMs, dampingTries: last.dampingTries, loss: last.loss };
      results.gptq.push(row);
      console.log(
        `GPTQ in=${IN} out=${String(out).padEnd(5)} 4-bit g128 ${activationOrder ? 'act-order   ' : 'no act-order'}: ` +
          `${(t.medianMs / 1000).toFixed(3)} s (median of ${t.runs}; runs ${t.allMs.map((v) => (v / 1000).toFixed(2)).join(', ')} s)`,
      );
      last = null;
    }
  }

  let sha = 'unknown';
  try {
    sha = execSync('git rev-parse --short HEAD', { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch (_) {}
  // The load average shows whether other processes competed for the cores during the run (this bench keeps
  // `threads` cores busy itself, so a 1-minute load clearly above that means the numbers are pessimistic).
  const loadAfter = os.loadavg();
  if (loadAfter[0] > caps.threads + 0.75) {
    console.log(`warning: 1-minute load average ${loadAfter[0].toFixed(2)} > ${caps.threads} threads: other processes competed for the CPU`);
  }
  const result = {
    date: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, isa, threads: caps.threads, node: process.version, sha },
    loadavg: { before: loadBefore, after: loadAfter },
    quick,
    calibrationRows: CALIB_ROWS,
    ...results,
  };
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${result.date.slice(0, 10)}-${os.hostname()}-gptq${quick ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2));
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
