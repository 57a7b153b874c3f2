// Concurrency (issue 9): many overlapping predict / generate / perplexity calls on one model return exactly what
// sequential calls return; worker_threads can each load the addon; quantizing a model while calls are in flight
// gives, for every call, the result of either the old or the new weights (never a mix, never a crash): quantize()
// waits for the calls in flight and calls that start meanwhile wait for it (lib/models/gate.ts); dispose() frees
// the weights after the calls in flight and every later call rejects with QK_DISPOSED.
import * as fs from 'fs';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { ModelGate } from '../../lib/models/gate';
import { Dense, Input, LlamaCausalLM, LlamaDecodeBatcher, QkError, Sequential, Tensor, matmul } from '../../lib';

const ROOT = path.join(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'models', 'stories260K', 'stories260K.bin');
const DIST = path.join(ROOT, 'dist', 'index.js');

async function mlp(): Promise<Sequential> {
  const m = new Sequential({
    layers: [Input({ shape: [16] }), new Dense({ units: 32, activation: 'relu', seed: 1, name: 'first' }), new Dense({ units: 8, seed: 2, name: 'second' })],
  });
  await m.build();
  return m;
}

const inputs = Array.from({ length: 20 }, (_, c) =>
  new Tensor('float32', [3, 16], Float32Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.37 + c * 1.3) * 2)),
);
const bytes = (t: Tensor) => Buffer.from((t.data as Float32Array).buffer, t.data.byteOffset, t.data.byteLength).toString('hex');

describe('32 concurrent callers x 200 calls', () => {
  let lm: LlamaCausalLM;
  beforeAll(async () => {
    lm = await LlamaCausalLM.fromFile(MODEL);
  });

  test('predict on an int8 Dense model and generate on stories260K (3:1), interleaved, equal the sequential results', async () => {
    const m = await mlp();
    await m.quantize('int8', { verbose: false });
    // 24 distinct generate requests: 8 prompts x 1-2 new tokens, greedy or seeded sampling
    const genReq = (i: number) => ({
      prompt: [1, 403 + (i % 8) * 7, 407 + (i % 5)],
      options: { maxNewTokens: 1 + (i % 2), ...(i % 3 ? { temperature: 0.9, seed: i } : {}) },
    });
    const seqPred: string[] = [];
    for (const x of inputs) seqPred.push(bytes((await m.predict(x)) as Tensor));
    const seqGen: string[] = [];
    for (let i = 0; i < 24; i++) seqGen.push((await lm.generate(genReq(i).prompt, genReq(i).options)).tokens.join(','));
    expect(new Set(seqGen).size).toBeGreaterThan(12); // the requests really differ

    let predicts = 0;
    let generates = 0;
    const mismatches: string[] = [];
    const t0 = performance.now();
    const callers = Array.from({ length: 32 }, async (_, c) => {
      for (let k = 0; k < 200; k++) {
        if ((c + k) % 4 !== 0) {
          const i = (c * 7 + k) % 20;
          const h = bytes((await m.predict(inputs[i])) as Tensor);
          predicts++;
          if (h !== seqPred[i]) mismatches.push(`predict ${i}`);
        } else {
          const i = (c * 5 + k) % 24;
          const r = genReq(i);
          const t = (await lm.generate(r.prompt, r.options)).tokens.join(',');
          generates++;
          if (t !== seqGen[i]) mismatches.push(`generate ${i}: ${t} vs ${seqGen[i]}`);
        }
      }
    });
    await Promise.all(callers);
    const ms = performance.now() - t0;
    console.log(`32 callers x 200 calls: ${predicts} predict (int8 MLP) + ${generates} generate (stories260K), ${mismatches.length} differ from sequential, ${(ms / 1000).toFixed(1)} s`);
    expect(predicts + generates).toBe(6400);
    expect(mismatches).toEqual([]);
  });
});

describe('LlamaCausalLM stories260K', () => {
  let lm: LlamaCausalLM;
  beforeAll(async () => {
    lm = await LlamaCausalLM.fromFile(MODEL);
  });
  const prompts = ['Once upon a time', 'The cat', 'Lily was', 'One day, a little'];

  test('overlapping generate and perplexity calls (16 callers x 4) equal the sequential results', async () => {
    const seqGen: string[] = [];
    for (const p of prompts) seqGen.push((await lm.generate(p, { maxNewTokens: 24 })).tokens.join(','));
    const seqGenSampled = (await lm.generate('Once', { maxNewTokens: 24, temperature: 1, seed: 7 })).tokens.join(',');
    const seqPpl: number[] = [];
    for (const p of prompts) seqPpl.push((await lm.perplexity(`${p} there was a dog. It was happy.`)).nll);
    const callers = Array.from({ length: 16 }, async (_, c) => {
      for (let k = 0; k < 4; k++) {
        const i = (c + k) % prompts.length;
        if ((c + k) % 3 === 0) {
          expect((await lm.perplexity(`${prompts[i]} there was a dog. It was happy.`)).nll).toBe(seqPpl[i]);
        } else if ((c + k) % 3 === 1) {
          expect((await lm.generate(prompts[i], { maxNewTokens: 24 })).tokens.join(',')).toBe(seqGen[i]);
        } else {
          expect((await lm.generate('Once', { maxNewTokens: 24, temperature: 1, seed: 7 })).tokens.join(',')).toBe(seqGenSampled);
        }
      }
    });
    await Promise.all(callers);
  });
});

test('quantizing a model while predict calls are in flight: every call returns the old or the new weights, bit for bit', async () => {
  // References: the float model and an identically initialised copy quantized to int8 beforehand.
  const ref = await mlp();
  const refQ = await mlp();
  await refQ.quantize('int8', { verbose: false });
  const oldOut = await Promise.all(inputs.map(async (x) => bytes((await ref.predict(x)) as Tensor)));
  const newOut = await Promise.all(inputs.map(async (x) => bytes((await refQ.predict(x)) as Tensor)));
  const refHalf = await mlp();
  await refHalf.quantize('int8', { verbose: false, filters: 'first' });
  const halfOut = await Promise.all(inputs.map(async (x) => bytes((await refHalf.predict(x)) as Tensor)));

  const m = await mlp();
  const results: Array<{ i: number; h: string }> = [];
  let quantized = false;
  // 16 callers keep predicting until quantize() has resolved, then 5 more calls each. Each caller yields to the
  // event loop between calls (as requests arriving over I/O do): a small predict() may complete without ever
  // leaving the microtask queue, so a tight await-loop of them would starve quantize()'s native completions.
  const callers = Array.from({ length: 16 }, async (_, c) => {
    let after = 0;
    for (let k = 0; after < 5 && k < 2000; k++) {
      await new Promise((r) => setImmediate(r));
      const i = (c * 3 + k) % 20;
      const done = quantized;
      results.push({ i, h: bytes((await m.predict(inputs[i])) as Tensor) });
      if (done) after++;
    }
  });
  await new Promise((r) => setImmediate(r));
  let qErr: unknown = null;
  const q = m
    .quantize('int8', { verbose: false })
    .catch((e: unknown) => {
      qErr = e;
    })
    .finally(() => {
      quantized = true;
    });
  await Promise.all([...callers, q]);
  expect(qErr).toBeNull();
  let olds = 0;
  let news = 0;
  let mixed = 0;
  for (const { i, h } of results) {
    if (h === oldOut[i]) olds++;
    else if (h === newOut[i]) news++;
    else if (h === halfOut[i]) mixed++;
    else throw new Error(`call on input ${i} returned neither the float, the int8 nor the half-quantized result`);
  }
  // quantize() is model-atomic: it waits for the predict() calls in flight, and calls that start while it runs
  // wait for it, so no call sees the first Dense already int8 and the second still float32.
  expect(mixed).toBe(0);
  expect(olds).toBeGreaterThan(0);
  expect(news).toBeGreaterThanOrEqual(80);
  console.log(`quantize during predict: ${results.length} calls, ${olds} old weights, ${news} new, ${mixed} mixed`);
  // After quantize() resolves every call sees the new weights.
  for (let i = 0; i < 20; i++) expect(bytes((await m.predict(inputs[i])) as Tensor)).toBe(newOut[i]);
});

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof QkError ? e.code : `not a QkError: ${String(e)}`;
  }
};

describe('dispose()', () => {
  test('a model disposed while predict calls are in flight: those finish with correct results, every later call and a waiting quantize reject with QK_DISPOSED, the weights are freed', async () => {
    const ref = await mlp();
    const want = await Promise.all(inputs.map(async (x) => bytes((await ref.predict(x)) as Tensor)));
    const m = await mlp();
    const inFlight = inputs.map((x) => m.predict(x) as Promise<Tensor>);
    const disposed = m.dispose();
    // started after dispose(): rejected at once, even before the calls in flight have drained
    const late = [codeOf(m.predict(inputs[0])), codeOf(m.apply(inputs[1])), codeOf(m.quantize('int8', { verbose: false })), codeOf(m.save('/nonexistent/x.keras'))];
    const got = await Promise.all(inFlight);
    await disposed;
    got.forEach((y, i) => expect(bytes(y)).toBe(want[i]));
    expect(await Promise.all(late)).toEqual(['QK_DISPOSED', 'QK_DISPOSED', 'QK_DISPOSED', 'QK_DISPOSED']);
    expect(await codeOf(m.predict(inputs[2]))).toBe('QK_DISPOSED');
    const dense = m.getLayer('first') as Dense;
    expect(dense.disposed).toBe(true);
    expect(await codeOf(dense.apply(inputs[0]))).toBe('QK_DISPOSED');
    expect(() => dense.kernel!.value).toThrow(expect.objectContaining({ code: 'QK_DISPOSED' }));
    expect(m.variables.every((v) => v.disposed)).toBe(true);
    await m.dispose(); // idempotent
  });

  test('a quantize() waiting for calls in flight, and calls queued behind it, reject with QK_DISPOSED when dispose() comes; a running quantize() completes first', async () => {
    const m = await mlp();
    const first = m.predict(inputs[0]); // in flight: quantize waits for it
    const q = m.quantize('int8', { verbose: false });
    const waiting = m.predict(inputs[1]); // waits for quantize
    const d = m.dispose();
    expect(await codeOf(first)).toBe('ok');
    expect(await codeOf(q)).toBe('QK_DISPOSED');
    expect(await codeOf(waiting)).toBe('QK_DISPOSED');
    await d;
    // a quantize that already runs is not interrupted: dispose() waits for it
    const m2 = await mlp();
    const q2 = m2.quantize('int8', { verbose: false });
    await new Promise((r) => setImmediate(r));
    const d2 = m2.dispose();
    expect(await codeOf(q2)).toBe('ok');
    await d2;
    expect(m2.variables.every((v) => v.disposed)).toBe(true);
    await d;
    expect(await codeOf(m.predict(inputs[2]))).toBe('QK_DISPOSED');
  });

  test('a quantized Dense layer disposed on its own frees its int8 state; apply() and quantize() give QK_DISPOSED', async () => {
    const d = new Dense({ units: 4, seed: 3 });
    await d.apply(inputs[0]);
    await d.quantize('int8');
    d.dispose();
    expect(await codeOf(d.apply(inputs[0]))).toBe('QK_DISPOSED');
    expect(d.variables.every((v) => v.disposed && v.dtype !== undefined)).toBe(true);
  });

  test('LlamaCausalLM: dispose() during generate lets the running generations finish; later generate/perplexity/stream give QK_DISPOSED', async () => {
    const lm = await LlamaCausalLM.fromFile(MODEL);
    const seq = (await lm.generate('Once upon a time', { maxNewTokens: 16 })).tokens.join(',');
    const running = Array.from({ length: 4 }, () => lm.generate('Once upon a time', { maxNewTokens: 16 }));
    const s = lm.stream('The cat', { maxNewTokens: 50 });
    await s.next(); // a bare stream holds the lease per step only, so it cannot block dispose()
    await new Promise((r) => setImmediate(r));
    const d = lm.dispose();
    for (const r of await Promise.all(running)) expect(r.tokens.join(',')).toBe(seq);
    await d;
    expect(await codeOf(s.next())).toBe('QK_DISPOSED');
    expect(await codeOf(lm.generate('Once', { maxNewTokens: 2 }))).toBe('QK_DISPOSED');
    expect(await codeOf(lm.perplexity('Once upon a time there was'))).toBe('QK_DISPOSED');
    expect(await codeOf(lm.stream('Once').next())).toBe('QK_DISPOSED');
    expect(lm.tokenizer).toBeNull();
  });
});

test('quantizing a LlamaCausalLM while generate and perplexity calls are in flight: each call is all-float or all-int8', async () => {
  const lm = await LlamaCausalLM.fromFile(MODEL);
  const ref = await LlamaCausalLM.fromFile(MODEL);
  await ref.quantize('int8', { verbose: false });
  const prompt = 'Once upon a time';
  const text = 'Once upon a time there was a little dog. It was happy.';
  const floatGen = (await lm.generate(prompt, { maxNewTokens: 20 })).tokens.join(',');
  const int8Gen = (await ref.generate(prompt, { maxNewTokens: 20 })).tokens.join(',');
  const floatNll = (await lm.perplexity(text)).nll;
  const int8Nll = (await ref.perplexity(text)).nll;
  expect(int8Nll).not.toBe(floatNll); // the perplexities tell the two weight sets apart
  const before = Array.from({ length: 4 }, () => Promise.all([lm.generate(prompt, { maxNewTokens: 20 }), lm.perplexity(text)]));
  const q = lm.quantize('int8', { verbose: false });
  const after = Array.from({ length: 4 }, () => Promise.all([lm.generate(prompt, { maxNewTokens: 20 }), lm.perplexity(text)]));
  await q;
  for (const [g, p] of await Promise.all(before)) {
    expect(g.tokens.join(',')).toBe(floatGen);
    expect(p.nll).toBe(floatNll);
  }
  for (const [g, p] of await Promise.all(after)) {
    expect(g.tokens.join(',')).toBe(int8Gen);
    expect(p.nll).toBe(int8Nll);
  }
});

test('quantize() while generate()/stream() calls share a LlamaDecodeBatcher: no deadlock, each generation all-float or all-int8 (a bare stream across the change stops with QK_ABORTED)', async () => {
  const lm = await LlamaCausalLM.fromFile(MODEL);
  const ref = await LlamaCausalLM.fromFile(MODEL);
  await ref.quantize('int8', { verbose: false });
  const prompts = ['Once upon a time', 'The cat', 'Lily was', 'One day, a little'];
  const floatOut = await Promise.all(prompts.map(async (p) => (await lm.generate(p, { maxNewTokens: 12 })).tokens.join(',')));
  const int8Out = await Promise.all(prompts.map(async (p) => (await ref.generate(p, { maxNewTokens: 12 })).tokens.join(',')));
  const batcher = new LlamaDecodeBatcher({ maxBatch: 8 });
  const s = lm.stream('The dog', { maxNewTokens: 40, batcher });
  await s.next();
  const before = prompts.map((p) => lm.generate(p, { maxNewTokens: 12, batcher }));
  const q = lm.quantize('int8', { verbose: false });
  const after = prompts.map((p) => lm.generate(p, { maxNewTokens: 12, batcher }));
  await q;
  (await Promise.all(before)).forEach((r, i) => expect(r.tokens.join(',')).toBe(floatOut[i]));
  (await Promise.all(after)).forEach((r, i) => expect(r.tokens.join(',')).toBe(int8Out[i]));
  expect(batcher.steps).toBeGreaterThan(0);
  let code = 'ok';
  try {
    for (;;) if ((await s.next()).done) break;
  } catch (e) {
    code = e instanceof QkError ? e.code : String(e);
  }
  expect(code).toBe('QK_ABORTED');
});

test('a lease ends with its call: a timer the call started sees no lease afterwards (it queues behind a writer like any new call)', async () => {
  const gate = new ModelGate('g');
  const seen: boolean[] = [];
  let fired!: Promise<void>;
  await gate.read('r', async () => {
    seen.push(gate.holds());
    fired = new Promise<void>((resolve) => setTimeout(() => {
      seen.push(gate.holds());
      resolve();
    }, 10));
  });
  await fired;
  expect(seen).toEqual([true, false]);
  // and a writer waits for readers, readers that come later wait for the writer
  const order: string[] = [];
  let release!: () => void;
  const r1 = gate.read('r1', () => new Promise<void>((res) => (release = () => { order.push('r1 done'); res(); })));
  const w = gate.write('w', async () => void order.push('w'));
  const r2 = gate.read('r2', async () => void order.push('r2'));
  await new Promise((r) => setImmediate(r));
  expect(order).toEqual([]);
  release();
  await Promise.all([r1, w, r2]);
  expect(order).toEqual(['r1 done', 'w', 'r2']);
});

const distBuilt = fs.existsSync(DIST);
(distBuilt ? test : test.skip)(
  `worker_threads each load the addon and run ops${distBuilt ? '' : ' (SKIPPED: dist/ not built; run `npm run build:ts`)'}`,
  async () => {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const q = require(workerData.dist);
      (async () => {
        const a = new q.Tensor('float32', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6].map((v) => v * workerData.k)));
        const b = new q.Tensor('float32', [3, 2], Float32Array.from([1, 0, 0, 1, 1, 1]));
        const y = await q.matmul(a, b);
        const { quantized } = await q.absMaxQuantize(a, -1);
        let err = null;
        try { await q.matmul(a, a); } catch (e) { err = e.code; }
        parentPort.postMessage({ y: Array.from(y.data), qd: Array.from(quantized.data), err, isa: q.capabilities().isa });
      })().catch((e) => parentPort.postMessage({ fatal: String(e && e.stack || e) }));
    `;
    const run = (k: number) =>
      new Promise<{ y: number[]; qd: number[]; err: string; isa: string; fatal?: string }>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { dist: DIST, k } });
        w.once('message', (msg) => {
          void w.terminate();
          resolve(msg);
        });
        w.once('error', reject);
      });
    const outs = await Promise.all([1, 2, 3, 4].map(run));
    outs.forEach((o, j) => {
      expect(o.fatal).toBeUndefined();
      const k = j + 1;
      expect(o.y).toEqual([4 * k, 5 * k, 10 * k, 11 * k]);
      expect(o.qd).toEqual([42, 85, 127, 85, 106, 127]);
      expect(o.err).toBe('QK_SHAPE_MISMATCH');
    });
    // The addon still works on the main thread after the workers exit.
    const y = await matmul(new Tensor('float32', [1, 1], Float32Array.of(2)), new Tensor('float32', [1, 1], Float32Array.of(3)));
    expect(y.data[0]).toBe(6);
  },
);
