// Batched generation: an array of prompts is decoded together (one weight pass per step for every active row) and
// must give, row by row, exactly what separate generate() calls give — greedy and seeded sampling, rows of
// different prompt lengths that stop at different steps (EOS, stop strings, maxNewTokens, the context limit).
import * as path from 'path';
import { GenerateResult, LlamaCausalLM } from '../../lib';

const MODEL = path.join(__dirname, '..', '..', 'models', 'stories260K', 'stories260K.bin');
const prompts = ['Once upon a time', 'The cat', 'Lily was very', 'One day, a little boy named Tom went to the park', 'She'];

describe('LlamaCausalLM.generate with an array of prompts', () => {
  let lm: LlamaCausalLM;
  beforeAll(async () => {
    lm = await LlamaCausalLM.fromFile(MODEL);
  });

  const cases: Array<[string, Record<string, unknown>]> = [
    ['greedy', { maxNewTokens: 48 }],
    ['seeded sampling', { maxNewTokens: 48, temperature: 0.9, topP: 0.9, seed: 11 }],
    ['top-k sampling with a stop string', { maxNewTokens: 64, temperature: 1, topK: 20, seed: 3, stop: ['.'] }],
    ['up to EOS', { maxNewTokens: 250 }],
  ];
  test.each(cases)('%s: every row equals its own generate() call', async (_name, opts) => {
    const seq: GenerateResult[] = [];
    for (const p of prompts) seq.push(await lm.generate(p, opts));
    const seen: Array<number[]> = prompts.map(() => []);
    const bat = await lm.generate(prompts, { ...opts, onToken: (c, i) => seen[i].push(c.token) });
    expect(bat).toHaveLength(prompts.length);
    bat.forEach((r, i) => {
      expect(r.tokens).toEqual(seq[i].tokens);
      expect(r.text).toBe(seq[i].text);
      expect(r.stopReason).toBe(seq[i].stopReason);
      expect(r.promptTokens).toEqual(seq[i].promptTokens);
      expect(seen[i]).toEqual(r.tokens);
    });
    // the rows really end at different points (otherwise this would not test independent stopping)
    if (opts.stop || opts.maxNewTokens === 250) expect(new Set(bat.map((r) => r.tokens.length)).size).toBeGreaterThan(1);
    else expect(bat.every((r) => r.tokens.length === 48)).toBe(true);
  });

  test('a row that reaches the context length stops with "context" while the others go on', async () => {
    const ctx = lm.arch.maxSequenceLength;
    const long = Array.from({ length: ctx - 3 }, (_, i) => 1 + (i % 400));
    const opts = { maxNewTokens: 10, ignoreEos: true };
    const [a, b] = await lm.generate([long, 'Once upon a time'], opts);
    const a1 = await lm.generate(long, opts);
    const b1 = await lm.generate('Once upon a time', opts);
    expect(a.stopReason).toBe('context');
    expect(a.tokens).toEqual(a1.tokens);
    expect(b.tokens).toEqual(b1.tokens);
    expect(b.tokens).toHaveLength(10);
  });

  test('token-id prompts, an empty array, and bad options', async () => {
    const ids = (await lm.generate('The dog', { maxNewTokens: 1 })).promptTokens;
    const [r] = await lm.generate([ids], { maxNewTokens: 12 });
    expect(r.tokens).toEqual((await lm.generate(ids, { maxNewTokens: 12 })).tokens);
    // an empty array is an empty token-id prompt, not zero prompts
    await expect(lm.generate([], {})).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('at least one prompt token') });
    await expect(lm.generate(['a', 'b'], { onToken: 5 as unknown as () => void })).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringContaining('onToken') });
    await expect(lm.generate(['a', []], {})).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
  });

  test('an aborted batch rejects with QK_ABORTED', async () => {
    const ac = new AbortController();
    const p = lm.generate(prompts, { maxNewTokens: 200, ignoreEos: true, signal: ac.signal, onToken: (_c, i) => i === 0 && ac.abort() });
    await expect(p).rejects.toMatchObject({ code: 'QK_ABORTED' });
  });
});
