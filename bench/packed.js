#!/usr/bin/env node
// Pre-packed weights (qk/packed.h, lib/ops/weight-pack.ts) against the per-call packing path, ALTERNATED call by call in
// one process on the same inputs (a shared machine's load drifts; only same-moment ratios mean something): int8 W8A8
// (denseW8A8) and fp32 (denseF32) at the LLM shapes, M = 128 and 512. Reports per shape and M the medians of
// each variant, the median of the per-pair time ratios packed / unpacked, and each median as a fraction of the int8
// VNNI / fp32 FMA peak measured (bench/native/limits.cpp, all threads) right before that block.
//   node bench/packed.js [--shapes 4096x4096,...] [--ms 128,512] [--pairs 8] [--kinds w8a8,f32]
'use strict';
const path = require('path');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const C = require('./common');

const F = C.flags();
const SHAPES = (F.get('shapes') ?? '4096x4096,4096x11008,11008x4096').split(',').map((s) => s.split('x').map(Number));
const MS = (F.get('ms') ?? '128,512').split(',').map(Number);
const PAIRS = Number(F.get('pairs') ?? 8);
const KINDS = (F.get('kinds') ?? 'w8a8,f32').split(',');
const { native } = C.loadQuantkit();
const threads = os.cpus().length;

function limitsBin() {
  const src = path.join(__dirname, 'native', 'limits.cpp');
  const bin = path.join(C.BUILD, 'limits');
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(C.BUILD, { recursive: true });
    execFileSync(process.env.CXX || 'g++', ['-O2', '-std=c++17', '-pthread', '-o', bin, src]);
  }
  return bin;
}
/** Best of the passes of one short peak measurement (GOP/s or GFLOP/s). */
function peak(kind) {
  const out = execFileSync(limitsBin(), [kind === 'w8a8' ? 'vnni' : 'fma', String(threads), '300'], { encoding: 'utf8' });
  return Math.max(...JSON.parse(out.trim().split('\n').pop()).passes);
}

async function main() {
  const results = [];
  console.log(`packed vs per-call packing, alternated (${threads} threads), load ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}`);
  for (const [K, N] of SHAPES) {
    const wf = C.randFloat(K * N, 1, 0.02);
    const wi = C.randBytes(K * N, Int8Array);
    const ws = new Float32Array(N).fill(0.01);
    for (const kind of KINDS) {
      const buf = new ArrayBuffer(native.packWeightsBytes(kind, K, N));
      if (buf.byteLength === 0) throw new Error('this ISA has no packed layout');
      const t0 = performance.now();
      await native.packWeights(kind, K, N, kind === 'f32' ? wf : wi, buf);
      const packMs = performance.now() - t0;
      for (const M of MS) {
        const x = C.randFloat(M * K, 2, 1);
        const y = new Float32Array(M * N);
        const call = (packed) =>
          kind === 'f32'
            ? native.denseF32(M, N, K, x, wf, null, y, undefined, packed ? buf : null)
            : native.denseW8A8(M, N, K, x, wi, ws, null, -127, 127, 1e-7, y, undefined, packed ? buf : null);
        const pk = peak(kind);
        await call(false);
        await call(true);
        const tu = [];
        const tp = [];
        for (let i = 0; i < PAIRS; i++) {
          // alternate which goes first, so neither always follows the other's cache state
          const order = i % 2 === 0 ? [false, true] : [true, false];
          for (const p of order) {
            const s = performance.now();
            await call(p);
            (p ? tp : tu).push(performance.now() - s);
          }
        }
        const ratio = C.median(tp.map((v, i) => v / tu[i]));
        const ops = (2 * M * N * K) / 1e6;
        const r = {
          kind, K, N, M, packMs, peak: pk, unpackedMs: C.median(tu), packedMs: C.median(tp), ratio,
          unpackedPct: (100 * ops) / C.median(tu) / pk, packedPct: (100 * ops) / C.median(tp) / pk,
          load: fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
        };
        results.push(r);
        console.log(
          `  ${kind.padEnd(5)} ${K}x${N} M=${String(M).padEnd(4)} unpacked ${C.fmt(r.unpackedMs, 4).padStart(8)} ms (${r.unpackedPct.toFixed(0)}%)  ` +
            `packed ${C.fmt(r.packedMs, 4).padStart(8)} ms (${r.packedPct.toFixed(0)}%)  ratio ${ratio.toFixed(3)}  ` +
            `peak ${C.fmt(pk)}  pack ${packMs.toFixed(0)} ms  load ${r.load}`,
        );
      }
    }
  }
  C.writePart('packed', { threads, results });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
