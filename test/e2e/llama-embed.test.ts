// LlamaCausalLM.embed (pooled final hidden states), perplexityBatch (several texts in one padded forward pass) and
// decodeStep / LlamaDecodeBatcher (the steps of concurrent generate calls in one batch), on the real stories260K.
// The hidden states are checked through the model's own head: with tied embeddings the logits are h · Eᵀ, so the
// pooled state times Eᵀ must equal the same pooling of predict()'s logits.
import * as path from 'path';
import { LlamaCausalLM, LlamaDecodeBatcher, Tensor } from '../../lib';

const MODEL = path.join(__dirname, '..', '..', 'models', 'stories260K', 'stories260K.bin');
let lm: LlamaCausalLM;
beforeAll(async () => {
  lm = await LlamaCausalLM.fromFile(MODEL);
});

const texts = ['Lily went to the park.', 'Once upon a time, there was a little dog named Max. He liked to run.', 'The end.'];

/** Rows [from, to) of predict()'s logits for `text`, averaged. */
async function pooledLogits(text: string, last: boolean): Promise<Float64Array> {
  const ids = Array.from(lm.tokenizer!.encode(text, { bos: true, eos: false }));
  const V = lm.arch.vocabularySize;
  const logits = ((await lm.predict(new Tensor('int32', [1, ids.length], Int32Array.from(ids)))) as Tensor).data as Float32Array;
  const out = new Float64Array(V);
  const from = last ? ids.length - 1 : 0;
  for (let t = from; t < ids.length; t++) for (let v = 0; v < V; v++) out[v] += logits[t * V + v] / (ids.length - from);
  return out;
}

function times(e: Float32Array, embeddings: Float32Array, D: number, V: number): Float64Array {
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += e[j] * embeddings[v * D + j];
    out[v] = s;
  }
  return out;
}

describe('embed', () => {
  test.each([['mean'], ['last']] as const)('%s pooling: pooled hidden state x Eᵀ equals the same pooling of the logits, for a batch of texts of different lengths', async (pooling) => {
    expect(lm.arch.tieWordEmbeddings).toBe(true);
    const D = lm.arch.hiddenDim;
    const V = lm.arch.vocabularySize;
    const E = lm.tokenEmbedding.variables.find((v) => v.name === 'embeddings')!.value.data as Float32Array;
    const e = await lm.embed(texts, { pooling });
    expect(e.shape).toEqual([texts.length, D]);
    for (let i = 0; i < texts.length; i++) {
      const got = times(e.data.subarray(i * D, (i + 1) * D), E, D, V);
      const want = await pooledLogits(texts[i], pooling === 'last');
      let err = 0;
      let mag = 0;
      for (let v = 0; v < V; v++) {
        err = Math.max(err, Math.abs(got[v] - want[v]));
        mag = Math.max(mag, Math.abs(want[v]));
      }
      expect(err).toBeLessThan(1e-4 * mag);
    }
  });

  test('a batch equals separate calls; normalize gives unit rows; a single text gives one row', async () => {
    const D = lm.arch.hiddenDim;
    const batch = await lm.embed(texts, { normalize: true });
    for (let i = 0; i < texts.length; i++) {
      const one = await lm.embed(texts[i], { normalize: true });
      expect(one.shape).toEqual([1, D]);
      const row = batch.data.subarray(i * D, (i + 1) * D);
      for (let j = 0; j < D; j++) expect(row[j]).toBeCloseTo(one.data[j], 6);
      expect(Math.hypot(...row)).toBeCloseTo(1, 5);
    }
    // token ids work as well as text
    const ids = Array.from(lm.tokenizer!.encode(texts[0], { bos: true, eos: false }));
    expect(Array.from((await lm.embed(ids, { addBos: false })).data)).toEqual(Array.from((await lm.embed(texts[0])).data));
  });

  test('bad input is a QkError naming the argument', async () => {
    await expect(lm.embed([])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('for text') });
    await expect(lm.embed('x', { pooling: 'max' as never })).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('pooling') });
    await expect(lm.embed(['ok', 'word '.repeat(600)])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('text 1') });
  });
});

describe('perplexityBatch', () => {
  test('equals perplexity() of each text alone (padded rows do not leak into real tokens)', async () => {
    const r = await lm.perplexityBatch(texts);
    expect(r).toHaveLength(texts.length);
    for (let i = 0; i < texts.length; i++) {
      const one = await lm.perplexity(texts[i]);
      expect(r[i].tokens).toBe(one.tokens);
      expect(r[i].nll).toBeCloseTo(one.nll, 10);
      expect(r[i].perplexity).toBeCloseTo(one.perplexity, 8);
    }
  });

  test('after int8 quantization as well', async () => {
    const q = await LlamaCausalLM.fromFile(MODEL);
    await q.quantize('int8', { verbose: false });
    const r = await q.perplexityBatch(texts);
    for (let i = 0; i < texts.length; i++) expect(r[i].nll).toBeCloseTo((await q.perplexity(texts[i])).nll, 10);
  });

  test('bad input is a QkError naming the argument', async () => {
    await expect(lm.perplexityBatch([])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('texts') });
    await expect(lm.perplexityBatch(['fine text', ''])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('texts[1]') });
    await expect(lm.perplexityBatch(['word '.repeat(600)])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('texts[0]') });
  });
});

describe('decodeStep and LlamaDecodeBatcher', () => {
  test('decodeStep: rows at different positions give the logits of separate forwardWithCache steps', async () => {
    const prompts = [[1, 403, 407, 290], [1, 20], [1, 403, 407, 290, 300, 301, 302]];
    const next = [500, 403, 7];
    const batchCaches = [];
    const want: Float32Array[] = [];
    for (let i = 0; i < prompts.length; i++) {
      const a = lm.newCache(1);
      const b = lm.newCache(1);
      for (const c of [a, b]) await lm.forwardWithCache(new Tensor('int32', [1, prompts[i].length], Int32Array.from(prompts[i])), c);
      want.push(await lm.forwardWithCache(new Tensor('int32', [1, 1], Int32Array.from([next[i]])), a));
      batchCaches.push(b);
    }
    const got = await lm.decodeStep(next, batchCaches);
    const V = lm.arch.vocabularySize;
    expect(got.length).toBe(3 * V);
    batchCaches.forEach((c, i) => expect(c.length).toBe(prompts[i].length + 1));
    for (let i = 0; i < 3; i++) for (let v = 0; v < V; v += 7) expect(got[i * V + v]).toBeCloseTo(want[i][v], 4);
  });

  test('concurrent generate calls through one batcher: the unbatched tokens, in fewer forward passes', async () => {
    const prompts = ['Once upon a time', 'The cat', 'Lily was', 'One day, a little', 'Sue'];
    const opts = { maxNewTokens: 20, ignoreEos: true };
    const want: string[] = [];
    for (const p of prompts) want.push((await lm.generate(p, opts)).tokens.join(','));
    const sampled = (await lm.generate('The dog', { ...opts, temperature: 0.8, topP: 0.9, seed: 3 })).tokens.join(',');
    const batcher = new LlamaDecodeBatcher({ maxBatch: 4 });
    const got = await Promise.all([
      ...prompts.map((p) => lm.generate(p, { ...opts, batcher })),
      lm.generate('The dog', { ...opts, temperature: 0.8, topP: 0.9, seed: 3, batcher }),
    ]);
    expect(got.map((r) => r.tokens.join(','))).toEqual([...want, sampled]);
    expect(batcher.rows).toBe(6 * 19);
    expect(batcher.steps).toBeLessThan(batcher.rows / 2);
    expect(batcher.steps).toBeGreaterThanOrEqual(Math.ceil(batcher.rows / 4)); // maxBatch holds
  });

  test('bad input is a QkError naming the argument', async () => {
    const a = lm.newCache(1);
    await expect(lm.decodeStep([1, 2], [a])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('tokens') });
    await expect(lm.decodeStep([1, 2], [a, a])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('distinct') });
    await expect(lm.decodeStep([1], [lm.newCache(2)])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('caches') });
    await expect(lm.decodeStep([9999], [a])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('9999') });
    const full = lm.newCache(1, 2);
    full.length = 2;
    await expect(lm.decodeStep([1], [full])).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('full') });
    expect(() => new LlamaDecodeBatcher({ maxBatch: 0 })).toThrow(/maxBatch/);
    await expect(lm.generate('x', { batcher: {} as never })).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('batcher') });
  });
});
