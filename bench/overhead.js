#!/usr/bin/env node
// Where a public-API layer call's overhead goes (issue 7: "a layer call adds <= 10 us over its kernel").
// For a K x N Dense (default 4096 x 4096, M = 1) in fp32, int8 (W8A8) and float8:
//   1. JS-only cost of Dense.apply: the addon's dense entry points are replaced by stubs that return a settled
//      promise, so what is timed is the JavaScript path alone (argument checks, output allocation, promise hops),
//      hot (back-to-back calls) and "after a kernel" (a 32 MiB read evicts the caches first, as a real kernel
//      streaming its weights does). This part is robust to a busy machine: it runs on one thread.
//   2. Paired timing, real kernels: raw op and Dense.apply alternated on the same weights; the median of the
//      pairwise differences, and the split of the layer call into JS before the native call, the native call
//      (kernel + worker hop) and JS after it. On a shared 2-vCPU machine this part is noisy: compare ratios.
// Prints a table and writes bench/results/<date>-<host>-overhead.json (with the load average).
//   node bench/overhead.js [--quick] [--shape 4096x4096]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const C = require('./common');

const F = C.flags();
const [K, N] = (F.get('shape') ?? '4096x4096').split('x').map(Number);
const quick = F.quick;
const MODES = ['fp32', 'int8', 'float8'];
const OPS = ['denseF32', 'denseW8A8', 'denseW8', 'denseFp8'];

const flushBuf = new Float32Array(8 << 20);
function flush() {
  let s = 0;
  for (let i = 0; i < flushBuf.length; i += 16) s += flushBuf[i];
  return s;
}

async function makeLayer(qk, mode, w0) {
  const l = new qk.Dense({ units: N, useBias: false, kernelInitializer: () => w0 });
  l.build([null, K]);
  if (mode !== 'fp32') await l.quantize(mode);
  return l;
}

function rawCall(native, mode, l, x, y) {
  const st = l.quantizedState;
  if (mode === 'fp32') return () => native.denseF32(1, N, K, x, l.kernel.value.data, null, y);
  if (mode === 'int8') return () => native.denseW8A8(1, N, K, x, st.kernel.data, st.scale.data, null, -127, 127, 1e-7, y);
  return () => native.denseFp8(1, N, K, x, 0.01, st.kernel.data, st.kernelScale, null, y);
}

async function main() {
  const { qk, native } = C.loadQuantkit();
  const load0 = os.loadavg();
  const x = C.randFloat(K, 5);
  const w0 = C.randFloat(K * N, 3, 0.02);
  const xt = new qk.Tensor('float32', [1, K], x);
  const y = new Float32Array(N);
  const real = Object.fromEntries(OPS.map((k) => [k, native[k]]));
  const results = [];
  for (const mode of MODES) {
    const l = await makeLayer(qk, mode, w0);
    // 1. JS only
    for (const k of OPS) native[k] = () => Promise.resolve();
    const hot = [];
    const cold = [];
    for (let i = 0; i < (quick ? 1000 : 3000); i++) {
      const t0 = performance.now();
      await l.apply(xt);
      hot.push(performance.now() - t0);
    }
    for (let i = 0; i < (quick ? 150 : 400); i++) {
      flush();
      const t0 = performance.now();
      await l.apply(xt);
      cold.push(performance.now() - t0);
    }
    // 2. paired, real kernels, with the split of the layer call
    let tCall = 0;
    let tDone = 0;
    for (const k of OPS) {
      native[k] = (...a) => {
        tCall = performance.now();
        return real[k](...a).then((v) => {
          tDone = performance.now();
          return v;
        });
      };
    }
    const raw = rawCall(native, mode, l, x, y);
    const runs = quick ? 100 : 300;
    const d = [];
    const pre = [];
    const mid = [];
    const post = [];
    const rawMs = [];
    for (let i = 0; i < runs + 2; i++) {
      let t0 = performance.now();
      await raw();
      const a = performance.now() - t0;
      t0 = performance.now();
      await l.apply(xt);
      const t1 = performance.now();
      if (i < 2) continue;
      rawMs.push(a);
      d.push(t1 - t0 - a);
      pre.push(tCall - t0);
      mid.push(tDone - tCall);
      post.push(t1 - tDone);
    }
    for (const k of OPS) native[k] = real[k];
    const us = (v) => v * 1000;
    const r = {
      mode,
      K,
      N,
      jsOnlyHotUs: us(C.median(hot)),
      jsOnlyAfterFlushUs: us(C.median(cold)),
      rawMs: C.median(rawMs),
      pairedDiffUs: us(C.median(d)),
      layerPreUs: us(C.median(pre)),
      layerNativeMs: C.median(mid),
      layerPostUs: us(C.median(post)),
      runs,
    };
    results.push(r);
    console.log(
      `${mode.padEnd(7)} JS-only ${C.fmt(r.jsOnlyHotUs).padStart(6)} us hot, ${C.fmt(r.jsOnlyAfterFlushUs).padStart(6)} us after a flush | ` +
        `raw ${C.fmt(r.rawMs, 4)} ms, layer - raw ${C.fmt(r.pairedDiffUs).padStart(6)} us (JS before ${C.fmt(r.layerPreUs)} us, after ${C.fmt(r.layerPostUs)} us)`,
    );
  }
  const load1 = os.loadavg();
  console.log(`load average ${load0.map((v) => v.toFixed(2)).join(' ')} at start, ${load1.map((v) => v.toFixed(2)).join(' ')} at end`);
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().slice(0, 10)}-${os.hostname()}-overhead${quick ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), gitSha: C.gitSha(), load: { start: load0, end: load1 }, results }, null, 2));
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
