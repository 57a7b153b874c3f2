#!/usr/bin/env node
// End to end, same process, same file, same prompt, greedy (issue 7, item 3): quantkit's LlamaCausalLM and
// node-llama-cpp (its npm prebuilt CPU binary, i.e. llama.cpp) generating from models/stories260K/stories260K.gguf.
// Reports first-token latency (prompt included) and decode tokens/s (medians of several generations), and how many
// of the generated tokens agree. node-llama-cpp runs with 1 thread and with all threads (on a 260K-parameter model
// its thread pool costs more than it gains); both are reported, and the best is the one compared.
//   node bench/llm.js [--quick] [--tokens N]
'use strict';
const path = require('path');
const C = require('./common');

const F = C.flags();
const quick = F.quick;
const GGUF = path.join(C.ROOT, 'models', 'stories260K', 'stories260K.gguf');
const PROMPT = 'Once upon a time';
const NEW_TOKENS = Number(F.get('tokens') ?? (quick ? 128 : 256));
const REPS = quick ? 3 : 5;

async function quantkitRuns(qk) {
  const t0 = performance.now();
  const model = await qk.LlamaCausalLM.fromFile(GGUF);
  const loadMs = performance.now() - t0;
  await model.generate(PROMPT, { maxNewTokens: 8, ignoreEos: true }); // warm-up
  const runs = [];
  for (let r = 0; r < REPS; r++) {
    const g = await model.generate(PROMPT, { maxNewTokens: NEW_TOKENS, ignoreEos: true });
    runs.push({ firstTokenMs: g.firstTokenMs, tokensPerSecond: g.tokensPerSecond, tokens: g.tokens, promptTokens: g.promptTokens });
  }
  return {
    loadMs,
    threads: qk.capabilities().threads,
    firstTokenMs: C.median(runs.map((r) => r.firstTokenMs)),
    tokensPerSecond: C.median(runs.map((r) => r.tokensPerSecond)),
    allTokensPerSecond: runs.map((r) => r.tokensPerSecond),
    promptTokens: runs[0].promptTokens,
    tokens: runs[0].tokens,
    text: model.tokenizer ? model.tokenizer.decode([...runs[0].promptTokens, ...runs[0].tokens]) : '',
  };
}

async function llamaCppRuns(nlc, promptTokens, threads) {
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', progressLogs: false });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: GGUF });
  const loadMs = performance.now() - t0;
  const ctx = await model.createContext({ contextSize: 512, batchSize: 512, threads, sequences: 1 });
  const seq = ctx.getSequence();
  const gen = async (n) => {
    await seq.clearHistory();
    const out = [];
    const t = performance.now();
    let tFirst = 0;
    for await (const tok of seq.evaluate(promptTokens, { temperature: 0 })) {
      if (out.length === 0) tFirst = performance.now();
      out.push(tok);
      if (out.length >= n || performance.now() - t > 10000) break; // a pathological configuration: stop at 10 s
    }
    const end = performance.now();
    return { firstTokenMs: tFirst - t, tokensPerSecond: out.length > 1 ? ((out.length - 1) * 1000) / (end - tFirst) : 0, tokens: out };
  };
  await gen(8);
  const runs = [];
  const t1 = performance.now();
  // REPS generations, fewer (at least 2) when a configuration is slow (a spinning pool on a shared machine)
  while (runs.length < REPS && performance.now() - t1 < (runs.length < 2 ? 4000 : 8000)) runs.push(await gen(NEW_TOKENS));
  const info = {
    loadMs,
    threads,
    buildType: llama.buildType,
    gpu: llama.gpu,
    cpuMathCores: llama.cpuMathCores,
    firstTokenMs: C.median(runs.map((r) => r.firstTokenMs)),
    tokensPerSecond: C.median(runs.map((r) => r.tokensPerSecond)),
    allTokensPerSecond: runs.map((r) => r.tokensPerSecond),
    tokens: runs[0].tokens,
  };
  try {
    info.systemInfo = String(llama.systemInfo || '').slice(0, 400);
  } catch (_) {}
  await ctx.dispose();
  await model.dispose();
  return info;
}

async function main() {
  const { qk } = C.loadQuantkit();
  console.log(`llm: ${path.relative(C.ROOT, GGUF)}, prompt "${PROMPT}", greedy, ${NEW_TOKENS} new tokens, median of ${REPS}`);
  const out = { gguf: path.relative(C.ROOT, GGUF), prompt: PROMPT, newTokens: NEW_TOKENS, reps: REPS, quantkit: null, llamaCpp: null, peers: {} };
  out.quantkit = await quantkitRuns(qk);
  console.log(`  quantkit        ${C.fmt(out.quantkit.tokensPerSecond)} tok/s decode, first token ${C.fmt(out.quantkit.firstTokenMs)} ms (${out.quantkit.threads} threads)`);

  let nlc = null;
  try {
    const p = require.resolve('node-llama-cpp', { paths: [__dirname] });
    nlc = await import(require('url').pathToFileURL(p).href);
  } catch (e) {
    out.peers.nodeLlamaCpp = { available: false, reason: `node-llama-cpp could not be loaded: ${String(e.message || e).split('\n')[0]}` };
  }
  if (nlc) {
    try {
      const version = JSON.parse(require('fs').readFileSync(path.join(__dirname, 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8')).version;
      const runs = [];
      for (const threads of [1, qk.capabilities().threads]) {
        if (runs.some((r) => r.threads === threads)) continue;
        const r = await llamaCppRuns(nlc, out.quantkit.promptTokens, threads);
        runs.push(r);
        console.log(`  node-llama-cpp  ${C.fmt(r.tokensPerSecond)} tok/s decode, first token ${C.fmt(r.firstTokenMs)} ms (${threads} thread${threads > 1 ? 's' : ''}, ${r.buildType})`);
      }
      const best = runs.reduce((a, b) => (b.tokensPerSecond > a.tokensPerSecond ? b : a));
      let agree = 0;
      while (agree < best.tokens.length && agree < out.quantkit.tokens.length && best.tokens[agree] === out.quantkit.tokens[agree]) agree++;
      out.llamaCpp = { version, runs, best: { threads: best.threads, tokensPerSecond: best.tokensPerSecond, firstTokenMs: best.firstTokenMs }, agreeingPrefixTokens: agree };
      out.peers.nodeLlamaCpp = { available: true, version, buildType: best.buildType };
      out.ratio = out.quantkit.tokensPerSecond / best.tokensPerSecond;
      console.log(`  quantkit / node-llama-cpp decode speed: ${out.ratio.toFixed(2)}x; identical greedy tokens: ${agree} of ${Math.min(best.tokens.length, out.quantkit.tokens.length)}`);
    } catch (e) {
      out.peers.nodeLlamaCpp = { available: false, reason: `node-llama-cpp failed: ${String(e.message || e).split('\n')[0]}` };
    }
  }
  if (out.peers.nodeLlamaCpp && !out.peers.nodeLlamaCpp.available) console.log(`  node-llama-cpp unavailable: ${out.peers.nodeLlamaCpp.reason}`);
  for (const r of out.llamaCpp?.runs ?? []) delete r.tokens;
  out.quantkit.text = out.quantkit.text.slice(0, 300);
  delete out.quantkit.tokens;
  C.writePart('llm', out);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
