// Device-resident weights on a real CUDA device (skipped, with the reason, where there is none):
//  * the float32 SIMT GEMM (cudaDenseF32) vs the CPU float Dense over a size sweep;
//  * every Dense storage format after layer.to('cuda') vs the same layer on the CPU, within the tolerance table
//    below, over M = 1 (decode), 3, 17 and 70 rows, and to('cpu') returning the device memory;
//  * GPTQ runtime weights through ResidentProjection vs the CPU fused GPTQ kernel;
//  * LlamaCausalLM (stories260K) end to end: greedy generate on cuda equals cpu token for token (float32 and int8),
//    logits within tolerance, and quantize('gptq') on a model on the device.
import * as path from 'path';
import {
  AbsMaxQuantizer, capabilities, cudaAvailable, cudaDenseF32, cudaDeviceHas, cudaMemoryStats, Dense, denseForward, denseGptq, EinsumDense,
  GPTQConfig, Int4QuantizationConfig, Int8QuantizationConfig, LlamaCausalLM, packGptqRuntime, ResidentProjection, Tensor,
} from '../../lib';
import { randomF32 } from '../helpers';

const MODEL = path.join(__dirname, '..', '..', 'models', 'stories260K', 'stories260K.bin');
const caps = capabilities();
const device = cudaAvailable() && process.env.QK_CUDA_EMULATE !== '1';
if (!device) {
  // eslint-disable-next-line no-console
  console.log(
    `CUDA to(device) tests skipped: ${caps.cuda.compiled ? `no CUDA device (${caps.cuda.error ?? 'none found'})` : 'quantkit was built without CUDA'}`,
  );
}

/** max |got - want| / max |want|: the error relative to the output's scale. */
function relErr(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) return Infinity;
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / (m + 1e-12);
}

const fp8Mma = device && cudaDeviceHas('fp8Mma');
/**
 * Tolerance table (relative to max |y|) of a Dense on the device vs the same layer on the CPU:
 *  - float32: float32 rounding, another summation order;
 *  - int8 W8A8 and int4 W4A8 (run as W8A8 over the unpacked levels): the int8 GEMM is bit-exact with dense_w8a8;
 *  - int8 / int4 weight-only: the device multiplies by 1 / scale where the CPU divides, and from 16 rows the CPU's
 *    int4 paths quantize activations to int8 (lib/ops/lowbit-a8.ts) where the device keeps them in float32;
 *  - float8: fp8 Tensor Cores (sm_89+) differ in accumulation order only; below sm_89 the device runs the
 *    dequantized weights in float32 while the CPU quantizes x to e4m3 (up to 2^-4 relative per element).
 */
const MODES: Array<[string, (d: Dense) => Promise<void>, number]> = [
  ['float32', async () => undefined, 1e-5],
  ['int8 W8A8', (d) => d.quantize('int8'), 0],
  ['int8 weight-only', (d) => d.quantize('int8', { config: new Int8QuantizationConfig({ activationQuantizer: null }) }), 1e-5],
  ['int4 per-channel', (d) => d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: -1 }) }), 2e-2],
  ['int4 per-channel W4A8', (d) => d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: -1, activationQuantizer: new AbsMaxQuantizer() }) }), 0],
  ['int4 grouped', (d) => d.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 32 }) }), 2e-2],
  ['float8', (d) => d.quantize('float8'), fp8Mma ? 1e-4 : 8e-2],
];

(device ? describe : describe.skip)('device-resident weights on a CUDA device', () => {
  test('cudaDenseF32 vs the CPU float Dense over a size sweep', async () => {
    for (const [M, N, K] of [[1, 1, 1], [1, 300, 257], [3, 64, 64], [17, 130, 45], [70, 513, 129], [256, 256, 1024]]) {
      const x = randomF32(M * K, M + N, 1);
      const w = randomF32(K * N, K, 0.2);
      const bias = randomF32(N, 3);
      const want = (await denseForward(new Tensor('float32', [M, K], x), { format: 'float32', kernel: w }, N, bias)).data;
      const got = await cudaDenseF32(x, w, M, N, K, { bias });
      expect(relErr(got, want)).toBeLessThanOrEqual(1e-5);
    }
  });

  test.each(MODES)('%s Dense on cuda vs cpu (tolerance %p)', async (_name, prepare, tol) => {
    const d = new Dense({ units: 200, seed: 5, biasInitializer: 'ones' });
    d.build([null, 160]);
    await prepare(d);
    const before = cudaMemoryStats(0).inUseBytes;
    for (const M of [1, 3, 17, 70]) {
      const x = new Tensor('float32', [M, 160], randomF32(M * 160, M));
      await d.to('cpu');
      const cpu = ((await d.apply(x)) as Tensor<'float32'>).data;
      await d.to('cuda');
      expect(d.device).toBe('cuda:0');
      const dev = ((await d.apply(x)) as Tensor<'float32'>).data;
      expect(relErr(dev, cpu)).toBeLessThanOrEqual(tol);
    }
    expect(cudaMemoryStats(0).inUseBytes).toBeGreaterThan(before);
    await d.to('cpu');
    expect(cudaMemoryStats(0).inUseBytes).toBe(before);
  });

  test.each([
    ['abc,bcd->abd', [3, 64], [3, 48], null, 1e-5],
    ['abc,bcd->abd', [3, 64], [3, 48], 'int8', 0],
    ['abc,cde->abde', [9, 96], [null, 4, 20], 'int4', 2e-2],
  ] as Array<[string, number[], Array<number | null>, 'int8' | 'int4' | null, number]>)('EinsumDense %s %p -> %p (%s) on cuda vs cpu', async (equation, inShape, outputShape, mode, tol) => {
    const e = new EinsumDense({ equation, outputShape: outputShape as number[], seed: 3 });
    const x = new Tensor('float32', [2, ...inShape], randomF32(2 * inShape.reduce((a, b) => a * b, 1), 8));
    await e.apply(x);
    if (mode) await e.quantize(mode);
    const cpu = ((await e.apply(x)) as Tensor<'float32'>).data;
    await e.to('cuda');
    expect(relErr(((await e.apply(x)) as Tensor<'float32'>).data, cpu)).toBeLessThanOrEqual(tol);
    await e.to('cpu');
  });

  test.each([[2], [3], [4], [8]])('GPTQ %p-bit runtime weights: ResidentProjection vs the CPU kernel', async (bits) => {
    const N = 96;
    const K = 128;
    const group = 32;
    const levels = new Uint8Array(N * K).map((_, i) => (i * 7 + (i >> 5)) % (1 << bits));
    const perm = Int32Array.from({ length: K }, (_, i) => (i * 37) % K);
    const kernel = await packGptqRuntime(levels, N, K, bits as 2 | 3 | 4 | 8, perm);
    const G = K / group;
    const scale = randomF32(G * N, 9, 0.05).map((v) => Math.abs(v) + 0.01);
    const zero = new Uint8Array(G * N).map((_, i) => i % (1 << bits));
    const bias = randomF32(N, 4);
    const p = await ResidentProjection.upload({ format: 'gptq', bits: bits as 2 | 3 | 4 | 8, kernel, scale, zero, groupSize: group, perm }, K, N, bias, 0);
    for (const M of [1, 5, 33]) {
      const x = randomF32(M * K, M);
      const xp = new Float32Array(M * K);
      for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) xp[i * K + k] = x[i * K + perm[k]];
      const want = (await denseGptq(new Tensor('float32', [M, K], xp), { bits: bits as 2 | 3 | 4 | 8, kernel, scale, zero, groupSize: group }, N, bias, { weightOnlyExact: true })).data;
      expect(relErr(await p.forward(x, M), want)).toBeLessThanOrEqual(1e-5);
    }
    p.dispose();
  });

  test('Llama decode with activations and KV cache on the device, mixed with host steps, vs the CPU', async () => {
    const lm = await LlamaCausalLM.fromFile(MODEL);
    const ref = await LlamaCausalLM.fromFile(MODEL);
    const c = lm.newCache(1);
    const r = ref.newCache(1);
    await lm.to('cuda');
    const prompt = new Tensor('int32', [1, 5], Int32Array.from([1, 403, 407, 261, 378]));
    expect(relErr(await lm.forwardWithCache(prompt, c), await ref.forwardWithCache(prompt, r))).toBeLessThanOrEqual(1e-4);
    for (const [tok, where] of [[299, 'cuda'], [300, 'cpu'], [301, 'cuda'], [302, 'cuda']] as Array<[number, 'cuda' | 'cpu']>) {
      await lm.to(where);
      const ids = new Tensor('int32', [1, 1], Int32Array.from([tok]));
      expect(relErr(await lm.forwardWithCache(ids, c), await ref.forwardWithCache(ids, r))).toBeLessThanOrEqual(1e-4);
    }
    await Promise.all([lm.dispose(), ref.dispose()]);
  });

  test('LlamaCausalLM (stories260K): generate on cuda equals cpu (float32, int8), logits within tolerance, GPTQ on the device', async () => {
    const cpu = await LlamaCausalLM.fromFile(MODEL);
    const dev = await LlamaCausalLM.fromFile(MODEL);
    await dev.to('cuda');
    const prompt = 'Once upon a time';
    const opts = { maxNewTokens: 16 };
    expect((await dev.generate(prompt, opts)).tokens).toEqual((await cpu.generate(prompt, opts)).tokens);
    const ids = new Tensor('int32', [1, 6], Int32Array.from([1, 403, 407, 261, 378, 299]));
    const lc = ((await cpu.predict(ids)) as Tensor<'float32'>).data;
    const ld = ((await dev.predict(ids)) as Tensor<'float32'>).data;
    expect(relErr(ld, lc)).toBeLessThanOrEqual(1e-4);
    await Promise.all([cpu.quantize('int8', { verbose: false }), dev.quantize('int8', { verbose: false })]);
    expect((await dev.generate(prompt, opts)).tokens).toEqual((await cpu.generate(prompt, opts)).tokens);
    // GPTQ with the model on the device: the Hessians and the sweep run there (the float forwards too)
    const tokens = Array.from({ length: 400 }, (_, i) => 2 + ((i * 37 + ((i * i) % 11)) % 500));
    const gq = () => new GPTQConfig({ dataset: [tokens], tokenizer: null, numSamples: 4, sequenceLength: 16, weightBits: 8, groupSize: 32 });
    const cpu2 = await LlamaCausalLM.fromFile(MODEL);
    const dev2 = await LlamaCausalLM.fromFile(MODEL);
    await dev2.to('cuda');
    await cpu2.quantize('gptq', { config: gq(), verbose: false });
    await dev2.quantize('gptq', { config: gq(), verbose: false });
    expect(dev2.decoderBlocks[0].sublayers.query.device).toBe('cuda:0');
    const g2 = ((await dev2.predict(ids)) as Tensor<'float32'>).data;
    const c2 = ((await cpu2.predict(ids)) as Tensor<'float32'>).data;
    expect(relErr(g2, c2)).toBeLessThanOrEqual(2e-2);
    await Promise.all([cpu.dispose(), dev.dispose(), cpu2.dispose(), dev2.dispose()]);
  }, 120000);
});
