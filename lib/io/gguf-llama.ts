/**
 * GGUF files of architecture `llama` to the canonical checkpoint of `llama-common.ts` (same names, shapes and
 * rotary convention as the llama2.c reader), plus the tokenizer embedded in the file.
 *
 * Metadata: `llama.embedding_length` → dim, `llama.feed_forward_length` → hiddenDim, `llama.block_count` →
 * nLayers, `llama.attention.head_count` → nHeads, `llama.attention.head_count_kv` → nKvHeads (default nHeads),
 * `llama.context_length` → seqLen, `llama.attention.layer_norm_rms_epsilon` → normEps (default 1e-5),
 * `llama.rope.freq_base` → ropeTheta (default 10000); vocabSize = rows of `token_embd.weight`. float32 metadata
 * is returned as its shortest decimal (1e-5, not 0.0000099999997…). `llama.rope.dimension_count` must equal the
 * head size and rope scaling must be absent (quantkit's model has neither partial rotary nor scaling).
 *
 * Tensors: `token_embd` → `tok_embeddings.weight`, `output_norm` → `norm.weight`, `output` → `output.weight`,
 * `blk.N.attn_norm` → `layers.N.attention_norm.weight`, `blk.N.attn_q|attn_k|attn_v|attn_output` →
 * `layers.N.attention.wq|wk|wv|wo.weight`, `blk.N.ffn_norm` → `layers.N.ffn_norm.weight`,
 * `blk.N.ffn_gate|ffn_down|ffn_up` → `layers.N.feed_forward.w1|w2|w3.weight`. ggml's `[in, out]` dims are the
 * row-major `[out, in]` bytes, so nothing is transposed.
 *
 * Rotary layout: llama.cpp's `llama` architecture uses ggml's normal RoPE, which rotates adjacent pairs
 * `(2j, 2j+1)` — llama2.c's convention. Its Hugging Face converter permutes `q_proj`/`k_proj` back from the HF
 * half-split order when it writes the file, and `convert-llama2c-to-ggml` copies llama2.c's rows unchanged, so
 * the Q/K rows in a `llama` GGUF are already canonical and are NOT permuted here (the fixture `stories260K.gguf`
 * is bit-identical to `stories260K.bin`). Only Hugging Face safetensors need the permutation (`hf-llama.ts`).
 *
 * Classifier: without `output.weight`, or with an `output.weight` bit-identical to `token_embd.weight` (what
 * `convert-llama2c-to-ggml` writes for tied models), the checkpoint is tied and has no `output.weight`.
 *
 * Tokenizer: `tokenizer.ggml.model = "llama"` (SentencePiece BPE) becomes a {@link Llama2cTokenizer} from
 * `tokenizer.ggml.tokens` (with `▁` turned back into spaces), `scores`, `token_type`, `bos_token_id`,
 * `eos_token_id` and `add_space_prefix`; it encodes like llama.cpp's SPM tokenizer and like llama2.c. Other
 * tokenizer models (`gpt2` byte-level BPE, …) give `tokenizer: undefined` and a `tokenizerUnsupported` reason.
 *
 * @example
 * ```ts
 * import { readGgufLlamaFile } from 'quantkit';
 * const { config, tensors, tokenizer } = await readGgufLlamaFile('stories260K.gguf');
 * tokenizer!.encode('Once upon a time'); // [1, 403, 407, 261, 378]
 * ```
 * @packageDocumentation
 */
import { CorruptFileError, UnsupportedError } from '../errors';
import { describe, Tensor } from '../tensor';
import { Llama2cTokenizer } from '../tokenizers/llama2c';
import { checkBytes, checkPath } from './le-bytes';
import { GgufFile, GgufHeader, GgufMetadataEntry, parseGgufHeader, readGguf, readGgufFile, readGgufHeaderFile } from './gguf';
import { checkLlamaConfig, LLAMA_TENSOR_NAMES as N, llamaHeadSize, LlamaCheckpoint, LlamaConfig, llamaTensorSpecs, shortestFloat32 } from './llama-common';

/**
 * A `llama` GGUF in the canonical layout, with its tokenizer and metadata.
 * @example
 * ```ts
 * const ckpt: GgufLlamaCheckpoint = await readGgufLlamaFile('stories260K.gguf');
 * ckpt.metadata.get('general.name')?.value;
 * ```
 */
export interface GgufLlamaCheckpoint extends LlamaCheckpoint {
  /** The embedded SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`), if any. */
  tokenizer?: Llama2cTokenizer;
  /** Why `tokenizer` is undefined (e.g. a `gpt2` vocabulary), when it is. */
  tokenizerUnsupported?: string;
  /** All metadata of the file. */
  metadata: Map<string, GgufMetadataEntry>;
}

/**
 * Options of the GGUF Llama readers.
 * @example
 * ```ts
 * readGgufLlama(bytes, { source: 'model.gguf' });
 * ```
 */
export interface GgufLlamaReadOptions {
  /** Names the file in error messages. */
  source?: string;
  /** Memory budget in bytes (see `GgufReadOptions.maxBytes`; default `getMaxLoadBytes()`). */
  maxBytes?: number;
}

interface LlamaPlan {
  config: Omit<LlamaConfig, 'tiedEmbeddings'>;
  /** GGUF name → canonical name and shape. */
  map: Map<string, { name: string; shape: number[] }>;
  hasOutput: boolean;
}

function metaNumber(h: GgufHeader, key: string, source: string, required: boolean): number | undefined {
  const e = h.metadata.get(key);
  if (e === undefined) {
    if (required) throw new CorruptFileError(`Expected metadata ${key} in ${source} but received none`);
    return undefined;
  }
  let v = e.value;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw new CorruptFileError(`Expected a number below 2^53 for metadata ${key} in ${source} but received ${v}`);
    v = Number(v);
  }
  if (typeof v !== 'number') throw new CorruptFileError(`Expected a number for metadata ${key} in ${source} but received ${e.type} ${describe(v)}`);
  return e.type === 'float32' ? shortestFloat32(v) : v;
}

function planLlama(h: GgufHeader, source: string): LlamaPlan {
  const arch = h.metadata.get('general.architecture');
  if (arch === undefined || typeof arch.value !== 'string') throw new CorruptFileError(`Expected a string general.architecture in ${source} but received ${arch ? describe(arch.value) : 'none'}`);
  if (arch.value !== 'llama') throw new UnsupportedError(`Expected a GGUF of architecture "llama" in ${source} but received ${JSON.stringify(arch.value)}`);
  const dim = metaNumber(h, 'llama.embedding_length', source, true)!;
  const hiddenDim = metaNumber(h, 'llama.feed_forward_length', source, true)!;
  const nLayers = metaNumber(h, 'llama.block_count', source, true)!;
  const nHeads = metaNumber(h, 'llama.attention.head_count', source, true)!;
  const nKvHeads = metaNumber(h, 'llama.attention.head_count_kv', source, false) ?? nHeads;
  const seqLen = metaNumber(h, 'llama.context_length', source, true)!;
  const normEps = metaNumber(h, 'llama.attention.layer_norm_rms_epsilon', source, false) ?? 1e-5;
  const ropeTheta = metaNumber(h, 'llama.rope.freq_base', source, false) ?? 10000;
  const infos = new Map(h.tensorInfos.map((t) => [t.name, t]));
  const emb = infos.get('token_embd.weight');
  if (!emb) throw new CorruptFileError(`Expected a tensor token_embd.weight in ${source} but received none`);
  const vocabSize = emb.shape.length === 2 ? emb.shape[0] : NaN;
  const config = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, normEps, ropeTheta, tiedEmbeddings: true };
  checkLlamaConfig(config, (what, received) => {
    throw new CorruptFileError(`Expected ${what} (from the llama.* metadata and token_embd.weight) in ${source} but received ${received}`);
  });
  if (9 * nLayers + 2 > h.tensorInfos.length) {
    throw new CorruptFileError(`Expected at least ${9 * nLayers + 2} tensors (llama.block_count = ${nLayers}) in ${source} but received ${h.tensorInfos.length}`);
  }
  const hs = llamaHeadSize(config);
  const ropeDims = metaNumber(h, 'llama.rope.dimension_count', source, false);
  if (ropeDims !== undefined && ropeDims !== hs) throw new UnsupportedError(`Expected llama.rope.dimension_count = ${hs} (the head size; partial rotary is not supported) in ${source} but received ${ropeDims}`);
  const scaling = h.metadata.get('llama.rope.scaling.type');
  if (scaling !== undefined && scaling.value !== 'none') throw new UnsupportedError(`Expected no rope scaling in ${source} but received llama.rope.scaling.type = ${describe(scaling.value)}`);
  const vocabMeta = metaNumber(h, 'llama.vocab_size', source, false);
  if (vocabMeta !== undefined && vocabMeta !== vocabSize) throw new CorruptFileError(`Expected llama.vocab_size = ${vocabSize} (the rows of token_embd.weight) in ${source} but received ${vocabMeta}`);

  const kv = nKvHeads * hs;
  const map = new Map<string, { name: string; shape: number[] }>();
  map.set('token_embd.weight', { name: N.tokEmbeddings, shape: [vocabSize, dim] });
  map.set('output_norm.weight', { name: N.norm, shape: [dim] });
  for (let i = 0; i < nLayers; i++) {
    const b = `blk.${i}.`;
    map.set(`${b}attn_norm.weight`, { name: N.attentionNorm(i), shape: [dim] });
    map.set(`${b}attn_q.weight`, { name: N.wq(i), shape: [dim, dim] });
    map.set(`${b}attn_k.weight`, { name: N.wk(i), shape: [kv, dim] });
    map.set(`${b}attn_v.weight`, { name: N.wv(i), shape: [kv, dim] });
    map.set(`${b}attn_output.weight`, { name: N.wo(i), shape: [dim, dim] });
    map.set(`${b}ffn_norm.weight`, { name: N.ffnNorm(i), shape: [dim] });
    map.set(`${b}ffn_gate.weight`, { name: N.w1(i), shape: [hiddenDim, dim] });
    map.set(`${b}ffn_down.weight`, { name: N.w2(i), shape: [dim, hiddenDim] });
    map.set(`${b}ffn_up.weight`, { name: N.w3(i), shape: [hiddenDim, dim] });
  }
  const hasOutput = infos.has('output.weight');
  if (hasOutput) map.set('output.weight', { name: N.output, shape: [vocabSize, dim] });
  for (const [g, { shape }] of map) {
    const t = infos.get(g);
    if (!t) throw new CorruptFileError(`Expected a tensor ${g} in ${source} (llama.block_count = ${nLayers}) but received none`);
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new CorruptFileError(`Expected shape [${shape.join(', ')}] (ggml dims [${[...shape].reverse().join(', ')}]) for tensor ${g} in ${source} but received [${t.shape.join(', ')}]`);
    }
  }
  for (const t of h.tensorInfos) {
    if (map.has(t.name)) continue;
    if (t.name === 'rope_freqs.weight') throw new UnsupportedError(`Expected no rope_freqs.weight (rope scaling) in ${source} but received one`);
    throw new UnsupportedError(`Expected only the tensors of a plain llama model in ${source} but received ${JSON.stringify(t.name)} (biases, MoE and other variants are not supported)`);
  }
  // Refuse quantized types before any data is read.
  for (const g of map.keys()) {
    const t = infos.get(g)!;
    if (!['F32', 'F16', 'BF16', 'F64'].includes(t.type)) {
      throw new UnsupportedError(`Expected an F32, F16 or BF16 tensor for ${JSON.stringify(g)} in ${source} but received ggml type ${t.type} (quantized GGUF tensors are not supported; convert the model from its float weights)`);
    }
  }
  const { tiedEmbeddings: _ignored, ...rest } = config;
  return { config: rest, map, hasOutput };
}

function sameBits(a: Tensor, b: Tensor): boolean {
  const x = new Uint32Array(a.data.buffer, a.data.byteOffset, a.data.byteLength / 4);
  const y = new Uint32Array(b.data.buffer, b.data.byteOffset, b.data.byteLength / 4);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function assemble(gguf: GgufFile, p: LlamaPlan, source: string): GgufLlamaCheckpoint {
  const tensors = new Map<string, Tensor<'float32'>>();
  for (const [g, { name }] of p.map) tensors.set(name, gguf.tensors.get(g) as Tensor<'float32'>);
  let tied = true;
  if (p.hasOutput) {
    if (sameBits(tensors.get(N.output)!, tensors.get(N.tokEmbeddings)!)) tensors.delete(N.output);
    else tied = false;
  }
  const config: LlamaConfig = { ...p.config, tiedEmbeddings: tied };
  // Keep the canonical order of llamaTensorSpecs for predictable iteration.
  const ordered = new Map<string, Tensor<'float32'>>();
  for (const { name } of llamaTensorSpecs(config)) ordered.set(name, tensors.get(name)!);
  const out: GgufLlamaCheckpoint = { config, tensors: ordered, metadata: gguf.metadata };
  const tk = ggufTokenizerOrReason(gguf, source);
  if (tk instanceof Llama2cTokenizer) out.tokenizer = tk;
  else out.tokenizerUnsupported = tk;
  return out;
}

function ggufTokenizerOrReason(h: GgufHeader, source: string): Llama2cTokenizer | string {
  const model = h.metadata.get('tokenizer.ggml.model');
  if (model === undefined) return 'the file has no tokenizer.ggml.model';
  if (model.value !== 'llama') return `tokenizer.ggml.model ${describe(model.value)} is not supported (only "llama", SentencePiece BPE)`;
  const fail = (what: string, received: string): never => {
    throw new CorruptFileError(`Expected ${what} in ${source} but received ${received}`);
  };
  const tokens = h.metadata.get('tokenizer.ggml.tokens');
  if (!tokens || tokens.itemType !== 'string') fail('a string array tokenizer.ggml.tokens', tokens ? `${tokens.type} of ${tokens.itemType ?? 'nothing'}` : 'none');
  const pieces = tokens!.value as string[];
  if (pieces.length === 0) fail('a non-empty tokenizer.ggml.tokens', 'an empty array');
  const scores = h.metadata.get('tokenizer.ggml.scores');
  if (!scores || !(scores.value instanceof Float32Array) || scores.value.length !== pieces.length) {
    fail(`a float32 array of ${pieces.length} tokenizer.ggml.scores`, scores ? `${scores.type} of ${scores.itemType ?? 'nothing'} (${describe(scores.value)})` : 'none');
  }
  const types = h.metadata.get('tokenizer.ggml.token_type');
  if (types && (!(types.value instanceof Int32Array) || types.value.length !== pieces.length)) {
    fail(`an int32 array of ${pieces.length} tokenizer.ggml.token_type`, `${types.type} of ${types.itemType ?? 'nothing'} (${describe(types.value)})`);
  }
  const id = (key: string, dflt: number): number => {
    const v = metaNumber(h, key, source, false) ?? dflt;
    if (!Number.isSafeInteger(v) || v < 0 || v >= pieces.length) fail(`a token id in [0, ${pieces.length}) for ${key}`, describe(v));
    return v;
  };
  const prefix = h.metadata.get('tokenizer.ggml.add_space_prefix');
  if (prefix && typeof prefix.value !== 'boolean') fail('a bool tokenizer.ggml.add_space_prefix', `${prefix.type}`);
  return new Llama2cTokenizer({
    pieces: pieces.map((p) => p.replace(/\u2581/g, ' ')),
    scores: scores!.value as Float32Array,
    tokenTypes: types ? (types.value as Int32Array) : undefined,
    bosId: id('tokenizer.ggml.bos_token_id', 1),
    eosId: id('tokenizer.ggml.eos_token_id', 2),
    addDummyPrefix: prefix ? (prefix.value as boolean) : true,
  });
}

/**
 * The tokenizer a GGUF header embeds, when it is a SentencePiece (`"llama"`) vocabulary; else undefined.
 * @throws CorruptFileError when the tokenizer metadata is inconsistent (lengths, ids, types).
 * @example
 * ```ts
 * const tok = ggufTokenizer(parseGgufHeader(bytes))!;
 * tok.encode('Once upon a time');
 * ```
 */
export function ggufTokenizer(header: GgufHeader, options: { source?: string } = {}): Llama2cTokenizer | undefined {
  const t = ggufTokenizerOrReason(header, options.source ?? 'GGUF file');
  return t instanceof Llama2cTokenizer ? t : undefined;
}

/**
 * Maps an already-read GGUF (all tensors read) to the canonical Llama checkpoint.
 * @throws UnsupportedError for another architecture, rope scaling, extra tensors or quantized tensors;
 *   CorruptFileError for missing metadata/tensors or shapes that disagree with the metadata.
 * @example
 * ```ts
 * const ckpt = ggufToLlama(readGguf(bytes));
 * ```
 */
export function ggufToLlama(gguf: GgufFile, options: GgufLlamaReadOptions = {}): GgufLlamaCheckpoint {
  const source = options.source ?? 'GGUF file';
  const p = planLlama(gguf, source);
  for (const g of p.map.keys()) {
    const t = gguf.tensors.get(g);
    if (!t || t.dtype !== 'float32') throw new CorruptFileError(`Expected a float32 tensor ${g} among the tensors read from ${source} but received ${describe(t)}`);
  }
  return assemble(gguf, p, source);
}

/**
 * Reads a `llama` GGUF from bytes into the canonical checkpoint (synchronously). The metadata and the tensor set
 * are validated before any tensor is converted.
 * @example
 * ```ts
 * const { config, tensors, tokenizer } = readGgufLlama(new Uint8Array(fs.readFileSync('stories260K.gguf')));
 * ```
 */
export function readGgufLlama(bytes: Uint8Array, options: GgufLlamaReadOptions = {}): GgufLlamaCheckpoint {
  checkBytes(bytes);
  const source = options.source ?? 'GGUF file';
  const p = planLlama(parseGgufHeader(bytes, { source }), source);
  return assemble(readGguf(bytes, { source, names: [...p.map.keys()], maxBytes: options.maxBytes }), p, source);
}

/**
 * Reads a `llama` GGUF file into the canonical checkpoint: the header first (validated, including the tensor set
 * and types), then each tensor with a positioned read.
 * @example
 * ```ts
 * const { config, tensors, tokenizer } = await readGgufLlamaFile('stories260K.gguf');
 * config.seqLen; // 2048 (the converter's default; the .bin says 512)
 * ```
 */
export async function readGgufLlamaFile(path: string, options: GgufLlamaReadOptions = {}): Promise<GgufLlamaCheckpoint> {
  checkPath(path);
  const source = options.source ?? path;
  // Validate the plan on the header alone (cheap), then read just the mapped tensors.
  const p = planLlama(await readGgufHeaderFile(path, { source, maxBytes: options.maxBytes }), source);
  return assemble(await readGgufFile(path, { source, names: [...p.map.keys()], maxBytes: options.maxBytes }), p, source);
}
