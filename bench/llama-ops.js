#!/usr/bin/env node
// Llama float-path kernels (csrc/kernels/*/llama_*): every ISA variant through the addon's async entry points
// (the same calls lib/ops/llama.ts makes), median of several runs.
//   attentionDecode: one decode step (T = 1) over a 2048-position cache, 32 heads x 128, MHA (32 kv heads) and
//                    GQA (8 kv heads): ms per token per layer; and a 128-token prefill chunk.
//   rmsnorm / rope / siluMul / softmaxRows: throughput in GB/s (bytes read + written) on large batches, and the
//                    latency of one decode-sized call (which is mostly the per-call cost of an async op).
// Writes bench/results/<date>-<host>-llama-ops.json.
//   node bench/llama-ops.js [--quick]
'use strict';
const os = require('os');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const native = require('node-gyp-build')(root);
const quick = process.argv.includes('--quick');

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(fn, budgetMs = quick ? 300 : 1500) {
  await fn();
  await fn();
  const ts = [];
  const start = performance.now();
  while (ts.length < 5 || (performance.now() - start < budgetMs && ts.length < 2000)) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function rand(n, seed, scale = 1) {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

const fmt = (v, d = 3) => (v >= 100 ? v.toFixed(1) : v.toPrecision(d));

async function main() {
  const caps = native.capabilities();
  const isas = caps.isasAvailable;
  const results = [];
  const row = (op, shape, isa, ms, extra = {}) => {
    results.push({ op, shape, isa, ms, ...extra });
    const tail = Object.entries(extra).map(([k, v]) => `${k} ${fmt(v)}`).join('  ');
    console.log(`${op.padEnd(16)} ${shape.padEnd(40)} ${isa.padEnd(7)} ${fmt(ms).padStart(8)} ms  ${tail}`);
  };

  // ---- attention ----
  const hd = 128;
  const H = 32;
  const maxSeq = 2048;
  for (const KV of [32, 8]) {
    const kc = rand(KV * maxSeq * hd, 1);
    const vc = rand(KV * maxSeq * hd, 2);
    const q = rand(H * hd, 3, 2);
    const out = new Float32Array(H * hd);
    for (const isa of isas) {
      const ms = await time(() => native.attentionDecode(q, 1, H, KV, hd, kc, vc, maxSeq, maxSeq - 1, out, isa), isa === 'ref' ? 500 : undefined);
      const bytes = 2 * KV * maxSeq * hd * 4;
      row('attentionDecode', `T=1 H=${H} KV=${KV} hd=${hd} ctx=${maxSeq}`, isa, ms, { 'KV GB/s': bytes / ms / 1e6 });
    }
    const T = 128;
    const qp = rand(T * H * hd, 4, 2);
    const op = new Float32Array(T * H * hd);
    for (const isa of isas) {
      if (isa === 'ref' && quick) continue;
      const ms = await time(() => native.attentionDecode(qp, T, H, KV, hd, kc, vc, maxSeq, 0, op, isa), 300);
      const flops = 4 * H * hd * ((T * (T + 1)) / 2);
      row('attentionDecode', `prefill T=${T} H=${H} KV=${KV} hd=${hd} pos0=0`, isa, ms, { 'GFLOP/s': flops / ms / 1e6 });
    }
  }

  // ---- element-wise ops: throughput and decode-size latency ----
  const big = quick ? 1 << 20 : 1 << 22;
  const dim = 4096;
  const rowsBig = big / dim;
  const x = rand(big, 5, 3);
  const y = new Float32Array(big);
  const w = rand(dim, 6);
  const g = rand(big, 7, 6);
  const u = rand(big, 8);
  for (const isa of isas) {
    let ms = await time(() => native.rmsnorm(x, w, rowsBig, dim, 1e-5, y, isa));
    row('rmsnorm', `${rowsBig} x ${dim}`, isa, ms, { 'GB/s': (2 * big * 4) / ms / 1e6 });
    ms = await time(() => native.rmsnorm(x.subarray(0, dim), w, 1, dim, 1e-5, y.subarray(0, dim), isa));
    row('rmsnorm', `1 x ${dim} (decode)`, isa, ms);
  }
  const ropeRows = big / (H * hd);
  const pos = Int32Array.from({ length: ropeRows }, (_, i) => i);
  for (const isa of isas) {
    let ms = await time(() => native.rope(x, ropeRows, H, hd, pos, 10000, isa));
    row('rope', `${ropeRows} x ${H} x ${hd}`, isa, ms, { 'GB/s': (2 * big * 4) / ms / 1e6 });
    ms = await time(() => native.rope(x.subarray(0, H * hd), 1, H, hd, pos.subarray(0, 1), 10000, isa));
    row('rope', `1 x ${H} x ${hd} (decode q)`, isa, ms);
  }
  const ffn = 11008;
  for (const isa of isas) {
    let ms = await time(() => native.siluMul(g, u, y, isa));
    row('siluMul', `${big}`, isa, ms, { 'GB/s': (3 * big * 4) / ms / 1e6 });
    ms = await time(() => native.siluMul(g.subarray(0, ffn), u.subarray(0, ffn), y.subarray(0, ffn), isa));
    row('siluMul', `${ffn} (decode)`, isa, ms);
  }
  const smRows = big / 2048;
  const sx = rand(big, 9, 8);
  for (const isa of isas) {
    const ms = await time(() => native.softmaxRows(sx, smRows, 2048, isa));
    row('softmaxRows', `${smRows} x 2048`, isa, ms, { 'GB/s': (2 * big * 4) / ms / 1e6 });
  }
  // per-call cost of an async op: a 16-element siluMul
  const t16 = new Float32Array(16);
  const ms16 = await time(() => native.siluMul(t16, t16, t16), 500);
  row('siluMul', '16 (per-call overhead)', caps.isa, ms16);

  const out = {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpu: os.cpus()[0]?.model,
    threads: caps.threads,
    node: process.version,
    results,
  };
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${out.date.slice(0, 10)}-${os.hostname().split('.')[0]}-llama-ops.json`);
  fs.writeFileSync(file, JSON.stringify(out, null, 2));
  console.log(`\nwrote ${path.relative(root, file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
