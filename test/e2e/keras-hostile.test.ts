// Hostile and broken .keras archives, built in the test from a real Keras file (test/fixtures/keras-quantized)
// by editing it with readZip/writeZip and readHdf5/writeHdf5 (or by patching bytes where the writers refuse to
// produce the damage). Every one must reject with a QkError whose code is QK_CORRUPT_FILE (or
// QK_INVALID_ARGUMENT for unknown classes) and whose message names what is wrong; loadModel must never return a
// model for them and never crash the process. Also: saving is atomic (a failed save leaves the previous file
// byte-identical).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { Dense, QkError, Sequential, Tensor, loadModel, saveModel, terminateHdf5Worker } from '../../lib';
import { crc32, h5Dataset, h5Get, h5Group, readHdf5, readZip, writeHdf5, writeZip } from '../../lib/io';
import type { H5Dataset, H5Group } from '../../lib/io';

const QDIR = path.join(__dirname, '..', 'fixtures', 'keras-quantized');
const enc = new TextEncoder();
const dec = new TextDecoder();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-hostile-'));

afterAll(async () => {
  await terminateHdf5Worker();
  try {
    fs.chmodSync(path.join(tmp, 'ro'), 0o755);
  } catch {
    // not created
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

const fixture = (name: string) => new Uint8Array(fs.readFileSync(path.join(QDIR, `${name}.keras`)));

/** The archive's entries, in order, as editable pairs. */
function entriesOf(bytes: Uint8Array): Array<[string, Uint8Array]> {
  return [...readZip(bytes).entries()];
}

function replaceEntry(bytes: Uint8Array, name: string, data: Uint8Array): Uint8Array {
  const entries = entriesOf(bytes);
  const i = entries.findIndex(([n]) => n === name);
  if (i < 0) throw new Error(`no entry ${name}`);
  entries[i] = [name, data];
  return writeZip(entries);
}

async function editWeights(name: string, edit: (root: H5Group) => void): Promise<Uint8Array> {
  const bytes = fixture(name);
  const root = await readHdf5(readZip(bytes).get('model.weights.h5')!);
  edit(root);
  return replaceEntry(bytes, 'model.weights.h5', await writeHdf5(root));
}

function editConfig(name: string, edit: (config: Record<string, unknown>) => void): Uint8Array {
  const bytes = fixture(name);
  const config = JSON.parse(dec.decode(readZip(bytes).get('config.json')!));
  edit(config);
  return replaceEntry(bytes, 'config.json', enc.encode(JSON.stringify(config)));
}

function group(root: H5Group, p: string): H5Group {
  const g = h5Get(root, p);
  if (!g || g.kind !== 'group') throw new Error(`no group ${p}`);
  return g;
}

function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Replaces every occurrence of `from` by `to` (same length) — used to write entry names writeZip refuses. */
function patchAll(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const a = enc.encode(from);
  const b = enc.encode(to);
  if (a.length !== b.length) throw new Error('same length only');
  const out = bytes.slice();
  let n = 0;
  for (let i = indexOfBytes(out, a); i >= 0; i = indexOfBytes(out, a, i + 1)) {
    out.set(b, i);
    n++;
  }
  if (n === 0) throw new Error(`${from} not found`);
  return out;
}

/** Loads and expects a QkError with `code` whose message matches every pattern; returns the error. */
async function expectRejected(bytes: Uint8Array, code: 'QK_CORRUPT_FILE' | 'QK_INVALID_ARGUMENT' | 'QK_UNSUPPORTED', ...patterns: RegExp[]): Promise<QkError> {
  let model: unknown;
  let error: unknown;
  try {
    model = await loadModel(bytes);
  } catch (err) {
    error = err;
  }
  expect(model).toBeUndefined();
  expect(error).toBeInstanceOf(QkError);
  const e = error as QkError;
  expect({ code: e.code, message: e.message }).toMatchObject({ code });
  for (const p of patterns) expect(e.message).toMatch(p);
  return e;
}

describe('the untouched fixtures load (so every rejection below is caused by the edit)', () => {
  test.each(['seq_int8', 'seq_int4_block8'])('%s', async (name) => {
    const model = await loadModel(fixture(name));
    const y = (await model.predict(new Tensor('float32', [1, 10], new Float32Array(10).fill(0.5)))) as Tensor;
    expect(y.shape).toEqual([1, 1]);
    // and the edit helpers reproduce a loadable archive when they change nothing
    const same = await editWeights(name, () => undefined);
    await expect(loadModel(same)).resolves.toBeDefined();
  });
});

describe('container damage', () => {
  test('truncated archive (half the bytes)', async () => {
    const b = fixture('seq_int8');
    await expectRejected(b.subarray(0, b.length >> 1), 'QK_CORRUPT_FILE', /archive/i);
  });

  test('truncated archive (only the end-of-central-directory record cut off)', async () => {
    const b = fixture('seq_int8');
    await expectRejected(b.subarray(0, b.length - 10), 'QK_CORRUPT_FILE', /end.of.central.directory/i, /truncated/);
  });

  test('an empty file', async () => {
    await expectRejected(new Uint8Array(0), 'QK_CORRUPT_FILE');
  });

  test('wrong CRC: one byte of the stored weights flipped', async () => {
    const b = fixture('seq_int8').slice();
    const weights = readZip(b).get('model.weights.h5')!;
    // the weights entry is stored: find its data in the archive and flip a byte in the middle of it
    const at = indexOfBytes(b, weights.subarray(0, 64));
    expect(at).toBeGreaterThan(0);
    b[at + (weights.length >> 1)] ^= 0xff;
    await expectRejected(b, 'QK_CORRUPT_FILE', /CRC|crc32|checksum/i, /model\.weights\.h5/);
  });

  test('wrong CRC: the CRC field itself altered (central directory and local header)', async () => {
    const b = fixture('seq_int8').slice();
    const cfg = readZip(b).get('config.json')!;
    const crc = crc32(cfg);
    const le = new Uint8Array([crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24]);
    let n = 0;
    for (let i = indexOfBytes(b, le); i >= 0; i = indexOfBytes(b, le, i + 1)) {
      b[i] ^= 0x01;
      n++;
    }
    expect(n).toBeGreaterThanOrEqual(2);
    await expectRejected(b, 'QK_CORRUPT_FILE', /CRC|crc32|checksum/i, /config\.json/);
  });

  test("an entry whose name contains '..' (path traversal)", async () => {
    const entries = entriesOf(fixture('seq_int8'));
    entries.push(['zz/evil.txt', enc.encode('pwned')]);
    const b = patchAll(writeZip(entries), 'zz/evil.txt', '../evil.txt');
    await expectRejected(b, 'QK_CORRUPT_FILE', /\.\.\/evil\.txt/, /'\.\.'|segment/);
    expect(fs.existsSync(path.join(process.cwd(), '..', 'evil.txt'))).toBe(false);
  });

  test('an absolute entry name', async () => {
    const entries = entriesOf(fixture('seq_int8'));
    entries.push(['e/tc/pwned', enc.encode('pwned')]);
    const b = patchAll(writeZip(entries), 'e/tc/pwned', '/etc/pwned');
    await expectRejected(b, 'QK_CORRUPT_FILE', /\/etc\/pwned/);
  });

  test('a zip bomb entry (16 MiB of zeros deflated ~1000:1)', async () => {
    // writeZip refuses to produce such an entry, so write the deflated bytes as a stored entry and then patch
    // its headers: method 8 (deflate), the real uncompressed size and CRC.
    const zeros = new Uint8Array(16 << 20);
    const deflated = new Uint8Array(zlib.deflateRawSync(zeros, { level: 9 }));
    expect(zeros.length / deflated.length).toBeGreaterThan(500);
    const entries = entriesOf(fixture('seq_int8'));
    const b = writeZip([...entries, ['assets/bomb.bin', deflated]]).slice();
    const dv = new DataView(b.buffer);
    const name = enc.encode('assets/bomb.bin');
    const crc = crc32(zeros);
    let patched = 0;
    for (let i = indexOfBytes(b, name); i >= 0; i = indexOfBytes(b, name, i + 1)) {
      if (dv.getUint32(i - 30, true) === 0x04034b50) {
        dv.setUint16(i - 30 + 8, 8, true);
        dv.setUint32(i - 30 + 14, crc, true);
        dv.setUint32(i - 30 + 22, zeros.length, true);
        patched++;
      } else if (dv.getUint32(i - 46, true) === 0x02014b50) {
        dv.setUint16(i - 46 + 10, 8, true);
        dv.setUint32(i - 46 + 16, crc, true);
        dv.setUint32(i - 46 + 24, zeros.length, true);
        patched++;
      }
    }
    expect(patched).toBe(2);
    // the patched archive is a valid zip with that entry once the limits allow it (so the rejection below is the
    // bomb check, not some other damage)
    const ok = readZip(b, { limits: { maxRatio: 1e6 } });
    expect(ok.get('assets/bomb.bin')!.length).toBe(zeros.length);
    await expectRejected(b, 'QK_CORRUPT_FILE', /bomb\.bin/, /ratio|compress/i);
  });

  test('a zip bomb entry declared far larger than the limit (uncompressed size field lies)', async () => {
    const entries = entriesOf(fixture('seq_int8'));
    const b = writeZip([...entries, ['assets/big.bin', new Uint8Array(64)]]).slice();
    // patch the uncompressed size (64) of the last entry in its central-directory record to 0xFFFFFFF0
    const name = enc.encode('assets/big.bin');
    const dv = new DataView(b.buffer);
    let patched = 0;
    for (let i = indexOfBytes(b, name); i >= 0; i = indexOfBytes(b, name, i + 1)) {
      if (dv.getUint32(i - 46, true) === 0x02014b50) {
        dv.setUint32(i - 46 + 24, 0xfffffff0, true);
        patched++;
      }
    }
    expect(patched).toBe(1);
    await expectRejected(b, 'QK_CORRUPT_FILE', /big\.bin/);
  });

  test('too many entries for the configured limit', async () => {
    const entries = entriesOf(fixture('seq_int8'));
    for (let i = 0; i < 20; i++) entries.push([`assets/f${i}`, new Uint8Array(1)]);
    let err: unknown;
    try {
      await loadModel(writeZip(entries), { limits: { maxEntries: 10 } });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'QK_CORRUPT_FILE' });
    expect((err as Error).message).toMatch(/entries|10/);
  });

  test('no config.json', async () => {
    const entries = entriesOf(fixture('seq_int8')).filter(([n]) => n !== 'config.json');
    await expectRejected(writeZip(entries), 'QK_CORRUPT_FILE', /config\.json/);
  });

  test('not a zip at all (an HDF5 file passed as a .keras)', async () => {
    await expectRejected(readZip(fixture('seq_int8')).get('model.weights.h5')!, 'QK_CORRUPT_FILE');
  });
});

describe('config.json damage', () => {
  test('config.json is not JSON', async () => {
    const b = replaceEntry(fixture('seq_int8'), 'config.json', enc.encode('{"class_name": "Sequential", "config": {'));
    await expectRejected(b, 'QK_CORRUPT_FILE', /config\.json/, /JSON/);
  });

  test('config.json is not UTF-8', async () => {
    const b = replaceEntry(fixture('seq_int8'), 'config.json', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    await expectRejected(b, 'QK_CORRUPT_FILE', /config\.json/);
  });

  test('config.json is JSON but not a model (a number)', async () => {
    const b = replaceEntry(fixture('seq_int8'), 'config.json', enc.encode('42'));
    const e = await expectRejected(b, 'QK_INVALID_ARGUMENT', /42|number/);
    expect(e.message.length).toBeGreaterThan(10);
  });

  test('config naming an unknown layer class', async () => {
    const b = editConfig('seq_int8', (c) => {
      const layers = (c.config as { layers: Array<{ class_name: string }> }).layers;
      layers[1].class_name = 'FancyDense';
    });
    await expectRejected(b, 'QK_INVALID_ARGUMENT', /'FancyDense'/, /registerLayer\(FancyDense\)/, /'dense'/);
  });

  test('a quantization_config naming an unregistered quantizer', async () => {
    const b = editConfig('seq_int8', (c) => {
      const layers = (c.config as { layers: Array<{ config: { quantization_config: { config: { activation_quantizer: Record<string, unknown> } } } }> }).layers;
      const q = layers[1].config.quantization_config.config.activation_quantizer;
      q.class_name = 'SneakyQuantizer';
      q.module = 'evil.module';
      q.registered_name = 'Evil>SneakyQuantizer';
    });
    await expectRejected(b, 'QK_INVALID_ARGUMENT', /'SneakyQuantizer'/, /regist/i);
  });

  test('a quantization_config of an unknown class', async () => {
    const b = editConfig('seq_int8', (c) => {
      const layers = (c.config as { layers: Array<{ config: { quantization_config: Record<string, unknown> } }> }).layers;
      layers[1].config.quantization_config.class_name = 'MysteryQuantizationConfig';
    });
    await expectRejected(b, 'QK_INVALID_ARGUMENT', /'MysteryQuantizationConfig'/);
  });

  test('a dtype policy naming an unknown quantization mode', async () => {
    const b = editConfig('seq_int8', (c) => {
      const layers = (c.config as { layers: Array<{ config: { dtype: { config: { mode: string } } } }> }).layers;
      layers[1].config.dtype.config.mode = 'int3';
    });
    let err: unknown;
    try {
      await loadModel(b);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QkError);
    expect((err as QkError).message).toMatch(/int3/);
  });

  test('the config disagrees with the weights (units 32 -> 31): the shape mismatch is reported', async () => {
    const b = editConfig('seq_int8', (c) => {
      const layers = (c.config as { layers: Array<{ config: { units: number } }> }).layers;
      layers[1].config.units = 31;
    });
    // the next layer is built on 31 inputs, so the first mismatch may be found in either layer
    await expectRejected(b, 'QK_CORRUPT_FILE', /shape/, /\b(31|32)\b/, /dense/);
  });
});

describe('model.weights.h5 damage', () => {
  test('an HDF5 dataset whose shape disagrees with the config: int4 kernel [10, 15] instead of [10, 16]', async () => {
    const b = await editWeights('seq_int4_block8', (root) => {
      group(root, 'layers/dense/vars').children.set('0', h5Dataset('int8', [10, 15], new Int8Array(150)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /\[10, 16\]/, /\[10, 15\]/, /'dense'/, /kernel|vars\/0/);
  });

  test('an int8 kernel with a wrong shape [10, 31] instead of [10, 32]', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers/dense/vars').children.set('0', h5Dataset('int8', [10, 31], new Int8Array(310)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /\[10, 32\]/, /\[10, 31\]/, /'dense'/);
  });

  test('a scale of the wrong rank (kernel_scale [1, 32] instead of [32])', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers/dense/vars').children.set('2', h5Dataset('float32', [1, 32], new Float32Array(32).fill(1)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /\[32\]/, /\[1, 32\]/, /kernel_scale|vars\/2/);
  });

  test('a missing variable (vars/2 deleted)', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers/dense/vars').children.delete('2');
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /'dense'/, /expected 3 variables, but received 2/);
  });

  test('an extra variable (vars/5 added after 0..4 of an int4 grouped layer)', async () => {
    const b = await editWeights('seq_int4_block8', (root) => {
      group(root, 'layers/dense/vars').children.set('5', h5Dataset('float32', [3], new Float32Array(3)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /'dense'/, /expected 5 variables, but received 6/);
  });

  test('an extra variable with a gap (vars/5 added to 0..2)', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers/dense/vars').children.set('5', h5Dataset('float32', [3], new Float32Array(3)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /'dense'/, /vars/, /\b5\b/);
  });

  test('a variable that is a group instead of a dataset', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers/dense/vars').children.set('1', h5Group());
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /vars\/1/, /group/);
  });

  test('a wrong dtype: the int8 kernel stored as float32', async () => {
    const b = await editWeights('seq_int8', (root) => {
      const vars = group(root, 'layers/dense/vars');
      const k = vars.children.get('0') as H5Dataset;
      vars.children.set('0', h5Dataset('float32', k.shape, Float32Array.from(k.data as Int8Array)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /int8/, /float32/, /'dense'/, /vars\/0/);
  });

  test('a wrong dtype: a float32 bias stored as int64', async () => {
    const b = await editWeights('seq_int8', (root) => {
      const vars = group(root, 'layers/dense/vars');
      vars.children.set('1', h5Dataset('int64', [32], new BigInt64Array(32)));
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /int64/, /float32/, /vars\/1/);
  });

  test('a missing layer group (layers/dense_1 deleted)', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers').children.delete('dense_1');
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /layers\/dense_1/, /'dense_1'/, /missing/);
  });

  test('a missing vars group (layers/dense/vars deleted)', async () => {
    const b = await editWeights('seq_int8', (root) => {
      group(root, 'layers/dense').children.delete('vars');
    });
    await expectRejected(b, 'QK_CORRUPT_FILE', /layers\/dense\/vars/, /missing/);
  });

  test('no model.weights.h5 at all', async () => {
    const entries = entriesOf(fixture('seq_int8')).filter(([n]) => n !== 'model.weights.h5');
    await expectRejected(writeZip(entries), 'QK_CORRUPT_FILE', /model\.weights\.h5/);
  });

  test('garbage HDF5 bytes (no signature)', async () => {
    const junk = new Uint8Array(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 2654435761) >>> 24;
    const b = replaceEntry(fixture('seq_int8'), 'model.weights.h5', junk);
    await expectRejected(b, 'QK_CORRUPT_FILE', /model\.weights\.h5/, /signature/i);
  });

  test('garbage HDF5 bytes after a valid signature and superblock start', async () => {
    const real = readZip(fixture('seq_int8')).get('model.weights.h5')!;
    const junk = real.slice();
    for (let i = 24; i < junk.length; i++) junk[i] = (i * 2654435761) >>> 24;
    const b = replaceEntry(fixture('seq_int8'), 'model.weights.h5', junk);
    await expectRejected(b, 'QK_CORRUPT_FILE', /model\.weights\.h5/);
  });

  test('a truncated HDF5 file', async () => {
    const real = readZip(fixture('seq_int8')).get('model.weights.h5')!;
    const b = replaceEntry(fixture('seq_int8'), 'model.weights.h5', real.subarray(0, real.length >> 1));
    await expectRejected(b, 'QK_CORRUPT_FILE', /model\.weights\.h5/);
  });

  test('the process survives all of the above: a valid file still loads afterwards', async () => {
    const model = await loadModel(fixture('seq_int8'));
    const y = (await model.predict(new Tensor('float32', [2, 10], new Float32Array(20).fill(0.25)))) as Tensor;
    expect(y.shape).toEqual([2, 1]);
    expect(Array.from(y.data).every(Number.isFinite)).toBe(true);
  });
});

describe('loadWeights into an existing model is all-or-nothing', () => {
  // Regression: every shape is checked before any layer is written, so a mismatch in the last layer leaves the
  // caller's model (model.loadWeights) untouched.
  test('a shape mismatch in the last layer leaves the first layer unchanged', async () => {
    const bytes = fixture('seq_int8');
    const good = readZip(bytes).get('model.weights.h5')!;
    const root = await readHdf5(good);
    group(root, 'layers/dense_1/vars').children.set('0', h5Dataset('int8', [31, 1], new Int8Array(31)));
    const bad = await writeHdf5(root);
    const model = await loadModel(bytes);
    const x = new Tensor('float32', [1, 10], new Float32Array(10).fill(0.5));
    const before = Array.from(((await model.predict(x)) as Tensor).data);
    // change the first layer's kernel in a second copy so that a partial load would be visible
    const root2 = await readHdf5(bad);
    ((group(root2, 'layers/dense/vars').children.get('0') as H5Dataset).data as Int8Array).fill(1);
    await expect(model.loadWeights(await writeHdf5(root2))).rejects.toMatchObject({ code: 'QK_CORRUPT_FILE' });
    expect(Array.from(((await model.predict(x)) as Tensor).data)).toEqual(before);
  });
});

describe('saving is atomic', () => {
  async function tiny(seed: number): Promise<Sequential> {
    const m = new Sequential({ layers: [new Dense({ units: 3, seed })] });
    await m.build([null, 4]);
    return m;
  }

  test('saving into a read-only directory fails and leaves the previous file byte-identical', async () => {
    // root ignores directory permissions (then the ENOSPC test below covers the failure path)
    if (process.getuid?.() === 0) return;
    const dir = path.join(tmp, 'ro');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'model.keras');
    await saveModel(await tiny(1), file);
    const before = fs.readFileSync(file);
    fs.chmodSync(dir, 0o555);
    try {
      await expect(saveModel(await tiny(2), file)).rejects.toBeDefined();
    } finally {
      fs.chmodSync(dir, 0o755);
    }
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(['model.keras']); // no temporary file left behind
    await expect(loadModel(file)).resolves.toBeDefined();
  });

  test('a write that fails midway (ENOSPC after 100 bytes) leaves the previous file byte-identical', async () => {
    const file = path.join(tmp, 'midway.keras');
    await saveModel(await tiny(7), file);
    const before = fs.readFileSync(file);
    const realOpen = fs.promises.open.bind(fs.promises);
    let partial = 0;
    const spy = jest.spyOn(fs.promises, 'open').mockImplementation((async (...args: Parameters<typeof fs.promises.open>) => {
      const handle = await realOpen(...args);
      if (String(args[0]).endsWith('.tmp')) {
        const realWrite = handle.write.bind(handle) as (b: Uint8Array, o: number, l: number, p: number) => Promise<{ bytesWritten: number }>;
        (handle as unknown as { write: unknown }).write = async (buf: Uint8Array, off: number, len: number, pos: number) => {
          const r = await realWrite(buf, off, Math.min(len, 100), pos);
          partial += r.bytesWritten;
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        };
      }
      return handle;
    }) as typeof fs.promises.open);
    try {
      await expect(saveModel(await tiny(8), file)).rejects.toMatchObject({ code: 'ENOSPC' });
    } finally {
      spy.mockRestore();
    }
    expect(partial).toBe(100); // the failure really happened midway through writing
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('midway'))).toEqual(['midway.keras']); // temp file removed
  });

  test('saving to a path in a non-existent directory fails without creating anything', async () => {
    const file = path.join(tmp, 'does-not-exist', 'model.keras');
    await expect(saveModel(await tiny(3), file)).rejects.toBeDefined();
    expect(fs.existsSync(path.dirname(file))).toBe(false);
  });

  test('a save that fails before writing (unbuilt model) leaves the previous file byte-identical', async () => {
    const file = path.join(tmp, 'keep.keras');
    await saveModel(await tiny(4), file);
    const before = fs.readFileSync(file);
    const unbuilt = new Sequential({ layers: [new Dense({ units: 3 })] });
    await expect(saveModel(unbuilt, file)).rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  test('a successful save replaces the file completely (sanity check of the two tests above)', async () => {
    const file = path.join(tmp, 'replace.keras');
    await saveModel(await tiny(5), file);
    const before = fs.readFileSync(file);
    await saveModel(await tiny(6), file);
    expect(fs.readFileSync(file).equals(before)).toBe(false);
    await expect(loadModel(file)).resolves.toBeDefined();
  });
});
