// The short CI pass of the coverage-guided reader fuzzer (test/fuzz/engine): every file reader, a fixed seed and
// a fixed budget (QK_FUZZ_SECONDS, default 2 s of mutations each, after its seed corpus). Fails on any finding:
// an exception other than a QkError, a hang, or a memory blow-up. Long runs: `npm run fuzz -- --reader gguf
// --seconds 600`. Also replays every committed crash input (test/fuzz/regressions/<target>/).
import * as fs from 'fs';
import * as path from 'path';
import { TARGETS, REGRESSIONS_DIR, CORPUS_DIR, isCleanError } from './targets';
import { terminateHdf5Worker } from '../../lib/io/hdf5';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { runFuzz } = require('./engine') as typeof import('./engine');

const SECONDS = Number(process.env.QK_FUZZ_SECONDS ?? 2);
const names = Object.keys(TARGETS);

afterAll(() => terminateHdf5Worker());

describe('committed crash inputs (regressions)', () => {
  const cases: Array<[string, string]> = [];
  for (const t of fs.existsSync(REGRESSIONS_DIR) ? fs.readdirSync(REGRESSIONS_DIR) : []) {
    if (!fs.statSync(path.join(REGRESSIONS_DIR, t)).isDirectory()) continue; // README.md
    for (const f of fs.readdirSync(path.join(REGRESSIONS_DIR, t))) if (f.endsWith('.bin')) cases.push([t, f]);
  }
  if (!cases.length) test('(no committed crash inputs yet)', () => expect(cases).toEqual([]));
  else test.each(cases)('%s %s: a clean result or a QkError', async (t, f) => {
    const bytes = new Uint8Array(fs.readFileSync(path.join(REGRESSIONS_DIR, t, f)));
    let err: unknown;
    try {
      await TARGETS[t].run(bytes);
    } catch (e) {
      err = e;
    }
    if (err !== undefined && !isCleanError(err)) throw err;
  });
});

describe('seed corpus', () => {
  test.each(names)('%s: at least one seed is read without error', async (name) => {
    const dir = path.join(CORPUS_DIR, name);
    const files = fs.readdirSync(dir).filter((f) => fs.statSync(path.join(dir, f)).isFile());
    let accepted = 0;
    for (const f of files) {
      try {
        await TARGETS[name].run(new Uint8Array(fs.readFileSync(path.join(dir, f))));
        accepted++;
      } catch (err) {
        if (!isCleanError(err)) throw err;
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });
});

describe(`coverage-guided fuzzing, ${SECONDS} s per reader (seed 1)`, () => {
  test.each(names)('%s: no finding', async (name) => {
    const r = await runFuzz({ target: name, seconds: SECONDS, seed: 1, hangSeconds: 20, stopOnFinding: true });
    // eslint-disable-next-line no-console
    console.log(`fuzz ${name}: ${r.execs} execs, corpus ${r.seeds} -> ${r.corpus}, ${r.covered} sites`);
    const report = r.findings.map((f) => `${f.kind} ${f.error?.name}: ${f.error?.message}\n${f.error?.stack}\ninput (base64): ${f.input.toString('base64').slice(0, 2000)}`);
    expect(report).toEqual([]);
    expect(r.execs).toBeGreaterThan(0);
    expect(r.covered).toBeGreaterThan(10);
  }, 120_000);
});

describe('the fuzzer finds planted bugs (so a clean pass means something)', () => {
  test('an exception other than QkError, with the input that raised it', async () => {
    const r = await runFuzz({ target: 'selftest-exception', seconds: 20, seed: 1, stopOnFinding: true });
    expect(r.findings.map((f) => [f.kind, f.error?.name, f.error?.message])).toEqual([['exception', 'TypeError', 'planted bug']]);
    expect([r.findings[0].input[0], r.findings[0].input[1]]).toEqual([0xff, 0xff]);
  }, 60_000);
  test('a hang (no result for hangSeconds), with the input', async () => {
    const r = await runFuzz({ target: 'selftest-hang', seconds: 20, seed: 1, hangSeconds: 1, stopOnFinding: true });
    expect(r.findings.map((f) => f.kind)).toEqual(['hang']);
    expect(r.findings[0].input.length).toBe(0);
  }, 60_000);
  test('a memory blow-up (heap beyond the budget)', async () => {
    const r = await runFuzz({ target: 'selftest-memory', seconds: 20, seed: 1, memBudgetMb: 128, stopOnFinding: true });
    expect(r.findings.length).toBe(1);
    // either the per-call check (heap + array buffers after the call) or the worker's heap limit catches it first
    expect([['exception', 'MemoryBudget'], ['memory', 'Error']]).toContainEqual([r.findings[0].kind, r.findings[0].error?.name]);
    expect(r.findings[0].input[0]).toBe(0x80);
  }, 60_000);
});
