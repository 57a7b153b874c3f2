// GPTQ at the layer level: the calibration hooks capture exactly what the projection multiplies (the Hessian equals
// the closed form of the real inputs, so the result equals the matrix API on those inputs), the runtime form
// rejects hostile stored values, 3-bit bit packing, and dequantization agrees with the fused forward.
import { CorruptFileError, Dense, GPTQConfig, Tensor } from '../../lib';
import { gptqHessian, gptqQuantizeMatrix } from '../../lib/gptq/matrix';
import { calibrationWindows } from '../../lib/gptq/data';
import { pack3, unpack3 } from '../../lib/io/model-safetensors';
import { randomF32 } from '../helpers';
import { embedDense } from '../gptq-model';

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
}

test('pack3 / unpack3: bit i*3.. of a little-endian stream, exact round trip at awkward sizes', () => {
  const rnd = lcg(5);
  for (const n of [0, 1, 2, 3, 7, 8, 9, 17, 33, 127, 129, 1000]) {
    const v = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 8));
    const p = pack3(v);
    expect(p.length).toBe(Math.ceil((n * 3) / 8));
    // independent check through a bit string
    let bits = '';
    for (const x of v) bits += [0, 1, 2].map((b) => (x >> b) & 1).join('');
    for (let i = 0; i < p.length; i++) {
      const byteBits = bits.slice(i * 8, i * 8 + 8).padEnd(8, '0');
      let want = 0;
      for (let b = 0; b < 8; b++) want |= Number(byteBits[b]) << b;
      expect(p[i]).toBe(want);
    }
    expect(Array.from(unpack3(p, n))).toEqual(Array.from(v));
  }
});

test('the calibrated Dense equals the matrix API on the Hessian of its real inputs (hooks capture the real path)', async () => {
  const rnd = lcg(9);
  const tokens = Array.from({ length: 400 }, () => Math.floor(Math.pow(rnd(), 3) * 50)); // skewed: correlated H
  const config = new GPTQConfig({ dataset: [tokens], tokenizer: null, numSamples: 6, sequenceLength: 16, weightBits: 3, groupSize: 8, activationOrder: true });
  const m = await embedDense();
  const W = new Tensor('float32', m.proj.kernel!.value.shape, Float32Array.from(m.proj.kernel!.value.data));
  // the same windows through the embedding, accumulated directly
  const windows = await calibrationWindows([tokens], null, { numSamples: 6, sequenceLength: 16 });
  const emb = [];
  for (const w of windows) emb.push((await m.embed.apply(new Tensor('int32', [1, 16], w))) as Tensor);
  const { hessian, rows } = await gptqHessian(emb);
  expect(rows).toBe(96);
  expect(hessian.some((v) => v !== 0)).toBe(true);
  const want = await gptqQuantizeMatrix(W, hessian, { weightBits: 3, groupSize: 8, activationOrder: true });

  const report = await m.quantize('gptq', { config, verbose: false });
  expect(report.gptq[0].rows).toBe(96);
  expect(report.gptq[0].loss).toBe(want.loss);
  const st = m.proj.gptqState!;
  expect(st.bits).toBe(3);
  expect(Array.from(st.kernel.data)).toEqual(Array.from(want.levels.data));
  expect(Array.from(st.scale.data)).toEqual(Array.from(want.scale.data));
  expect(Array.from(st.gIdx.data)).toEqual(Array.from(want.gIdx.data));

  // the fused (exact weight-only) forward agrees with the dequantized kernel; the default int8-compute path
  // (docs/lowbit-a8.md) quantizes activations and is checked in test/native/lowbit-a8.test.ts / lowbit-pack.test.ts
  const x = new Tensor('float32', [5, 24], randomF32(5 * 24, 3));
  process.env.QK_WEIGHT_ONLY_EXACT = '1';
  let y: Tensor;
  try {
    y = (await m.proj.apply(x)) as Tensor;
  } finally {
    delete process.env.QK_WEIGHT_ONLY_EXACT;
  }
  const dq = (await m.proj.dequantizedKernel()).data;
  expect(Array.from(dq)).toEqual(Array.from(want.dequantized!.data));
  const bias = m.proj.bias!.value.data;
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 10; j++) {
      let s = 0;
      for (let k = 0; k < 24; k++) s += x.data[i * 24 + k] * dq[k * 10 + j];
      expect(Math.abs(y.data[i * 10 + j] - (s + bias[j]))).toBeLessThan(1e-4);
    }
  }
});

test('hostile stored GPTQ values are rejected with CorruptFileError before any compute', async () => {
  const make = () => {
    const d = Dense.fromConfig({ name: 'd', units: 4, dtype: { module: 'keras', class_name: 'GPTQDTypePolicy', config: { mode: 'gptq/3/4', source_name: 'float32' }, registered_name: null } });
    d.build([null, 8]);
    return d;
  };
  const x = new Tensor('float32', [1, 8], new Float32Array(8).fill(1));
  const good = () => make().variables.map((v) => new Tensor(v.value.dtype, v.value.shape, (v.value.data as Float32Array).slice() as never));
  // levels above 7 for 3 bits
  let d = make();
  let t = good();
  (t[1].data as Uint8Array)[3] = 9;
  d.loadOwnVariables(t);
  await expect(d.apply(x)).rejects.toThrow(CorruptFileError);
  // g_idx out of range / not an integer
  for (const bad of [2, -1, 0.5, NaN]) {
    d = make();
    t = good();
    (t[4].data as Float32Array)[5] = bad;
    d.loadOwnVariables(t);
    await expect(d.apply(x)).rejects.toThrow(/g_idx/);
  }
  // non-finite scale
  d = make();
  t = good();
  (t[2].data as Float32Array)[0] = Infinity;
  d.loadOwnVariables(t);
  await expect(d.apply(x)).rejects.toThrow(/finite GPTQ scales/);
  // an arbitrary (non-contiguous) g_idx still computes correctly: (q - z) * s per input's own group
  d = make();
  t = good();
  const lv = t[1].data as Uint8Array;
  for (let i = 0; i < lv.length; i++) lv[i] = i % 8;
  const gi = t[4].data as Float32Array;
  gi.set([1, 0, 1, 0, 1, 0, 1, 0]);
  const sc = t[2].data as Float32Array;
  sc.set([0.5, 2, 0.5, 2, 0.5, 2, 0.5, 2]);
  d.loadOwnVariables(t);
  const y = ((await d.apply(x)) as Tensor).data;
  for (let o = 0; o < 4; o++) {
    let s = 0;
    for (let k = 0; k < 8; k++) s += lv[o * 8 + k] * sc[o * 2 + gi[k]];
    expect(y[o]).toBeCloseTo(s, 4);
  }
});
