// int4 / int2 packing in the Keras layout: the spec's examples, exhaustive value coverage, round trips along
// every axis, and every ISA variant bit-exact against the scalar reference.
import { packInt4, unpackInt4, packInt2, unpackInt2, tensor, Tensor, _kernelImpls, IsaName } from '../../lib';
import { SIZES, randomI8, firstMismatch } from '../helpers';

const ISAS = _kernelImpls('pack_int4') as IsaName[];

describe('Keras examples (spec §2.4)', () => {
  test('pack_int4 axis 0', async () => {
    const { packed, packedShape, origLen } = await packInt4(tensor([-3, 7, 2, -8, 1, 0], [3, 2], 'int8'), 0);
    expect(Array.from(packed.data)).toEqual([45, -121, 1, 0]);
    expect(packedShape).toEqual([2, 2]);
    expect(origLen).toBe(3);
    const back = await unpackInt4(packed, 3, 0, 'int8');
    expect(Array.from(back.data)).toEqual([-3, 7, 2, -8, 1, 0]);
  });
  test('pack_int4 axis 1', async () => {
    const { packed } = await packInt4(tensor([-3, 7, 2, -8, 1, 0], [2, 3], 'int8'), 1);
    expect(Array.from(packed.data)).toEqual([125, 2, 24, 0]);
    expect(packed.shape).toEqual([2, 2]);
  });
  test('pack_int2 axis 0', async () => {
    const { packed } = await packInt2(tensor([-2, 1, 0, -1, 1, -2, 0, 1, -1, 0], [5, 2], 'int8'), 0);
    expect(Array.from(packed.data)).toEqual([18, 109, 3, 0]);
    const back = await unpackInt2(packed, 5, 0, 'int8');
    expect(Array.from(back.data)).toEqual([-2, 1, 0, -1, 1, -2, 0, 1, -1, 0]);
  });
});

describe('exhaustive values', () => {
  test('all 16x16 int4 pairs, signed and unsigned', async () => {
    for (const dtype of ['int8', 'uint8'] as const) {
      const vals: number[] = [];
      for (let a = 0; a < 16; a++) for (let b = 0; b < 16; b++) vals.push(...[a, b].map((v) => (dtype === 'int8' ? v - 8 : v)));
      const arr = dtype === 'int8' ? new Int8Array(vals) : new Uint8Array(vals);
      const t = new Tensor(dtype, [256, 2], arr as never);
      const { packed } = await packInt4(t, 1);
      for (let i = 0; i < 256; i++) {
        const lo = vals[2 * i] & 0xf;
        const hi = vals[2 * i + 1] & 0xf;
        expect((packed.data[i] as number) & 0xff).toBe(lo | (hi << 4));
      }
      const back = await unpackInt4(packed, 2, 1, dtype);
      expect(firstMismatch(back.data, arr)).toBe(-1);
    }
  });
  test('all 4^4 int2 quadruples, signed and unsigned', async () => {
    for (const dtype of ['int8', 'uint8'] as const) {
      const vals: number[] = [];
      for (let c = 0; c < 256; c++) for (let j = 0; j < 4; j++) vals.push(dtype === 'int8' ? (((c >> (2 * j)) & 3) ^ 2) - 2 : (c >> (2 * j)) & 3);
      const arr = dtype === 'int8' ? new Int8Array(vals) : new Uint8Array(vals);
      const { packed } = await packInt2(new Tensor(dtype, [256, 4], arr as never), 1);
      for (let c = 0; c < 256; c++) expect((packed.data[c] as number) & 0xff).toBe(c);
      const back = await unpackInt2(packed, 4, 1, dtype);
      expect(firstMismatch(back.data, arr)).toBe(-1);
    }
  });
});

describe.each(ISAS)('pack kernels, isa=%s, bit-exact vs ref', (isa) => {
  const shapes: Array<[number, number, number]> = [];
  for (const len of SIZES) for (const inner of [1, 2, 3, 17, 65]) shapes.push([2, len, inner]);
  for (const inner of SIZES) shapes.push([3, 5, inner]);

  test.each([
    ['int4', packInt4, unpackInt4, 8],
    ['int2', packInt2, unpackInt2, 2],
  ] as const)('%s pack/unpack over the size sweep', async (_name, pack, unpack, half) => {
    let seed = 7;
    for (const [outer, len, inner] of shapes) {
      for (const dtype of ['int8', 'uint8'] as const) {
        const raw = randomI8(outer * len * inner, seed++, dtype === 'int8' ? -half : 0, dtype === 'int8' ? half - 1 : 2 * half - 1);
        const data = dtype === 'int8' ? raw : new Uint8Array(raw.buffer);
        const t = new Tensor(dtype, [outer, len, inner], data as never);
        const got = await pack(t, 1, dtype, { isa });
        const want = await pack(t, 1, dtype, { isa: 'ref' });
        expect([outer, len, inner, dtype, firstMismatch(got.packed.data, want.packed.data)]).toEqual([outer, len, inner, dtype, -1]);
        const back = await unpack(got.packed, len, 1, dtype, { isa });
        expect([outer, len, inner, dtype, firstMismatch(back.data, data)]).toEqual([outer, len, inner, dtype, -1]);
      }
    }
  });
});

describe('pack argument checks', () => {
  test('out-of-range values are rejected, not masked', async () => {
    await expect(packInt4(tensor([9, 0], [2], 'int8'), 0)).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    await expect(packInt2(tensor([2], [1], 'int8'), 0)).rejects.toThrow(/\[-2, 1\] for arr but received 2/);
  });
  test('dtype must match the input, origLen must match the packed axis', async () => {
    await expect(packInt4(tensor([1], [1], 'int8'), 0, 'uint8')).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    const { packed } = await packInt4(tensor([1, 2, 3], [3], 'int8'), 0);
    await expect(unpackInt4(packed, 5, 0)).rejects.toThrow(/origLen/);
    await expect(packInt4(tensor([1, 2], [2], 'float32'), 0)).rejects.toThrow(/int8 or uint8 Tensor for arr/);
    await expect(packInt4(tensor([1, 2], [2], 'int8'), 3)).rejects.toThrow(/for axis/);
  });
});
