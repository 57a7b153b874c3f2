// Coverage-guided fuzzing of quantkit's file readers: runFuzz() starts the fuzz loop (./worker.js) in a worker
// thread and watches it. A finding is any outcome other than a clean result or a QkError: another exception
// type, a hang (no progress for `hangSeconds`), a JS heap beyond `memBudgetMb` (the worker's resource limit) or
// more than `memBudgetMb` left alive by one call, or an uncaught error in the worker.
'use strict';
const { Worker } = require('worker_threads');
const path = require('path');
const crypto = require('crypto');

const ROOT = path.resolve(__dirname, '..', '..', '..');

/**
 * @param {object} o
 * @param {string} o.target - a key of TARGETS in test/fuzz/targets.ts
 * @param {number} [o.seconds=10] - time budget of the mutation loop
 * @param {number} [o.maxExecs=Infinity] - execution budget of the mutation loop
 * @param {number} [o.seed=1] - PRNG seed (same seed + same budget = same inputs)
 * @param {number} [o.hangSeconds=10]
 * @param {number} [o.memBudgetMb=512]
 * @param {number} [o.maxLen=262144] - longest mutated input
 * @param {string} [o.extraCorpus] - another directory of seeds (e.g. a previous run's saveDir)
 * @param {string} [o.saveDir] - where inputs that reached new coverage are written
 * @param {boolean} [o.stopOnFinding=false] - end the run at the first finding
 * @param {(msg: object) => void} [o.onProgress]
 * @returns {Promise<{execs:number, ms:number, seeds:number, corpus:number, covered:number, outcomes:object, findings:Array<object>}>}
 */
function runFuzz(o) {
  const maxLen = o.maxLen ?? 1 << 18;
  const stateSab = new SharedArrayBuffer(12);
  const inputSab = new SharedArrayBuffer(maxLen + 8 * 1048576); // seeds may be longer than maxLen
  const state = new Int32Array(stateSab);
  const memBudgetMb = o.memBudgetMb ?? 512;
  const hangMs = (o.hangSeconds ?? 10) * 1000;
  const findings = [];
  const keys = new Set();
  const addFinding = (f) => {
    const top = (f.error?.stack ?? '').split('\n').find((l) => /lib[\\/]/.test(l)) ?? '';
    const key = `${f.kind}|${f.error?.name}|${String(f.error?.message).replace(/[0-9]+/g, 'N').slice(0, 80)}|${top.trim()}`;
    f.input = Buffer.from(f.input);
    f.sha1 = crypto.createHash('sha1').update(f.input).digest('hex').slice(0, 12);
    if (keys.has(key)) return;
    keys.add(key);
    findings.push(f);
  };
  const current = () => Buffer.from(new Uint8Array(inputSab, 0, Math.min(Atomics.load(state, 2), inputSab.byteLength)));
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'worker.js'), {
      workerData: {
        target: o.target,
        seed: o.seed ?? 1,
        maxExecs: o.maxExecs ?? Infinity,
        seconds: o.seconds ?? 10,
        maxLen,
        stateSab,
        inputSab,
        memBudgetMb,
        root: ROOT,
        extraCorpus: o.extraCorpus,
        saveDir: o.saveDir,
        stopOnFinding: !!o.stopOnFinding,
      },
      resourceLimits: { maxOldGenerationSizeMb: memBudgetMb, maxYoungGenerationSizeMb: 64 },
      stdout: true,
      stderr: true,
    });
    w.stdout.resume(); // the readers do not print; drop anything else (e.g. warnings)
    w.stderr.resume();
    let last = -1;
    let lastChange = Date.now();
    let finished = false;
    const finish = (result, err) => {
      if (finished) return;
      finished = true;
      clearInterval(watch);
      void w.terminate();
      if (err) reject(err);
      else resolve({ ...result, findings });
    };
    const watch = setInterval(() => {
      const n = Atomics.load(state, 0);
      if (n !== last) {
        last = n;
        lastChange = Date.now();
      } else if (Atomics.load(state, 1) === 1 && Date.now() - lastChange > hangMs) {
        addFinding({ kind: 'hang', error: { name: 'Hang', message: `no result after ${hangMs / 1000} s`, stack: '' }, input: current(), from: 'mutation' });
        finish({ execs: n, ms: NaN, aborted: 'hang' });
      }
    }, 200);
    w.on('message', (m) => {
      if (m.type === 'finding') addFinding(m);
      else if (m.type === 'progress') o.onProgress?.(m);
      else if (m.type === 'done') finish(m);
      else if (m.type === 'fatal') finish(null, new Error(`fuzz worker failed: ${m.error.stack || m.error.message}`));
    });
    w.on('error', (err) => {
      const oom = err && err.code === 'ERR_WORKER_OUT_OF_MEMORY';
      addFinding({ kind: oom ? 'memory' : 'uncaught', error: { name: err.constructor.name, code: err.code, message: String(err.message), stack: String(err.stack) }, input: current(), from: 'mutation' });
      finish({ execs: Atomics.load(state, 0), ms: NaN, aborted: oom ? 'memory' : 'uncaught' });
    });
    w.on('exit', (code) => finish({ execs: Atomics.load(state, 0), ms: NaN, aborted: `exit ${code}` }));
  });
}

module.exports = { runFuzz, ROOT };
