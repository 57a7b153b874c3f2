// GPTQ on the CUDA device (cuda/gptq.cu through gptqHessian / GptqHessian / gptqQuantizeMatrix with device 'cuda')
// vs the CPU reference ('ref' ISA): bit-identical Hessian, levels, scales, zeros, g_idx, dequantized kernel and
// loss over a sweep of shapes and options. Without a device: the device option rejects with QK_UNSUPPORTED and
// the device comparisons are skipped (the host test, host-layout.test.ts, runs the kernels' per-thread functions
// against qk::ref bit for bit everywhere).
import { capabilities, cudaAvailable, GPTQConfig, GptqHessian, gptqHessian, gptqQuantizeMatrix, Tensor } from '../../lib';
import { randomF32 } from '../helpers';
import { embedDense } from '../gptq-model';

const caps = capabilities();
const device = cudaAvailable();
if (!device) {
  // eslint-disable-next-line no-console
  console.log(
    `CUDA GPTQ device tests skipped: ${caps.cuda.compiled ? `no CUDA device (${caps.cuda.error ?? 'none found'})` : 'quantkit was built without CUDA'}`,
  );
}

function bitsEqual(a: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }, b: typeof a): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength), y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const tokens = Array.from({ length: 400 }, (_, i) => (i * 37 + ((i * i) % 11)) % 50);
const gptqConfig = () => new GPTQConfig({ dataset: [tokens], tokenizer: null, numSamples: 6, sequenceLength: 16, weightBits: 4, groupSize: 8, activationOrder: true });

describe('CUDA GPTQ without a device', () => {
  (device ? test.skip : test)("model.quantize('gptq', { device: 'cuda' }) rejects with QK_UNSUPPORTED before calibrating and leaves the model unchanged", async () => {
    const m = await embedDense();
    const before = Float32Array.from(m.proj.kernel!.value.data as Float32Array);
    await expect(m.quantize('gptq', { config: gptqConfig(), verbose: false, device: 'cuda' })).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    expect(m.proj.quantizationMode ?? null).toBeNull();
    expect(Float32Array.from(m.proj.kernel!.value.data as Float32Array)).toEqual(before);
  });
  (device ? test.skip : test)("device: 'cuda' rejects with QK_UNSUPPORTED and leaves the caller's Hessian alone", async () => {
    const kernel = new Tensor('float32', [4, 3], randomF32(12, 1));
    const H = new Float64Array(16).map((_, i) => (i % 5 === 0 ? 1 : 0));
    const before = Float64Array.from(H);
    await expect(gptqQuantizeMatrix(kernel, H, { device: 'cuda', groupSize: 2 })).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    expect(H).toEqual(before);
    const h = new GptqHessian(3, { device: 'cuda:0' });
    await expect(h.update(randomF32(6, 2))).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
  });
  test('bad device strings and perChannel: false on the device are refused with a clear error', async () => {
    const kernel = new Tensor('float32', [4, 3], randomF32(12, 1));
    const H = new Float64Array(16).map((_, i) => (i % 5 === 0 ? 1 : 0));
    await expect(gptqQuantizeMatrix(kernel, H, { device: 'gpu' as 'cuda' })).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringMatching(/for device/) });
    await expect(gptqQuantizeMatrix(kernel, H, { device: 'cuda', perChannel: false })).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    expect(() => new GptqHessian(3, { device: 'cuda:x' as 'cuda' })).toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
  });
});

(device ? describe : describe.skip)('CUDA GPTQ vs the CPU reference (device present)', () => {
  test("model.quantize('gptq') on the device gives the CPU's quantized layer bit for bit", async () => {
    const cpu = await embedDense();
    const gpu = await embedDense();
    await cpu.quantize('gptq', { config: gptqConfig(), verbose: false });
    await gpu.quantize('gptq', { config: gptqConfig(), verbose: false, device: 'cuda' });
    const x = new Tensor('int32', [2, 16], Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 50));
    const a = (await cpu.predict(x)) as Tensor, b = (await gpu.predict(x)) as Tensor;
    expect(bitsEqual(b.data as Float32Array, a.data as Float32Array)).toBe(true);
  });
  test('Hessian accumulation is bit-identical (streamed in batches)', async () => {
    for (const [rows, cols] of [[1, 1], [7, 33], [300, 130], [64, 513]]) {
      const x = randomF32(rows * cols, rows + cols, 2);
      const half = Math.floor(rows / 2) * cols;
      const batches = [x.subarray(0, half), x.subarray(half)];
      const cpu = await gptqHessian(batches, { inFeatures: cols, isa: 'ref' });
      const gpu = await gptqHessian(batches, { inFeatures: cols, device: 'cuda' });
      expect([rows, cols, bitsEqual(gpu.hessian, cpu.hessian)]).toEqual([rows, cols, true]);
    }
  });
  test('gptqQuantizeMatrix is bit-identical: levels, scale, zero, gIdx, dequantized, loss (bits x group x act order x symmetric)', async () => {
    let seed = 10;
    for (const [inDim, outDim] of [[1, 1], [17, 5], [129, 40], [300, 64], [520, 33]]) {
      const x = randomF32(96 * inDim, seed++, 1);
      for (let t = 0; t < 96; ++t) x[t * inDim] = 0; // a dead input
      const { hessian } = await gptqHessian([x], { inFeatures: inDim, isa: 'ref' });
      const kernel = new Tensor('float32', [inDim, outDim], randomF32(inDim * outDim, seed++, 0.5));
      for (const weightBits of [2, 3, 4, 8]) {
        for (const groupSize of [-1, 32, 128, 200]) {
          for (const activationOrder of [false, true]) {
            const symmetric = (weightBits + groupSize) % 3 === 0;
            const opts = { weightBits, groupSize, activationOrder, symmetric };
            const cpu = await gptqQuantizeMatrix(kernel, hessian, { ...opts, isa: 'ref' });
            const gpu = await gptqQuantizeMatrix(kernel, hessian, { ...opts, device: 'cuda' });
            const same = bitsEqual(gpu.levels.data, cpu.levels.data) && bitsEqual(gpu.scale.data, cpu.scale.data) &&
              bitsEqual(gpu.zero.data, cpu.zero.data) && bitsEqual(gpu.gIdx.data, cpu.gIdx.data) &&
              bitsEqual(gpu.dequantized!.data, cpu.dequantized!.data) && gpu.loss === cpu.loss &&
              gpu.dampingUsed === cpu.dampingUsed && gpu.deadInputs === cpu.deadInputs;
            expect([inDim, outDim, opts, same]).toEqual([inDim, outDim, opts, true]);
          }
        }
      }
    }
  }, 600000);
});
