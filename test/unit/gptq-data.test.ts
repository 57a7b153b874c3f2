// Calibration windows (Keras get_dataloader, spec §3.3): shapes, strategies, determinism, tiling, EOS, tokenizer
// forms, and errors.
import { calibrationWindows, seededRandom, tokenizerFunction } from '../../lib/gptq/data';
import { InvalidArgumentError, Tensor } from '../../lib';

const stream = Array.from({ length: 1000 }, (_, i) => i);

describe('calibrationWindows', () => {
  test('strided windows: count, length, contiguous slices of the stream, deterministic across calls', async () => {
    const a = await calibrationWindows([stream], null, { numSamples: 7, sequenceLength: 32 });
    const b = await calibrationWindows([stream], null, { numSamples: 7, sequenceLength: 32 });
    expect(a.length).toBe(7);
    for (const w of a) {
      expect(w).toBeInstanceOf(Int32Array);
      expect(w.length).toBe(32);
      for (let i = 1; i < 32; i++) expect(w[i]).toBe(w[i - 1] + 1); // a real window of the stream
    }
    expect(a.map((w) => w[0])).toEqual(b.map((w) => w[0]));
    // evenly spaced starts (mod the range), stride = floor((maxStart + 1) / n)
    const stride = Math.floor((1000 - 32 + 1) / 7);
    for (let i = 1; i < 7; i++) expect((a[i][0] - a[i - 1][0] + 969) % 969).toBe(stride);
    // another seed moves the offset
    const c = await calibrationWindows([stream], null, { numSamples: 7, sequenceLength: 32, seed: 7 });
    expect(c.map((w) => w[0])).not.toEqual(a.map((w) => w[0]));
  });

  test('linspace and random strategies', async () => {
    const l = await calibrationWindows([stream], null, { numSamples: 5, sequenceLength: 10, strategy: 'linspace' });
    expect(l.map((w) => w[0])).toEqual([0, 247, 495, 742, 990]);
    const r1 = await calibrationWindows([stream], null, { numSamples: 5, sequenceLength: 10, strategy: 'random', seed: 3 });
    const r2 = await calibrationWindows([stream], null, { numSamples: 5, sequenceLength: 10, strategy: 'random', seed: 3 });
    expect(r1.map((w) => w[0])).toEqual(r2.map((w) => w[0]));
    for (const w of r1) expect(w[0]).toBeLessThanOrEqual(990);
  });

  test('a short stream is tiled; one exact window has offset 0', async () => {
    const w = await calibrationWindows([[1, 2, 3, 4]], null, { numSamples: 3, sequenceLength: 4 });
    expect(w.length).toBe(3);
    for (const x of w) expect([...x].every((v) => v >= 1 && v <= 4)).toBe(true);
    const one = await calibrationWindows([[5, 6, 7]], null, { numSamples: 1, sequenceLength: 3 });
    expect(Array.from(one[0])).toEqual([5, 6, 7]);
  });

  test('strings go through tokenize / encode / a function; results may be arrays, typed arrays, Tensors or { ids }', async () => {
    const split = (s: string) => s.split(' ').map((w) => w.length);
    const texts = ['a bb ccc', 'dddd eeeee'];
    const want = [1, 2, 3, 4, 5];
    const forms: unknown[] = [
      { tokenize: split },
      { encode: (s: string) => Int32Array.from(split(s)) },
      (s: string) => new Tensor('int32', [split(s).length], Int32Array.from(split(s))),
      { encode: async (s: string) => ({ ids: split(s) }) },
      { tokenize: (s: string) => ({ input_ids: [split(s)] }) },
    ];
    for (const tok of forms) {
      const w = await calibrationWindows(texts, tok, { numSamples: 1, sequenceLength: 5 });
      expect(Array.from(w[0])).toEqual(want);
    }
  });

  test('EOS between documents; async iterables', async () => {
    async function* gen() {
      yield [1, 2];
      yield [3];
    }
    const w = await calibrationWindows(gen(), null, { numSamples: 1, sequenceLength: 4, eosId: 9 });
    expect(Array.from(w[0])).toEqual([1, 2, 9, 3]);
  });

  test('errors name the problem', async () => {
    await expect(calibrationWindows('text', null)).rejects.toThrow(InvalidArgumentError);
    await expect(calibrationWindows(42, null)).rejects.toThrow(/iterable of strings or token arrays/);
    await expect(calibrationWindows([], null)).rejects.toThrow('Provided dataset is empty.');
    await expect(calibrationWindows([[1, 2]], null, { sequenceLength: 3 })).rejects.toThrow('Not enough tokens to form one sample of length 3 (have 2).');
    await expect(calibrationWindows(['x'], null, { sequenceLength: 1 })).rejects.toThrow(/requires a tokenizer/);
    await expect(calibrationWindows([[1, -2, 3]], null, { sequenceLength: 1 })).rejects.toThrow(/non-negative integer token ids/);
    await expect(calibrationWindows([[1.5]], null, { sequenceLength: 1 })).rejects.toThrow(/non-negative integer token ids/);
    await expect(calibrationWindows([[1]], null, { sequenceLength: 1, strategy: 'nope' as never })).rejects.toThrow(/strategy/);
    await expect(calibrationWindows([[1]], null, { sequenceLength: 0 })).rejects.toThrow(/sequenceLength/);
    expect(() => tokenizerFunction({})).toThrow(/tokenize\(text\) or encode\(text\)/);
  });

  test('seededRandom is deterministic and in [0, 1)', () => {
    const a = seededRandom(1);
    const b = seededRandom(1);
    for (let i = 0; i < 100; i++) {
      const x = a();
      expect(x).toBe(b());
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});
