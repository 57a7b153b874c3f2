// HDF5: files written by h5py (test/fixtures/hdf5, values from the generating script in its README), round
// trips of every dtype, attributes and nesting, and hostile files (garbage, truncation, damage, huge sizes).
import * as fs from 'fs';
import * as path from 'path';
import { readHdf5, writeHdf5, h5Group, h5Dataset, h5Get, terminateHdf5Worker } from '../../lib/io/hdf5';
import type { H5Dataset, H5Group } from '../../lib/io/hdf5';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';

const HDIR = path.join(__dirname, '..', 'fixtures', 'hdf5');
const read = (f: string) => new Uint8Array(fs.readFileSync(path.join(HDIR, f)));

afterAll(() => terminateHdf5Worker());

function ds(root: H5Group, p: string): H5Dataset {
  const n = h5Get(root, p);
  if (!n || n.kind !== 'dataset') throw new Error(`no dataset ${p}`);
  return n;
}

// float16 bits written independently: sign | exponent(5, bias 15) | mantissa(10)
const F16 = { one: 0x3c00, minusTwo: 0xc000, half: 0x3800, max: 0x7bff, zero: 0x0000, minusQuarter: 0xb400 };

describe('files written by h5py', () => {
  test('every supported dtype, big-endian data, gzip chunks, empty datasets, h5py attributes', async () => {
    const root = await readHdf5(read('h5py_types.h5'), { source: 'h5py_types.h5' });
    expect(root.attrs).toEqual({ title: 'h5py types', count: 7, ratio: 0.25, ints: [1, -2, 3], names: ['a', 'bc'] });
    const t = (n: string) => ds(root, `types/${n}`);
    expect([t('f16').dtype, t('f16').shape, [...t('f16').data]]).toEqual([
      'float16', [2, 3], [F16.one, F16.minusTwo, F16.half, F16.max, F16.zero, F16.minusQuarter],
    ]);
    expect([t('f32').dtype, [...t('f32').data], t('f32').attrs]).toEqual(['float32', [1.5, -3.25], { unit: 'm' }]);
    expect([t('f64').dtype, [...t('f64').data]]).toEqual(['float64', [0.1, 1e300]]);
    expect([t('i8').dtype, [...t('i8').data]]).toEqual(['int8', [-128, 0, 127]]);
    expect([t('u8').dtype, [...t('u8').data]]).toEqual(['uint8', [0, 200, 255]]);
    expect([t('i16').dtype, [...t('i16').data]]).toEqual(['int16', [-32768, 12345]]);
    expect([t('i32').dtype, t('i32').shape, [...t('i32').data]]).toEqual(['int32', [2, 1], [-2147483648, 2147483647]]);
    expect([t('i64').dtype, t('i64').shape, [...t('i64').data]]).toEqual(['int64', [], [-9007199254740993n]]);
    expect([t('bool').dtype, [...t('bool').data]]).toEqual(['bool', [1, 0, 1, 1]]);
    expect([t('be_f32').dtype, [...t('be_f32').data]]).toEqual(['float32', [1, 2, -4.5]]);
    expect([t('be_i32').dtype, [...t('be_i32').data]]).toEqual(['int32', [1, -2]]);
    expect([t('bf16').dtype, [...t('bf16').data], t('bf16').attrs]).toEqual(['bfloat16', [0x3f80, 0xc000], {}]);
    // bfloat16 bits: 1.0 = 0x3f80, -2.0 = 0xc000, 0.5 = 0x3f00
    expect([t('bf16_keras').dtype, [...t('bf16_keras').data], t('bf16_keras').attrs]).toEqual(['bfloat16', [0x3f80, 0xc000, 0x3f00], {}]);
    expect([t('gzip').dtype, t('gzip').shape]).toEqual(['float32', [10, 100]]);
    expect([...t('gzip').data]).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect([t('empty').shape, t('empty').data.length]).toEqual([[0, 3], 0]);
  });

  test('a dtype outside the subset is UnsupportedError naming the dataset', async () => {
    await expect(readHdf5(read('h5py_uint32.h5'), { source: 'u.h5' })).rejects.toThrow(UnsupportedError);
    await expect(readHdf5(read('h5py_uint32.h5'), { source: 'u.h5' })).rejects.toThrow(/u\.h5: .*\/unsupported\/u32.*uint32/);
  });
});

function sampleTree(): H5Group {
  const root = h5Group({ title: 'root', version: 3, scale: 0.5, big: 2n ** 62n, shape: [2, 3], weights: [0.25, -1.5], names: ['x', 'y', 'zé'] });
  const layers = h5Group();
  root.children.set('layers', layers);
  const deep = h5Group({ name: 'deep' });
  layers.children.set('a', h5Group());
  (layers.children.get('a') as H5Group).children.set('b', deep);
  const vars = h5Group({ name: 'dense' });
  deep.children.set('vars', vars);
  vars.children.set('0', h5Dataset('float32', [2, 3], new Float32Array([1, -2, 3.5, 0, -0, 1e-30])));
  vars.children.set('1', h5Dataset('float16', [3], new Uint16Array([F16.one, F16.minusTwo, 0x7c00])));
  vars.children.set('2', h5Dataset('float64', [2], new Float64Array([Math.PI, -1e-300])));
  vars.children.set('3', h5Dataset('int8', [2, 2], new Int8Array([-128, -1, 0, 127])));
  vars.children.set('4', h5Dataset('uint8', [3], new Uint8Array([0, 128, 255])));
  vars.children.set('5', h5Dataset('int16', [2], new Int16Array([-32768, 32767])));
  vars.children.set('6', h5Dataset('int32', [1, 2, 1], new Int32Array([-2147483648, 2147483647])));
  vars.children.set('7', h5Dataset('int64', [], new BigInt64Array([-(2n ** 63n)])));
  vars.children.set('8', h5Dataset('bool', [5], new Uint8Array([1, 0, 0, 1, 1])));
  vars.children.set('9', h5Dataset('bfloat16', [2, 2], new Uint16Array([0x3f80, 0x4000, 0xbf80, 0x7f80])));
  vars.children.set('10', h5Dataset('float32', [0, 4], new Float32Array(0), { note: 'empty' }));
  vars.children.set('11', h5Dataset('float32', [], new Float32Array([42]), { unit: 'm', n: 1 }));
  return root;
}

function plain(node: H5Group | H5Dataset): unknown {
  if (node.kind === 'dataset') return { dtype: node.dtype, shape: node.shape, data: Array.from(node.data as ArrayLike<number | bigint>), attrs: node.attrs };
  const kids = [...node.children.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, plain(v)]);
  return { attrs: node.attrs, children: kids };
}

describe('round trips', () => {
  test('every dtype, nested groups, string/number/array attributes', async () => {
    const tree = sampleTree();
    const bytes = await writeHdf5(tree);
    expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(bytes[8]).toBe(0); // superblock version 0, like h5py
    const back = await readHdf5(bytes);
    expect(plain(back)).toEqual(plain(tree));
    // -0 survives bit-exactly
    expect(Object.is((ds(back, 'layers/a/b/vars/0').data as Float32Array)[4], -0)).toBe(true);
  });

  test('write -> read -> write is byte-stable in content', async () => {
    const once = await readHdf5(await writeHdf5(sampleTree()));
    const twice = await readHdf5(await writeHdf5(once));
    expect(plain(twice)).toEqual(plain(once));
  });

  test('a Keras-like weights tree, and a larger dataset', async () => {
    const root = h5Group();
    const big = new Float32Array(1 << 18).map((_, i) => Math.fround(Math.sin(i)));
    const vars = h5Group({ name: 'dense' });
    vars.children.set('0', h5Dataset('float32', [512, 512], big));
    const layers = h5Group();
    const dense = h5Group();
    dense.children.set('vars', vars);
    layers.children.set('dense', dense);
    root.children.set('layers', layers);
    root.children.set('vars', h5Group({ name: 'model' }));
    const back = await readHdf5(await writeHdf5(root));
    expect(Buffer.from((ds(back, 'layers/dense/vars/0').data as Float32Array).buffer).equals(Buffer.from(big.buffer))).toBe(true);
    expect((h5Get(back, 'vars') as H5Group).attrs).toEqual({ name: 'model' });
  });

  test('concurrent reads and writes', async () => {
    const bytes = await writeHdf5(sampleTree());
    const all = await Promise.all([readHdf5(bytes), writeHdf5(sampleTree()), readHdf5(bytes), readHdf5(bytes)]);
    expect(plain(all[0] as H5Group)).toEqual(plain(all[3] as H5Group));
  });

  test('malformed trees are InvalidArgumentError', async () => {
    expect(() => h5Dataset('float32', [2], new Float64Array(2) as never)).toThrow(InvalidArgumentError);
    expect(() => h5Dataset('float32', [3], new Float32Array(2))).toThrow(/3 elements/);
    expect(() => h5Dataset('uint32' as never, [1], new Uint32Array(1) as never)).toThrow(InvalidArgumentError);
    expect(() => h5Group({ bad: { nested: 1 } })).toThrow(InvalidArgumentError);
    const g = h5Group();
    g.children.set('a/b', h5Group());
    await expect(writeHdf5(g)).rejects.toThrow(InvalidArgumentError);
    const cyc = h5Group();
    cyc.children.set('self', cyc);
    await expect(writeHdf5(cyc)).rejects.toThrow(InvalidArgumentError);
  });
});

describe('hostile files', () => {
  let valid: Uint8Array;
  beforeAll(async () => {
    valid = await writeHdf5(sampleTree());
  });

  async function expectCorrupt(p: Promise<unknown>, pattern?: RegExp) {
    const err = await p.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptFileError);
    if (pattern) expect((err as Error).message).toMatch(pattern);
  }

  test('garbage and empty input fail fast on the signature', async () => {
    await expectCorrupt(readHdf5(new Uint8Array(0), { source: 'x.h5' }), /x\.h5: Expected the HDF5 signature/);
    await expectCorrupt(readHdf5(Uint8Array.from({ length: 5000 }, (_, i) => (i * 131) & 0xff)), /signature/);
  });

  test('a valid signature followed by garbage', async () => {
    const g = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff);
    g.set(valid.subarray(0, 8));
    await expectCorrupt(readHdf5(g, { source: 'g.h5' }), /g\.h5/);
  });

  test('truncated files', async () => {
    for (const n of [9, 64, 200, 1000, Math.floor(valid.length / 2), valid.length - 1]) {
      await expectCorrupt(readHdf5(valid.subarray(0, n), { source: `cut${n}.h5` }), new RegExp(`cut${n}\\.h5`));
    }
  });

  test('random damage gives data or CorruptFileError/UnsupportedError, and the reader keeps working', async () => {
    let seed = 11;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
    for (let t = 0; t < 12; t++) {
      const z = valid.slice();
      for (let k = 0; k < 4; k++) z[8 + Math.floor(rnd() * (z.length - 8))] = Math.floor(rnd() * 256);
      try {
        await readHdf5(z);
      } catch (e) {
        expect(e instanceof CorruptFileError || e instanceof UnsupportedError).toBe(true);
      }
    }
    expect(plain(await readHdf5(valid))).toEqual(plain(sampleTree()));
  });

  test('a dataset whose dataspace claims far more than the file holds', async () => {
    const root = h5Group();
    root.children.set('d', h5Dataset('float32', [12345], new Float32Array(12345)));
    const b = await writeHdf5(root);
    // dataspace dims and max dims are 8-byte little-endian 12345: claim 2^40 elements instead
    const needle = Buffer.from([0x39, 0x30, 0, 0, 0, 0, 0, 0]);
    const buf = Buffer.from(b);
    let at = buf.indexOf(needle);
    let patched = 0;
    while (at >= 0) {
      buf.writeBigUInt64LE(2n ** 40n, at);
      patched++;
      at = buf.indexOf(needle, at + 8);
    }
    expect(patched).toBeGreaterThanOrEqual(1);
    const t0 = Date.now();
    await expectCorrupt(readHdf5(new Uint8Array(buf), { source: 'huge.h5' }), /huge\.h5/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test('maxBytes bounds the data read', async () => {
    await expectCorrupt(readHdf5(valid, { maxBytes: 16, source: 'lim.h5' }), /lim\.h5: .*maxBytes/);
  });
});
