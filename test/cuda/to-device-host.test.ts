// Layer.to() / Model.to() on the host (runs in CI, no GPU):
//  * device strings are validated (QK_INVALID_ARGUMENT), and without a usable device to('cuda') rejects with
//    QK_UNSUPPORTED saying why and how to fix it, leaving everything on the CPU;
//  * with QK_CUDA_EMULATE=1 (an emulated device: host memory + the CPU kernels) the plumbing of to('cuda') ->
//    predict / generate -> quantize / assign on the device -> to('cpu') runs end to end. This is plumbing
//    coverage only: the emulated device runs the CPU kernels, so results must be bit-identical to the CPU, and no
//    CUDA kernel is exercised (test/cuda/to-device.test.ts does that on a real device).
import * as path from 'path';
import {
  AbsMaxQuantizer, cudaAvailable, Dense, EinsumDense, GPTQConfig, Int4QuantizationConfig, Int8QuantizationConfig, LlamaCausalLM, Quantizer,
  ResidentProjection, Sequential, Tensor, capabilities,
} from '../../lib';
import { DeviceQueue } from '../../lib/cuda/queue';
import { loadNative } from '../../lib/native/load';
import { randomF32 } from '../helpers';

const MODEL = path.join(__dirname, '..', '..', 'models', 'stories260K', 'stories260K.bin');

function dense(units: number, inDim: number, seed: number): Dense {
  const d = new Dense({ units, seed, biasInitializer: 'ones' });
  d.build([null, inDim]);
  return d;
}

async function run(layer: Dense, x: Tensor): Promise<Float32Array> {
  return ((await layer.apply(x)) as Tensor<'float32'>).data;
}

describe('device strings and devices that are not there', () => {
  test.each([['gpu'], ['cuda:x'], ['cuda:-1'], ['CUDA'], ['cuda:'], [5], [null], [undefined]])('%p -> QK_INVALID_ARGUMENT', async (bad) => {
    const d = dense(4, 8, 1);
    await expect(d.to(bad as never)).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    const m = new Sequential({ layers: [dense(4, 8, 2)] });
    await expect(m.to(bad as never)).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    expect(d.device).toBe('cpu');
  });

  (cudaAvailable() ? test.skip : test)("to('cuda') without a device: QK_UNSUPPORTED with the reason and the fix", async () => {
    const d = dense(4, 8, 3);
    const c = capabilities().cuda;
    const err = (await d.to('cuda').then(() => null, (e: unknown) => e)) as { code: string; message: string };
    expect(err).toMatchObject({ code: 'QK_UNSUPPORTED' });
    if (!c.compiled) {
      expect(err.message).toMatch(/built without CUDA/);
      expect(err.message).toMatch(/QK_CUDA=on/);
    } else {
      expect(err.message).toMatch(/no usable CUDA driver or device|no CUDA device found/);
      expect(err.message).toMatch(/NVIDIA driver/);
    }
    expect(d.device).toBe('cpu');
    const m = new Sequential({ layers: [dense(4, 8, 4)] });
    await expect(m.to('cuda:1')).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    expect(m.device).toBe('cpu');
    // to('cpu') is always fine
    await expect(d.to('cpu')).resolves.toBe(d);
  });

  test('the resident-weight ops check their arguments before any device work', async () => {
    const n = loadNative();
    const x = new Float32Array(4);
    const y = new Float32Array(4);
    const params = new Float64Array(8);
    expect(() => n.cudaDenseResident(0, 0, x, 2, 2, 2, null as never, null, null, null, null, params, y)).toThrow(
      expect.objectContaining({ code: 'QK_INVALID_ARGUMENT', message: expect.stringMatching(/CUDA buffer for w/) }),
    );
    expect(() => n.cudaDenseResident(0, 7, x, 2, 2, 2, null as never, null, null, null, null, params, y)).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
    expect(() => n.cudaDenseResident(0, 0, x, 3, 2, 2, null as never, null, null, null, null, params, y)).toThrow(expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }));
    expect(() => n.cudaRepackNk64({} as never, 4, 4, {} as never)).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
    expect(() => n.cudaDenseF32(0, x, 2, 2, 2, new Float32Array(3), null, y)).toThrow(expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }));
    expect(() => n.cudaEnqueue({} as never, 6, [], params)).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT', message: expect.stringMatching(/queue/) }));
    expect(() => n.cudaQueueUpload(null, null as never, x)).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
    await expect((async () => n.cudaQueueDownload(undefined, null, null))()).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    if (!cudaAvailable()) expect(() => n.cudaQueueStream(0)).toThrow(expect.objectContaining({ code: 'QK_UNSUPPORTED' }));
  });
});

describe('the emulated device (QK_CUDA_EMULATE=1): plumbing of to() -> predict / generate -> to(cpu)', () => {
  const saved = process.env.QK_CUDA_EMULATE;
  beforeAll(() => {
    process.env.QK_CUDA_EMULATE = '1';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.QK_CUDA_EMULATE;
    else process.env.QK_CUDA_EMULATE = saved;
  });

  const modes: Array<[string, (d: Dense) => Promise<void>]> = [
    ['float32', async () => undefined],
    ['int8 W8A8', (d) => d.quantize('int8')],
    ['int8 weight-only', (d) => d.quantize('int8', { config: new Int8QuantizationConfig({ activationQuantizer: null }) })],
    ['int4 per-channel', (d) => d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: -1 }) })],
    ['int4 per-channel W4A8', (d) => d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: -1, activationQuantizer: new AbsMaxQuantizer() }) })],
    ['int4 grouped', (d) => d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 16 }) })],
    ['float8', (d) => d.quantize('float8')],
  ];
  test.each(modes)('%s Dense: the same result on cuda:0 and after to(cpu)', async (_name, prepare) => {
    const d = dense(24, 40, 11);
    await prepare(d);
    const x = new Tensor('float32', [3, 5, 40], randomF32(600, 5));
    const cpu = await run(d, x);
    await expect(d.to('cuda')).resolves.toBe(d);
    expect(d.device).toBe('cuda:0');
    const dev = await run(d, x);
    expect(Array.from(dev)).toEqual(Array.from(cpu));
    await d.to('cpu');
    expect(d.device).toBe('cpu');
    expect(Array.from(await run(d, x))).toEqual(Array.from(cpu));
  });

  test.each([
    ['abc,cde->abde', [5, 12], [null, 4, 6], 'int8'],
    ['abc,bcd->abd', [3, 10], [3, 7], null],
    ['abc,bcd->abd', [3, 10], [3, 7], 'int8'],
    ['abc,cde->abde', [5, 12], [null, 4, 6], 'int4'],
    ['btnh,nhd->btd', [3, 4, 5], [3, 6], 'float8'],
  ] as Array<[string, number[], Array<number | null>, 'int8' | 'int4' | 'float8' | null]>)('EinsumDense %s (%p, %p, %s): the same result on cuda:0', async (equation, inShape, outputShape, mode) => {
    const e = new EinsumDense({ equation, outputShape: outputShape as number[], biasAxes: equation === 'abc,cde->abde' ? 'e' : undefined, seed: 3 });
    const x = new Tensor('float32', [2, ...inShape], randomF32(2 * inShape.reduce((a, b) => a * b, 1), 8));
    await e.apply(x);
    if (mode) await e.quantize(mode);
    const cpu = ((await e.apply(x)) as Tensor<'float32'>).data;
    await e.to('cuda');
    expect(e.device).toBe('cuda:0');
    expect(Array.from(((await e.apply(x)) as Tensor<'float32'>).data)).toEqual(Array.from(cpu));
    await e.to('cpu');
  });

  test('quantizing and assigning weights on the device re-upload them', async () => {
    const onDev = dense(16, 32, 21);
    const twin = dense(16, 32, 21);
    const x = new Tensor('float32', [4, 32], randomF32(128, 6));
    await onDev.to('cuda');
    expect(Array.from(await run(onDev, x))).toEqual(Array.from(await run(twin, x)));
    await onDev.quantize('int8');
    await twin.quantize('int8');
    const yq = await run(onDev, x);
    expect(Array.from(yq)).toEqual(Array.from(await run(twin, x)));
    // a stale float copy on the device would give the float result, which differs from the int8 one
    const fl = dense(16, 32, 21);
    expect(Array.from(yq)).not.toEqual(Array.from(await run(fl, x)));
    // assigning a variable (here the bias) re-uploads too
    const b = new Tensor('float32', [16], new Float32Array(16).fill(3));
    onDev.bias!.assign(b);
    twin.bias!.assign(b);
    expect(Array.from(await run(onDev, x))).toEqual(Array.from(await run(twin, x)));
    expect(onDev.device).toBe('cuda:0');
    // every replaced copy was freed (float, int8 before the bias change), and to('cpu') frees the current one at once
    const dispose = jest.spyOn(ResidentProjection.prototype, 'dispose');
    await onDev.to('cpu');
    expect(dispose).toHaveBeenCalledTimes(1);
    dispose.mockRestore();
  });

  test('nested models move with their layers', async () => {
    const inner = new Sequential({ layers: [dense(6, 8, 41)] });
    const outer = new Sequential({ layers: [inner, dense(3, 6, 42)] });
    const x = new Tensor('float32', [2, 8], randomF32(16, 9));
    const cpu = ((await outer.predict(x)) as Tensor).data;
    await outer.to('cuda');
    expect([outer.device, inner.device, inner.layers[inner.layers.length - 1].device]).toEqual(['cuda:0', 'cuda:0', 'cuda:0']);
    expect(Array.from(((await outer.predict(x)) as Tensor).data)).toEqual(Array.from(cpu));
    await outer.to('cpu');
    expect([outer.device, inner.device]).toEqual(['cpu', 'cpu']);
  });

  test('a layer without a device path fails the move and nothing moves (rollback)', async () => {
    class Halving extends AbsMaxQuantizer {}
    const a = dense(8, 8, 31);
    const b = dense(8, 8, 32);
    await b.quantize('int8', { config: new Int8QuantizationConfig({ activationQuantizer: new Halving() as Quantizer }) });
    const m = new Sequential({ layers: [a, b] });
    await expect(m.to('cuda')).rejects.toMatchObject({ code: 'QK_UNSUPPORTED', message: expect.stringMatching(/custom quantizer/) });
    expect([m.device, a.device, b.device]).toEqual(['cpu', 'cpu', 'cpu']);
    await expect(m.to('cuda:1')).rejects.toMatchObject({ code: 'QK_UNSUPPORTED', message: expect.stringMatching(/emulates one device/) });
  });

  test('Llama decode with activations and KV cache on the (emulated) device; caches move between device and host steps', async () => {
    const lm = await LlamaCausalLM.fromFile(MODEL);
    const ref = await LlamaCausalLM.fromFile(MODEL);
    const prompt = new Tensor('int32', [1, 5], Int32Array.from([1, 403, 407, 261, 378]));
    const step = (t: number) => new Tensor('int32', [1, 1], Int32Array.from([t]));
    const attention = jest.spyOn(DeviceQueue.prototype, 'attention');
    const c = lm.newCache(1);
    const r = ref.newCache(1);
    await lm.to('cuda');
    const seq: Array<[number, 'cuda' | 'cpu']> = [[299, 'cuda'], [300, 'cpu'], [301, 'cpu'], [302, 'cuda'], [303, 'cuda']];
    expect(Array.from(await lm.forwardWithCache(prompt, c))).toEqual(Array.from(await ref.forwardWithCache(prompt, r)));
    expect(attention).toHaveBeenCalledTimes(lm.decoderBlocks.length);
    for (const [tok, where] of seq) {
      if (lm.device !== (where === 'cuda' ? 'cuda:0' : 'cpu')) await lm.to(where);
      expect(Array.from(await lm.forwardWithCache(step(tok), c))).toEqual(Array.from(await ref.forwardWithCache(step(tok), r)));
    }
    // predict(): every row's blocks on the device with a fresh cache
    await lm.to('cuda');
    const before = attention.mock.calls.length;
    const ids = new Tensor('int32', [2, 4], Int32Array.from([1, 403, 407, 261, 1, 299, 300, 301]));
    expect(Array.from(((await lm.predict(ids)) as Tensor).data)).toEqual(Array.from(((await ref.predict(ids)) as Tensor).data));
    expect(attention.mock.calls.length - before).toBe(2 * lm.decoderBlocks.length);
    // host arrays of the cache equal the reference's after a host step syncs them
    await lm.to('cpu');
    const [a] = await Promise.all([lm.decodeStep([7], [c]), Promise.resolve()]);
    expect(Array.from(a)).toEqual(Array.from(await ref.decodeStep([7], [r])));
    expect(Array.from(c.layers[2].k)).toEqual(Array.from(r.layers[2].k));
    expect(attention.mock.calls.length).toBe(lm.decoderBlocks.length * 6); // prompt + 3 device steps + 2 predict rows
    attention.mockRestore();
    await Promise.all([lm.dispose(), ref.dispose()]);
  });

  test('LlamaCausalLM (stories260K): greedy generate on cuda equals cpu; quantize on the device; to(cpu); dispose', async () => {
    const lm = await LlamaCausalLM.fromFile(MODEL);
    const opts = { maxNewTokens: 12 };
    const cpu = await lm.generate('Once upon a time', opts);
    await lm.to('cuda');
    expect(lm.device).toBe('cuda:0');
    const q = lm.decoderBlocks[0].sublayers.query;
    expect(q.device).toBe('cuda:0');
    expect(lm.tokenEmbedding.device).toBe('cuda:0'); // the logits projection; lookups stay on the host
    const dev = await lm.generate('Once upon a time', opts);
    expect(dev.tokens).toEqual(cpu.tokens);
    // quantize while on the device (exclusive with generate via the model gate), then compare with a CPU twin
    const twin = await LlamaCausalLM.fromFile(MODEL);
    await Promise.all([lm.quantize('int8', { verbose: false }), twin.quantize('int8', { verbose: false })]);
    const [a, b] = await Promise.all([lm.generate('Lily went', opts), twin.generate('Lily went', opts)]);
    expect(a.tokens).toEqual(b.tokens);
    expect(q.device).toBe('cuda:0');
    // to() is exclusive: a move requested while generate() runs waits for it (a move in the middle would free the
    // weights that generate() is reading and make it fail)
    const inflight = lm.generate('Lily went', { maxNewTokens: 24 });
    const moving = lm.to('cpu');
    const [r] = await Promise.all([inflight, moving]);
    expect(r.tokens.slice(0, opts.maxNewTokens)).toEqual(b.tokens);
    expect([lm.device, q.device]).toEqual(['cpu', 'cpu']);
    expect((await lm.generate('Lily went', opts)).tokens).toEqual(b.tokens);
    // GPTQ with the model on the (emulated) device: calibration forwards run there, the calibrated weights are
    // re-uploaded; the emulated device runs the CPU kernels, so the result is the CPU's exactly
    const tokens = Array.from({ length: 200 }, (_, i) => 2 + ((i * 37 + ((i * i) % 11)) % 500));
    const gq = () => new GPTQConfig({ dataset: [tokens], tokenizer: null, numSamples: 2, sequenceLength: 16, weightBits: 4, groupSize: 32 });
    const g1 = await LlamaCausalLM.fromFile(MODEL);
    const g2 = await LlamaCausalLM.fromFile(MODEL);
    await g1.to('cuda');
    await g1.quantize('gptq', { config: gq(), verbose: false });
    await g2.quantize('gptq', { config: gq(), verbose: false });
    expect(g1.decoderBlocks[1].sublayers.down.quantizationMode).toBe('gptq');
    expect(g1.decoderBlocks[1].sublayers.down.device).toBe('cuda:0');
    const [r1, r2] = await Promise.all([g1.generate('Lily went', opts), g2.generate('Lily went', opts)]);
    expect(r1.tokens).toEqual(r2.tokens);
    await Promise.all([g1.dispose(), g2.dispose()]);
    await lm.to('cuda');
    await lm.dispose();
    await expect(lm.to('cpu')).rejects.toMatchObject({ code: 'QK_DISPOSED' });
    await twin.dispose();
  }, 20000);
});
