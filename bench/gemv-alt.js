#!/usr/bin/env node
// Cold int4 GEMV (M = 1), alternated in one process so that a shared machine's load hits every contender alike:
// quantkit's packed decode GEMV (lib/ops/lowbit-pack.ts; int4 g128 / g32 / per-channel or GPTQ 4-bit g128), its
// exact weight-only kernel on the same weights, onnxruntime's MatMulNBits (block 128 / 32, accuracy level 4,
// with zero points; one session holding R copies as R parallel nodes, time / R) and quantkit's fp32 GEMV as the
// DRAM streaming reference. Each contender rotates through copies filling the cold working set (4x the LLC, at
// least 512 MiB); rounds alternate the contenders; medians of the rounds.
//   node --expose-gc bench/gemv-alt.js [--shapes 4096x4096,...] [--modes g128,g32,pc,gptq4] [--rounds 7]
'use strict';
const C = require('./common');
const O = require('./onnx');

const F = C.flags();
const SHAPES = (F.get('shapes') ?? '4096x4096,4096x11008,11008x4096').split(',').map((s) => s.split('x').map(Number));
const MODES = (F.get('modes') ?? 'g128,g32,pc,gptq4').split(',');
const ROUNDS = Number(F.get('rounds') ?? 7);
const { native } = C.loadQuantkit();
const WS = C.coldWorkingSet();
const gc = () => (global.gc ? global.gc() : undefined);

async function rotate(fns) {
  const t0 = performance.now();
  const n = Math.max(fns.length, 32);
  for (let i = 0; i < n; i++) await fns[i % fns.length]();
  return (performance.now() - t0) / n;
}

async function one(ort, K, N, mode) {
  const g = mode === 'g32' ? 32 : mode === 'pc' ? K : 128;
  const G = Math.ceil(K / g);
  const kind = mode === 'pc' ? 3 : mode === 'gptq4' ? 2 : 1;
  const bytes = native.lowbitPackBytes(kind, 4, K, N, g);
  const copies = Math.max(2, Math.floor(WS / bytes));
  const x = C.randFloat(K, 1, 1);
  const y = new Float32Array(N);
  const w = C.randInts((K * N) / 2, 0, 255, Uint8Array, 2);
  const s = C.randFloat(mode === 'pc' ? N : G * N, 3, 0.02);
  const z = mode === 'gptq4' ? C.randInts(G * N, 0, 15, Uint8Array, 4) : C.randInts(G * N, -8, 7, Int8Array, 4);
  const packed = new Uint8Array(bytes);
  await native.lowbitPack(kind, 4, K, N, g, w, s, mode === 'pc' ? null : z, packed);
  const qk = [];
  const ex = [];
  for (let c = 0; c < copies; c++) {
    const p = c === 0 ? packed : packed.slice();
    qk.push(() => native.denseLowbitPacked(1, N, K, x, p, null, -127, 127, 1e-7, y));
    const wc = c === 0 ? w : w.slice();
    const sc = c === 0 ? s : s.slice();
    if (mode === 'pc') ex.push(() => native.denseW4(1, N, K, x, wc, sc, null, y));
    else if (mode === 'gptq4') ex.push(() => native.denseGptq(1, N, K, x, wc, 4, sc, z, g, null, y));
    else ex.push(() => native.denseW4G(1, N, K, x, wc, sc, z, g, null, y));
  }
  const contenders = { 'quantkit packed GEMV': qk, 'quantkit exact': ex };
  let session = null;
  if (ort && mode !== 'pc') {
    const block = mode === 'g32' ? 32 : 128;
    const nb = Math.ceil(K / block);
    const ob = (N * nb * block) / 2 + N * nb * 4 + N * Math.ceil(nb / 2);
    const R = Math.max(2, Math.floor(WS / ob));
    const ws = Array.from({ length: R }, (_, r) => ({
      q: C.randInts((N * nb * block) / 2, 0, 255, Uint8Array, 10 + r),
      scale: C.randFloat(N * nb, 20 + r, 0.02),
      zero: C.randInts(N * Math.ceil(nb / 2), 0, 255, Uint8Array, 30 + r),
    }));
    session = await ort.InferenceSession.create(O.matMulNBitsModel(K, N, block, 4, ws), {
      intraOpNumThreads: C.loadQuantkit().qk.capabilities().threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      logSeverityLevel: 3,
    });
    ws.length = 0;
    const feeds = { A: new ort.Tensor('float32', x, [1, K]) };
    const run = async () => {
      const t0 = performance.now();
      await session.run(feeds);
      return (performance.now() - t0) / R;
    };
    contenders[`onnxruntime MatMulNBits b${block} acc4`] = run;
  }
  const fcopies = Math.max(2, Math.floor(WS / (K * N * 4)));
  const fw = Array.from({ length: fcopies }, (_, c) => C.randFloat(K * N, 40 + c, 0.02));
  contenders['quantkit fp32 (DRAM reference)'] = fw.map((m) => () => native.denseF32(1, N, K, x, m, null, y));
  gc();
  const res = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  for (const [k, f] of Object.entries(contenders)) (typeof f === 'function' ? await f() : await rotate(f)); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, f] of Object.entries(contenders)) res[k].push(typeof f === 'function' ? await f() : await rotate(f));
  }
  if (session) await session.release();
  const med = (a) => C.median(a);
  const fp32 = med(res['quantkit fp32 (DRAM reference)']);
  const fp32Gbs = (K * N * 4) / fp32 / 1e6;
  const out = { K, N, mode, packedBytes: bytes, fp32Gbs, rows: {} };
  console.log(`(K, N) = (${K}, ${N}) ${mode}: packed ${(bytes / 1e6).toFixed(2)} MB, ${copies} copies; fp32 streams ${fp32Gbs.toFixed(1)} GB/s`);
  const q = med(res['quantkit packed GEMV']);
  for (const [k, a] of Object.entries(res)) {
    const m = med(a);
    out.rows[k] = m;
    const extra = k === 'quantkit packed GEMV' ? `  ${((bytes / m / 1e6 / fp32Gbs) * 100).toFixed(0)}% of the fp32 streaming rate` : k === 'quantkit fp32 (DRAM reference)' ? '' : `  packed is ${(m / q).toFixed(2)}x faster`;
    console.log(`  ${k.padEnd(34)} ${m.toFixed(3).padStart(7)} ms${extra}`);
  }
  return out;
}

(async () => {
  const peer = C.requirePeer('onnxruntime-node');
  const ort = peer.mod ?? null;
  if (!ort) console.log(peer.error);
  console.log(`load ${require('fs').readFileSync('/proc/loadavg', 'utf8').trim()}`);
  for (const [K, N] of SHAPES) for (const m of MODES) await one(ort, K, N, m);
  console.log(`load ${require('fs').readFileSync('/proc/loadavg', 'utf8').trim()}`);
})();
