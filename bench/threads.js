#!/usr/bin/env node
// Where the time of a multi-threaded GEMM call goes on a shared machine, and quantkit against onnxruntime ALTERNATED
// call by call in one process (packed denseW8A8 / denseF32 vs a one-node DynamicQuantizeMatMul / MatMul session).
// Per call it reads every thread's /proc/self/task/<tid>/schedstat: "run" = CPU time summed over the process's
// threads, "wait" = time those threads were runnable but not running (preempted by other processes). Run once with
// onnxruntime's intra-op spinning on (its default) and once off: while its workers spin after a run they hold the
// cores that the alternated quantkit call needs, so with spinning on the alternated ratio measures the spin, not the
// kernels (docs/cpu-kernel-limits.md, "Two threads").
//   node bench/threads.js [--shapes 4096x4096] [--ms 128,512] [--kinds w8a8,f32] [--pairs 8] [--spin on,off]
'use strict';
const fs = require('fs');
const os = require('os');
const C = require('./common');
const O = require('./onnx');

const F = C.flags();
const SHAPES = (F.get('shapes') ?? '4096x4096').split(',').map((s) => s.split('x').map(Number));
const MS = (F.get('ms') ?? '128,512').split(',').map(Number);
const KINDS = (F.get('kinds') ?? 'w8a8,f32').split(',');
const PAIRS = Number(F.get('pairs') ?? 8);
const SPIN = (F.get('spin') ?? 'on,off').split(',');
const threads = Number(process.env.QK_NUM_THREADS) || os.cpus().length;
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** [run ms, wait ms] summed over this process's threads (Linux schedstat; zeros elsewhere). */
function sched() {
  let run = 0;
  let wait = 0;
  let tasks = [];
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch {
    return [0, 0];
  }
  for (const t of tasks) {
    try {
      const [r, w] = fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ').map(Number);
      run += r;
      wait += w;
    } catch {
      // the thread ended between readdir and read
    }
  }
  return [run / 1e6, wait / 1e6];
}

async function timed(fn, out) {
  const s0 = sched();
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  const s1 = sched();
  out.ms.push(ms);
  out.run.push(s1[0] - s0[0]);
  out.wait.push(s1[1] - s0[1]);
}

async function main() {
  const peer = C.requirePeer('onnxruntime-node');
  if (peer.error) throw new Error(peer.error);
  const ort = peer.mod;
  const { native } = C.loadQuantkit();
  const results = [];
  console.log(`quantkit vs onnxruntime alternated, ${threads} threads, load ${loadavg()}`);
  for (const [K, N] of SHAPES) {
    const wf = C.randFloat(K * N, 1, 0.02);
    const wi = C.randBytes(K * N, Int8Array);
    const ws = new Float32Array(N).fill(0.01);
    for (const kind of KINDS) {
      const buf = new ArrayBuffer(native.packWeightsBytes(kind, K, N));
      if (buf.byteLength > 0) await native.packWeights(kind, K, N, kind === 'f32' ? wf : wi, buf);
      const packed = buf.byteLength > 0 ? buf : null;
      const model = kind === 'f32' ? O.matmulModel(K, N, [wf]) : O.dynamicQuantizeMatMulModel(K, N, [{ q: wi, scale: ws }]);
      for (const spin of SPIN) {
        const session = await ort.InferenceSession.create(model, {
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
          logSeverityLevel: 3,
          extra: { session: { intra_op: { allow_spinning: spin === 'on' ? '1' : '0' } } },
        });
        for (const M of MS) {
          const x = C.randFloat(M * K, 2, 1);
          const y = new Float32Array(M * N);
          const feeds = { A: new ort.Tensor('float32', x, [M, K]) };
          const qk = () =>
            kind === 'f32'
              ? native.denseF32(M, N, K, x, wf, null, y, undefined, packed)
              : native.denseW8A8(M, N, K, x, wi, ws, null, -127, 127, 1e-7, y, undefined, packed);
          const onnx = () => session.run(feeds);
          for (let i = 0; i < 2; i++) {
            await qk();
            await onnx();
          }
          const a = { ms: [], run: [], wait: [] };
          const b = { ms: [], run: [], wait: [] };
          for (let i = 0; i < PAIRS; i++) {
            if (i % 2 === 0) {
              await timed(qk, a);
              await timed(onnx, b);
            } else {
              await timed(onnx, b);
              await timed(qk, a);
            }
          }
          const med = (o) => ({ ms: C.median(o.ms), run: C.median(o.run), wait: C.median(o.wait) });
          const r = {
            kind, K, N, M, threads, ortSpin: spin, quantkit: med(a), onnxruntime: med(b),
            ratio: C.median(a.ms.map((v, i) => v / b.ms[i])), load: loadavg(),
          };
          results.push(r);
          const f = (o) => `${C.fmt(o.ms, 4).padStart(7)} ms (run ${C.fmt(o.run, 4)}, wait ${C.fmt(o.wait, 4)})`;
          console.log(
            `  ${kind.padEnd(4)} ${K}x${N} M=${String(M).padEnd(4)} ort spin ${spin.padEnd(3)} quantkit ${f(r.quantkit)}  ` +
              `onnxruntime ${f(r.onnxruntime)}  ratio ${r.ratio.toFixed(3)}  load ${r.load}`,
          );
        }
        await session.release();
      }
    }
  }
  C.writePart('threads', { threads, results });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
