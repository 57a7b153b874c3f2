#!/usr/bin/env node
// quantkit's projection kernels at LLM shapes, and onnxruntime-node's in the same process on the same inputs
// (issue 7, items 2 and 3). For (K, N) in {(4096, 4096), (4096, 11008), (11008, 4096)} and M in {1, 16, 128, 512}:
//   quantkit, raw op (the addon's entry points, as lib/ops calls them) and public layer API (Dense.apply):
//     fp32, int8 W8A8 (+ the bare int8 GEMM), int8 weight-only, int4 grouped g32/g128, int4 per-channel (weight-only,
//     the layer default, and W4A8), GPTQ 2/3/4/8-bit g128 (layer: with and without act-order), float8;
//   onnxruntime-node (CPU EP of its npm package): MatMul fp32, DynamicQuantizeMatMul and
//     DynamicQuantizeLinear+MatMulInteger (int8 dynamic), MatMulNBits 4-bit block 32/128, accuracy level 0 and 4.
// M = 1 is measured cold: the call rotates through enough copies of the weights (4x the last-level cache) that they
// stream from DRAM, as in real decoding (onnxruntime: one session holding R copies as R parallel nodes; time / R).
// M = 1 warm (same weights every call) is measured too: it is what the glue-overhead comparison uses.
// Medians of several runs. Writes bench/build/parts/kernels.json for bench/report.js.
//   node --expose-gc bench/kernels.js [--quick] [--shapes 4096x4096,...] [--ms 1,16,...] [--no-ort] [--no-layer]
'use strict';
const os = require('os');
const C = require('./common');
const O = require('./onnx');

const F = C.flags();
const quick = F.quick;
const SHAPES = (F.get('shapes') ?? (quick ? '4096x4096' : '4096x4096,4096x11008,11008x4096')).split(',').map((s) => s.split('x').map(Number));
const MS = (F.get('ms') ?? (quick ? '1,128' : '1,16,128,512')).split(',').map(Number);
const WITH_ORT = !F.has('no-ort');
const WITH_LAYER = !F.has('no-layer');
const { qk, native } = C.loadQuantkit();
const caps = qk.capabilities();
const THREADS = caps.threads;
const WS = C.coldWorkingSet();
const gc = () => (global.gc ? global.gc() : undefined);
const LAYER_SHAPES = (F.get('layer-shapes') ?? SHAPES[0].join('x')).split(',');
// onnxruntime cold (M = 1) sessions hold 4x the LLC of weights and take seconds to build: the shapes the issue
// quotes peers at, and the best variant of each family (the others are measured warm at every M).
const ORT_COLD_SHAPES = (F.get('ort-cold-shapes') ?? '4096x4096,4096x11008').split(',');

/**
 * One arena of WS bytes shared by every weight family: copy c of a family is a set of views at c * stride, so the
 * copies of the cold pool are disjoint and cost no allocation. The bytes are small random floats ([-0.02, 0.02)),
 * with every byte 0x7f / 0xff nudged so that no float8 code is a NaN; any byte is a valid int8, int4 pair, GPTQ
 * level group or zero point, so every family can read the same arena.
 */
let ARENA = null;
function arena() {
  if (ARENA) return ARENA;
  const n = Math.ceil(WS / 4) + 16;
  const f = C.randFloat(n, 12345, 0.02);
  const u8 = new Uint8Array(f.buffer);
  for (let i = 0; i < u8.length; i++) if ((u8[i] & 0x7f) === 0x7f) u8[i] ^= 1;
  ARENA = f.buffer;
  return ARENA;
}

/** Views for copy `c` of a family whose parts are [name, TypedArrayClass, length]. */
function viewsAt(parts, c) {
  const stride = partsStride(parts);
  let off = c * stride;
  const out = {};
  for (const [name, Cls, len] of parts) {
    out[name] = new Cls(arena(), off, len);
    off += Math.ceil((len * Cls.BYTES_PER_ELEMENT) / 64) * 64;
  }
  return out;
}
const partsStride = (parts) => parts.reduce((a, [, Cls, len]) => a + Math.ceil((len * Cls.BYTES_PER_ELEMENT) / 64) * 64, 0);

/** Timing budget per case (ms) and minimum runs, by M. */
function budget(M) {
  const s = quick ? 0.5 : 1;
  if (M === 1) return { minRuns: 20, budgetMs: 200 * s, maxRuns: 400 };
  if (M <= 16) return { minRuns: 5, budgetMs: 400 * s, maxRuns: 100 };
  if (M <= 128) return { minRuns: 3, budgetMs: 600 * s, maxRuns: 50 };
  return { minRuns: 3, budgetMs: 800 * s, maxRuns: 20 };
}

const rows = [];
const notes = [];
function record(r) {
  rows.push(r);
  const metric = r.M === 1 ? `${C.fmt(r.gbs).padStart(6)} GB/s` : `${C.fmt(r.gops).padStart(6)} GOP/s`;
  console.log(
    `  ${r.impl.padEnd(11)} ${r.api.padEnd(7)} ${r.mode.padEnd(18)} M=${String(r.M).padEnd(4)}${r.cold ? 'cold' : 'warm'} ${C.fmt(r.ms, 4).padStart(8)} ms  ${metric}` +
      (r.copies ? `  (${r.copies} copies)` : ''),
  );
}
function row(base, M, ms, cold, extra = {}) {
  const { K, N } = base;
  const bytes = base.weightBytes + 4 * M * (K + N);
  record({ ...base, M, ms, cold, gbs: bytes / ms / 1e6, gops: (2 * M * N * K) / ms / 1e6, ...extra });
}

// ---------------------------------------------------------------------------------------------------------------
// quantkit weight families: one set of weights each, several raw ops and layers over it.

function levelsToKerasGptq(levels, bits, N, K) {
  // Keras layout: [ceil(N/2), K] (4-bit, two per byte along the output axis), [ceil(N/4), K] (2-bit), [N, K] (3/8-bit)
  if (bits === 4 || bits === 2) {
    const per = 8 / bits;
    const rowsOut = Math.ceil(N / per);
    const out = new Uint8Array(rowsOut * K);
    for (let o = 0; o < N; o++) {
      const r = (o / per) | 0;
      const sh = (o % per) * bits;
      const src = o * K;
      const dst = r * K;
      for (let k = 0; k < K; k++) out[dst + k] |= levels[src + k] << sh;
    }
    return new qk.Tensor('uint8', [rowsOut, K], out);
  }
  return new qk.Tensor('uint8', [N, K], levels);
}

/**
 * The packed weights lib/ops passes for an M-row call (lib/ops/weight-pack.ts): the weights packed once, used from
 * PACK_MIN_ROWS rows on while packing is enabled (QK_PACK_WEIGHTS=0 measures the per-call packing path). The packs
 * are made by prepack() before a family is timed (the layers make theirs on their second call: see warmup below).
 */
function packedArg(p, kind, M) {
  return M >= qk.PACK_MIN_ROWS && qk.weightPackingEnabled() ? (p.packs?.[kind] ?? null) : null;
}
async function prepack(f, p, K, N) {
  if (!qk.weightPackingEnabled()) return;
  if (f.id === 'fp32') p.packs = { f32: await qk.packWeights('f32', p.w, K, N) };
  if (f.id === 'int8') p.packs = { w8a8: await qk.packWeights('w8a8', p.w, K, N) };
}

function makeFamilies(K, N) {
  const fam = [];
  const T = (dtype, shape, data) => new qk.Tensor(dtype, shape, data);
  const layerFrom = (policy, tensors, config = null) => {
    const l = new qk.Dense({ units: N, useBias: false, dtype: policy });
    if (config) l.quantizationConfig = config;
    l.build([null, K]);
    l.loadOwnVariables(tensors);
    return l;
  };

  // fp32
  fam.push({
    id: 'fp32',
    parts: [['w', Float32Array, K * N]],
    weightBytes: 4 * K * N,
    raw: [{ mode: 'fp32', limit: 'fp32', call: (M, x, y, p) => native.denseF32(M, N, K, x, p.w, null, y, undefined, packedArg(p, 'f32', M)) }],
    layers: [{ mode: 'fp32', limit: 'fp32', clonable: true, make: (p) => layerFrom('float32', [T('float32', [K, N], p.w)]) }],
  });

  // int8: one kernel [K, N] + per-channel scale
  {
    fam.push({
      id: 'int8',
      parts: [['w', Int8Array, K * N], ['s', Float32Array, N]],
      weightBytes: K * N + 4 * N,
      raw: [
        { mode: 'int8 W8A8', limit: 'int8', call: (M, x, y, p) => native.denseW8A8(M, N, K, x, p.w, p.s, null, -127, 127, 1e-7, y, undefined, packedArg(p, 'w8a8', M)) },
        { mode: 'int8 weight-only', limit: 'int8', call: (M, x, y, p) => native.denseW8(M, N, K, x, p.w, p.s, null, y) },
        {
          mode: 'int8 GEMM (igemm)',
          limit: 'int8',
          note: 'bare int8 x int8 -> int32 GEMM (activations already int8; no quantize/descale)',
          call: (M, x, y, p, ctx) => native.igemm(M, N, K, ctx.xi8(M), p.w, ctx.yi32(M), undefined, packedArg(p, 'w8a8', M)),
        },
      ],
      layers: [
        { mode: 'int8 W8A8', limit: 'int8', clonable: true, make: (p) => layerFrom('int8_from_float32', [T('int8', [K, N], p.w), T('float32', [N], p.s)]) },
        {
          mode: 'int8 weight-only',
          limit: 'int8',
          clonable: true,
          make: (p) => layerFrom('int8_from_float32', [T('int8', [K, N], p.w), T('float32', [N], p.s)], new qk.Int8QuantizationConfig({ activationQuantizer: null })),
        },
      ],
    });
  }

  // int4 grouped and GPTQ raw ops follow lib/ops' automatic choice (on AVX-512 VNNI the int8-compute path at every M:
  // the packed decode GEMV below 16 rows, the GEMM from 16, lib/ops/lowbit-a8.ts); the `exact` rows keep the exact
  // weight-only kernels (QK_WEIGHT_ONLY_EXACT=1)
  const a8 = (M) => M >= 16 && process.env.QK_WEIGHT_ONLY_EXACT !== '1' && native.lowbitA8Fast();
  // Below 16 rows lib/ops runs the packed-once decode GEMV (lib/ops/lowbit-pack.ts) on AVX-512 VNNI. The pack is made
  // once per weight set (as lib caches it per kernel array): for the cold pool, copy 0 is packed and the other copies
  // get their own clones of its bytes (distinct memory, so they stream from DRAM; packing each takes 40-90 ms).
  const dec = (M, act = false) => M < 16 && (act || process.env.QK_WEIGHT_ONLY_EXACT !== '1') && native.lowbitA8Fast();
  const packs = new Map();
  const packed = async (p, kind, bits, g, w, sc, z) => {
    if (p.packed) return p.packed;
    const key = `${kind}/${bits}/${g}/${K}x${N}`;
    let first = packs.get(key);
    if (!first) {
      first = new Uint8Array(native.lowbitPackBytes(kind, bits, K, N, g));
      await native.lowbitPack(kind, bits, K, N, g, w, sc, z, first);
      packs.set(key, first);
      p.packed = first;
    } else {
      p.packed = first.slice();
    }
    return p.packed;
  };
  const gemv = async (M, x, y, pk, act = [-127, 127, 1e-7]) => native.denseLowbitPacked(M, N, K, x, await pk, null, act[0], act[1], act[2], y);
  // int4 grouped (g32, g128): kernel [K, N/2] (two signed nibbles per byte along N), scale/zero [G, N]
  for (const g of [32, 128]) {
    const G = Math.ceil(K / g);
    const gIdx = Float32Array.from({ length: K }, (_, k) => Math.floor(k / g));
    fam.push({
      id: `int4g${g}`,
      parts: [['w', Int8Array, K * Math.ceil(N / 2)], ['s', Float32Array, G * N], ['z', Int8Array, G * N]],
      weightBytes: K * Math.ceil(N / 2) + G * N * 5,
      raw: [
        {
          mode: `int4 g${g}`,
          limit: 'int8',
          call: (M, x, y, p) =>
            dec(M)
              ? gemv(M, x, y, packed(p, 1, 4, g, p.w, p.s, p.z))
              : a8(M)
                ? native.denseLowbitA8(M, N, K, x, p.w, 4, true, p.s, p.z, g, null, y)
                : native.denseW4G(M, N, K, x, p.w, p.s, p.z, g, null, y),
        },
        { mode: `int4 g${g} exact`, limit: 'int8', call: (M, x, y, p) => native.denseW4G(M, N, K, x, p.w, p.s, p.z, g, null, y) },
      ],
      layers: [
        {
          mode: `int4 g${g}`,
          limit: 'int8',
          clonable: true,
          make: (p) => layerFrom(`int4/${g}_from_float32`, [T('int8', [K, Math.ceil(N / 2)], p.w), T('float32', [G, N], p.s), T('int8', [G, N], p.z), T('float32', [K], gIdx)]),
        },
      ],
    });
  }

  // int4 per-channel: kernel [K, N/2], scale [N]; the layer default is weight-only (W4), W4A8 with an activation quantizer
  fam.push({
    id: 'int4pc',
    parts: [['w', Int8Array, K * Math.ceil(N / 2)], ['s', Float32Array, N]],
    weightBytes: K * Math.ceil(N / 2) + 4 * N,
    raw: [
      {
        mode: 'int4 per-channel',
        limit: 'int8',
        call: (M, x, y, p) =>
          dec(M)
            ? gemv(M, x, y, packed(p, 3, 4, K, p.w, p.s, null))
            : a8(M)
              ? native.denseW4A8(M, N, K, x, p.w, p.s, null, -127, 127, 1e-7, y)
              : native.denseW4(M, N, K, x, p.w, p.s, null, y),
      },
      { mode: 'int4 per-channel exact', limit: 'int8', call: (M, x, y, p) => native.denseW4(M, N, K, x, p.w, p.s, null, y) },
      {
        mode: 'int4 pc W4A8',
        limit: 'int8',
        call: (M, x, y, p) => (dec(M, true) ? gemv(M, x, y, packed(p, 3, 4, K, p.w, p.s, null)) : native.denseW4A8(M, N, K, x, p.w, p.s, null, -127, 127, 1e-7, y)),
      },
    ],
    layers: [
      { mode: 'int4 per-channel', limit: 'int8', clonable: true, make: (p) => layerFrom('int4/-1_from_float32', [T('int8', [K, Math.ceil(N / 2)], p.w), T('float32', [N], p.s)]) },
      {
        mode: 'int4 pc W4A8',
        limit: 'int8',
        clonable: true,
        make: (p) =>
          layerFrom('int4/-1_from_float32', [T('int8', [K, Math.ceil(N / 2)], p.w), T('float32', [N], p.s)], new qk.Int4QuantizationConfig({ blockSize: null, activationQuantizer: new qk.AbsMaxQuantizer({ axis: -1 }) })),
      },
    ],
  });

  // GPTQ 2/3/4/8-bit, group 128: runtime layout for the raw op; Keras variables for the layer (with/without act-order)
  for (const bits of [2, 3, 4, 8]) {
    const g = 128;
    const G = Math.ceil(K / g);
    fam.push({
      id: `gptq${bits}`,
      parts: [['wq', Uint8Array, K * qk.gptqRuntimeRowBytes(N, bits)], ['s', Float32Array, G * N], ['z', Uint8Array, G * N]],
      weightBytes: K * qk.gptqRuntimeRowBytes(N, bits) + G * N * 5,
      raw: [
        {
          mode: `gptq ${bits}-bit g128`,
          limit: 'int8',
          call: (M, x, y, p) =>
            dec(M)
              ? gemv(M, x, y, packed(p, 2, bits, g, p.wq, p.s, p.z))
              : a8(M)
                ? native.denseLowbitA8(M, N, K, x, p.wq, bits, false, p.s, p.z, g, null, y)
                : native.denseGptq(M, N, K, x, p.wq, bits, p.s, p.z, g, null, y),
        },
        { mode: `gptq ${bits}-bit g128 exact`, limit: 'int8', call: (M, x, y, p) => native.denseGptq(M, N, K, x, p.wq, bits, p.s, p.z, g, null, y) },
      ],
      layers: [false, true].map((actOrder) => ({
        mode: `gptq ${bits}-bit g128${actOrder ? ' act-order' : ''}`,
        limit: 'int8',
        clonable: false,
        make: async (p) => {
          const kern = levelsToKerasGptq(await qk.unpackGptqRuntime(p.wq, N, K, bits), bits, N, K);
          // Keras [out, groups] scale/zero; g_idx = group of each input (act-order: groups over a permutation)
          const sk = new Float32Array(N * G).fill(0.01);
          const zk = C.randInts(N * G, 0, (1 << bits) - 1, Uint8Array, 7);
          const gi = new Float32Array(K);
          if (actOrder) {
            const perm = Int32Array.from({ length: K }, (_, i) => i);
            const r = C.rng(99);
            for (let i = K - 1; i > 0; i--) {
              const j = Math.floor(r() * (i + 1));
              [perm[i], perm[j]] = [perm[j], perm[i]];
            }
            for (let j = 0; j < K; j++) gi[perm[j]] = Math.floor(j / g);
          } else for (let k = 0; k < K; k++) gi[k] = Math.floor(k / g);
          return layerFrom(`gptq/${bits}/${g}_from_float32`, [kern, T('float32', [N, G], sk), T('uint8', [N, G], zk), T('float32', [K], gi)]);
        },
      })),
    });
  }

  // float8 (e4m3fn codes [K, N], per-tensor scales); the layer comes from quantize('float8') of the fp32 kernel
  fam.push({
    id: 'float8',
    parts: [['w', Uint8Array, K * N]],
    weightBytes: K * N + 4,
    raw: [{ mode: 'float8', limit: 'bf16', call: (M, x, y, p) => native.denseFp8(M, N, K, x, 0.01, p.w, 0.002, null, y) }],
    layers: [
      {
        mode: 'float8',
        limit: 'bf16',
        clonable: false,
        make: async () => {
          const l = new qk.Dense({ units: N, useBias: false, kernelInitializer: () => new Float32Array(viewsAt(fam[0].parts, 0).w) });
          l.build([null, K]);
          await l.quantize('float8');
          return l;
        },
      },
    ],
  });
  return fam;
}

// ---------------------------------------------------------------------------------------------------------------

async function benchQuantkit(K, N, xs) {
  const shape = `${K}x${N}`;
  const fams = makeFamilies(K, N);
  const withLayers = WITH_LAYER && LAYER_SHAPES.includes(shape);
  const ys = new Map(MS.map((M) => [M, new Float32Array(M * N)]));
  const xi8 = new Map();
  const yi32 = new Map();
  const ctx = {
    xi8: (M) => xi8.get(M) ?? (xi8.set(M, C.randBytes(M * K, Int8Array)), xi8.get(M)),
    yi32: (M) => yi32.get(M) ?? (yi32.set(M, new Int32Array(M * N)), yi32.get(M)),
  };
  const out = {};
  for (const f of fams) {
    const tf = performance.now();
    const p = viewsAt(f.parts, 0);
    await prepack(f, p, K, N);
    const base = (mode, limit, api, note) => ({ impl: 'quantkit', api, mode, limit, shape, K, N, weightBytes: f.weightBytes, ...(note ? { note } : {}) });
    const layers = withLayers ? await Promise.all(f.layers.map((l) => l.make(p))) : [];
    for (const M of MS) {
      const x = xs.get(M);
      const y = ys.get(M);
      const xt = new qk.Tensor('float32', [M, K], x);
      for (const r of f.raw) {
        if (r.minM && M < r.minM) continue;
        const t = await C.timeit(() => r.call(M, x, y, p, ctx), budget(M));
        row(base(r.mode, r.limit, 'raw', r.note), M, t.ms, false, { runs: t.runs });
        if (f.id === 'fp32' && M === 16) out.fp32Y16 = Float32Array.from(y);
        if (r.mode === 'int8 W8A8' && M === 16) out.int8 = { y: Float32Array.from(y), w: p.w, s: p.s };
      }
      for (let i = 0; i < layers.length; i++) {
        const l = f.layers[i];
        const r = f.raw.find((x) => x.mode === l.mode.replace(' act-order', ''));
        if (M === 1 && r) {
          // the glue cost: layer and raw op timed alternately on the same (warm) weights
          const t = await C.timePaired(() => r.call(M, x, y, p, ctx), () => layers[i].apply(xt), { minRuns: 30, budgetMs: quick ? 250 : 500 });
          row(base(l.mode, l.limit, 'layer'), M, t.b, false, { runs: t.runs, overheadUs: t.diff * 1000, rawPairedMs: t.a });
          continue;
        }
        // warmup 2: a layer packs its fp32 / int8 weights on its second call with M >= PACK_MIN_ROWS (weight-pack.ts)
        const t = await C.timeit(() => layers[i].apply(xt), { ...budget(M), warmup: 2 });
        row(base(l.mode, l.limit, 'layer'), M, t.ms, false, { runs: t.runs });
      }
    }
    // M = 1 cold: a pool of weight copies, 4x the last-level cache in total
    if (MS.includes(1)) {
      const copies = Math.floor(arena().byteLength / partsStride(f.parts));
      const pool = Array.from({ length: copies }, (_, c) => viewsAt(f.parts, c));
      const x = xs.get(1);
      const y = ys.get(1);
      for (const r of f.raw) {
        if (r.minM && r.minM > 1) continue;
        const t = await C.timeRotating((i) => r.call(1, x, y, pool[i], ctx), copies);
        row(base(r.mode, r.limit, 'raw', r.note), 1, t.ms, true, { runs: t.runs, copies });
      }
      if (withLayers) {
        const xt = new qk.Tensor('float32', [1, K], x);
        for (const l of f.layers) {
          if (!l.clonable) continue;
          const clones = [];
          for (const q of pool) clones.push(await l.make(q));
          const t = await C.timeRotating((i) => clones[i].apply(xt), copies);
          row(base(l.mode, l.limit, 'layer'), 1, t.ms, true, { runs: t.runs, copies });
        }
      }
      pool.length = 0;
    }
    gc();
    console.log(`  (${f.id}: ${((performance.now() - tf) / 1000).toFixed(1)} s)`);
  }
  out.wf32 = viewsAt(fams[0].parts, 0).w;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// onnxruntime-node

function ortOptions(ort) {
  return { intraOpNumThreads: THREADS, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential', logSeverityLevel: 3 };
}

async function benchOrt(ort, K, N, xs, ref) {
  const shape = `${K}x${N}`;
  const opts = ortOptions(ort);
  // Weights are views into the shared arena (copy r of a variant = its parts at r * stride); onnxruntime copies
  // initializers into its own memory. Copy 0 of fp32 / int8 is the very same data quantkit's copy 0 used.
  const variants = [
    { mode: 'fp32 MatMul', limit: 'fp32', parts: [['w', Float32Array, K * N]], weights: (v) => v.w, build: (ws) => O.matmulModel(K, N, ws) },
    {
      mode: 'int8 DynamicQuantizeMatMul',
      limit: 'int8',
      parts: [['q', Int8Array, K * N], ['s', Float32Array, N]],
      weights: (v) => ({ q: v.q, scale: v.s.map((x) => 1 / x) }), // quantkit's scale divides (Keras), onnxruntime's multiplies
      build: (ws) => O.dynamicQuantizeMatMulModel(K, N, ws),
    },
    {
      mode: 'int8 DQL+MatMulInteger',
      limit: 'int8',
      cold: false,
      parts: [['q', Int8Array, K * N], ['s', Float32Array, N]],
      weights: (v) => ({ q: v.q, scale: v.s }),
      build: (ws) => O.matMulIntegerModel(K, N, ws),
    },
  ];
  for (const block of [32, 128]) {
    for (const acc of [0, 4]) {
      const nb = Math.ceil(K / block);
      variants.push({
        mode: `MatMulNBits b${block} acc${acc}`,
        limit: 'int8',
        cold: acc === 4,
        parts: [['q', Uint8Array, (N * nb * block) / 2], ['s', Float32Array, N * nb], ['z', Uint8Array, N * Math.ceil(nb / 2)]],
        weights: (v) => ({ q: v.q, scale: v.s, zero: v.z }),
        build: (ws) => O.matMulNBitsModel(K, N, block, acc, ws),
      });
    }
  }
  for (const v of variants) {
    const tv = performance.now();
    const bytes = v.parts.reduce((a, [, Cls, len]) => a + Cls.BYTES_PER_ELEMENT * len, 0);
    const base = { impl: 'onnxruntime', api: 'session', mode: v.mode, limit: v.limit, shape, K, N, weightBytes: bytes };
    let session;
    try {
      session = await ort.InferenceSession.create(v.build([v.weights(viewsAt(v.parts, 0))]), opts);
    } catch (e) {
      notes.push(`onnxruntime ${v.mode} ${shape}: session failed: ${e.message}`);
      console.log(`  onnxruntime ${v.mode}: ${e.message}`);
      continue;
    }
    for (const M of MS) {
      const feeds = { A: new ort.Tensor('float32', xs.get(M), [M, K]) };
      let last = null;
      const t = await C.timeit(async () => {
        last = await session.run(feeds);
      }, budget(M));
      row(base, M, t.ms, false, { runs: t.runs });
      if (M === 16 && v.mode === 'fp32 MatMul' && ref.fp32Y16) notes.push(`check ${shape} M=16: onnxruntime MatMul vs quantkit fp32 max |diff| / max |y| = ${relDiff(last.Y0.data, ref.fp32Y16).toExponential(2)}`);
      if (M === 16 && v.mode === 'int8 DynamicQuantizeMatMul' && ref.int8) notes.push(`check ${shape} M=16: onnxruntime DynamicQuantizeMatMul vs quantkit W8A8 max |diff| / max |y| = ${relDiff(last.Y0.data, ref.int8.y).toExponential(2)}`);
    }
    await session.release();
    if (MS.includes(1) && v.cold !== false && ORT_COLD_SHAPES.includes(shape)) {
      const R = Math.floor(arena().byteLength / partsStride(v.parts));
      const ws = Array.from({ length: R }, (_, r) => v.weights(viewsAt(v.parts, r)));
      let cold;
      try {
        cold = await ort.InferenceSession.create(v.build(ws), opts);
      } catch (e) {
        notes.push(`onnxruntime ${v.mode} ${shape} cold (${R} copies): session failed: ${e.message}`);
        continue;
      }
      ws.length = 0;
      gc();
      const feeds = { A: new ort.Tensor('float32', xs.get(1), [1, K]) };
      const t = await C.timeit(() => cold.run(feeds), { warmup: 1, minRuns: quick ? 3 : 5, budgetMs: 0 });
      row(base, 1, t.ms / R, true, { runs: t.runs, copies: R, note: 'one session.run over R parallel nodes, time / R' });
      await cold.release();
      gc();
    }
    console.log(`  (onnxruntime ${v.mode}: ${((performance.now() - tv) / 1000).toFixed(1)} s)`);
  }
}

function relDiff(a, b) {
  let m = 0;
  let d = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(b[i]));
    d = Math.max(d, Math.abs(a[i] - b[i]));
  }
  return d / (m || 1);
}

/**
 * Per-call cost on a tiny projection (K = N = 64, M = 1), where the kernel itself is negligible: the raw op, the
 * public layer (fp32 and int8), and onnxruntime's session.run of a one-MatMul graph.
 */
async function benchOverhead(ort) {
  const K = 64;
  const N = 64;
  const x = C.randFloat(K, 5);
  const y = new Float32Array(N);
  const w = C.randFloat(K * N, 6, 0.1);
  const o = { minRuns: 200, maxRuns: 20000, budgetMs: quick ? 150 : 400 };
  const res = [];
  const add = (what, t) => {
    res.push({ what, us: t.ms * 1000, runs: t.runs });
    console.log(`  overhead ${what.padEnd(40)} ${C.fmt(t.ms * 1000).padStart(7)} us`);
  };
  add('quantkit raw op (denseF32)', await C.timeit(() => native.denseF32(1, N, K, x, w, null, y), o));
  const l = new qk.Dense({ units: N, useBias: false, kernelInitializer: () => w.slice() });
  l.build([null, K]);
  const xt = new qk.Tensor('float32', [1, K], x);
  add('quantkit Dense.apply fp32', await C.timeit(() => l.apply(xt), o));
  await l.quantize('int8');
  add('quantkit Dense.apply int8 (W8A8)', await C.timeit(() => l.apply(xt), o));
  add('quantkit raw op int8 (denseW8A8)', await C.timeit(() => native.denseW8A8(1, N, K, x, new Int8Array(K * N), new Float32Array(N).fill(1), null, -127, 127, 1e-7, y), o));
  if (ort) {
    const s = await ort.InferenceSession.create(O.matmulModel(K, N, [w]), ortOptions(ort));
    const feeds = { A: new ort.Tensor('float32', x, [1, K]) };
    add('onnxruntime session.run (one MatMul)', await C.timeit(() => s.run(feeds), o));
    await s.release();
  }
  return res;
}

async function main() {
  const t0 = performance.now();
  let ort = null;
  let ortStatus = { available: false, reason: 'not requested (--no-ort)' };
  if (WITH_ORT) {
    const r = C.requirePeer('onnxruntime-node');
    if (r.error) ortStatus = { available: false, reason: r.error };
    else {
      ort = r.mod;
      ortStatus = { available: true, version: ort.env?.versions?.node ?? require(require.resolve('onnxruntime-node/package.json', { paths: [__dirname] })).version };
    }
  }
  console.log(
    `kernels: shapes ${SHAPES.map((s) => s.join('x')).join(', ')}; M ${MS.join(', ')}; quantkit ${caps.isa}, ${THREADS} threads; ` +
      `cold working set ${(WS / 2 ** 20).toFixed(0)} MiB; onnxruntime ${ortStatus.available ? ortStatus.version : `unavailable (${ortStatus.reason})`}`,
  );
  console.log('\nper-call overhead (K = N = 64, M = 1)');
  const overhead = await benchOverhead(ort);
  for (const [K, N] of SHAPES) {
    console.log(`\n(K, N) = (${K}, ${N})`);
    const xs = new Map(MS.map((M) => [M, C.randFloat(M * K, 1000 + M)]));
    const ref = await benchQuantkit(K, N, xs);
    gc();
    if (ort) {
      try {
        await benchOrt(ort, K, N, xs, ref);
      } catch (e) {
        notes.push(`onnxruntime failed at ${K}x${N}: ${e.message}`);
        console.log(`  onnxruntime failed: ${e.message}`);
      }
    }
    gc();
  }
  const seconds = (performance.now() - t0) / 1000;
  C.writePart('kernels', { quick, shapes: SHAPES, ms: MS, threads: THREADS, isa: caps.isa, coldWorkingSetBytes: WS, peers: { onnxruntime: ortStatus }, overhead, rows, notes, seconds });
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`kernels done in ${seconds.toFixed(0)} s`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
