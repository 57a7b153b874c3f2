// llama2.c checkpoints: the stories260K fixture (config, shapes, weight statistics from the fixtures README),
// version-1 and untied files built here from the documented layouts, and hostile headers/lengths.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLlama2c, readLlama2cFile, writeLlama2c } from '../../lib/io/llama2c';
import { llamaTensorSpecs, validateLlamaCheckpoint, LLAMA_TENSOR_NAMES as N } from '../../lib/io/llama-common';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import { Tensor } from '../../lib/tensor';

const LLM = path.join(__dirname, '..', '..', 'models', 'stories260K');
const BIN = path.join(LLM, 'stories260K.bin');
const binBytes = new Uint8Array(fs.readFileSync(BIN));
const ckpt = readLlama2c(binBytes, { source: 'stories260K.bin' });
const L = 5;

function stats(ts: Tensor[]): { std: number; absmax: number } {
  let n = 0;
  let s = 0;
  let s2 = 0;
  let m = 0;
  for (const t of ts) {
    for (const v of t.data as Float32Array) {
      n++;
      s += v;
      s2 += v * v;
      m = Math.max(m, Math.abs(v));
    }
  }
  const mean = s / n;
  return { std: Math.sqrt(s2 / n - mean * mean), absmax: m };
}

/** Float32 little-endian bytes of several arrays, concatenated. */
function cat(arrays: Float32Array[]): Uint8Array {
  const total = arrays.reduce((a, x) => a + x.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const a of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  }
  return out;
}

function header7(values: number[]): Uint8Array {
  return new Uint8Array(Int32Array.from(values).buffer);
}

const get = (name: string) => ckpt.tensors.get(name)!.data as Float32Array;
const per = (f: (i: number) => string) => Array.from({ length: L }, (_, i) => get(f(i)));

describe('stories260K.bin', () => {
  test('config and shapes', () => {
    expect(ckpt.version).toBe(0);
    expect(ckpt.config).toEqual({
      dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: true,
    });
    validateLlamaCheckpoint(ckpt);
    expect(ckpt.tensors.size).toBe(2 + 9 * L);
    expect([...ckpt.tensors.keys()]).toEqual(llamaTensorSpecs(ckpt.config).map((s) => s.name));
    expect(ckpt.tensors.get(N.wk(0))!.shape).toEqual([32, 64]);
    expect(ckpt.tensors.get(N.w2(4))!.shape).toEqual([64, 172]);
    expect(ckpt.tensors.has(N.output)).toBe(false);
    const params = [...ckpt.tensors.values()].reduce((a, t) => a + t.size, 0);
    expect(params).toBe(260032);
  });

  test('weight statistics match the README table', () => {
    const table: Array<[Tensor[], number, number]> = [
      [[ckpt.tensors.get(N.tokEmbeddings)!], 0.308, 1.33],
      [per(N.wq).map((d) => new Tensor('float32', [d.length], d)), 0.228, 1.85],
      [per(N.wk).map((d) => new Tensor('float32', [d.length], d)), 0.202, 1.27],
      [per(N.wv).map((d) => new Tensor('float32', [d.length], d)), 0.069, 0.47],
      [per(N.wo).map((d) => new Tensor('float32', [d.length], d)), 0.08, 0.62],
      [per(N.w1).map((d) => new Tensor('float32', [d.length], d)), 0.129, 0.71],
      [per(N.w2).map((d) => new Tensor('float32', [d.length], d)), 0.127, 0.89],
      [per(N.w3).map((d) => new Tensor('float32', [d.length], d)), 0.122, 0.61],
      [[ckpt.tensors.get(N.norm)!], 0.578, 4.43],
    ];
    for (const [ts, std, absmax] of table) {
      const s = stats(ts);
      expect(Math.abs(s.std - std)).toBeLessThan(0.0006);
      expect(Math.abs(s.absmax - absmax)).toBeLessThan(0.006);
    }
  });

  test('tensors are read at the offsets of run.c (spot checks against raw file floats)', () => {
    const f = new Float32Array(binBytes.buffer.slice(binBytes.byteOffset + 28, binBytes.byteOffset + binBytes.length));
    const D = 64;
    const V = 512;
    expect(get(N.tokEmbeddings)[0]).toBe(f[0]);
    expect(get(N.attentionNorm(0))[0]).toBe(f[V * D]);
    const wq0 = V * D + L * D;
    expect(get(N.wq(0))[5]).toBe(f[wq0 + 5]);
    expect(get(N.wq(1))[0]).toBe(f[wq0 + D * D]);
    const wk0 = wq0 + L * D * D;
    expect(get(N.wk(2))[7]).toBe(f[wk0 + 2 * 32 * D + 7]);
    const normAt = f.length - 2 * 512 * 4 - D;
    expect(Array.from(get(N.norm))).toEqual(Array.from(f.subarray(normAt, normAt + D)));
    // freq_cis_real[pos=1][i=0] = cos(1) (the skipped legacy cache).
    expect(f[normAt + D + 4]).toBeCloseTo(Math.cos(1), 5);
  });

  test('the file reader equals the bytes reader', async () => {
    const viaFile = await readLlama2cFile(BIN);
    expect(viaFile.config).toEqual(ckpt.config);
    for (const [k, t] of ckpt.tensors) expect(Buffer.from(viaFile.tensors.get(k)!.data.buffer).equals(Buffer.from(t.data.buffer))).toBe(true);
  });

  test('writeLlama2c reproduces the file (bit-exact tensors; freq_cis to 3e-6)', () => {
    const out = writeLlama2c(ckpt);
    expect(out.length).toBe(binBytes.length);
    const a = new Float32Array(out.buffer.slice(28));
    const b = new Float32Array(binBytes.buffer.slice(binBytes.byteOffset + 28, binBytes.byteOffset + binBytes.length));
    const tensorFloats = 260032;
    expect(Buffer.from(out.subarray(0, 28 + 4 * tensorFloats)).equals(Buffer.from(binBytes.subarray(0, 28 + 4 * tensorFloats)))).toBe(true);
    let maxd = 0;
    for (let i = tensorFloats; i < a.length; i++) maxd = Math.max(maxd, Math.abs(a[i] - b[i]));
    expect(maxd).toBeLessThan(3e-6);
  });
});

describe('other llama2.c layouts', () => {
  test('untied legacy file (negative vocab_size, wcls after freq_cis)', () => {
    const wcls = Float32Array.from(get(N.tokEmbeddings), (v, i) => v * 0.5 + (i % 7));
    const h = header7([64, 172, 5, 8, 4, -512, 512]);
    const bytes = new Uint8Array(binBytes.length + wcls.byteLength);
    bytes.set(binBytes);
    bytes.set(h, 0);
    bytes.set(new Uint8Array(wcls.buffer), binBytes.length);
    const r = readLlama2c(bytes);
    expect(r.config.tiedEmbeddings).toBe(false);
    expect(Array.from(r.tensors.get(N.output)!.data)).toEqual(Array.from(wcls));
    validateLlamaCheckpoint(r);
    // writeLlama2c writes it back identically (apart from the recomputed freq_cis).
    const w = readLlama2c(writeLlama2c(r));
    for (const [k, t] of r.tensors) expect(Array.from(w.tensors.get(k)!.data)).toEqual(Array.from(t.data));
  });

  /** Version 1 as llama2.c export.py writes it: magic, version, 7 ints, shared flag, pad to 256, then weights. */
  function v1(shared: boolean, wcls?: Float32Array): Uint8Array {
    const head = new Uint8Array(256);
    const dv = new DataView(head.buffer);
    dv.setUint32(0, 0x616b3432, true);
    dv.setInt32(4, 1, true);
    [64, 172, 5, 8, 4, 512, 512].forEach((v, k) => dv.setInt32(8 + 4 * k, v, true));
    head[36] = shared ? 1 : 0;
    const weights = [
      ...per(N.attentionNorm), ...per(N.ffnNorm), get(N.norm), get(N.tokEmbeddings),
      ...per(N.wq), ...per(N.wk), ...per(N.wv), ...per(N.wo), ...per(N.w1), ...per(N.w2), ...per(N.w3),
      ...(wcls ? [wcls] : []),
    ];
    const body = cat(weights);
    const out = new Uint8Array(256 + body.length);
    out.set(head);
    out.set(body, 256);
    return out;
  }

  test('version 1 ("ak42"), shared and unshared classifier', () => {
    const r = readLlama2c(v1(true));
    expect(r.version).toBe(1);
    expect(r.config).toEqual(ckpt.config);
    for (const [k, t] of ckpt.tensors) expect(Array.from(r.tensors.get(k)!.data)).toEqual(Array.from(t.data));
    const wcls = Float32Array.from({ length: 512 * 64 }, (_, i) => Math.sin(i));
    const u = readLlama2c(v1(false, wcls));
    expect(u.config.tiedEmbeddings).toBe(false);
    expect(Array.from(u.tensors.get(N.output)!.data)).toEqual(Array.from(wcls));
  });

  test('version 1 file through the file reader', async () => {
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-l2c-'));
    try {
      const p = path.join(dir, 'v1.bin');
      await fs.promises.writeFile(p, v1(true));
      const r = await readLlama2cFile(p);
      expect(r.version).toBe(1);
      expect(Array.from(r.tensors.get(N.w3(4))!.data)).toEqual(Array.from(get(N.w3(4))));
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  });

  test('version 2 (Q8_0) and other versions are unsupported; a bad shared flag is corrupt', () => {
    const b = v1(true);
    new DataView(b.buffer).setInt32(4, 2, true);
    expect(() => readLlama2c(b)).toThrow(UnsupportedError);
    expect(() => readLlama2c(b)).toThrow(/Q8_0/);
    const c = v1(true);
    c[36] = 7;
    expect(() => readLlama2c(c)).toThrow(CorruptFileError);
    const d = v1(true);
    new DataView(d.buffer).setInt32(28, -512, true);
    expect(() => readLlama2c(d)).toThrow(/positive vocab_size/);
  });
});

describe('hostile llama2.c files', () => {
  const expectCorrupt = (bytes: Uint8Array, re: RegExp = /Expected/) => {
    let err: unknown;
    try {
      readLlama2c(bytes, { source: 'evil.bin' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptFileError);
    expect((err as Error).message).toMatch(/evil\.bin/);
    expect((err as Error).message).toMatch(re);
  };
  const withHeader = (values: number[], body = binBytes.subarray(28)) => {
    const out = new Uint8Array(28 + body.length);
    out.set(header7(values));
    out.set(body, 28);
    return out;
  };

  test('truncated at many offsets, or with trailing bytes', () => {
    for (let n = 0; n < 300; n++) expectCorrupt(binBytes.subarray(0, n));
    for (let n = 300; n < binBytes.length; n += 997) expectCorrupt(binBytes.subarray(0, n), /exactly 1056540 bytes/);
    expectCorrupt(binBytes.subarray(0, binBytes.length - 1), /exactly 1056540 bytes/);
    const longer = new Uint8Array(binBytes.length + 4);
    longer.set(binBytes);
    expectCorrupt(longer, /exactly 1056540 bytes .* but received 1056544/);
  });

  test('header values that are zero, negative, inconsistent or huge', () => {
    expectCorrupt(withHeader([0, 172, 5, 8, 4, 512, 512]), /dim/);
    expectCorrupt(withHeader([-64, 172, 5, 8, 4, 512, 512]), /dim/);
    expectCorrupt(withHeader([64, -172, 5, 8, 4, 512, 512]), /hiddenDim/);
    expectCorrupt(withHeader([64, 172, 0, 8, 4, 512, 512]), /nLayers/);
    expectCorrupt(withHeader([64, 172, 5, 0, 4, 512, 512]), /nHeads/);
    expectCorrupt(withHeader([64, 172, 5, 8, 3, 512, 512]), /nKvHeads/);
    expectCorrupt(withHeader([64, 172, 5, 8, 16, 512, 512]), /nKvHeads/);
    expectCorrupt(withHeader([64, 172, 5, 7, 7, 512, 512]), /nHeads dividing dim/);
    expectCorrupt(withHeader([72, 172, 5, 8, 4, 512, 512]), /even head size/); // head size 9
    expectCorrupt(withHeader([64, 172, 5, 8, 4, 0, 512]), /vocabSize/);
    expectCorrupt(withHeader([64, 172, 5, 8, 4, 512, 0]), /seqLen/);
    expectCorrupt(withHeader([64, 172, 5, 8, 4, -2147483648, 512]), /vocabSize/);
    // Huge but consistent values: sizes far beyond the file, or beyond 2^53 bytes, refused before any allocation.
    const big = 2147483644;
    expectCorrupt(withHeader([big, big, big, 2, 1, big, big]), /2\^53|exactly/);
    expectCorrupt(withHeader([65536, 2147483647, 2147483647, 2, 2, 512, 512]), /2\^53/);
    expectCorrupt(withHeader([64, 172, 6, 8, 4, 512, 512]), /exactly/);
    expectCorrupt(withHeader([64, 172, 5, 8, 4, 513, 512]), /exactly/);
    expectCorrupt(withHeader([64, 172, 5, 8, 4, 512, 513]), /exactly/);
  });

  test('argument errors', async () => {
    expect(() => readLlama2c([1, 2, 3] as never)).toThrow(InvalidArgumentError);
    await expect(readLlama2cFile('')).rejects.toThrow(InvalidArgumentError);
    await expect(readLlama2cFile(path.join(LLM, 'does-not-exist.bin'))).rejects.toThrow(/ENOENT/);
  });
});
