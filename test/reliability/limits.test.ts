// Resource limits (issue 9, part 3): every reader checks declared sizes against the file and a memory budget
// before allocating, zip entries have a compression-ratio guard and stop inflating past their declared size,
// tensor shapes whose products overflow (or dimensions beyond int32) are refused, and loadModel of an untrusted
// archive never executes code nor reads outside the archive. Each guard gets a crafted hostile input here.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { deflateSync } from 'fflate';
import {
  Dense,
  HfTokenizer,
  Input,
  Llama2cTokenizer,
  LlamaCausalLM,
  LlamaKVCache,
  QkError,
  Sequential,
  Tensor,
  loadModel,
  readGgufFile,
  readLlama2cFile,
} from '../../lib';
import {
  defaultMaxLoadBytes,
  getMaxLoadBytes,
  readHdf5,
  readSafetensors,
  readZip,
  setMaxLoadBytes,
  writeHdf5,
  h5Group,
  h5Dataset,
  writeSafetensors,
  writeZip,
  crc32,
} from '../../lib/io';
import { buildGguf, f32Bytes } from '../io/gguf-writer';

const ROOT = path.join(__dirname, '..', '..');
const STORIES = path.join(ROOT, 'models', 'stories260K');
const enc = new TextEncoder();

/** 'ok' or the QkError code (anything else is reported as such, and fails the expectations). */
async function codeOf(f: () => unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    return e instanceof QkError ? e.code : `not a QkError: ${(e as Error)?.stack ?? String(e)}`;
  }
}
async function messageOf(f: () => unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    return e instanceof QkError ? `${e.code}: ${e.message}` : `not a QkError: ${String(e)}`;
  }
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-limits-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => {
  setMaxLoadBytes(null);
  delete process.env.QK_MAX_LOAD_BYTES;
});

// ------------------------------------------------------------------------------------------------ zip helpers

/** Offsets of the central headers and local headers of a zip written by writeZip (no comments). */
function headers(zip: Uint8Array): { central: number[]; local: number[] } {
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const central: number[] = [];
  const local: number[] = [];
  for (let p = 0; p + 4 <= zip.length; p++) {
    const sig = dv.getUint32(p, true);
    if (sig === 0x02014b50) central.push(p);
    else if (sig === 0x04034b50) local.push(p);
  }
  return { central, local };
}

/** Sets the uncompressed size of entry `i` in both its local and central header. */
function patchSize(zip: Uint8Array, i: number, size: number): Uint8Array {
  const out = zip.slice();
  const dv = new DataView(out.buffer);
  const { central, local } = headers(out);
  dv.setUint32(central[i] + 24, size, true);
  dv.setUint32(local[i] + 22, size, true);
  return out;
}

describe('zip (the .keras container)', () => {
  const data = enc.encode('x'.repeat(4 << 20)); // 4 MiB, very compressible

  test('a symbolic-link entry (Unix mode 0120777 in the external attributes) is refused, also inside loadModel', async () => {
    const zip = writeZip([['config.json', enc.encode('{}')], ['model.weights.h5', enc.encode('/etc/passwd')]]);
    const dv = new DataView(zip.buffer);
    const c = headers(zip).central[1];
    dv.setUint16(c + 4, (3 << 8) | 20, true); // made by: Unix
    dv.setUint32(c + 38, (0o120777 << 16) >>> 0, true);
    expect(await messageOf(() => readZip(zip))).toMatch(/^QK_CORRUPT_FILE: .*regular file or directory .*"model\.weights\.h5".*symbolic link/);
    expect(await codeOf(() => loadModel(zip))).toBe('QK_CORRUPT_FILE');
    // the same entry as a regular Unix file (0100644) is fine
    dv.setUint32(c + 38, (0o100644 << 16) >>> 0, true);
    expect(readZip(zip).get('model.weights.h5')).toEqual(enc.encode('/etc/passwd'));
  });

  test("entries named with '..', an absolute path, a drive letter or backslashes, and duplicate entries are refused", async () => {
    for (const name of ['../evil.json', 'a/../../evil', '/etc/passwd', 'C:/x', 'a\\b']) {
      const zip = writeZip([['config.json', enc.encode('{}')], ['placeholder-name-x', enc.encode('1')]]);
      // rewrite the second name in place (same length or padded) in both headers
      const bytes = zip.slice();
      const patched = Buffer.from(bytes).toString('latin1').split('placeholder-name-x').join(name.padEnd(18, '_').slice(0, 18));
      const fixed = name.length <= 18 ? Buffer.from(patched, 'latin1') : Buffer.from(bytes);
      expect(await codeOf(() => readZip(new Uint8Array(fixed)))).toBe('QK_CORRUPT_FILE');
    }
    const dup = Buffer.from(writeZip([['config.json', enc.encode('{}')], ['config.jsoX', enc.encode('{}')]])).toString('latin1').split('config.jsoX').join('config.json');
    expect(await messageOf(() => readZip(new Uint8Array(Buffer.from(dup, 'latin1'))))).toMatch(/^QK_CORRUPT_FILE: .*unique name/);
  });

  test('compression-ratio guard: a deflated entry declaring far more bytes than its compressed size allows is refused before inflating', async () => {
    const zip = writeZip([['w.bin', new Uint8Array(4096)]], { level: 9 }); // ~20 bytes compressed (stored below the floor)
    const c = headers(zip).central[0];
    const method = new DataView(zip.buffer).getUint16(c + 10, true);
    expect(method).toBe(8);
    const bomb = patchSize(zip, 0, 1 << 30); // declares 1 GiB from a few bytes
    expect(await messageOf(() => readZip(bomb))).toMatch(/^QK_CORRUPT_FILE: .*compression ratio of at most 200/);
  });

  test('inflating stops as soon as the output passes the declared size', async () => {
    // hex digits of a pseudo-random sequence: deflate halves them, well inside the ratio guard
    let x = 1;
    const hex = new Uint8Array(640 << 10);
    for (let i = 0; i < hex.length; i++) hex[i] = 48 + ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 28);
    const zip = writeZip([['w.bin', hex]], { level: 1 });
    expect(new DataView(zip.buffer).getUint16(headers(zip).central[0] + 10, true)).toBe(8); // deflated
    const c = headers(zip).central[0];
    const comp = new DataView(zip.buffer).getUint32(c + 20, true);
    expect(comp * 200).toBeGreaterThan(320 << 10); // inside the ratio guard
    const lying = patchSize(zip, 0, 320 << 10); // declares 320 KiB, inflates to 640 KiB
    expect(await messageOf(() => readZip(lying))).toMatch(/^QK_CORRUPT_FILE: .*at most 327680 uncompressed bytes \(the declared size\)/);
  });

  test('the declared uncompressed total is checked against the memory budget (option, setMaxLoadBytes, QK_MAX_LOAD_BYTES)', async () => {
    const zip = writeZip([['a.bin', data], ['b.bin', data]], { level: 6 });
    expect(readZip(zip).size).toBe(2);
    expect(await messageOf(() => readZip(zip, { maxBytes: 6 << 20 }))).toMatch(/^QK_OUT_OF_MEMORY: .*load budget.*"b\.bin"/);
    setMaxLoadBytes(6 << 20);
    expect(await codeOf(() => readZip(zip))).toBe('QK_OUT_OF_MEMORY');
    setMaxLoadBytes(null);
    process.env.QK_MAX_LOAD_BYTES = '5M';
    expect(getMaxLoadBytes()).toBe(5 << 20);
    expect(await codeOf(() => readZip(zip))).toBe('QK_OUT_OF_MEMORY');
    process.env.QK_MAX_LOAD_BYTES = 'lots';
    expect(await codeOf(() => getMaxLoadBytes())).toBe('QK_INVALID_ARGUMENT');
    delete process.env.QK_MAX_LOAD_BYTES;
    expect(getMaxLoadBytes()).toBe(defaultMaxLoadBytes());
    expect(defaultMaxLoadBytes()).toBeLessThanOrEqual(16 * 2 ** 30);
    expect(await codeOf(() => setMaxLoadBytes(-1))).toBe('QK_INVALID_ARGUMENT');
  });
});

// ------------------------------------------------------------------------------------------------ .keras

async function archive(config: unknown, weights?: Uint8Array): Promise<Uint8Array> {
  const entries: Array<[string, Uint8Array]> = [
    ['metadata.json', enc.encode('{"keras_version":"3.16.0","date_saved":"2026-01-01@00:00:00"}')],
    ['config.json', enc.encode(JSON.stringify(config))],
  ];
  if (weights) entries.push(['model.weights.h5', weights]);
  return writeZip(entries);
}

function sequentialConfig(layers: unknown[], inputDim: number): Record<string, unknown> {
  return {
    module: 'keras',
    class_name: 'Sequential',
    config: { name: 's', layers: [{ class_name: 'InputLayer', config: { batch_shape: [null, inputDim], dtype: 'float32', name: 'in' } }, ...layers] },
    build_config: { input_shape: [null, inputDim] },
  };
}
const denseEntry = (units: number, name: string, extra: Record<string, unknown> = {}) => ({ module: 'keras.layers', class_name: 'Dense', config: { name, units, ...extra } });

describe('loadModel of an untrusted archive', () => {
  test('a config.json declaring layers too big for the budget fails with QK_OUT_OF_MEMORY before the weights are allocated', async () => {
    // 2^20 x 2^20 float32 = 4 TiB: without the budget this would be a RangeError or an out-of-memory crash
    const huge = await archive(sequentialConfig([denseEntry(1 << 20, 'd')], 1 << 20));
    expect(await messageOf(() => loadModel(huge))).toMatch(/^QK_OUT_OF_MEMORY: .*load budget/);
    // 4096 x 4096 float32 = 64 MiB: fine by default, refused with a 16 MiB budget
    const mid = await archive(sequentialConfig([denseEntry(4096, 'd')], 4096));
    expect(await codeOf(() => loadModel(mid, { maxBytes: 16 << 20 }))).toBe('QK_OUT_OF_MEMORY');
    const before = process.memoryUsage().arrayBuffers;
    expect(await codeOf(() => loadModel(mid, { maxBytes: 16 << 20 }))).toBe('QK_OUT_OF_MEMORY');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 << 20); // nothing close to 64 MiB was allocated
  });

  test('a file larger than the budget is not read at all', async () => {
    const m = new Sequential({ layers: [Input({ shape: [64] }), new Dense({ units: 64, seed: 1 })] });
    await m.build();
    const f = path.join(tmp, 'small.keras');
    await m.save(f);
    expect(await codeOf(() => loadModel(f))).toBe('ok');
    expect(await messageOf(() => loadModel(f, { maxBytes: 1000 }))).toMatch(/^QK_OUT_OF_MEMORY: .*the file in small\.keras/);
    expect(await codeOf(() => loadModel(f, { maxBytes: -5 }))).toBe('QK_INVALID_ARGUMENT');
  });

  test('the weights file inside the archive is bounded too: a sparse chunked HDF5 dataset (256 MiB declared, ~30 KB stored) is refused', async () => {
    const file = path.join(tmp, 'sparse.h5');
    const r = spawnSync(process.execPath, [path.join(__dirname, 'make-sparse-h5.mjs'), file], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const bytes = new Uint8Array(fs.readFileSync(file));
    expect(bytes.length).toBeLessThan(1 << 20);
    expect(await messageOf(() => readHdf5(bytes, { source: 'sparse.h5' }))).toMatch(/^QK_CORRUPT_FILE: .*chunked dataset of at most 1024 × the/);
    // and the dataset budget of contiguous datasets
    const root = h5Group();
    root.children.set('w', h5Dataset('float32', [1024], new Float32Array(1024)));
    const small = await writeHdf5(root);
    expect(await codeOf(() => readHdf5(small))).toBe('ok');
    expect(await messageOf(() => readHdf5(small, { maxBytes: 1000 }))).toMatch(/^QK_CORRUPT_FILE: .*at most 1000 bytes of dataset data/);
  });

  test('a Lambda layer (serialized Python bytecode) is refused with a clear error; nothing is executed', async () => {
    const lambda = {
      module: 'keras.layers',
      class_name: 'Lambda',
      config: { name: 'l', function: { class_name: '__lambda__', config: { code: '4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk7pAgAAAKkAKQHaAXhyAgAAAHICAAAA+gg8c3RkaW4+2gg8bGFtYmRhPgEAAADzAAAAAA==', defaults: null, closure: null } } },
    };
    const bytes = await archive(sequentialConfig([lambda], 4));
    expect(await messageOf(() => loadModel(bytes))).toMatch(/^QK_UNSUPPORTED: .*Lambda layer.*never executes/);
  });

  test('class names that are Object.prototype members or code never reach anything but the registry', async () => {
    const g = globalThis as { __qkPwned?: boolean };
    for (const cls of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'eval', 'Function']) {
      const layer = { class_name: cls, config: { name: 'x', units: 'globalThis.__qkPwned = true' } };
      expect(await codeOf(() => loadModel(archiveSync(sequentialConfig([layer], 4)), { customObjects: {} }))).toBe('QK_INVALID_ARGUMENT');
    }
    const evil = denseEntry(2, 'd', { activation: 'globalThis.__qkPwned = true', kernel_initializer: { class_name: 'Function', config: { body: 'globalThis.__qkPwned = true' } } });
    expect(await codeOf(() => loadModel(archiveSync(sequentialConfig([evil], 4))))).toMatch(/^QK_/);
    expect(g.__qkPwned).toBeUndefined();
  });
});

function archiveSync(config: unknown): Uint8Array {
  return writeZip([['config.json', enc.encode(JSON.stringify(config))]]);
}

// ------------------------------------------------------------------------------------------------ tensor files

describe('safetensors, GGUF, llama2.c', () => {
  const st = (header: Record<string, unknown>, dataLen: number) => {
    const h = enc.encode(JSON.stringify(header));
    const out = new Uint8Array(8 + h.length + dataLen);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    return out;
  };

  test('safetensors: offsets beyond the file, a dimension beyond int32 (even with a zero product), and a product overflowing 2^53 are refused', async () => {
    expect(await messageOf(() => readSafetensors(st({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8)))).toMatch(/^QK_CORRUPT_FILE: .*within the 8-byte data buffer/);
    expect(await messageOf(() => readSafetensors(st({ w: { dtype: 'F32', shape: [2 ** 31, 0], data_offsets: [0, 0] } }, 0)))).toMatch(/^QK_CORRUPT_FILE: .*dimension in \[0, 2147483647\] for shape\[0\]/);
    const big = 2 ** 31 - 1;
    expect(await messageOf(() => readSafetensors(st({ w: { dtype: 'F32', shape: [big, big, big], data_offsets: [0, 0] } }, 0)))).toMatch(/^QK_CORRUPT_FILE: .*below 2\^53 bytes/);
  });

  test('safetensors: the tensor data is checked against the budget before it is copied', async () => {
    const bytes = writeSafetensors([['w', new Tensor('float32', [1024], new Float32Array(1024))]]);
    expect(readSafetensors(bytes).tensors.get('w')!.size).toBe(1024);
    expect(await messageOf(() => readSafetensors(bytes, { maxBytes: 4000 }))).toMatch(/^QK_OUT_OF_MEMORY: .*4096 bytes/);
  });

  test('GGUF: a dimension beyond int32 and a product overflowing 2^53 are refused; tensors are checked against the budget (F16 counted as float32 too)', async () => {
    const file = (dims: number[]) => {
      const f = path.join(tmp, 'x.gguf');
      fs.writeFileSync(f, buildGguf({ kv: [], tensors: [{ name: 'w', dims, typeId: 0, data: new Uint8Array(0) }] }));
      return f;
    };
    expect(await messageOf(() => readGgufFile(file([2 ** 31, 0])))).toMatch(/^QK_CORRUPT_FILE: .*dimension in \[0, 2147483647\]/);
    expect(await messageOf(() => readGgufFile(file([2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1])))).toMatch(/^QK_CORRUPT_FILE: .*below 2\^53/);
    const ok = path.join(tmp, 'ok.gguf');
    fs.writeFileSync(ok, buildGguf({ kv: [], tensors: [{ name: 'w', dims: [256], typeId: 0, data: f32Bytes(new Float32Array(256)) }] }));
    expect(await codeOf(() => readGgufFile(ok))).toBe('ok');
    expect(await messageOf(() => readGgufFile(ok, { maxBytes: 1000 }))).toMatch(/^QK_OUT_OF_MEMORY: .*1024 bytes/);
    expect(await codeOf(() => readGgufFile(path.join(STORIES, 'stories260K.gguf'), { maxBytes: 1 << 20 }))).toBe('QK_OUT_OF_MEMORY');
  });

  test('llama2.c: the checkpoint is checked against the budget before any tensor is allocated', async () => {
    expect(await codeOf(() => readLlama2cFile(path.join(STORIES, 'stories260K.bin')))).toBe('ok');
    expect(await messageOf(() => readLlama2cFile(path.join(STORIES, 'stories260K.bin'), { maxBytes: 1 << 16 }))).toMatch(/^QK_OUT_OF_MEMORY: .*the tensors \(dim=64/);
  });

  test('a KV cache sized by an untrusted context length is checked against the budget', async () => {
    expect(await messageOf(() => new LlamaKVCache(5, 1, 4, 2 ** 31 - 1, 8))).toMatch(/^QK_OUT_OF_MEMORY: .*KV cache/);
    const lm = new LlamaCausalLM({ vocabularySize: 16, numLayers: 1, numQueryHeads: 2, numKeyValueHeads: 1, hiddenDim: 8, intermediateDim: 8, maxSequenceLength: 2 ** 31 - 1 });
    await lm.build();
    expect(await codeOf(() => lm.generate([1, 2], { maxNewTokens: 1 }))).toBe('QK_OUT_OF_MEMORY');
  });
});

describe('tokenizers', () => {
  test('llama2.c tokenizer.bin: the vocabulary is checked against the budget before any token is created', async () => {
    const f = path.join(STORIES, 'tok512.bin');
    expect((await Llama2cTokenizer.fromFile(f)).vocabSize).toBe(512);
    expect(await messageOf(() => Llama2cTokenizer.fromFile(f, { maxBytes: 1000 }))).toMatch(/^QK_OUT_OF_MEMORY: /);
    const bytes = new Uint8Array(fs.readFileSync(f));
    expect(await messageOf(() => Llama2cTokenizer.fromBytes(bytes, { maxBytes: bytes.length + 1000 }))).toMatch(/^QK_OUT_OF_MEMORY: .*the vocabulary/);
  });

  test('tokenizer.json: the text may be at most a tenth of the budget (parsed JSON is larger)', async () => {
    const json = JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] } });
    expect(await messageOf(() => HfTokenizer.fromJSON(json, { maxBytes: json.length * 5 }))).toMatch(/^QK_OUT_OF_MEMORY: .*tokenizer\.json/);
    const f = path.join(tmp, 'tokenizer.json');
    fs.writeFileSync(f, json);
    expect(await codeOf(() => HfTokenizer.fromFile(f, { maxBytes: json.length * 5 }))).toBe('QK_OUT_OF_MEMORY');
  });
});

test('crc32 helper sanity (used by the zip crafting above)', () => {
  expect(crc32(enc.encode('123456789')).toString(16)).toBe('cbf43926');
  expect(deflateSync(new Uint8Array(10)).length).toBeGreaterThan(0);
});
