#!/usr/bin/env node
// Issue 7: where does the packed decode GEMV (denseLowbitPacked, weights packed once) stop beating the
// dense_lowbit_a8 GEMM (weights expanded per call; denseW4A8 for int4 per-channel, mode chan)? The two are ALTERNATED call by call in one process on the same
// inputs (the machine is shared; only same-moment ratios mean something). Warm weights (each contender reuses its
// own buffers), medians of --pairs pairs, ms.
//   node bench/lowbit-cross.js [--shapes 4096x4096,4096x11008] [--ms 8,16,24,32,48,64,128] [--pairs 5] [--modes g128,g32,gptq,chan]
'use strict';
const fs = require('fs');
const C = require('./common');

const F = C.flags();
const SHAPES = (F.get('shapes') ?? '4096x4096,4096x11008').split(',').map((s) => s.split('x').map(Number));
const MS = (F.get('ms') ?? '8,16,24,32,48,64,128').split(',').map(Number);
const PAIRS = Number(F.get('pairs') ?? 5);
const MODES = (F.get('modes') ?? 'g128,g32,gptq').split(',');
const { native } = C.loadQuantkit();
const load = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

async function main() {
  console.log(`packed GEMV vs dense_lowbit_a8 GEMM, alternated; load ${load()}`);
  const rows = [];
  for (const [K, N] of SHAPES) {
    for (const mode of MODES) {
      const keras = mode !== 'gptq';
      const chan = mode === 'chan'; // int4 per-channel: the GEMM is denseW4A8
      const group = chan ? K : mode === 'g32' ? 32 : 128;
      const G = Math.ceil(K / group);
      const w = C.randBytes((K * N) / 2, keras ? Int8Array : Uint8Array);
      const scale = C.randFloat(G * N, 3, 0.01);
      const zero = keras ? C.randInts(G * N, -8, 7, Int8Array, 4) : C.randInts(G * N, 0, 15, Uint8Array, 4);
      const kind = chan ? 3 : keras ? 1 : 2;
      const packed = new Uint8Array(native.lowbitPackBytes(kind, 4, K, N, group));
      await native.lowbitPack(kind, 4, K, N, group, w, scale, chan ? null : zero, packed);
      for (const M of MS) {
        const x = C.randFloat(M * K, 2, 1);
        const y = new Float32Array(M * N);
        const call = (p) => (p ? native.denseLowbitPacked(M, N, K, x, packed, null, -127, 127, 1e-7, y)
          : chan ? native.denseW4A8(M, N, K, x, w, scale, null, -127, 127, 1e-7, y)
            : native.denseLowbitA8(M, N, K, x, w, 4, keras, scale, zero, group, null, y));
        await call(true);
        await call(false);
        const tp = [];
        const tg = [];
        for (let i = 0; i < PAIRS; i++) {
          for (const p of i % 2 === 0 ? [true, false] : [false, true]) {
            const s = performance.now();
            await call(p);
            (p ? tp : tg).push(performance.now() - s);
          }
        }
        const r = { K, N, mode, M, packedMs: C.median(tp), gemmMs: C.median(tg), ratio: C.median(tp.map((v, i) => v / tg[i])), load: load() };
        rows.push(r);
        console.log(`${K}x${N} ${mode} M=${M}: packed ${r.packedMs.toFixed(3)} gemm ${r.gemmMs.toFixed(3)} packed/gemm ${r.ratio.toFixed(2)} (load ${r.load})`);
      }
    }
  }
  if (F.get('json')) fs.writeFileSync(F.get('json'), JSON.stringify(rows, null, 1));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
