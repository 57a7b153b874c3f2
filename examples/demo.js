#!/usr/bin/env node
// quantkit demo: the real pretrained stories260K (models/stories260K) quantized in every mode — int8, int4, float8
// and GPTQ 8/4/3/2-bit calibrated on part of the held-out TinyStories text — and one table: weight bytes (and ratio
// to float32), quantize seconds, perplexity on other held-out text (and its change vs float32), first-token latency,
// decode tokens/s, peak RSS, and a greedy continuation of "Once upon a time".
//
//   npm start                      (or: node examples/demo.js [--json] [--modes float32,int8,...] [--eval-blocks N])
//
// Each mode runs in its own child process so that its peak RSS is its own.
'use strict';
const path = require('path');
const { fork } = require('child_process');

const MODEL_DIR = path.join(__dirname, '..', 'models', 'stories260K');
const ALL_MODES = ['float32', 'int8', 'int4', 'float8', 'gptq-8', 'gptq-4', 'gptq-3', 'gptq-2'];
const PROMPT = 'Once upon a time';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

async function runMode(mode, evalBlocks) {
  const qk = require('..');
  process.removeAllListeners('warning'); // the table says what was quantized
  const fs = require('fs');
  const text = fs.readFileSync(path.join(MODEL_DIR, 'tinystories_valid_head.txt'), 'utf8');
  const blocks = text.split(/\n\s*\n/).filter((b) => b.trim().length > 0);
  const calibration = blocks.slice(0, 400); // GPTQ calibration text
  const held = blocks.slice(2000, 2000 + evalBlocks); // disjoint evaluation text
  const tokenizer = await qk.Llama2cTokenizer.fromFile(path.join(MODEL_DIR, 'tok512.bin'));
  const model = await qk.LlamaCausalLM.fromCheckpoint(await qk.readLlama2cFile(path.join(MODEL_DIR, 'stories260K.bin')), tokenizer);
  const t0 = performance.now();
  let report = null;
  if (mode === 'int8' || mode === 'float8') report = await model.quantize(mode, { verbose: false });
  else if (mode === 'int4') report = await model.quantize('int4', { config: new qk.Int4QuantizationConfig({ blockSize: 32 }), verbose: false });
  else if (mode.startsWith('gptq-')) {
    const bits = Number(mode.slice(5));
    const config = new qk.GPTQConfig({ dataset: calibration, tokenizer, weightBits: bits, groupSize: 32, numSamples: 32, sequenceLength: 256, activationOrder: true });
    report = await model.quantize('gptq', { config, verbose: false });
  }
  const quantizeSeconds = (performance.now() - t0) / 1000;
  const weightBytes = model.variables.reduce((a, v) => a + v.value.byteLength, 0);
  const { perplexity } = await model.perplexity(held);
  await model.generate(PROMPT, { maxNewTokens: 4 }); // warm-up
  const gen = await model.generate(PROMPT, { maxNewTokens: 64 });
  const peakRssMiB = process.resourceUsage().maxRSS / 1024;
  return {
    mode,
    weightBytes,
    quantizeSeconds,
    quantized: report ? report.numQuantized : 0,
    perplexity,
    firstTokenMs: gen.firstTokenMs,
    tokensPerSecond: gen.tokensPerSecond,
    peakRssMiB,
    continuation: gen.text,
  };
}

function table(rows) {
  const base = rows.find((r) => r.mode === 'float32');
  const head = ['mode', 'weights', 'vs f32', 'quantize s', 'perplexity', 'Δ ppl', 'first token ms', 'decode tok/s', 'peak RSS MiB'];
  const body = rows.map((r) => [
    r.mode,
    `${(r.weightBytes / 1024).toFixed(1)} KiB`,
    base ? `${(base.weightBytes / r.weightBytes).toFixed(2)}x` : '',
    r.quantizeSeconds.toFixed(2),
    r.perplexity.toFixed(3),
    base ? `${(((r.perplexity - base.perplexity) / base.perplexity) * 100).toFixed(2)}%` : '',
    r.firstTokenMs.toFixed(1),
    r.tokensPerSecond.toFixed(0),
    r.peakRssMiB.toFixed(0),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const out = [line(head), `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)];
  out.push('', `Greedy continuation of "${PROMPT}" (64 tokens):`);
  for (const r of rows) out.push(`  ${r.mode.padEnd(8)} ${JSON.stringify(r.continuation.slice(0, 110))}…`);
  return out.join('\n');
}

async function main() {
  if (process.argv.includes('--help')) {
    console.log('usage: node examples/demo.js [--json] [--modes float32,int8,int4,float8,gptq-8,gptq-4,gptq-3,gptq-2] [--eval-blocks 60]');
    return;
  }
  const evalBlocks = Number(arg('eval-blocks', '60'));
  if (process.env.QK_DEMO_CHILD) {
    const r = await runMode(process.env.QK_DEMO_CHILD, evalBlocks);
    process.send(r);
    return;
  }
  const modes = arg('modes', ALL_MODES.join(',')).split(',');
  for (const m of modes) {
    if (!ALL_MODES.includes(m)) throw new Error(`unknown mode '${m}': expected some of ${ALL_MODES.join(', ')}`);
  }
  const json = process.argv.includes('--json');
  const qk = require('..');
  const caps = qk.capabilities();
  if (!json) {
    console.log(`quantkit demo — stories260K (Karpathy, MIT) on ${caps.isa}, ${caps.threads ?? ''} threads; perplexity on ${evalBlocks} held-out TinyStories blocks`);
  }
  const t0 = performance.now();
  const rows = [];
  for (const mode of modes) {
    const r = await new Promise((resolve, reject) => {
      const child = fork(__filename, process.argv.slice(2), { env: { ...process.env, QK_DEMO_CHILD: mode }, stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
      let result = null;
      child.on('message', (m) => (result = m));
      child.on('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`mode ${mode} failed (exit code ${code})`))));
    });
    rows.push(r);
    if (!json) process.stdout.write(`  ${mode} done (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }
  if (json) console.log(JSON.stringify({ isa: caps.isa, evalBlocks, rows }, null, 2));
  else console.log(`\n${table(rows)}\n\nTotal ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
}

main().catch((err) => {
  console.error(`demo failed: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
