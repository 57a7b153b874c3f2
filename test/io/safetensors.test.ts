// safetensors: files built by hand in this test (an independent writer of the documented layout), round trips of
// every dtype, and hostile headers, each CorruptFileError before any large allocation.
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors';
import { Tensor } from '../../lib/tensor';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';

const enc = new TextEncoder();

/** The format by hand: u64 LE header length, JSON header, data buffer. */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), headerLen?: bigint): Uint8Array {
  const json = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function parseHeader(file: Uint8Array): Record<string, any> {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n)));
}

function expectCorrupt(fn: () => unknown, pattern: RegExp) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CorruptFileError);
  expect((err as Error).message).toMatch(pattern);
}

describe('reading hand-built files', () => {
  test('F32, I8, BF16, F16, U8, I32, F8 with metadata', () => {
    const f32 = new Float32Array([1.5, -2, 3, 0.25]);
    const i8 = new Int8Array([-128, 127, 5]);
    const data = new Uint8Array([...bytesOf(f32), ...bytesOf(i8), 0x80, 0x3f, 0x00, 0x3c, 9, 1, 0, 0, 0, 0x38, 0x7b]);
    const file = build(
      {
        __metadata__: { format: 'pt' },
        w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
        q: { dtype: 'I8', shape: [3], data_offsets: [16, 19] },
        b: { dtype: 'BF16', shape: [1], data_offsets: [19, 21] },
        h: { dtype: 'F16', shape: [], data_offsets: [21, 23] },
        u: { dtype: 'U8', shape: [1], data_offsets: [23, 24] },
        i: { dtype: 'I32', shape: [1], data_offsets: [24, 28] },
        e4: { dtype: 'F8_E4M3', shape: [1], data_offsets: [28, 29] },
        e5: { dtype: 'F8_E5M2', shape: [1], data_offsets: [29, 30] },
      },
      data,
    );
    const { metadata, tensors } = readSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    const t = (n: string) => tensors.get(n)!;
    expect([t('w').dtype, [...t('w').shape], [...t('w').data]]).toEqual(['float32', [2, 2], [1.5, -2, 3, 0.25]]);
    expect([t('q').dtype, [...t('q').data]]).toEqual(['int8', [-128, 127, 5]]);
    expect([t('b').dtype, [...t('b').data]]).toEqual(['bfloat16', [0x3f80]]);
    expect([t('h').dtype, [...t('h').shape], [...t('h').data]]).toEqual(['float16', [], [0x3c00]]);
    expect([t('u').dtype, [...t('u').data]]).toEqual(['uint8', [9]]);
    expect([t('i').dtype, [...t('i').data]]).toEqual(['int32', [1]]);
    expect([t('e4').dtype, [...t('e4').data], t('e5').dtype, [...t('e5').data]]).toEqual(['float8_e4m3fn', [0x38], 'float8_e5m2', [0x7b]]);
  });

  test('F64 reads as float32 and I64 as int32 (refused when out of range)', () => {
    const f64 = new Float64Array([0.1, -3]);
    const i64 = new BigInt64Array([-5n, 2147483647n]);
    const file = build(
      { a: { dtype: 'F64', shape: [2], data_offsets: [0, 16] }, b: { dtype: 'I64', shape: [2], data_offsets: [16, 32] } },
      new Uint8Array([...bytesOf(f64), ...bytesOf(i64)]),
    );
    const { tensors } = readSafetensors(file);
    expect([tensors.get('a')!.dtype, [...tensors.get('a')!.data]]).toEqual(['float32', [Math.fround(0.1), -3]]);
    expect([tensors.get('b')!.dtype, [...tensors.get('b')!.data]]).toEqual(['int32', [-5, 2147483647]]);
    const big = build({ b: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, bytesOf(new BigInt64Array([2n ** 40n])));
    expect(() => readSafetensors(big)).toThrow(UnsupportedError);
  });

  test('a padded header and an empty file', () => {
    const file = build('{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}      ', new Uint8Array([1, 2]));
    expect([...readSafetensors(file).tensors.get('x')!.data]).toEqual([1, 2]);
    const empty = readSafetensors(build({}));
    expect([empty.tensors.size, empty.metadata]).toEqual([0, {}]);
  });
});

describe('round trips', () => {
  const tensors: Array<[string, Tensor]> = [
    ['f32', new Tensor('float32', [2, 3], new Float32Array([1, -2, 3.5, 0, 1e-30, -0]))],
    ['f16', new Tensor('float16', [2], new Uint16Array([0x3c00, 0xc000]))],
    ['bf16', new Tensor('bfloat16', [1, 2], new Uint16Array([0x3f80, 0x7f80]))],
    ['i8', new Tensor('int8', [3], new Int8Array([-128, 0, 127]))],
    ['u8', new Tensor('uint8', [2], new Uint8Array([0, 255]))],
    ['i32', new Tensor('int32', [2], new Int32Array([-2147483648, 2147483647]))],
    ['int4', new Tensor('int4', [2, 3], new Int8Array([0x2d, 0x07, 0x10, 0x08]))],
    ['uint4', new Tensor('uint4', [5], new Uint8Array([0x21, 0x43, 0x0f]))],
    ['e4m3', new Tensor('float8_e4m3fn', [2], new Uint8Array([0x38, 0xff]))],
    ['e5m2', new Tensor('float8_e5m2', [1], new Uint8Array([0x7c]))],
    ['scalar', new Tensor('float32', [], new Float32Array([7]))],
  ];

  test('every quantkit dtype', () => {
    const file = writeSafetensors(tensors, { format: 'pt', note: 'hello' });
    const { metadata, tensors: back } = readSafetensors(file);
    expect(metadata).toEqual({ format: 'pt', note: 'hello' });
    expect([...back.keys()]).toEqual(tensors.map(([n]) => n));
    for (const [n, t] of tensors) {
      const b = back.get(n)!;
      expect([n, b.dtype, [...b.shape], Buffer.from(bytesOf(b.data)).toString('hex')]).toEqual([
        n, t.dtype, [...t.shape], Buffer.from(bytesOf(t.data)).toString('hex'),
      ]);
    }
  });

  test('the header follows the format: dtype names, contiguous aligned offsets, 8-byte padding, int4 record', () => {
    const file = writeSafetensors(tensors, { format: 'pt' });
    const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const h = parseHeader(file);
    expect(h.f32).toMatchObject({ dtype: 'F32', shape: [2, 3] });
    expect(h.bf16.dtype).toBe('BF16');
    expect(h.e4m3.dtype).toBe('F8_E4M3');
    expect(h.int4).toMatchObject({ dtype: 'U8', shape: [2, 2] });
    expect(h.uint4).toMatchObject({ dtype: 'U8', shape: [3] });
    expect(JSON.parse(h.__metadata__['quantkit.dtype.int4'])).toEqual({ dtype: 'int4', shape: [2, 3] });
    const ranges = Object.entries(h)
      .filter(([k]) => k !== '__metadata__')
      .map(([, v]: [string, any]) => v.data_offsets as [number, number])
      .sort((a, b) => a[0] - b[0]);
    let pos = 0;
    for (const [b, e] of ranges) {
      expect(b).toBe(pos);
      pos = e;
    }
    expect(8 + n + pos).toBe(file.length);
    const itemSize = (d: string) => ({ F32: 4, I32: 4, F16: 2, BF16: 2 } as Record<string, number>)[d] ?? 1;
    for (const [k, v] of Object.entries(h)) if (k !== '__metadata__') expect((v as any).data_offsets[0] % itemSize((v as any).dtype)).toBe(0);
  });

  test('bad arguments', () => {
    expect(() => writeSafetensors([['a', tensors[0][1]], ['a', tensors[0][1]]])).toThrow(InvalidArgumentError);
    expect(() => writeSafetensors([['__metadata__', tensors[0][1]]])).toThrow(InvalidArgumentError);
    expect(() => writeSafetensors([], { x: 1 as never })).toThrow(InvalidArgumentError);
    expect(() => writeSafetensors([], { 'quantkit.dtype.x': '{}' })).toThrow(InvalidArgumentError);
    expect(() => writeSafetensors([['a', {} as never]])).toThrow(InvalidArgumentError);
  });
});

describe('hostile files', () => {
  const data4 = bytesOf(new Float32Array([1, 2]));

  test('a huge header length is refused without allocating', () => {
    const file = build({}, new Uint8Array(0), 2n ** 62n);
    expectCorrupt(() => readSafetensors(file, { source: 'h.safetensors' }), /at most 100000000 bytes.*h\.safetensors/);
    expectCorrupt(() => readSafetensors(build({}, new Uint8Array(0), 1000n)), /the file size/);
    expectCorrupt(() => readSafetensors(build({ a: 1 }), { maxHeaderBytes: 4 }), /maxHeaderBytes/);
  });

  test('too short, bad JSON, not an object, bad UTF-8', () => {
    expectCorrupt(() => readSafetensors(new Uint8Array(5)), /8-byte header length/);
    expectCorrupt(() => readSafetensors(build('{"a": ')), /invalid JSON/);
    expectCorrupt(() => readSafetensors(build('[1, 2]')), /JSON object header/);
    const bad = build('{"a":1}');
    bad[10] = 0xff;
    expectCorrupt(() => readSafetensors(bad), /invalid JSON|UTF-8/);
  });

  test('overlapping offsets', () => {
    const file = build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(8));
    expectCorrupt(() => readSafetensors(file), /"b"|"a".*non-overlapping/);
    const partial = build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(12));
    expectCorrupt(() => readSafetensors(partial), /non-overlapping/);
  });

  test('out-of-range, reversed, gapped and trailing offsets', () => {
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4))), /within the 4-byte data buffer/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, data4)), /begin <= end/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data4)), /start at byte 0/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, data4)), /4-byte data buffer.*8 bytes/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [1], data_offsets: [-4, 4] } }, data4)), /non-negative integer data_offsets/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }, data4)), /data_offsets/);
  });

  test('shape and size mismatch, shape overflow, bad shapes', () => {
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data4)), /12 bytes.*received 8 bytes/);
    const huge = { a: { dtype: 'F32', shape: [2 ** 31, 2 ** 31, 2 ** 31], data_offsets: [0, 8] } };
    expectCorrupt(() => readSafetensors(build(huge, data4)), /fits in 2\^53|dimension in \[0, 2147483647\]/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, data4)), /shape\[0\]/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, data4)), /shape\[0\]/);
    expectCorrupt(() => readSafetensors(build({ a: { dtype: 'F32', data_offsets: [0, 8] } }, data4)), /array shape/);
  });

  test('unknown dtypes are unsupported; bad metadata is corrupt', () => {
    expect(() => readSafetensors(build({ a: { dtype: 'U16', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)))).toThrow(UnsupportedError);
    expectCorrupt(() => readSafetensors(build({ __metadata__: { a: 1 } })), /string for __metadata__\.a/);
    expectCorrupt(() => readSafetensors(build({ __metadata__: { 'quantkit.dtype.x': '{"dtype":"int4","shape":[3]}' } })), /tensor "x"/);
    const wrong = build(
      { __metadata__: { 'quantkit.dtype.x': '{"dtype":"int4","shape":[5]}' }, x: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } },
      new Uint8Array(2),
    );
    expectCorrupt(() => readSafetensors(wrong), /3 bytes/);
  });
});

describe('streaming file API (readSafetensorsFile / writeSafetensorsFile, model import/export to files)', () => {
  const os = require('os') as typeof import('os');
  const pathMod = require('path') as typeof import('path');
  const fsMod = require('fs') as typeof import('fs');
  const dir = fsMod.mkdtempSync(pathMod.join(os.tmpdir(), 'qk-st-'));
  afterAll(() => fsMod.rmSync(dir, { recursive: true, force: true }));

  test('the file writer produces the same bytes as the in-memory writer; the file reader the same tensors', async () => {
    const { Tensor: T } = require('../../lib') as typeof import('../../lib');
    const { readSafetensorsFile, writeSafetensorsFile, writeSafetensors, readSafetensors } = require('../../lib/io/safetensors') as typeof import('../../lib/io/safetensors');
    const entries: Array<[string, InstanceType<typeof T>]> = [
      ['a', new T('float32', [3, 5], Float32Array.from({ length: 15 }, (_, i) => i / 7))],
      ['b', new T('int8', [7], Int8Array.from([-128, -1, 0, 1, 2, 3, 127]))],
      ['c', new T('int4', [3], Int8Array.from([0x21, 0x07]))],
      ['empty', new T('float32', [0, 4])],
    ];
    const file = pathMod.join(dir, 'x.safetensors');
    await writeSafetensorsFile(file, entries, { k: 'v' });
    const mem = writeSafetensors(entries, { k: 'v' });
    expect(Buffer.compare(fsMod.readFileSync(file), Buffer.from(mem))).toBe(0);
    const fromFile = await readSafetensorsFile(file);
    const fromMem = readSafetensors(mem);
    expect(fromFile.metadata).toEqual(fromMem.metadata);
    for (const [name, t] of fromMem.tensors) {
      const u = fromFile.tensors.get(name)!;
      expect([name, u.dtype, u.shape, Array.from(u.data as ArrayLike<number>)]).toEqual([name, t.dtype, t.shape, Array.from(t.data as ArrayLike<number>)]);
    }
    expect(fsMod.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  test('hostile files are rejected by the file reader before reading tensors (truncated, header past the end, missing)', async () => {
    const { Tensor: T } = require('../../lib') as typeof import('../../lib');
    const { readSafetensorsFile, writeSafetensors } = require('../../lib/io/safetensors') as typeof import('../../lib/io/safetensors');
    const good = writeSafetensors([['w', new T('float32', [64], new Float32Array(64).fill(1))]]);
    const cases: Array<[string, Uint8Array]> = [
      ['short', good.subarray(0, 5)],
      ['truncated data', good.subarray(0, good.length - 4)],
      ['huge header length', (() => { const b = good.slice(); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })()],
      ['header past the end', (() => { const b = good.slice(0, 40); return b; })()],
    ];
    for (const [name, bytes] of cases) {
      const f = pathMod.join(dir, `${name.replace(/ /g, '_')}.safetensors`);
      fsMod.writeFileSync(f, bytes);
      await expect(readSafetensorsFile(f)).rejects.toMatchObject({ code: 'QK_CORRUPT_FILE' });
    }
    await expect(readSafetensorsFile(pathMod.join(dir, 'nope.safetensors'))).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
  });

  test('a quantized model exports to a file and imports back exactly', async () => {
    const q = require('../../lib') as typeof import('../../lib');
    const make = async (seed: number) => {
      const inp = q.Input({ shape: [16] });
      const out = await q.applySymbolic(new q.Dense({ units: 8, seed }), await q.applySymbolic(new q.Dense({ units: 32, seed: seed + 1 }), inp));
      const m = new q.Model({ inputs: inp, outputs: out });
      await m.quantize('int4', { verbose: false });
      return m;
    };
    const a = await make(1);
    const x = new q.Tensor('float32', [2, 16], Float32Array.from({ length: 32 }, (_, i) => Math.sin(i)));
    const want = Array.from(((await a.predict(x)) as InstanceType<typeof q.Tensor>).data);
    const file = pathMod.join(dir, 'model.safetensors');
    await q.exportSafetensorsFile(a, file);
    const b = await make(7);
    await q.importSafetensorsFile(b, file);
    expect(Array.from(((await b.predict(x)) as InstanceType<typeof q.Tensor>).data)).toEqual(want);
  });
});
