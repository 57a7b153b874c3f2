#!/usr/bin/env node
// quantkit command line: info, quantize, eval, generate, bench, demo. `quantkit <command> --help` for details.
'use strict';
const fs = require('fs');
const path = require('path');

const HELP = {
  main: `quantkit — post-training quantization and fast quantized inference for Node.js

usage: quantkit <command> [options]

commands:
  info <model>                     architecture, parameters, quantized layers, sizes
  quantize <model> --mode <mode>   quantize and save (-o out.keras or -o preset-folder)
  eval <model> --text <file>       perplexity (optionally of a quantized copy too: --mode ...)
  generate <model> --prompt <text> generate a continuation (streamed)
  bench                            run the benchmark harness (npm run bench)
  demo                             the stories260K demo table (npm start)

<model> is a llama2.c checkpoint (.bin, with --tokenizer or a tok*.bin next to it), a GGUF file, a Hugging Face
folder (config.json + model.safetensors + tokenizer.json), a quantkit preset folder, or a .keras file.
Global options: --json (machine-readable output), --help.`,
  info: `usage: quantkit info <model> [--tokenizer file] [--json]`,
  quantize: `usage: quantkit quantize <model> --mode int8|int4|float8|gptq -o <out.keras | preset-folder>
  [--bits 2|3|4|8] [--group-size N] [--act-order] [--symmetric]     GPTQ (and --group-size for int4)
  [--calib file] [--samples N] [--seq-len N]                        GPTQ calibration text (blank-line separated)
  [--tokenizer file] [--json]`,
  eval: `usage: quantkit eval <model> --text <file> [--window N] [--stride N] [--max-blocks N]
  [--mode int8|int4|float8|gptq (+ the quantize options)]   also evaluate a copy quantized in memory
  [--tokenizer file] [--json]
The text is split into blocks at blank lines; each block is scored as its own sequence (with BOS), in windows no
longer than the model's context.`,
  generate: `usage: quantkit generate <model> --prompt <text> [--max-tokens N] [--temperature T] [--top-p P] [--top-k K]
  [--seed N] [--tokenizer file] [--json]`,
  bench: `usage: quantkit bench [bench options...]   (runs bench/run.js)`,
  demo: `usage: quantkit demo [--json] [--modes ...]   (runs examples/demo.js)`,
};

class UsageError extends Error {}

function parseArgs(argv) {
  const positional = [];
  const opts = {};
  const flags = new Set(['json', 'help', 'act-order', 'symmetric']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const key = a.slice(2);
      if (flags.has(key)) opts[key] = true;
      else {
        if (i + 1 >= argv.length) throw new UsageError(`option --${key} needs a value`);
        opts[key] = argv[++i];
      }
    } else if (a === '-o') {
      if (i + 1 >= argv.length) throw new UsageError('option -o needs a value');
      opts.o = argv[++i];
    } else positional.push(a);
  }
  return { positional, opts };
}

function int(opts, key, dflt, min = 1) {
  if (opts[key] === undefined) return dflt;
  const v = Number(opts[key]);
  if (!Number.isSafeInteger(v) || v < min) throw new UsageError(`--${key} expects an integer >= ${min}, got '${opts[key]}'`);
  return v;
}

function num(opts, key, dflt) {
  if (opts[key] === undefined) return dflt;
  const v = Number(opts[key]);
  if (!Number.isFinite(v)) throw new UsageError(`--${key} expects a number, got '${opts[key]}'`);
  return v;
}

/** A one-line progress bar on stderr (only when stderr is a terminal and not --json). */
function progress(enabled) {
  const tty = enabled && process.stderr.isTTY;
  let last = '';
  return {
    update(fraction, label) {
      if (!enabled) return;
      const w = 30;
      const done = Math.round(Math.max(0, Math.min(1, fraction)) * w);
      const line = `[${'#'.repeat(done)}${'.'.repeat(w - done)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${label}`;
      if (tty) process.stderr.write(`\r${line.padEnd(last.length)}`);
      else if (line !== last) process.stderr.write(`${line}\n`);
      last = line;
    },
    done() {
      if (tty && last) process.stderr.write('\n');
      last = '';
    },
  };
}

function blocksOf(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read text file '${file}': ${err.message}`);
  }
  return text.split(/\n\s*\n/).filter((b) => b.trim().length > 0);
}

async function loadModel(qk, file, opts) {
  if (!file) throw new UsageError('missing <model> argument');
  return qk.LlamaCausalLM.fromFile(file, { tokenizer: opts.tokenizer ?? null });
}

async function quantizeInPlace(qk, model, opts, bar) {
  const mode = opts.mode;
  if (!['int8', 'int4', 'float8', 'gptq'].includes(mode)) throw new UsageError(`--mode expects int8, int4, float8 or gptq, got '${mode}'`);
  const t0 = performance.now();
  let report;
  if (mode === 'gptq') {
    if (!opts.calib) throw new UsageError('--mode gptq needs calibration text: --calib <file>');
    if (!model.tokenizer) throw new UsageError('GPTQ calibration on text needs a tokenizer (--tokenizer file)');
    const config = new qk.GPTQConfig({
      dataset: blocksOf(opts.calib),
      tokenizer: model.tokenizer,
      weightBits: int(opts, 'bits', 4),
      groupSize: int(opts, 'group-size', 128, -1),
      numSamples: int(opts, 'samples', 128),
      sequenceLength: Math.min(int(opts, 'seq-len', 512), model.arch.maxSequenceLength),
      activationOrder: !!opts['act-order'],
      symmetric: !!opts.symmetric,
    });
    report = await model.quantize('gptq', {
      config,
      verbose: false,
      onProgress: (p) => bar.update(p.layersTotal ? p.layersDone / p.layersTotal : 0, `GPTQ block ${p.block + 1}/${p.blocks}${p.layer ? ` ${p.layer}` : ''}`),
    });
    bar.done();
  } else if (mode === 'int4') {
    const g = int(opts, 'group-size', 128, -1);
    report = await model.quantize('int4', { config: new qk.Int4QuantizationConfig({ blockSize: g === -1 ? null : g }), verbose: false });
  } else {
    report = await model.quantize(mode, { verbose: false });
  }
  return { report, seconds: (performance.now() - t0) / 1000 };
}

function weightBytes(model) {
  return model.variables.reduce((a, v) => a + v.value.byteLength, 0);
}

async function perplexityOf(model, blocks, opts, bar, label) {
  const window = Math.min(int(opts, 'window', model.arch.maxSequenceLength, 2), model.arch.maxSequenceLength);
  const stride = int(opts, 'stride', window);
  let nll = 0;
  let tokens = 0;
  for (let i = 0; i < blocks.length; i++) {
    const r = await model.perplexity(blocks[i], { window, stride });
    nll += r.nll * r.tokens;
    tokens += r.tokens;
    bar.update((i + 1) / blocks.length, `${label} ${i + 1}/${blocks.length} blocks`);
  }
  bar.done();
  return { perplexity: Math.exp(nll / tokens), nll: nll / tokens, tokens, window, stride };
}

const commands = {
  async info(qk, { positional, opts }) {
    const file = positional[0];
    const model = await loadModel(qk, file, opts);
    const a = model.arch;
    const quantized = model.flattenLayers({ includeSelf: false }).filter((l) => l.isQuantized && l.savableChildren().length === 0);
    const info = {
      model: file,
      class: model.constructor.name,
      architecture: a,
      parameters: model.countParams(),
      weightBytes: weightBytes(model),
      tokenizer: model.tokenizer ? { class: model.tokenizer.constructor.name, vocabSize: model.tokenizer.vocabSize } : null,
      quantizedLayers: quantized.map((l) => ({ path: l.path, policy: l.effectivePolicy.name })),
      isa: qk.capabilities().isa,
    };
    if (opts.json) return console.log(JSON.stringify(info, null, 2));
    console.log(`${file}: ${info.class}`);
    console.log(`  vocab ${a.vocabularySize}, ${a.numLayers} layers, hidden ${a.hiddenDim}, ffn ${a.intermediateDim}, heads ${a.numQueryHeads} (kv ${a.numKeyValueHeads}), context ${a.maxSequenceLength}, tied ${a.tieWordEmbeddings}`);
    console.log(`  ${info.parameters.toLocaleString('en-US')} parameters, ${(info.weightBytes / 1024).toFixed(1)} KiB of weights`);
    console.log(`  tokenizer: ${info.tokenizer ? `${info.tokenizer.class} (${info.tokenizer.vocabSize} tokens)` : 'none'}`);
    const byPolicy = new Map();
    for (const q of info.quantizedLayers) byPolicy.set(q.policy, (byPolicy.get(q.policy) ?? 0) + 1);
    console.log(`  quantized layers: ${info.quantizedLayers.length === 0 ? 'none (float)' : [...byPolicy].map(([p, n]) => `${n} × ${p}`).join(', ')}`);
  },

  async quantize(qk, { positional, opts }) {
    if (!opts.mode) throw new UsageError('missing --mode');
    if (!opts.o) throw new UsageError('missing -o <out.keras | preset-folder>');
    const model = await loadModel(qk, positional[0], opts);
    const before = weightBytes(model);
    const bar = progress(!opts.json);
    const { report, seconds } = await quantizeInPlace(qk, model, opts, bar);
    if (opts.o.endsWith('.keras')) await model.save(opts.o);
    else await model.saveToPreset(opts.o);
    const after = weightBytes(model);
    const out = { input: positional[0], output: opts.o, mode: opts.mode, quantizedLayers: report.numQuantized, seconds, weightBytes: { before, after, ratio: before / after } };
    if (opts.json) return console.log(JSON.stringify(out, null, 2));
    console.log(`quantized ${report.numQuantized} layers (${opts.mode}) in ${seconds.toFixed(2)} s; weights ${(before / 1024).toFixed(1)} KiB -> ${(after / 1024).toFixed(1)} KiB (${(before / after).toFixed(2)}x); saved ${opts.o}`);
  },

  async eval(qk, { positional, opts }) {
    if (!opts.text) throw new UsageError('missing --text <file>');
    let blocks = blocksOf(opts.text);
    if (opts['max-blocks'] !== undefined) blocks = blocks.slice(0, int(opts, 'max-blocks', blocks.length));
    const model = await loadModel(qk, positional[0], opts);
    if (!model.tokenizer) throw new UsageError('eval needs a tokenizer (--tokenizer file)');
    const bar = progress(!opts.json);
    const base = await perplexityOf(model, blocks, opts, bar, 'model');
    const out = { model: positional[0], text: opts.text, blocks: blocks.length, tokens: base.tokens, window: base.window, stride: base.stride, perplexity: base.perplexity, nll: base.nll };
    if (opts.mode) {
      const { seconds } = await quantizeInPlace(qk, model, opts, bar);
      const q = await perplexityOf(model, blocks, opts, bar, opts.mode);
      out.quantized = { mode: opts.mode, seconds, perplexity: q.perplexity, nll: q.nll, change: q.perplexity / base.perplexity - 1 };
    }
    if (opts.json) return console.log(JSON.stringify(out, null, 2));
    console.log(`perplexity ${out.perplexity.toFixed(4)} over ${out.tokens} tokens (${out.blocks} blocks, window ${out.window})`);
    if (out.quantized) {
      console.log(`${out.quantized.mode}: perplexity ${out.quantized.perplexity.toFixed(4)} (${(out.quantized.change * 100).toFixed(2)}% vs the model), quantized in ${out.quantized.seconds.toFixed(2)} s`);
    }
  },

  async generate(qk, { positional, opts }) {
    if (opts.prompt === undefined) throw new UsageError('missing --prompt <text>');
    const model = await loadModel(qk, positional[0], opts);
    if (!model.tokenizer) throw new UsageError('generate needs a tokenizer (--tokenizer file)');
    const options = {
      maxNewTokens: int(opts, 'max-tokens', 128, 0),
      temperature: num(opts, 'temperature', 0),
      topP: num(opts, 'top-p', 1),
      topK: int(opts, 'top-k', 0, 0),
      seed: int(opts, 'seed', 42, 0),
    };
    const it = model.stream(opts.prompt, options);
    if (!opts.json) process.stdout.write(opts.prompt);
    let r;
    for (;;) {
      r = await it.next();
      if (r.done) break;
      if (!opts.json) process.stdout.write(r.value.text);
    }
    const res = r.value;
    if (opts.json) return console.log(JSON.stringify({ prompt: opts.prompt, ...res }, null, 2));
    process.stdout.write('\n');
    process.stderr.write(`[${res.tokens.length} tokens, first token ${res.firstTokenMs.toFixed(1)} ms, ${res.tokensPerSecond.toFixed(0)} tokens/s, stop: ${res.stopReason}]\n`);
  },

  async bench(_qk, { raw }) {
    return runScript(path.join(__dirname, '..', 'bench', 'run.js'), raw);
  },

  async demo(_qk, { raw }) {
    return runScript(path.join(__dirname, '..', 'examples', 'demo.js'), raw);
  },
};

function runScript(script, args) {
  if (!fs.existsSync(script)) throw new UsageError(`${path.relative(process.cwd(), script)} is not installed (it ships with the git repository)`);
  const { spawnSync } = require('child_process');
  const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}

async function main() {
  const argv = process.argv.slice(2);
  const cmd = argv[0];
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(HELP.main);
    return;
  }
  if (!commands[cmd]) throw new UsageError(`unknown command '${cmd}' (expected one of ${Object.keys(commands).join(', ')}; see quantkit --help)`);
  const raw = argv.slice(1);
  if (cmd === 'bench' || cmd === 'demo') {
    if (raw.includes('--help')) return console.log(HELP[cmd]);
    return commands[cmd](null, { raw });
  }
  const parsed = parseArgs(raw);
  if (parsed.opts.help) return console.log(HELP[cmd]);
  const qk = require('..');
  // quantize() reports skipped (unsupported) layers in its result; the CLI prints its own summary
  process.removeAllListeners('warning');
  await commands[cmd](qk, { ...parsed, raw });
}

main().catch((err) => {
  const msg = err && err.message ? err.message.split('\n')[0] : String(err);
  const code = err && err.code ? ` [${err.code}]` : '';
  process.stderr.write(`quantkit: ${msg}${code}${err instanceof UsageError ? ' (see --help)' : ''}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});
