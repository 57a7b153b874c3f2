// GGUF: the stories260K.gguf fixture (header facts, tensors bit-identical to stories260K.bin, the embedded
// tokenizer equal to tok512.bin), files built by an independent writer (every value type, F16/BF16/I8/I32
// tensors, quantized types refused), the llama mapping, and hostile files.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseGgufHeader, readGguf, readGgufFile, readGgufHeaderFile } from '../../lib/io/gguf';
import { ggufToLlama, readGgufLlama, readGgufLlamaFile } from '../../lib/io/gguf-llama';
import { readLlama2c } from '../../lib/io/llama2c';
import { LLAMA_TENSOR_NAMES as N, validateLlamaCheckpoint } from '../../lib/io/llama-common';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import { Tensor } from '../../lib/tensor';
import { buildGguf, f32Bytes, GgufSpec, KV, TensorSpec } from './gguf-writer';

const LLM = path.join(__dirname, '..', '..', 'models', 'stories260K');
const GGUF = path.join(LLM, 'stories260K.gguf');
const ggufBytes = new Uint8Array(fs.readFileSync(GGUF));
const bin = readLlama2c(new Uint8Array(fs.readFileSync(path.join(LLM, 'stories260K.bin'))));
const tok512 = Llama2cTokenizer.fromBytes(new Uint8Array(fs.readFileSync(path.join(LLM, 'tok512.bin'))));
const text = fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'stories260K', 'tinystories_valid_head.txt'), 'utf8');

const sameBytes = (a: ArrayBufferView, b: ArrayBufferView) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function expectError(fn: () => unknown, Ctor: new (...a: never[]) => Error, re: RegExp = /Expected/) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(Ctor);
  expect((err as Error).message).toMatch(re);
}
const expectCorrupt = (bytes: Uint8Array, re?: RegExp) => expectError(() => readGguf(bytes, { source: 'evil.gguf' }), CorruptFileError, re ?? /evil\.gguf/);

describe('stories260K.gguf', () => {
  const g = readGguf(ggufBytes, { source: 'stories260K.gguf' });

  test('header facts from the fixtures README', () => {
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.metadata.size).toBe(19);
    expect(g.tensorInfos.length).toBe(48);
    expect(g.dataOffset).toBe(14176);
    expect(g.metadata.get('general.architecture')).toEqual({ type: 'string', value: 'llama' });
    expect(g.metadata.get('llama.context_length')).toEqual({ type: 'uint32', value: 2048 });
    expect(g.metadata.get('llama.rope.dimension_count')!.value).toBe(8);
    expect(g.metadata.get('llama.attention.layer_norm_rms_epsilon')).toEqual({ type: 'float32', value: Math.fround(1e-5) });
    const tokens = g.metadata.get('tokenizer.ggml.tokens')!;
    expect(tokens.itemType).toBe('string');
    expect((tokens.value as string[]).slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect((tokens.value as string[])[259]).toBe('\u2581t');
    const types = g.metadata.get('tokenizer.ggml.token_type')!.value as Int32Array;
    expect([types[0], types[1], types[2], types[3], types[258], types[259]]).toEqual([2, 3, 3, 6, 6, 1]);
    const k = g.tensorInfos.find((t) => t.name === 'blk.0.attn_k.weight')!;
    expect(k.dims).toEqual([64, 32]);
    expect(k.shape).toEqual([32, 64]);
    expect(k.type).toBe('F32');
    expect(g.tensorInfos.every((t) => t.type === 'F32' && t.offset % 32 === 0)).toBe(true);
    const names = g.tensorInfos.map((t) => t.name);
    expect(names).toContain('token_embd.weight');
    expect(names).toContain('output.weight');
    expect(names).toContain('blk.4.ffn_up.weight');
  });

  test('every tensor is bit-identical to stories260K.bin; Q/K are not permuted; output = token_embd', () => {
    const c = readGgufLlama(ggufBytes, { source: 'stories260K.gguf' });
    validateLlamaCheckpoint(c);
    expect(c.config).toEqual({ ...bin.config, seqLen: 2048 });
    expect([...c.tensors.keys()]).toEqual([...bin.tensors.keys()]);
    for (const [name, t] of bin.tensors) {
      const u = c.tensors.get(name)!;
      expect(u.shape).toEqual(t.shape);
      expect(sameBytes(u.data, t.data)).toBe(true);
    }
    expect(sameBytes(g.tensors.get('output.weight')!.data, g.tensors.get('token_embd.weight')!.data)).toBe(true);
    expect(c.tensors.has(N.output)).toBe(false);
  });

  test('the file readers equal the bytes readers', async () => {
    const f = await readGgufFile(GGUF);
    expect(f.tensorInfos).toEqual(g.tensorInfos);
    for (const [k, t] of g.tensors) expect(sameBytes(f.tensors.get(k)!.data, t.data)).toBe(true);
    const h = await readGgufHeaderFile(GGUF);
    expect(h.dataOffset).toBe(14176);
    const sub = await readGgufFile(GGUF, { names: ['output_norm.weight'] });
    expect([...sub.tensors.keys()]).toEqual(['output_norm.weight']);
    const c = await readGgufLlamaFile(GGUF);
    for (const [name, t] of bin.tensors) expect(sameBytes(c.tensors.get(name)!.data, t.data)).toBe(true);
  });

  test('the embedded tokenizer encodes exactly like tok512.bin', () => {
    const { tokenizer } = readGgufLlama(ggufBytes);
    expect(tokenizer).toBeDefined();
    const t = tokenizer!;
    expect(t.vocabSize).toBe(512);
    expect([t.bosId, t.eosId]).toEqual([1, 2]);
    expect(t.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    for (let id = 3; id < 512; id++) {
      expect(sameBytes(t.piece(id), tok512.piece(id))).toBe(true);
      expect(t.score(id)).toBe(tok512.score(id));
    }
    const blocks = text.split('\n\n').map((b) => b.trim()).filter((b) => b.length > 0);
    let total = 0;
    const differ: number[] = [];
    blocks.forEach((b, i) => {
      const ids = t.encode(b);
      total += ids.length;
      if (!sameBytes(Int32Array.from(ids), Int32Array.from(tok512.encode(b)))) differ.push(i);
    });
    expect(differ).toEqual([]);
    expect(total).toBe(384962);
    const all = t.encode(text);
    expect(sameBytes(Int32Array.from(all), Int32Array.from(tok512.encode(text)))).toBe(true);
    expect(t.decode(all)).toBe(text);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Files built here

const F16 = (bits: number[]) => new Uint8Array(Uint16Array.from(bits).buffer);

describe('hand-built GGUF files', () => {
  const allTypes: Array<[string, KV]> = [
    ['u8', { type: 'uint8', value: 250 }],
    ['i8', { type: 'int8', value: -5 }],
    ['u16', { type: 'uint16', value: 65000 }],
    ['i16', { type: 'int16', value: -32000 }],
    ['u32', { type: 'uint32', value: 4000000000 }],
    ['i32', { type: 'int32', value: -2000000000 }],
    ['f32', { type: 'float32', value: 1.5 }],
    ['bool', { type: 'bool', value: true }],
    ['str', { type: 'string', value: 'héllo ▁ 日本' }],
    ['u64', { type: 'uint64', value: 18446744073709551615n }],
    ['i64', { type: 'int64', value: -9007199254740993n }],
    ['f64', { type: 'float64', value: Math.PI }],
    ['a.u8', { type: 'array', itemType: 'uint8', value: [1, 2, 255] }],
    ['a.i16', { type: 'array', itemType: 'int16', value: [-1, 300] }],
    ['a.u32', { type: 'array', itemType: 'uint32', value: [7] }],
    ['a.i32', { type: 'array', itemType: 'int32', value: [-7, 8] }],
    ['a.f32', { type: 'array', itemType: 'float32', value: [0.25, -2] }],
    ['a.f64', { type: 'array', itemType: 'float64', value: [1e300] }],
    ['a.u64', { type: 'array', itemType: 'uint64', value: [5n] }],
    ['a.i64', { type: 'array', itemType: 'int64', value: [-5n] }],
    ['a.bool', { type: 'array', itemType: 'bool', value: [true, false] }],
    ['a.str', { type: 'array', itemType: 'string', value: ['a', '', 'ccc'] }],
    ['a.empty', { type: 'array', itemType: 'float32', value: [] }],
    ['a.nested', { type: 'array', itemType: 'array', value: [{ itemType: 'int8', value: [1, -1] }, { itemType: 'string', value: ['x'] }] }],
  ];

  test('every metadata value type', () => {
    const g = readGguf(buildGguf({ kv: allTypes, tensors: [] }));
    const v = (k: string) => g.metadata.get(k)!;
    expect(v('u8')).toEqual({ type: 'uint8', value: 250 });
    expect(v('i8').value).toBe(-5);
    expect(v('u16').value).toBe(65000);
    expect(v('i16').value).toBe(-32000);
    expect(v('u32').value).toBe(4000000000);
    expect(v('i32').value).toBe(-2000000000);
    expect(v('f32').value).toBe(1.5);
    expect(v('bool').value).toBe(true);
    expect(v('str').value).toBe('héllo ▁ 日本');
    expect(v('u64').value).toBe(18446744073709551615n);
    expect(v('i64').value).toBe(-9007199254740993n);
    expect(v('f64').value).toBe(Math.PI);
    expect(v('a.u8')).toEqual({ type: 'array', itemType: 'uint8', value: new Uint8Array([1, 2, 255]) });
    expect(v('a.i16').value).toEqual(new Int16Array([-1, 300]));
    expect(v('a.u32').value).toEqual(new Uint32Array([7]));
    expect(v('a.i32').value).toEqual(new Int32Array([-7, 8]));
    expect(v('a.f32').value).toEqual(new Float32Array([0.25, -2]));
    expect(v('a.f64').value).toEqual(new Float64Array([1e300]));
    expect(v('a.u64').value).toEqual(new BigUint64Array([5n]));
    expect(v('a.i64').value).toEqual(new BigInt64Array([-5n]));
    expect(v('a.bool').value).toEqual([true, false]);
    expect(v('a.str').value).toEqual(['a', '', 'ccc']);
    expect(v('a.empty').value).toEqual(new Float32Array(0));
    expect(v('a.nested')).toEqual({ type: 'array', itemType: 'array', value: [new Int8Array([1, -1]), ['x']] });
    expect([...g.metadata.keys()]).toEqual(allTypes.map(([k]) => k));
    expect(g.tensorInfos).toEqual([]);
  });

  test('F32, F16, BF16, I8, I32 tensors; custom alignment; ggml dims reversed into shapes', () => {
    const tensors: TensorSpec[] = [
      { name: 'f32', dims: [3, 2], typeId: 0, data: f32Bytes([1, 2, 3, 4, 5, 6]) },
      // 0.5, -1.25, 65504, 2^-24 (subnormal), 1, -2 as IEEE half bits.
      { name: 'f16', dims: [2, 3], typeId: 1, data: F16([0x3800, 0xbd00, 0x7bff, 0x0001, 0x3c00, 0xc000]) },
      // 1, -2.5, 3.140625 as bfloat16 bits.
      { name: 'bf16', dims: [3], typeId: 30, data: F16([0x3f80, 0xc020, 0x4049]) },
      { name: 'i8', dims: [4], typeId: 24, data: new Uint8Array([0x80, 0x7f, 1, 0xff]) },
      { name: 'i32', dims: [2], typeId: 26, data: new Uint8Array(Int32Array.from([-1, 123456789]).buffer) },
    ];
    const bytes = buildGguf({ kv: [['general.alignment', { type: 'uint32', value: 64 }]], tensors, alignment: 64 });
    const g = readGguf(bytes);
    expect(g.alignment).toBe(64);
    expect(g.dataOffset % 64).toBe(0);
    const t = (n: string) => g.tensors.get(n)!;
    expect(t('f32').shape).toEqual([2, 3]);
    expect(Array.from(t('f32').data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t('f16').dtype).toBe('float32');
    expect(t('f16').shape).toEqual([3, 2]);
    expect(Array.from(t('f16').data)).toEqual([0.5, -1.25, 65504, 2 ** -24, 1, -2]);
    expect(Array.from(t('bf16').data)).toEqual([1, -2.5, 3.140625]);
    expect(t('i8').dtype).toBe('int8');
    expect(Array.from(t('i8').data)).toEqual([-128, 127, 1, -1]);
    expect(t('i32').dtype).toBe('int32');
    expect(Array.from(t('i32').data)).toEqual([-1, 123456789]);
  });

  test('quantized tensors: sizes validated, reading refused with the tensor and type named', async () => {
    const q = { name: 'blk.0.attn_q.weight', dims: [64, 2], typeId: 2, data: new Uint8Array((128 / 32) * 18) };
    const k = { name: 'blk.0.ffn_down.weight', dims: [256], typeId: 12, data: new Uint8Array(144) };
    const bytes = buildGguf({ kv: [], tensors: [q, k] });
    const h = parseGgufHeader(bytes);
    expect(h.tensorInfos.map((t) => [t.type, t.byteLength])).toEqual([['Q4_0', 72], ['Q4_K', 144]]);
    expectError(() => readGguf(bytes), UnsupportedError, /"blk\.0\.attn_q\.weight".*Q4_0/);
    expectError(() => readGguf(bytes, { names: ['blk.0.ffn_down.weight'] }), UnsupportedError, /Q4_K/);
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-gguf-'));
    try {
      const p = path.join(dir, 'q.gguf');
      await fs.promises.writeFile(p, bytes);
      await expect(readGgufFile(p)).rejects.toThrow(/Q4_0/);
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
    // A Q4_0 row must be a whole number of 32-element blocks.
    expectCorrupt(buildGguf({ kv: [], tensors: [{ ...q, dims: [48, 2] }] }), /multiple of 32/);
  });

  test('a header larger than the first read (incremental file reading)', async () => {
    const many = Array.from({ length: 60000 }, (_, i) => `token-${i}-${'x'.repeat(i % 17)}`);
    const spec: GgufSpec = {
      kv: [['big', { type: 'array', itemType: 'string', value: many }]],
      tensors: [{ name: 'w', dims: [4], typeId: 0, data: f32Bytes([1, 2, 3, 4]) }],
    };
    const bytes = buildGguf(spec);
    expect(bytes.length).toBeGreaterThan(1 << 20);
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-gguf-'));
    try {
      const p = path.join(dir, 'big.gguf');
      await fs.promises.writeFile(p, bytes);
      const g = await readGgufFile(p);
      expect((g.metadata.get('big')!.value as string[])[59999]).toBe(many[59999]);
      expect(Array.from(g.tensors.get('w')!.data)).toEqual([1, 2, 3, 4]);
      await fs.promises.writeFile(p, bytes.subarray(0, 1500000));
      await expect(readGgufFile(p)).rejects.toThrow(CorruptFileError);
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
    expect(() => parseGgufHeader(bytes.subarray(0, 1000), { fileSize: bytes.length })).toThrow(InvalidArgumentError);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The llama mapping on modified copies of the fixture

/** The fixture as a spec for the test writer, so tests can change one thing. */
function fixtureSpec(): GgufSpec {
  const g = readGguf(ggufBytes);
  const kv: Array<[string, KV]> = [];
  for (const [k, e] of g.metadata) {
    if (e.type === 'array') kv.push([k, { type: 'array', itemType: e.itemType!, value: Array.from(e.value as ArrayLike<unknown>) }]);
    else kv.push([k, { type: e.type, value: e.value } as KV]);
  }
  const tensors = g.tensorInfos.map((t) => ({ name: t.name, dims: t.dims, typeId: 0, data: new Uint8Array(ggufBytes.subarray(t.offset, t.offset + t.byteLength)) }));
  return { kv, tensors };
}

describe('GGUF llama mapping', () => {
  const base = fixtureSpec();
  const withKv = (key: string, kv: KV | null): GgufSpec => {
    const out = base.kv.filter(([k]) => k !== key);
    if (kv) out.push([key, kv]);
    return { ...base, kv: out };
  };

  test('the test writer reproduces the fixture byte for byte', () => {
    expect(sameBytes(buildGguf(base), ggufBytes)).toBe(true);
  });

  test('an F16 copy matches to half precision; an untied output stays', () => {
    const f16 = {
      ...base,
      tensors: base.tensors.map((t) => {
        const f = new Float32Array(t.data.slice().buffer);
        return t.dims.length === 2 ? { ...t, typeId: 1, data: new Uint8Array(new Tensor('float32', [f.length], f).astype('float16').data.buffer) } : t;
      }),
    };
    const c = readGgufLlama(buildGguf(f16));
    let worst = 0;
    for (const [name, t] of bin.tensors) {
      const u = c.tensors.get(name)!.data as Float32Array;
      const a = t.data as Float32Array;
      // Round to nearest half: |error| <= half an ulp (2^-11 relative), or 2^-25 absolute among subnormals.
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(u[i] - a[i]) - (Math.abs(a[i]) * 2 ** -11 + 2 ** -25));
    }
    expect(worst).toBeLessThanOrEqual(0);
    const untied = {
      ...base,
      tensors: base.tensors.map((t) => (t.name === 'output.weight' ? { ...t, data: f32Bytes(new Float32Array(t.data.slice().buffer).map((v) => v * 2)) } : t)),
    };
    const u = readGgufLlama(buildGguf(untied));
    expect(u.config.tiedEmbeddings).toBe(false);
    expect(u.tensors.get(N.output)!.data[3]).toBe(2 * (bin.tensors.get(N.tokEmbeddings)!.data[3] as number));
    validateLlamaCheckpoint(u);
    const noOutput = { ...base, tensors: base.tensors.filter((t) => t.name !== 'output.weight') };
    expect(readGgufLlama(buildGguf(noOutput)).config.tiedEmbeddings).toBe(true);
    // ggufToLlama on an already-read file
    expect(ggufToLlama(readGguf(ggufBytes)).config.dim).toBe(64);
  });

  test('refusals: other architectures, rope variants, extra tensors, missing or inconsistent metadata', () => {
    const read = (s: GgufSpec) => () => readGgufLlama(buildGguf(s), { source: 'm.gguf' });
    expectError(read(withKv('general.architecture', { type: 'string', value: 'gpt2' })), UnsupportedError, /"llama".*"gpt2"/);
    expectError(read(withKv('llama.rope.dimension_count', { type: 'uint32', value: 4 })), UnsupportedError, /partial rotary/);
    expectError(read(withKv('llama.rope.scaling.type', { type: 'string', value: 'linear' })), UnsupportedError, /rope scaling/);
    expectError(read({ ...base, tensors: [...base.tensors, { name: 'rope_freqs.weight', dims: [4], typeId: 0, data: f32Bytes([1, 1, 1, 1]) }] }), UnsupportedError, /rope_freqs/);
    expectError(read({ ...base, tensors: [...base.tensors, { name: 'blk.0.attn_q.bias', dims: [64], typeId: 0, data: new Uint8Array(256) }] }), UnsupportedError, /attn_q\.bias/);
    expectError(read(withKv('llama.block_count', null)), CorruptFileError, /llama\.block_count/);
    expectError(read(withKv('llama.block_count', { type: 'uint32', value: 6 })), CorruptFileError, /at least 56 tensors/);
    expectError(read(withKv('llama.block_count', { type: 'uint32', value: 4000000000 })), CorruptFileError, /block_count|nLayers/);
    expectError(read(withKv('llama.block_count', { type: 'string', value: '5' })), CorruptFileError, /a number for metadata llama\.block_count/);
    expectError(read(withKv('llama.feed_forward_length', { type: 'uint32', value: 171 })), CorruptFileError, /ffn_gate/);
    expectError(read(withKv('llama.attention.head_count_kv', { type: 'uint32', value: 3 })), CorruptFileError, /nKvHeads/);
    expectError(read({ ...base, tensors: base.tensors.filter((t) => t.name !== 'blk.3.ffn_up.weight') }), CorruptFileError, /blk\.3\.ffn_up\.weight/);
    expectError(read(withKv('tokenizer.ggml.bos_token_id', { type: 'uint32', value: 9999 })), CorruptFileError, /bos_token_id/);
    expectError(read(withKv('tokenizer.ggml.scores', { type: 'array', itemType: 'float32', value: [0, 1] })), CorruptFileError, /scores/);
    // Optional pieces: defaults apply.
    const noEps = readGgufLlama(buildGguf(withKv('llama.attention.layer_norm_rms_epsilon', null)));
    expect(noEps.config.normEps).toBe(1e-5);
    const theta = readGgufLlama(buildGguf(withKv('llama.rope.freq_base', { type: 'float32', value: 500000 })));
    expect(theta.config.ropeTheta).toBe(500000);
    const gpt2 = readGgufLlama(buildGguf(withKv('tokenizer.ggml.model', { type: 'string', value: 'gpt2' })));
    expect(gpt2.tokenizer).toBeUndefined();
    expect(gpt2.tokenizerUnsupported).toMatch(/gpt2/);
    const q = { ...base, tensors: base.tensors.map((t) => (t.name === 'blk.2.attn_v.weight' ? { ...t, typeId: 8, data: new Uint8Array((2048 / 32) * 34) } : t)) };
    expectError(read(q), UnsupportedError, /"blk\.2\.attn_v\.weight".*Q8_0/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Hostile files

describe('hostile GGUF files', () => {
  /** A small valid file to corrupt: two keys and two tensors. */
  const small: GgufSpec = {
    kv: [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['x', { type: 'array', itemType: 'uint32', value: [1, 2, 3] }],
    ],
    tensors: [
      { name: 'a', dims: [4], typeId: 0, data: f32Bytes([1, 2, 3, 4]) },
      { name: 'b', dims: [2, 2], typeId: 0, data: f32Bytes([5, 6, 7, 8]) },
    ],
  };
  const smallBytes = buildGguf(small);
  const hdr = parseGgufHeader(smallBytes);
  /** Byte offsets of fields in `smallBytes`, computed from the layout. */
  const off = (() => {
    const key1 = 24; // magic 4 + version 4 + counts 16
    const arch = key1 + 8 + 'general.architecture'.length; // value type of key 1
    const key2 = arch + 4 + 8 + 5; // after type, string len, "llama"
    const xType = key2 + 8 + 1;
    const xItemType = xType + 4;
    const xCount = xItemType + 4;
    const t1 = xCount + 8 + 12; // first tensor info
    const t1Dims = t1 + 8 + 1 + 4;
    const t1Type = t1Dims + 8;
    const t1Off = t1Type + 4;
    const t2 = t1Off + 8;
    return { key1, arch, archLen: arch + 4, xType, xItemType, xCount, t1, t1NDims: t1 + 9, t1Dims, t1Type, t1Off, t2, t2Off: t2 + 8 + 1 + 4 + 16 + 4 };
  })();
  const patch = (at: number, kind: 'u32' | 'u64' | 'u8', v: number | bigint) => {
    const b = smallBytes.slice();
    const dv = new DataView(b.buffer);
    if (kind === 'u32') dv.setUint32(at, Number(v), true);
    else if (kind === 'u8') dv.setUint8(at, Number(v));
    else dv.setBigUint64(at, BigInt(v), true);
    return b;
  };

  test('the offsets used below point at the intended fields', () => {
    const dv = new DataView(smallBytes.buffer);
    expect(dv.getUint32(off.arch, true)).toBe(8);
    expect(Number(dv.getBigUint64(off.archLen, true))).toBe(5);
    expect(dv.getUint32(off.xType, true)).toBe(9);
    expect(dv.getUint32(off.xItemType, true)).toBe(4);
    expect(Number(dv.getBigUint64(off.xCount, true))).toBe(3);
    expect(dv.getUint32(off.t1NDims, true)).toBe(1);
    expect(Number(dv.getBigUint64(off.t1Dims, true))).toBe(4);
    expect(dv.getUint32(off.t1Type, true)).toBe(0);
    expect(Number(dv.getBigUint64(off.t1Off, true))).toBe(0);
    expect(Number(dv.getBigUint64(off.t2Off, true))).toBe(32);
    expect(hdr.tensorInfos.map((t) => t.name)).toEqual(['a', 'b']);
  });

  test('truncated at every offset of a small file, throughout the fixture header, and at sampled data offsets', () => {
    // (The last 16 bytes of the small file are padding after tensor b: cutting them leaves a valid file.)
    const end = hdr.tensorInfos[1].offset + hdr.tensorInfos[1].byteLength;
    expect(end).toBe(smallBytes.length - 16);
    for (let n = 0; n < end; n++) expectCorrupt(smallBytes.subarray(0, n));
    for (let n = end; n <= smallBytes.length; n++) expect(readGguf(smallBytes.subarray(0, n)).tensors.size).toBe(2);
    // The fixture: every offset of its first 2 KiB (keys and the start of the vocabulary), then every 7th byte.
    for (let n = 0; n < 14176 + 64; n += n < 2048 ? 1 : 7) expectCorrupt(ggufBytes.subarray(0, n));
    for (let n = 14176 + 64; n < ggufBytes.length; n += 4099) expectCorrupt(ggufBytes.subarray(0, n), /inside the .*data section/);
  });

  test('lying lengths and counts are refused before allocation', () => {
    expectCorrupt(patch(off.key1, 'u64', 2n ** 62n), /below 2\^53/); // key length beyond 2^53
    expectCorrupt(patch(off.key1, 'u64', 2n ** 40n), /length of at most/); // key length beyond the file
    expectCorrupt(patch(off.archLen, 'u64', 1e12), /length of at most/); // string value length
    expectCorrupt(patch(off.xCount, 'u64', 2n ** 50n), /item count of at most/); // array count
    expectCorrupt(patch(off.xCount, 'u64', 2n ** 63n), /below 2\^53/);
    expectCorrupt(patch(16, 'u64', 1e9), /metadata count of at most/); // kv count
    expectCorrupt(patch(8, 'u64', 1e9), /tensor count of at most/); // tensor count
    expectCorrupt(patch(16, 'u64', 3), /Expected/); // one key too many: runs into the tensor infos
    expectCorrupt(patch(8, 'u64', 3), /Expected/);
  });

  test('unknown types, bad values and layout violations', () => {
    expectCorrupt(patch(off.arch, 'u32', 13), /value type.*received 13/);
    expectCorrupt(patch(off.arch, 'u32', 0xffffffff), /value type/);
    expectCorrupt(patch(off.xItemType, 'u32', 99), /value type in \[0, 12\] for the items/);
    expectCorrupt(patch(off.t1NDims, 'u32', 5), /at most 4 dimensions/);
    expectCorrupt(patch(off.t1Type, 'u32', 4), /known ggml type/); // removed Q4_2
    expectCorrupt(patch(off.t1Type, 'u32', 1000), /known ggml type/);
    expectCorrupt(patch(off.t1Off, 'u64', 3), /multiple of the alignment 32/); // misaligned
    expectCorrupt(patch(off.t1Off, 'u64', 32), /overlapping/); // a lands on b
    expectCorrupt(patch(off.t2Off, 'u64', 4096), /inside the .*data section/); // past the end
    expectCorrupt(patch(off.t2Off, 'u64', 2n ** 52n), /inside the .*data section/);
    expectCorrupt(patch(off.t1Dims, 'u64', 2n ** 40n), /dimension in \[0, 2147483647\]/);
    // dims whose product overflows 2^53
    expectCorrupt(buildGguf({ kv: [], tensors: [{ name: 'x', dims: [2 ** 30, 2 ** 30, 2 ** 30], typeId: 0, data: new Uint8Array(0) }] }), /below 2\^53/);
    expectCorrupt(buildGguf({ kv: [], tensors: [{ name: 'x', dims: [2 ** 26, 2 ** 26], typeId: 0, data: new Uint8Array(0) }] }), /byte size below 2\^53|inside/);
    // duplicates
    expectCorrupt(buildGguf({ ...small, tensors: [small.tensors[0], { ...small.tensors[1], name: 'a' }] }), /unique tensor names/);
    expectCorrupt(buildGguf({ ...small, kv: [small.kv[0], small.kv[0]] }), /unique metadata keys/);
    // alignment
    for (const v of [0, 3, 48]) {
      expectCorrupt(buildGguf({ ...small, kv: [...small.kv, ['general.alignment', { type: 'uint32', value: v }]] }), /power of two/);
    }
    expectCorrupt(buildGguf({ ...small, kv: [...small.kv, ['general.alignment', { type: 'uint64', value: 32n }]] }), /uint32 power of two/);
    // a bool that is neither 0 nor 1; an invalid UTF-8 key; too deeply nested arrays
    expectCorrupt(buildGguf({ kv: [['b', { type: 'raw', typeId: 7, bytes: new Uint8Array([2]) }]], tensors: [] }), /bool of 0 or 1/);
    const badKey = buildGguf({ kv: [['ab', { type: 'uint8', value: 1 }]], tensors: [] });
    badKey[24 + 8] = 0xff;
    expectCorrupt(badKey, /UTF-8/);
    let nested: { itemType: string; value: unknown[] } = { itemType: 'uint8', value: [1] };
    for (let i = 0; i < 10; i++) nested = { itemType: 'array', value: [nested] };
    expectCorrupt(buildGguf({ kv: [['deep', { type: 'array', itemType: nested.itemType, value: nested.value }]], tensors: [] }), /nested at most 8/);
    // magic and versions
    expectCorrupt(buildGguf({ ...small, magic: 'GGUG' }), /magic "GGUF"/);
    expectCorrupt(buildGguf({ ...small, version: 7 }), /version 2 or 3/);
    expectError(() => readGguf(buildGguf({ ...small, version: 1 })), UnsupportedError, /version 1/);
    expectError(() => readGguf(buildGguf({ ...small, version: 0x03000000 })), UnsupportedError, /big-endian/);
    expect(readGguf(buildGguf({ ...small, version: 2 })).version).toBe(2);
  });

  test('argument errors', () => {
    expect(() => readGguf('GGUF' as never)).toThrow(InvalidArgumentError);
    expect(() => readGguf(smallBytes, { names: ['nope'] })).toThrow(InvalidArgumentError);
  });
});
