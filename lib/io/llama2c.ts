/**
 * Reader of llama2.c checkpoints (Karpathy's `run.c` `.bin` files), into the canonical layout of
 * `llama-common.ts` (names `tok_embeddings.weight`, `layers.{i}.attention.wq.weight`, …; matrices `[out, in]` as
 * stored; rotary pairs interleaved, which is what llama2.c uses, so nothing is permuted or transposed).
 *
 * Formats (little-endian):
 * - **legacy / version 0** (`export.py --version 0`, what `run.c` reads): 7 × int32 `dim, hidden_dim, n_layers,
 *   n_heads, n_kv_heads, vocab_size, seq_len` (a negative `vocab_size` means an untied classifier), then float32
 *   arrays: `token_embedding [V, D]`, `rms_att [L, D]`, `wq [L, D, D]`, `wk [L, KV, D]`, `wv [L, KV, D]`,
 *   `wo [L, D, D]`, `rms_ffn [L, D]`, `w1 [L, H, D]`, `w2 [L, D, H]`, `w3 [L, H, D]`, `rms_final [D]`,
 *   `freq_cis_real [seq_len, head_size/2]`, `freq_cis_imag [seq_len, head_size/2]` (a legacy RoPE cache, skipped),
 *   and `wcls [V, D]` when untied.
 * - **version 1** (`export.py --version 1`): uint32 magic `0x616b3432` ("ak42"), int32 version 1, the same 7
 *   int32 (vocab positive), a uint8 `shared_classifier` flag, zero padding to 256 bytes; then float32
 *   `rms_att [L, D]`, `rms_ffn [L, D]`, `rms_final [D]`, `token_embedding [V, D]`, `wq`, `wk`, `wv`, `wo`, `w1`,
 *   `w2`, `w3` (each `[L, …]`), and `wcls [V, D]` unless shared. Version 2 (Q8_0) is refused as unsupported.
 *
 * Every header value is checked (positive, `n_heads | dim`, even head size, `n_kv_heads | n_heads`), every size
 * is computed without overflow (each product must stay below 2^53) and the file length must equal exactly what
 * the header implies, all before any tensor is allocated. `normEps` is 1e-5 and `ropeTheta` 10000 (run.c's
 * constants); `seqLen` is the header's `seq_len`.
 *
 * Memory: {@link readLlama2cFile} reads tensor by tensor with positioned reads (no whole-file buffer; the event
 * loop runs between reads); {@link readLlama2c} copies each tensor out of the bytes it is given.
 *
 * @example
 * ```ts
 * import { readLlama2cFile } from 'quantkit';
 * const { config, tensors } = await readLlama2cFile('stories260K.bin');
 * config.nKvHeads; // 4
 * tensors.get('layers.0.feed_forward.w2.weight')!.shape; // [64, 172]
 * ```
 * @packageDocumentation
 */
import { CorruptFileError, UnsupportedError } from '../errors';
import { Tensor } from '../tensor';
import { checkBytes, checkPath, copyLE, leToHost, openForRead, readExactly } from './le-bytes';
import { checkLoadBudget, resolveMaxLoadBytes } from './limits';
import { checkLlamaConfig, LLAMA_TENSOR_NAMES as N, llamaHeadSize, LlamaCheckpoint, LlamaConfig, llamaTensorSpecs } from './llama-common';

/**
 * The "ak42" magic of versioned llama2.c files, as a little-endian uint32 (bytes `32 34 6b 61` on disk).
 * @example
 * ```ts
 * new DataView(bytes.buffer).getUint32(0, true) === LLAMA2C_MAGIC; // a version-1+ file
 * ```
 */
export const LLAMA2C_MAGIC = 0x616b3432;
const V1_HEADER_BYTES = 256;
const V0_HEADER_BYTES = 28;

/**
 * A llama2.c checkpoint in the canonical layout.
 * @example
 * ```ts
 * const ckpt: Llama2cCheckpoint = readLlama2c(bytes);
 * ckpt.version; // 0
 * ```
 */
export interface Llama2cCheckpoint extends LlamaCheckpoint {
  /** Which file format: 0 = legacy (run.c), 1 = "ak42" version 1. */
  version: 0 | 1;
}

/**
 * Options of {@link readLlama2c} and {@link readLlama2cFile}.
 * @example
 * ```ts
 * readLlama2c(bytes, { source: 'stories260K.bin' });
 * ```
 */
export interface Llama2cReadOptions {
  /** Names the file in error messages (default the path, or "llama2.c checkpoint"). */
  source?: string;
  /** Memory budget of the tensors in bytes (default `getMaxLoadBytes()`; exceeding it gives `QK_OUT_OF_MEMORY`). */
  maxBytes?: number;
}

interface Segment {
  /**
   * The canonical name of the tensor this contiguous array holds: a function of the layer for an array of
   * per-layer tensors (`[n_layers, ...shape]`), a string for one tensor, or null for a skipped array.
   */
  name: ((i: number) => string) | string | null;
  /** Shape of each tensor. */
  shape: number[];
}

interface Plan {
  version: 0 | 1;
  config: LlamaConfig;
  /** Tensors to read: name, shape, element count, absolute byte offset. */
  entries: Array<{ name: string; shape: number[]; count: number; offset: number }>;
}

/** Parses and validates the header (`head` holds at least the first min(256, fileSize) bytes). */
function plan(head: Uint8Array, fileSize: number, source: string, budget: number): Plan {
  const fail = (what: string, received: string): never => {
    throw new CorruptFileError(`Expected ${what} in ${source} but received ${received}`);
  };
  if (fileSize < V0_HEADER_BYTES) fail(`a ${V0_HEADER_BYTES}-byte llama2.c header`, `a ${fileSize}-byte file`);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let version: 0 | 1 = 0;
  let at = 0;
  if (dv.getUint32(0, true) === LLAMA2C_MAGIC) {
    if (fileSize < V1_HEADER_BYTES) fail(`a ${V1_HEADER_BYTES}-byte llama2.c version-1 header`, `a ${fileSize}-byte file`);
    const v = dv.getInt32(4, true);
    if (v !== 1) {
      throw new UnsupportedError(
        `Expected llama2.c checkpoint version 1 (float32) in ${source} but received version ${v}` +
          (v === 2 ? ' (Q8_0-quantized; export it with --version 1 or 0)' : ''),
      );
    }
    version = 1;
    at = 8;
  }
  const h = Array.from({ length: 7 }, (_, k) => dv.getInt32(at + 4 * k, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = h;
  const header = `dim=${dim}, hidden_dim=${hiddenDim}, n_layers=${nLayers}, n_heads=${nHeads}, n_kv_heads=${nKvHeads}, vocab_size=${rawVocab}, seq_len=${seqLen}`;
  let tied: boolean;
  if (version === 0) {
    tied = rawVocab > 0;
  } else {
    if (rawVocab <= 0) fail('a positive vocab_size in the version-1 header', `${rawVocab}`);
    const flag = head[at + 28];
    if (flag !== 0 && flag !== 1) fail('a shared_classifier flag of 0 or 1 in the version-1 header', `${flag}`);
    tied = flag === 1;
  }
  const config: LlamaConfig = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: Math.abs(rawVocab),
    seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    tiedEmbeddings: tied,
  };
  checkLlamaConfig(config, (what, received) => fail(`${what} (header ${header})`, received));

  const L = nLayers;
  const V = config.vocabSize;
  const D = dim;
  const H = hiddenDim;
  const hs = llamaHeadSize(config);
  const KV = nKvHeads * hs;
  const segs: Segment[] = [];
  const emb: Segment = { name: N.tokEmbeddings, shape: [V, D] };
  const norms: Segment[] = [
    { name: N.attentionNorm, shape: [D] },
    { name: N.ffnNorm, shape: [D] },
    { name: N.norm, shape: [D] },
  ];
  const attn: Segment[] = [
    { name: N.wq, shape: [D, D] },
    { name: N.wk, shape: [KV, D] },
    { name: N.wv, shape: [KV, D] },
    { name: N.wo, shape: [D, D] },
  ];
  const ffn: Segment[] = [
    { name: N.w1, shape: [H, D] },
    { name: N.w2, shape: [D, H] },
    { name: N.w3, shape: [H, D] },
  ];
  if (version === 0) {
    segs.push(emb, norms[0], ...attn, norms[1], ...ffn, norms[2]);
    segs.push({ name: null, shape: [seqLen, hs / 2] }, { name: null, shape: [seqLen, hs / 2] });
  } else {
    segs.push(...norms, emb, ...attn, ...ffn);
  }
  if (!tied) segs.push({ name: N.output, shape: [V, D] });

  // Offsets, with every product and sum kept exact (below 2^53), checked against the file length before
  // anything proportional to the header's values (even the list of tensor names) is created.
  const starts: number[] = [];
  let offset = version === 0 ? V0_HEADER_BYTES : V1_HEADER_BYTES;
  for (const s of segs) {
    const count = s.shape.reduce((a, b) => a * b, 1);
    const copies = typeof s.name === 'function' ? L : 1;
    const bytes = count * copies * 4;
    if (!Number.isSafeInteger(bytes) || !Number.isSafeInteger(offset + bytes)) {
      fail(`tensor sizes below 2^53 bytes (header ${header})`, `[${copies}, ${s.shape.join(', ')}] float32 at offset ${offset}`);
    }
    starts.push(offset);
    offset += bytes;
  }
  if (offset !== fileSize) {
    fail(`exactly ${offset} bytes as the version-${version} header implies (${header}${tied ? '' : ', untied classifier'})`, `${fileSize} bytes`);
  }
  checkLoadBudget(offset, budget, `the tensors (${header})`, source);
  const entries: Plan['entries'] = [];
  segs.forEach((s, k) => {
    const count = s.shape.reduce((a, b) => a * b, 1);
    if (typeof s.name === 'string') entries.push({ name: s.name, shape: s.shape, count, offset: starts[k] });
    else if (s.name) for (let i = 0; i < L; i++) entries.push({ name: s.name(i), shape: s.shape, count, offset: starts[k] + i * count * 4 });
  });
  return { version, config, entries };
}

/** The tensors in the order of `llamaTensorSpecs` (file order differs between versions). */
function canonicalOrder(config: LlamaConfig, tensors: Map<string, Tensor<'float32'>>): Map<string, Tensor<'float32'>> {
  return new Map(llamaTensorSpecs(config).map(({ name }) => [name, tensors.get(name)!]));
}

/**
 * Reads a llama2.c checkpoint (legacy version 0, or "ak42" version 1) from bytes, synchronously.
 *
 * @param bytes - the whole file
 * @param options - `source` names the file in errors
 * @returns the config and the float32 tensors under their canonical names (no `output.weight` when tied)
 * @throws CorruptFileError when the header is implausible or the file length differs from what it implies;
 *   UnsupportedError for version 2 (Q8_0) files.
 * @example
 * ```ts
 * const { config, tensors } = readLlama2c(new Uint8Array(fs.readFileSync('stories260K.bin')));
 * tensors.get('tok_embeddings.weight')!.shape; // [512, 64]
 * ```
 */
export function readLlama2c(bytes: Uint8Array, options: Llama2cReadOptions = {}): Llama2cCheckpoint {
  checkBytes(bytes);
  const source = options.source ?? 'llama2.c checkpoint';
  const p = plan(bytes, bytes.length, source, resolveMaxLoadBytes(options.maxBytes));
  const tensors = new Map<string, Tensor<'float32'>>();
  for (const e of p.entries) tensors.set(e.name, new Tensor('float32', e.shape, copyLE(Float32Array, bytes, e.offset, e.count)));
  return { version: p.version, config: p.config, tensors: canonicalOrder(p.config, tensors) };
}

/**
 * Reads a llama2.c checkpoint file (legacy version 0, or "ak42" version 1) asynchronously, tensor by tensor
 * (positioned reads straight into each tensor's buffer; the whole file is never held at once).
 *
 * @param path - the `.bin` file
 * @param options - `source` names the file in errors (default `path`)
 * @throws CorruptFileError / UnsupportedError as {@link readLlama2c}; the fs error when the file cannot be opened.
 * @example
 * ```ts
 * const ckpt = await readLlama2cFile('stories260K.bin');
 * ckpt.config; // { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, ... }
 * ```
 */
export async function readLlama2cFile(path: string, options: Llama2cReadOptions = {}): Promise<Llama2cCheckpoint> {
  checkPath(path);
  const source = options.source ?? path;
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const { fh, size } = await openForRead(path);
  try {
    const head = new Uint8Array(Math.min(size, V1_HEADER_BYTES));
    await readExactly(fh, head, 0, source);
    const p = plan(head, size, source, budget);
    const tensors = new Map<string, Tensor<'float32'>>();
    for (const e of p.entries) {
      const data = new Float32Array(e.count);
      const view = new Uint8Array(data.buffer);
      await readExactly(fh, view, e.offset, source);
      leToHost(view, 4);
      tensors.set(e.name, new Tensor('float32', e.shape, data));
    }
    return { version: p.version, config: p.config, tensors: canonicalOrder(p.config, tensors) };
  } finally {
    await fh.close();
  }
}

/**
 * Writes a checkpoint in llama2.c's legacy (version 0) format, the one `run.c` reads: the header (negative
 * vocab_size when untied), the tensors in run.c's order, and the freq_cis tables run.c skips (computed for
 * `ropeTheta`). The checkpoint must be canonical (see `llamaTensorSpecs`).
 *
 * @example
 * ```ts
 * await fs.promises.writeFile('copy.bin', writeLlama2c(await readLlama2cFile('stories260K.bin')));
 * ```
 */
export function writeLlama2c(checkpoint: LlamaCheckpoint): Uint8Array {
  const c = checkLlamaConfig(checkpoint.config, (what, received) => {
    throw new CorruptFileError(`Expected ${what} for checkpoint.config but received ${received}`);
  });
  const hs = llamaHeadSize(c);
  const get = (name: string, shape: number[]): Float32Array => {
    const t = checkpoint.tensors.get(name);
    if (!t || t.dtype !== 'float32' || t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new CorruptFileError(`Expected float32 [${shape.join(', ')}] for ${name} but received ${t ? `${t.dtype} [${t.shape.join(', ')}]` : 'none'}`);
    }
    return t.data as Float32Array;
  };
  const kv = c.nKvHeads * hs;
  const arrays: Float32Array[] = [get(N.tokEmbeddings, [c.vocabSize, c.dim])];
  const each = (f: (i: number) => string, shape: number[]) => {
    for (let i = 0; i < c.nLayers; i++) arrays.push(get(f(i), shape));
  };
  each(N.attentionNorm, [c.dim]);
  each(N.wq, [c.dim, c.dim]);
  each(N.wk, [kv, c.dim]);
  each(N.wv, [kv, c.dim]);
  each(N.wo, [c.dim, c.dim]);
  each(N.ffnNorm, [c.dim]);
  each(N.w1, [c.hiddenDim, c.dim]);
  each(N.w2, [c.dim, c.hiddenDim]);
  each(N.w3, [c.hiddenDim, c.dim]);
  arrays.push(get(N.norm, [c.dim]));
  const re = new Float32Array(c.seqLen * (hs / 2));
  const im = new Float32Array(c.seqLen * (hs / 2));
  for (let pos = 0; pos < c.seqLen; pos++) {
    for (let j = 0; j < hs / 2; j++) {
      const a = pos * Math.pow(c.ropeTheta, (-2 * j) / hs);
      re[pos * (hs / 2) + j] = Math.cos(a);
      im[pos * (hs / 2) + j] = Math.sin(a);
    }
  }
  arrays.push(re, im);
  if (!c.tiedEmbeddings) arrays.push(get(N.output, [c.vocabSize, c.dim]));
  const total = V0_HEADER_BYTES + arrays.reduce((a, x) => a + x.byteLength, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.tiedEmbeddings ? c.vocabSize : -c.vocabSize, c.seqLen].forEach((v, k) =>
    dv.setInt32(4 * k, v, true),
  );
  let at = V0_HEADER_BYTES;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) dv.setFloat32(at + 4 * i, a[i], true);
    at += a.byteLength;
  }
  return out;
}
