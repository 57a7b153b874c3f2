// Bad input gets a typed QkError naming the argument; none of it crashes the process. The raw addon is also
// called directly with hostile arguments (the glue must re-check everything the TS layer checks).
import {
  absMaxQuantize,
  matmul,
  matmulInt8,
  tensor,
  Tensor,
  QkError,
  InvalidArgumentError,
  ShapeMismatchError,
  UnsupportedError,
} from '../../lib';
import { loadNative } from '../../lib/native/load';

const native = loadNative() as unknown as Record<string, (...args: unknown[]) => unknown>;

async function codeOf(p: () => unknown): Promise<string> {
  try {
    await p();
  } catch (err) {
    expect(err).toBeInstanceOf(QkError);
    return (err as QkError).code;
  }
  throw new Error('expected a rejection');
}

describe('TypeScript API errors', () => {
  test('wrong dtype', async () => {
    await expect(matmul(tensor([1], [1, 1], 'int8'), tensor([1], [1, 1]))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(matmul(tensor([1], [1, 1], 'int8'), tensor([1], [1, 1]))).rejects.toThrow(
      'Expected a float32 Tensor for a but received a int8 tensor',
    );
    await expect(matmulInt8(tensor([1], [1, 1]), tensor([1], [1, 1], 'int8'))).rejects.toThrow(/int8 Tensor for a/);
  });
  test('wrong length', () => {
    expect(() => new Tensor('float32', [2, 3], new Float32Array(5))).toThrow(ShapeMismatchError);
    expect(() => new Tensor('float32', [2, 3], new Float32Array(5))).toThrow(/Expected 6 elements for data/);
    expect(() => new Tensor('float16', [2], new Float32Array(2) as never)).toThrow(/Uint16Array for data/);
  });
  test('negative and NaN dims', () => {
    expect(() => new Tensor('float32', [2, -1])).toThrow('Expected a non-negative integer for shape[1] but received -1');
    expect(() => new Tensor('float32', [NaN])).toThrow('Expected a non-negative integer for shape[0] but received NaN');
    expect(() => new Tensor('float32', [1.5])).toThrow(InvalidArgumentError);
    expect(() => new Tensor('nope' as never, [1])).toThrow(/for dtype but received "nope"/);
  });
  test('mismatched GEMM shapes', async () => {
    await expect(matmul(tensor([1, 2, 3, 4, 5, 6], [2, 3]), tensor([1, 2, 3, 4], [2, 2]))).rejects.toThrow(
      'Expected b.shape[0] = 3 (a\'s last dimension) for b but received shape [2, 2]',
    );
    expect(await codeOf(() => matmul(tensor([1, 2], [1, 2]), tensor([1, 2, 3], [3, 1])))).toBe('QK_SHAPE_MISMATCH');
  });
  test('bad quantize arguments', async () => {
    const x = tensor([1, 2], [2]);
    await expect(absMaxQuantize(x, 0, { valueRange: [-200, 127] })).rejects.toThrow(/within the interval \[-128, 127\]/);
    await expect(absMaxQuantize(x, 2)).rejects.toThrow(/for axis but received 2/);
    await expect(absMaxQuantize(x, 0, { epsilon: -1 })).rejects.toThrow(/for epsilon/);
    await expect(absMaxQuantize(tensor([1, 2, 3, 4], [2, 1, 2]), [0, 2])).rejects.toBeInstanceOf(UnsupportedError);
  });
  test('native errors keep the caller stack', async () => {
    try {
      await (async function callerFrameForStack() {
        await matmul(tensor([1], [1, 1]), new Tensor('float32', [1, 1], new Float32Array(1)), { isa: 'nonsense' as never });
      })();
      throw new Error('expected a rejection');
    } catch (err) {
      expect((err as QkError).code).toBe('QK_INVALID_ARGUMENT');
      expect((err as Error).message).toMatch(/ISA name .* for isa/);
      expect((err as Error).stack).toMatch(/callerFrameForStack/);
    }
  });
});

describe('raw addon: hostile arguments never crash', () => {
  const f32 = (n: number) => new Float32Array(n);
  const cases: Array<[string, unknown[], string, RegExp]> = [
    ['sgemm', [2, 2, 2, f32(3), f32(4), f32(4)], 'QK_SHAPE_MISMATCH', /Expected 4 elements for a but received 3/],
    ['sgemm', [2, 2, 2, f32(4), f32(4), f32(3)], 'QK_SHAPE_MISMATCH', /for out/],
    ['sgemm', [-1, 2, 2, f32(4), f32(4), f32(4)], 'QK_INVALID_ARGUMENT', /non-negative integer for M but received -1/],
    ['sgemm', [NaN, 2, 2, f32(4), f32(4), f32(4)], 'QK_INVALID_ARGUMENT', /for M but received NaN/],
    ['sgemm', [2.5, 2, 2, f32(4), f32(4), f32(4)], 'QK_INVALID_ARGUMENT', /for M/],
    ['sgemm', [2, 2, 2, new Int8Array(4), f32(4), f32(4)], 'QK_INVALID_ARGUMENT', /Float32Array for a but received Int8Array/],
    ['sgemm', [2, 2, 2, [1, 2, 3, 4], f32(4), f32(4)], 'QK_INVALID_ARGUMENT', /for a but received an Array/],
    ['sgemm', [2 ** 40, 2, 2 ** 40, f32(4), f32(4), f32(4)], 'QK_INVALID_ARGUMENT', /overflows 64 bits/],
    ['sgemm', [], 'QK_INVALID_ARGUMENT', /for M but received undefined/],
    ['igemm', [1, 1, 200000, new Int8Array(200000), new Int8Array(200000), new Int32Array(1)], 'QK_INVALID_ARGUMENT', /K <= 131071/],
    ['igemm', [1, 1, 1, new Int8Array(1), new Int8Array(1), f32(1)], 'QK_INVALID_ARGUMENT', /Int32Array for out/],
    ['absmax', [f32(6), 1, 3, 2, f32(3)], 'QK_SHAPE_MISMATCH', /for out/],
    ['absmaxQuantize', [f32(2), 1, 2, 1, -300, 127, 1e-7, new Int8Array(2), f32(1)], 'QK_INVALID_ARGUMENT', /valueRange/],
    ['absmaxQuantize', [f32(2), 1, 2, 1, -127, 127, NaN, new Int8Array(2), f32(1)], 'QK_INVALID_ARGUMENT', /epsilon/],
    ['packInt4', [new Int8Array(3), 1, 3, 1, new Int8Array(1)], 'QK_SHAPE_MISMATCH', /Expected 2 elements for dst/],
    ['unpackInt2', [new Int8Array(1), 1, 5, 1, true, new Int8Array(5)], 'QK_SHAPE_MISMATCH', /for src/],
    ['unpackInt2', [new Int8Array(2), 1, 5, 1, 'yes', new Int8Array(5)], 'QK_INVALID_ARGUMENT', /boolean for signed/],
    ['convertSync', ['f32_to_f16', f32(3), new Uint16Array(2)], 'QK_SHAPE_MISMATCH', /for dst/],
    ['convertSync', ['f64_to_f16', f32(3), new Uint16Array(3)], 'QK_INVALID_ARGUMENT', /for kind/],
    ['convertSync', ['f32_to_f16', new Uint16Array(3), new Uint16Array(3)], 'QK_INVALID_ARGUMENT', /Float32Array for src/],
    ['kernelImpls', ['nope'], 'QK_INVALID_ARGUMENT', /for op/],
  ];
  test.each(cases)('%s(%#)', async (fn, args, code, message) => {
    let err: unknown;
    try {
      await native[fn](...args);
    } catch (e) {
      err = e;
    }
    // (native errors come from the addon's realm, so instanceof Error does not hold inside jest's VM context)
    expect(typeof (err as Error | undefined)?.message).toBe('string');
    expect((err as { code?: string }).code).toBe(code);
    expect((err as Error).message).toMatch(message);
  });

  test('a detached buffer is refused', async () => {
    const a = new Float32Array(4);
    structuredClone(a.buffer, { transfer: [a.buffer] });
    let err: unknown;
    try {
      await native.sgemm(2, 2, 2, a, f32(4), f32(4));
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toMatch(/QK_SHAPE_MISMATCH|QK_INVALID_ARGUMENT/);
  });
});
