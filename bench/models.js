#!/usr/bin/env node
// Model-level table for every mode (issue 7, item 4): quantize time, peak RSS while quantizing, size on disk and its
// reduction vs float32, RSS at inference, first-token latency, decode tokens/s, perplexity change.
//   stories260K (models/stories260K, real text): each mode in two child processes, as examples/demo.js does — one
//     loads float32, quantizes (GPTQ calibrated on held-out text) and saves a preset (its model.weights.h5 is the
//     size on disk); a fresh one loads that preset and measures perplexity and generation, so its peak RSS is the
//     inference RSS of that mode alone.
//   synthetic TinyLlama-1.1B shapes (random weights made in process; speed and memory only): one child per mode
//     builds the float32 model (random weights), quantizes it (timed, peak RSS), frees the float
//     weights and decodes. Its "RSS at inference" is the resident set sampled while decoding. GPTQ modes are built
//     directly from random levels (a GPTQ dtype-policy model filled with random Keras variables): calibrating 154
//     projections of 1.1B parameters takes many minutes, so GPTQ quantize time is measured on stories260K only.
//     Weights of 1.1B parameters are not written to disk (the HDF5 writer runs in 32-bit WebAssembly); the size is
//     the bytes of the model's variables, which is what model.weights.h5 holds.
//   node --expose-gc bench/models.js [--quick] [--models stories,synthetic] [--modes a,b] [--syn-layers N]
'use strict';
const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');
const C = require('./common');

const MODEL_DIR = path.join(C.ROOT, 'models', 'stories260K');
const STORIES_MODES = ['float32', 'int8', 'int4', 'float8', 'gptq-8', 'gptq-4', 'gptq-3', 'gptq-2'];
const SYN_MODES = ['float32', 'int8', 'int4', 'float8', 'gptq-8', 'gptq-4', 'gptq-3', 'gptq-2'];
const TINYLLAMA = { vocabularySize: 32000, numLayers: 22, numQueryHeads: 32, numKeyValueHeads: 4, hiddenDim: 2048, intermediateDim: 5632, maxSequenceLength: 256, tieWordEmbeddings: false };
const PROMPT = 'Once upon a time';
const SYN_PROMPT = [1, 450, 4996, 17354, 1701, 432, 17204, 975]; // 8 token ids

const rssMiB = () => process.memoryUsage().rss / 2 ** 20;
const peakRssMiB = () => process.resourceUsage().maxRSS / 1024;
const gc = () => (global.gc ? global.gc() : undefined);

function dirBytes(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
  }
  return n;
}

function storiesText() {
  const text = fs.readFileSync(path.join(MODEL_DIR, 'tinystories_valid_head.txt'), 'utf8');
  const blocks = text.split(/\n\s*\n/).filter((b) => b.trim().length > 0);
  return { calibration: blocks.slice(0, 400), held: blocks.slice(2000, 2060) };
}

async function quantizeMode(qk, model, mode, { tokenizer, calibration, group }) {
  if (mode === 'int8' || mode === 'float8') return model.quantize(mode, { verbose: false });
  if (mode === 'int4') return model.quantize('int4', { config: new qk.Int4QuantizationConfig({ blockSize: group }), verbose: false });
  if (mode.startsWith('gptq-')) {
    const config = new qk.GPTQConfig({ dataset: calibration, tokenizer, weightBits: Number(mode.slice(5)), groupSize: group, numSamples: 32, sequenceLength: 256, activationOrder: true });
    return model.quantize('gptq', { config, verbose: false });
  }
  return null;
}

// ---- children ----

async function storiesQuantize(spec) {
  const { qk } = C.loadQuantkit();
  const { calibration } = storiesText();
  const tokenizer = await qk.Llama2cTokenizer.fromFile(path.join(MODEL_DIR, 'tok512.bin'));
  const model = await qk.LlamaCausalLM.fromCheckpoint(await qk.readLlama2cFile(path.join(MODEL_DIR, 'stories260K.bin')), tokenizer);
  const rssBefore = peakRssMiB();
  const t0 = performance.now();
  await quantizeMode(qk, model, spec.mode, { tokenizer, calibration, group: 32 });
  const quantizeSeconds = (performance.now() - t0) / 1000;
  const quantizePeakRssMiB = peakRssMiB();
  fs.rmSync(spec.dir, { recursive: true, force: true });
  await model.saveToPreset(spec.dir);
  return {
    quantizeSeconds: spec.mode === 'float32' ? null : quantizeSeconds,
    quantizePeakRssMiB: spec.mode === 'float32' ? null : quantizePeakRssMiB,
    loadPeakRssMiB: rssBefore,
    weightBytes: model.variables.reduce((a, v) => a + v.value.byteLength, 0),
    diskBytes: fs.statSync(path.join(spec.dir, 'model.weights.h5')).size,
    presetBytes: dirBytes(spec.dir),
  };
}

async function storiesInfer(spec) {
  const { qk } = C.loadQuantkit();
  const { held } = storiesText();
  const t0 = performance.now();
  const model = await qk.LlamaCausalLM.fromPreset(spec.dir);
  const loadMs = performance.now() - t0;
  const { perplexity } = await model.perplexity(held);
  await model.generate(PROMPT, { maxNewTokens: 8, ignoreEos: true });
  const runs = [];
  for (let r = 0; r < 3; r++) runs.push(await model.generate(PROMPT, { maxNewTokens: 128, ignoreEos: true }));
  const greedy = await model.generate(PROMPT, { maxNewTokens: 48 });
  return {
    loadMs,
    perplexity,
    firstTokenMs: C.median(runs.map((r) => r.firstTokenMs)),
    tokensPerSecond: C.median(runs.map((r) => r.tokensPerSecond)),
    inferPeakRssMiB: peakRssMiB(),
    continuation: greedy.text.slice(0, 120),
  };
}

function policyMapFor(qk, layers, policy) {
  return qk.serializeDTypePolicy(new qk.DTypePolicyMap('float32', Object.fromEntries(layers.map((p) => [p, policy]))));
}

async function syntheticGptq(qk, arch, bits, group) {
  // A GPTQ dtype-policy model (fromConfig builds the quantized projections empty) filled with random Keras variables.
  const probe = new qk.LlamaCausalLM({ ...arch, vocabularySize: 8, hiddenDim: 64, intermediateDim: 64, numQueryHeads: 4, numKeyValueHeads: 2 });
  await probe.build();
  const denses = probe.flattenLayers({ includeSelf: false }).filter((l) => l instanceof qk.Dense).map((l) => l.path);
  const cfg = {
    ...probe.getConfig(),
    vocabulary_size: arch.vocabularySize,
    hidden_dim: arch.hiddenDim,
    intermediate_dim: arch.intermediateDim,
    num_query_heads: arch.numQueryHeads,
    num_key_value_heads: arch.numKeyValueHeads,
    dtype: policyMapFor(qk, denses, `gptq/${bits}/${group}_from_float32`),
  };
  const model = await qk.LlamaCausalLM.fromConfig(cfg);
  const maxq = (1 << bits) - 1;
  for (const l of model.flattenLayers({ includeSelf: false })) {
    if (!(l instanceof qk.Dense)) continue;
    const names = l.variables.map((v) => v.name);
    l.loadOwnVariables(
      l.loadSpec().map((s, i) => {
        if (names[i] === 'g_idx') return s;
        if (names[i] === 'kernel_scale') return new qk.Tensor(s.dtype, s.shape, new Float32Array(s.size).fill(0.01));
        const d = C.randBytes(s.size);
        if (names[i] === 'kernel_zero' || (names[i] === 'kernel' && (bits === 3 || bits === 8))) for (let j = 0; j < d.length; j++) d[j] &= maxq;
        return new qk.Tensor(s.dtype, s.shape, d);
      }),
    );
  }
  return model;
}

/**
 * Fills every float32 variable of the model (except GPTQ's g_idx) in place with random values (random sign and mantissa, fixed exponent:
 * |w| in [2^-7, 2^-6)), fast (no per-element Math.random). A fresh LlamaCausalLM starts from zeros (its weights
 * normally come from a file), and all-zero weights would neither quantize nor stream from DRAM like real ones
 * (untouched zero pages all map to one physical page).
 */
function randomizeFloatVariables(model) {
  for (const v of model.variables) {
    const d = v.value.data;
    // g_idx (GPTQ's group of each input) is a float32 variable of integers: randomizing it made every GPTQ row fail
    if (!(d instanceof Float32Array) || v.name === 'g_idx') continue;
    const u = new Uint32Array(d.buffer, d.byteOffset, d.length);
    const { randomFillSync } = require('crypto');
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    for (let off = 0; off < bytes.length; off += 1 << 30) randomFillSync(bytes, off, Math.min(1 << 30, bytes.length - off));
    for (let i = 0; i < u.length; i++) u[i] = (u[i] & 0x807fffff) | 0x3c000000;
  }
}

async function synthetic(spec) {
  const { qk } = C.loadQuantkit();
  const arch = { ...TINYLLAMA, numLayers: spec.layers };
  const out = { mode: spec.mode, layers: spec.layers };
  let model;
  const t0 = performance.now();
  if (spec.mode.startsWith('gptq-')) {
    model = await syntheticGptq(qk, arch, Number(spec.mode.slice(5)), 128);
    randomizeFloatVariables(model); // embeddings, output head, norms
    out.buildSeconds = (performance.now() - t0) / 1000;
    out.quantizeSeconds = null;
    out.quantizeNote = 'GPTQ weights are random levels (calibration of 1.1B parameters is not run here)';
  } else {
    model = new qk.LlamaCausalLM(arch);
    await model.build();
    randomizeFloatVariables(model);
    out.buildSeconds = (performance.now() - t0) / 1000;
    if (spec.mode !== 'float32') {
      const t1 = performance.now();
      await quantizeMode(qk, model, spec.mode, { group: 128 });
      out.quantizeSeconds = (performance.now() - t1) / 1000;
      out.quantizePeakRssMiB = peakRssMiB();
    }
  }
  out.params = model.countParams ? model.countParams() : null;
  out.weightBytes = model.variables.reduce((a, v) => a + v.value.byteLength, 0);
  gc();
  const tw = performance.now();
  await model.generate(SYN_PROMPT, { maxNewTokens: 2, ignoreEos: true }); // warm-up (GPTQ builds its runtime layout here)
  out.warmupSeconds = (performance.now() - tw) / 1000;
  gc();
  const g = await model.generate(SYN_PROMPT, { maxNewTokens: spec.tokens, ignoreEos: true });
  out.firstTokenMs = g.firstTokenMs;
  out.tokensPerSecond = g.tokensPerSecond;
  gc();
  out.inferRssMiB = rssMiB();
  out.peakRssMiB = peakRssMiB();
  return out;
}

// ---- parent ----

function runChild(spec) {
  return new Promise((resolve) => {
    const child = fork(__filename, [], { env: { ...process.env, QK_BENCH_MODELS_CHILD: JSON.stringify(spec) }, execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result = null;
    child.on('message', (m) => (result = m));
    child.on('exit', (code, signal) => resolve(result && !result.error ? result : { error: result?.error ?? `child exited with ${signal ?? code}` }));
  });
}

async function main() {
  if (process.env.QK_BENCH_MODELS_CHILD) {
    process.removeAllListeners('warning'); // the table says what was quantized
    const spec = JSON.parse(process.env.QK_BENCH_MODELS_CHILD);
    try {
      const fn = { storiesQuantize, storiesInfer, synthetic }[spec.phase];
      process.send(await fn(spec));
    } catch (e) {
      process.send({ error: String(e && e.stack ? e.stack : e).split('\n').slice(0, 4).join(' | ') });
    }
    return;
  }
  const F = C.flags();
  const quick = F.quick;
  const which = (F.get('models') ?? 'stories,synthetic').split(',');
  const modesArg = F.get('modes');
  const synLayers = Number(F.get('syn-layers') ?? (quick ? 2 : TINYLLAMA.numLayers));
  const out = { stories: null, synthetic: null };
  const t0 = performance.now();

  if (which.includes('stories')) {
    const modes = modesArg ? modesArg.split(',') : quick ? ['float32', 'int8', 'int4', 'gptq-4'] : STORIES_MODES;
    const rows = [];
    console.log(`stories260K (${modes.join(', ')}): quantize + save, then load + perplexity + generate, each in its own process`);
    for (const mode of modes) {
      const dir = path.join(C.BUILD, 'presets', `stories260K-${mode}`);
      const q = await runChild({ phase: 'storiesQuantize', mode, dir });
      const r = q.error ? { error: q.error } : await runChild({ phase: 'storiesInfer', mode, dir });
      const row = { mode, ...q, ...r };
      rows.push(row);
      fs.rmSync(dir, { recursive: true, force: true });
      if (row.error) console.log(`  ${mode.padEnd(8)} error: ${row.error}`);
      else
        console.log(
          `  ${mode.padEnd(8)} disk ${(row.diskBytes / 1024).toFixed(0).padStart(5)} KiB  quantize ${row.quantizeSeconds === null ? '   —' : row.quantizeSeconds.toFixed(2)} s` +
            `  ppl ${row.perplexity.toFixed(3)}  first ${C.fmt(row.firstTokenMs)} ms  ${C.fmt(row.tokensPerSecond)} tok/s  RSS q/i ${C.fmt(row.quantizePeakRssMiB)}/${C.fmt(row.inferPeakRssMiB)} MiB`,
        );
    }
    out.stories = { model: 'stories260K', text: 'tinystories_valid_head.txt: calibration blocks 0-399, perplexity on blocks 2000-2059', group: 32, newTokens: 128, rows };
  }

  if (which.includes('synthetic')) {
    const modes = modesArg ? modesArg.split(',') : quick ? ['float32', 'int8', 'gptq-4'] : SYN_MODES;
    const tokens = quick ? 4 : 8;
    const rows = [];
    console.log(`synthetic TinyLlama-1.1B shapes, ${synLayers} layers (${modes.join(', ')}), ${tokens} decoded tokens after an 8-token prompt`);
    for (const mode of modes) {
      const r = await runChild({ phase: 'synthetic', mode, layers: synLayers, tokens });
      rows.push({ mode, ...r });
      if (r.error) console.log(`  ${mode.padEnd(8)} error: ${r.error}`);
      else
        console.log(
          `  ${mode.padEnd(8)} weights ${(r.weightBytes / 2 ** 20).toFixed(0).padStart(5)} MiB  build ${r.buildSeconds.toFixed(1)} s  quantize ${r.quantizeSeconds == null ? '—' : r.quantizeSeconds.toFixed(1) + ' s'}` +
            `  first ${C.fmt(r.firstTokenMs)} ms  ${C.fmt(r.tokensPerSecond)} tok/s  RSS decode ${C.fmt(r.inferRssMiB)} MiB (peak ${C.fmt(r.peakRssMiB)})`,
        );
    }
    out.synthetic = { model: 'synthetic TinyLlama-1.1B shapes', arch: { ...TINYLLAMA, numLayers: synLayers }, promptTokens: SYN_PROMPT.length, newTokens: tokens, rows };
  }
  out.seconds = (performance.now() - t0) / 1000;
  C.writePart('models', out);
  console.log(`models done in ${out.seconds.toFixed(0)} s`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
