// CUDA abs-max kernels vs the CPU reference over the size sweep. Runs only where quantkit was built with CUDA
// and a device is visible; elsewhere it checks that the ops refuse cleanly and skips the device comparisons.
import { absMax, absMaxQuantize, capabilities, cudaAbsMax, cudaAbsMaxQuantize, cudaAvailable, Tensor, UnsupportedError } from '../../lib';
import { SIZES, randomF32, firstBitMismatch, firstMismatch } from '../helpers';

const caps = capabilities();
const device = cudaAvailable();
if (!device) {
  // eslint-disable-next-line no-console
  console.log(
    `CUDA device tests skipped: ${caps.cuda.compiled ? `no CUDA device (${caps.cuda.error ?? 'none found'})` : 'quantkit was built without CUDA'}`,
  );
}

describe('CUDA without a device', () => {
  (device ? test.skip : test)('ops reject with QK_UNSUPPORTED, the process survives', async () => {
    const x = new Tensor('float32', [2, 3], randomF32(6, 1));
    await expect(cudaAbsMax(x, 0)).rejects.toBeInstanceOf(UnsupportedError);
    await expect(cudaAbsMaxQuantize(x, 0)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
  });
  test('capabilities describe the CUDA build', () => {
    if (caps.cuda.compiled) {
      expect(caps.cuda.archs).toEqual(expect.arrayContaining(['sm_75', 'sm_80', 'sm_86', 'sm_89', 'sm_90']));
      expect(caps.cuda.runtimeVersion).toBeGreaterThan(0);
    } else {
      expect(caps.cuda.devices).toEqual([]);
    }
  });
});

(device ? describe : describe.skip)('CUDA abs-max vs CPU reference (device present)', () => {
  test('absMax and absMaxQuantize are bit-exact over the size sweep, both axes', async () => {
    let seed = 1;
    for (const len of SIZES) {
      for (const inner of [1, 3, 33, 257]) {
        const x = new Tensor('float32', [2, len, inner], randomF32(2 * len * inner, seed++, 5));
        for (const axis of [1, 2]) {
          const cpu = await absMax(x, axis);
          const gpu = await cudaAbsMax(x, axis);
          expect([len, inner, axis, firstBitMismatch(gpu.data, cpu.data)]).toEqual([len, inner, axis, -1]);
          const cq = await absMaxQuantize(x, axis);
          const gq = await cudaAbsMaxQuantize(x, axis);
          expect(firstMismatch(gq.quantized.data, cq.quantized.data)).toBe(-1);
          expect(firstBitMismatch(gq.scale.data, cq.scale.data)).toBe(-1);
        }
      }
    }
  });
});
