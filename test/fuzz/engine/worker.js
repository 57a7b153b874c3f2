// The fuzz loop (runs in a worker thread started by ./index.js). Keeps a corpus of inputs; each execution
// mutates one, runs the target and keeps the input when it reaches a new (site, hit-count bucket) pair.
// Shares with the supervisor: state[0] = executions, state[1] = 1 while the target runs, state[2] = input length,
// and the input itself, so a hang or an out-of-memory kill can be reported with the input that caused it.
'use strict';
const { parentPort, workerData } = require('worker_threads');
const fs = require('fs');
const path = require('path');
const { register } = require('./ts-register');
const { prng, mutate } = require('./mutate');

const { target: name, seed, maxExecs, seconds, maxLen, stateSab, inputSab, memBudgetMb, root, extraCorpus, saveDir, stopOnFinding } = workerData;
const state = new Int32Array(stateSab);
const shared = new Uint8Array(inputSab);

// Instrument every reader-side source; each target then takes feedback only from the files its `cover` names.
const INSTRUMENT = /[\\/]lib[\\/](io|tokenizers|models|layers|dtype-policies|quantizers)[\\/]/;
const { cov, sites, siteCount } = register((file) => INSTRUMENT.test(file));
const { TARGETS, SELF_TEST_TARGETS, CORPUS_DIR, isCleanError } = require(path.join(root, 'test', 'fuzz', 'targets.ts'));
const T = TARGETS[name] ?? SELF_TEST_TARGETS[name];
if (!T) throw new Error(`unknown fuzz target ${name}; known: ${Object.keys(TARGETS).join(', ')}`);
const allowed = new Int8Array(cov.length); // 0 unknown, 1 counted, -1 ignored
function isAllowed(i) {
  if (allowed[i] === 0) allowed[i] = sites[i] && T.cover.test(sites[i]) ? 1 : -1;
  return allowed[i] === 1;
}

function bucket(c) {
  return c === 1 ? 1 : c === 2 ? 2 : c === 3 ? 4 : c < 8 ? 8 : c < 16 ? 16 : c < 32 ? 32 : c < 128 ? 64 : 128;
}
const seen = new Uint8Array(cov.length);
let covered = 0;

function newCoverage() {
  const n = Math.min(siteCount() + 1, cov.length);
  let fresh = false;
  for (let i = 1; i < n; i++) {
    const c = cov[i];
    if (c === 0 || !isAllowed(i)) continue;
    const b = bucket(c);
    if ((seen[i] & b) === 0) {
      if (seen[i] === 0) covered++;
      seen[i] |= b;
      fresh = true;
    }
  }
  return fresh;
}

function describeError(err) {
  if (err instanceof Error) return { name: err.constructor.name, code: err.code, message: String(err.message).slice(0, 500), stack: String(err.stack).split('\n').slice(0, 8).join('\n') };
  return { name: typeof err, message: String(err).slice(0, 500), stack: '' };
}

async function execute(input) {
  cov.fill(0);
  shared.set(input.subarray(0, shared.length));
  Atomics.store(state, 2, input.length);
  Atomics.store(state, 1, 1);
  let outcome = { ok: true };
  try {
    const p = T.run(input);
    if (p && typeof p.then === 'function') await p;
  } catch (err) {
    outcome = isCleanError(err) ? { ok: true, code: err.code } : { ok: false, error: describeError(err) };
  }
  Atomics.store(state, 1, 0);
  Atomics.add(state, 0, 1);
  const mem = process.memoryUsage();
  if (outcome.ok && mem.heapUsed + mem.arrayBuffers > memBudgetMb * 1048576) {
    // one call left more than the budget alive (it should have been refused before allocating)
    if (global.gc) global.gc();
    const after = process.memoryUsage();
    if (after.heapUsed + after.arrayBuffers > memBudgetMb * 1048576) {
      outcome = { ok: false, error: { name: 'MemoryBudget', message: `heap ${Math.round(after.heapUsed / 1048576)} MiB + array buffers ${Math.round(after.arrayBuffers / 1048576)} MiB after one call (budget ${memBudgetMb} MiB)`, stack: '' } };
    }
  }
  return outcome;
}

function loadDir(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .sort()
    .map((f) => ({ name: f, bytes: new Uint8Array(fs.readFileSync(path.join(dir, f))) }));
}

async function main() {
  const r = prng(seed);
  const corpus = [];
  const seeds = T.seeds ? T.seeds.map((bytes, i) => ({ name: `inline ${i}`, bytes })) : [...loadDir(path.join(CORPUS_DIR, name)), ...(extraCorpus ? loadDir(extraCorpus) : [])];
  if (!seeds.length) throw new Error(`no seed corpus in ${path.join(CORPUS_DIR, name)}`);
  const codes = {};
  let findings = 0;
  const report = (input, outcome, from) => {
    findings++;
    parentPort.postMessage({ type: 'finding', kind: 'exception', error: outcome.error, input, from });
  };
  for (const s of seeds) {
    const o = await execute(s.bytes);
    newCoverage();
    corpus.push(s.bytes);
    if (!o.ok) report(s.bytes, o, `seed ${s.name}`);
  }
  const t0 = Date.now();
  const deadline = t0 + seconds * 1000;
  let execs = 0;
  let added = 0;
  const dict = T.dict ?? [];
  while (execs < maxExecs && Date.now() < deadline) {
    const parent = corpus[r.int(corpus.length)];
    const other = corpus[r.int(corpus.length)];
    const input = mutate(r, parent, other, dict, maxLen);
    const o = await execute(input);
    execs++;
    if (o.code) codes[o.code] = (codes[o.code] ?? 0) + 1;
    else if (o.ok) codes.accepted = (codes.accepted ?? 0) + 1;
    if (newCoverage()) {
      corpus.push(input);
      added++;
      if (saveDir) {
        fs.mkdirSync(saveDir, { recursive: true });
        fs.writeFileSync(path.join(saveDir, `cov-${String(added).padStart(5, '0')}.bin`), input);
      }
    }
    if (!o.ok) {
      report(input, o, 'mutation');
      if (stopOnFinding) break;
    }
    if (execs % 2000 === 0) parentPort.postMessage({ type: 'progress', execs, corpus: corpus.length, covered, sites: siteCount() });
  }
  parentPort.postMessage({ type: 'done', execs, ms: Date.now() - t0, seeds: seeds.length, corpus: corpus.length, covered, sites: siteCount(), outcomes: codes, findings });
}

main().catch((err) => parentPort.postMessage({ type: 'fatal', error: describeError(err) }));
