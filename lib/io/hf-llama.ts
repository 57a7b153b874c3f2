/**
 * Reader of the Hugging Face Llama layout (`LlamaForCausalLM`): a directory with `config.json`,
 * `model.safetensors` (or shards listed by `model.safetensors.index.json`) and optionally `tokenizer.json`, into
 * the canonical checkpoint of `llama-common.ts`.
 *
 * Config: `hidden_size` → dim, `intermediate_size` → hiddenDim, `num_hidden_layers` → nLayers,
 * `num_attention_heads` → nHeads, `num_key_value_heads` → nKvHeads (default nHeads), `vocab_size`,
 * `max_position_embeddings` → seqLen, `rms_norm_eps` → normEps (default 1e-6, transformers' default),
 * `rope_theta` (or `rope_parameters.rope_theta`) → ropeTheta (default 10000), `tie_word_embeddings` →
 * tiedEmbeddings (default false). Refused as unsupported: `model_type` other than `llama`, `hidden_act` other than
 * `silu`, rope scaling, a `head_dim` other than `hidden_size / num_attention_heads`, attention/MLP biases.
 *
 * Tensors: `model.embed_tokens.weight` → `tok_embeddings.weight`; `model.layers.N.self_attn.{q,k,v,o}_proj.weight`
 * → `layers.N.attention.{wq,wk,wv,wo}.weight`; `model.layers.N.mlp.{gate,down,up}_proj.weight` →
 * `layers.N.feed_forward.{w1,w2,w3}.weight`; `input_layernorm` → `attention_norm`, `post_attention_layernorm` →
 * `ffn_norm`; `model.norm.weight` → `norm.weight`; `lm_head.weight` → `output.weight` (ignored when tied). HF
 * matrices are `[out, in]` like llama2.c. Hugging Face stores the rows of `q_proj`/`k_proj` in the half-split
 * rotary order; they are converted to the canonical interleaved order with {@link halfSplitToInterleaved} (one
 * pass of row copies). F16/BF16 weights become float32. `rotary_emb.inv_freq` buffers of old checkpoints are
 * ignored; any other unexpected tensor is refused.
 *
 * Memory: each safetensors shard is read whole and its tensors copied out (about twice the shard size at peak);
 * shards are read one after another.
 *
 * @example
 * ```ts
 * import { readHfLlamaDir } from 'quantkit';
 * const { config, tensors, tokenizer } = await readHfLlamaDir('TinyLlama-1.1B');
 * ```
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../errors';
import { describe, Tensor } from '../tensor';
import { HfTokenizer } from '../tokenizers/hf';
import { checkPath, isBytes } from './le-bytes';
import { checkLlamaConfig, halfSplitToInterleaved, LLAMA_TENSOR_NAMES as N, LlamaCheckpoint, LlamaConfig, llamaTensorSpecs } from './llama-common';
import { readSafetensors } from './safetensors';
import { checkLoadBudget, readFileWithinBudget, resolveMaxLoadBytes } from './limits';

/**
 * A Hugging Face Llama model in the canonical layout.
 * @example
 * ```ts
 * const ckpt: HfLlamaCheckpoint = await readHfLlamaDir('model');
 * ckpt.hfConfig.model_type; // 'llama'
 * ```
 */
export interface HfLlamaCheckpoint extends LlamaCheckpoint {
  /** The tokenizer from `tokenizer.json`, when there is one. */
  tokenizer?: HfTokenizer;
  /** The parsed `config.json`. */
  hfConfig: Record<string, unknown>;
}

/**
 * In-memory contents of a Hugging Face Llama directory, for {@link readHfLlama}.
 * @example
 * ```ts
 * readHfLlama({ config: configJsonText, weights: safetensorsBytes, tokenizer: tokenizerJsonText });
 * ```
 */
export interface HfLlamaFiles {
  /** `config.json` (text or parsed). */
  config: string | Record<string, unknown>;
  /** `model.safetensors` bytes, several shards, or tensors already read (HF names). */
  weights: Uint8Array | Uint8Array[] | Map<string, Tensor>;
  /** `tokenizer.json` (text or parsed), optional. */
  tokenizer?: string | Record<string, unknown>;
}

/**
 * Options of the Hugging Face Llama readers.
 * @example
 * ```ts
 * await readHfLlamaDir('model', { source: 'my model' });
 * ```
 */
export interface HfLlamaReadOptions {
  /** Names the model in error messages (default the directory, or "Hugging Face model"). */
  source?: string;
  /**
   * Memory budget in bytes: the weight shards together, and each JSON file (config and index: at most 16 MiB),
   * are checked before they are read. Default `getMaxLoadBytes()`; exceeding it gives `QK_OUT_OF_MEMORY`.
   */
  maxBytes?: number;
}

const MAX_JSON_BYTES = 16 * 2 ** 20;

function parseJson(text: string | Record<string, unknown>, what: string): Record<string, unknown> {
  let v: unknown = text;
  if (typeof text === 'string') {
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new CorruptFileError(`Expected JSON in ${what} but received invalid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CorruptFileError(`Expected a JSON object in ${what} but received ${describe(v)}`);
  return v as Record<string, unknown>;
}

/**
 * Maps a Hugging Face `LlamaConfig` (`config.json`) to a {@link LlamaConfig}.
 * @throws CorruptFileError for missing/invalid fields; UnsupportedError for variants quantkit does not run.
 * @example
 * ```ts
 * hfConfigToLlama(JSON.parse(fs.readFileSync('config.json', 'utf8'))).nKvHeads;
 * ```
 */
export function hfConfigToLlama(hf: Record<string, unknown>, options: { source?: string } = {}): LlamaConfig {
  const where = `${options.source ?? 'Hugging Face model'} config.json`;
  const fail = (what: string, received: unknown): never => {
    throw new CorruptFileError(`Expected ${what} in ${where} but received ${typeof received === 'string' ? received : describe(received)}`);
  };
  const unsupported = (what: string, received: unknown): never => {
    throw new UnsupportedError(`Expected ${what} in ${where} but received ${typeof received === 'string' ? received : describe(received)}`);
  };
  if (hf === null || typeof hf !== 'object') fail('a JSON object', hf);
  if (hf.model_type !== undefined && hf.model_type !== 'llama') unsupported('model_type "llama"', JSON.stringify(hf.model_type));
  if (hf.model_type === undefined && !(Array.isArray(hf.architectures) && hf.architectures.includes('LlamaForCausalLM'))) {
    fail('model_type "llama" or architectures ["LlamaForCausalLM"]', 'neither');
  }
  const num = (key: string, dflt?: number): number => {
    const v = hf[key] ?? dflt;
    if (v === undefined) fail(`a number for ${key}`, 'none');
    if (typeof v !== 'number') fail(`a number for ${key}`, v);
    return v as number;
  };
  const dim = num('hidden_size');
  const nHeads = num('num_attention_heads');
  if ((hf.hidden_act ?? 'silu') !== 'silu') unsupported('hidden_act "silu"', JSON.stringify(hf.hidden_act));
  if (hf.rope_scaling !== undefined && hf.rope_scaling !== null) unsupported('no rope_scaling', JSON.stringify(hf.rope_scaling));
  if (hf.attention_bias === true) unsupported('attention_bias false', 'true');
  if (hf.mlp_bias === true) unsupported('mlp_bias false', 'true');
  if (hf.head_dim !== undefined && hf.head_dim !== null && hf.head_dim !== dim / nHeads) unsupported(`head_dim = hidden_size / num_attention_heads = ${dim / nHeads}`, hf.head_dim);
  let ropeTheta = num('rope_theta', 10000);
  const rp = hf.rope_parameters;
  if (rp !== undefined && rp !== null) {
    if (typeof rp !== 'object') fail('an object for rope_parameters', rp);
    const r = rp as Record<string, unknown>;
    if (r.rope_type !== undefined && r.rope_type !== 'default') unsupported('rope_parameters.rope_type "default"', JSON.stringify(r.rope_type));
    if (r.rope_theta !== undefined) {
      if (typeof r.rope_theta !== 'number') fail('a number for rope_parameters.rope_theta', r.rope_theta);
      ropeTheta = r.rope_theta as number;
    }
  }
  const tie = hf.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') fail('a boolean for tie_word_embeddings', tie);
  const config: LlamaConfig = {
    dim,
    hiddenDim: num('intermediate_size'),
    nLayers: num('num_hidden_layers'),
    nHeads,
    nKvHeads: num('num_key_value_heads', nHeads),
    vocabSize: num('vocab_size'),
    seqLen: num('max_position_embeddings'),
    normEps: num('rms_norm_eps', 1e-6),
    ropeTheta,
    tiedEmbeddings: tie as boolean,
  };
  return checkLlamaConfig(config, (what, received) => fail(what, received));
}

/** HF name → canonical name, for a config. */
function nameMap(config: LlamaConfig): Map<string, string> {
  const m = new Map<string, string>();
  m.set('model.embed_tokens.weight', N.tokEmbeddings);
  m.set('model.norm.weight', N.norm);
  for (let i = 0; i < config.nLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(`${p}input_layernorm.weight`, N.attentionNorm(i));
    m.set(`${p}self_attn.q_proj.weight`, N.wq(i));
    m.set(`${p}self_attn.k_proj.weight`, N.wk(i));
    m.set(`${p}self_attn.v_proj.weight`, N.wv(i));
    m.set(`${p}self_attn.o_proj.weight`, N.wo(i));
    m.set(`${p}post_attention_layernorm.weight`, N.ffnNorm(i));
    m.set(`${p}mlp.gate_proj.weight`, N.w1(i));
    m.set(`${p}mlp.down_proj.weight`, N.w2(i));
    m.set(`${p}mlp.up_proj.weight`, N.w3(i));
  }
  if (!config.tiedEmbeddings) m.set('lm_head.weight', N.output);
  return m;
}

const IGNORED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

function toCanonical(config: LlamaConfig, hf: Map<string, Tensor>, where: string): Map<string, Tensor<'float32'>> {
  // Nothing proportional to num_hidden_layers is built before the tensors are known to be there.
  if (9 * config.nLayers + 2 > hf.size) {
    throw new CorruptFileError(`Expected at least ${9 * config.nLayers + 2} tensors (num_hidden_layers = ${config.nLayers}) in ${where} but received ${hf.size}`);
  }
  const map = nameMap(config);
  const specs = new Map(llamaTensorSpecs(config).map((s) => [s.name, s.shape]));
  const out = new Map<string, Tensor<'float32'>>();
  for (const [hfName, t] of hf) {
    if (IGNORED.test(hfName) || (config.tiedEmbeddings && hfName === 'lm_head.weight')) continue;
    const name = map.get(hfName);
    if (name === undefined) throw new UnsupportedError(`Expected only the tensors of a plain Llama model in ${where} but received ${JSON.stringify(hfName)}`);
    const shape = specs.get(name)!;
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new CorruptFileError(`Expected shape [${shape.join(', ')}] (from config.json) for ${hfName} in ${where} but received [${t.shape.join(', ')}]`);
    }
    if (!['float32', 'float16', 'bfloat16'].includes(t.dtype)) throw new UnsupportedError(`Expected a float32, float16 or bfloat16 tensor for ${hfName} in ${where} but received ${t.dtype}`);
    let f = t.dtype === 'float32' ? (t as Tensor<'float32'>) : t.toFloat32();
    if (hfName.endsWith('.self_attn.q_proj.weight')) f = halfSplitToInterleaved(f, config.nHeads);
    else if (hfName.endsWith('.self_attn.k_proj.weight')) f = halfSplitToInterleaved(f, config.nKvHeads);
    out.set(name, f);
  }
  const ordered = new Map<string, Tensor<'float32'>>();
  for (const [name] of specs) {
    const t = out.get(name);
    if (!t) {
      const hfName = [...map].find(([, c]) => c === name)![0];
      throw new CorruptFileError(`Expected a tensor ${hfName} in ${where} but received none`);
    }
    ordered.set(name, t);
  }
  return ordered;
}

/**
 * Reads a Hugging Face Llama model from in-memory files (synchronously).
 * @throws CorruptFileError for inconsistent files; UnsupportedError for model variants quantkit does not run.
 * @example
 * ```ts
 * const ckpt = readHfLlama({
 *   config: fs.readFileSync('model/config.json', 'utf8'),
 *   weights: new Uint8Array(fs.readFileSync('model/model.safetensors')),
 *   tokenizer: fs.readFileSync('model/tokenizer.json', 'utf8'),
 * });
 * ```
 */
export function readHfLlama(files: HfLlamaFiles, options: HfLlamaReadOptions = {}): HfLlamaCheckpoint {
  if (files === null || typeof files !== 'object') throw new InvalidArgumentError(`Expected { config, weights, tokenizer? } for files but received ${describe(files)}`);
  const where = options.source ?? 'Hugging Face model';
  const hfConfig = parseJson(files.config, `${where} config.json`);
  const config = hfConfigToLlama(hfConfig, { source: where });
  let hf: Map<string, Tensor>;
  if (files.weights instanceof Map) {
    hf = files.weights;
  } else {
    const shards = Array.isArray(files.weights) ? files.weights : [files.weights];
    hf = new Map();
    shards.forEach((bytes, i) => {
      if (!isBytes(bytes)) throw new InvalidArgumentError(`Expected a Uint8Array for files.weights[${i}] but received ${describe(bytes)}`);
      const shardName = shards.length === 1 ? `${where} model.safetensors` : `${where} shard ${i}`;
      for (const [k, t] of readSafetensors(bytes, { source: shardName }).tensors) {
        if (hf.has(k)) throw new CorruptFileError(`Expected each tensor in one shard of ${where} but received ${JSON.stringify(k)} twice`);
        hf.set(k, t);
      }
    });
  }
  const tensors = toCanonical(config, hf, where);
  const out: HfLlamaCheckpoint = { config, tensors, hfConfig };
  if (files.tokenizer !== undefined) out.tokenizer = HfTokenizer.fromJSON(files.tokenizer, { source: `${where} tokenizer.json` });
  return out;
}

/**
 * Reads a Hugging Face Llama directory: `config.json`, `model.safetensors` or the shards named by
 * `model.safetensors.index.json`, and `tokenizer.json` when present.
 * @throws CorruptFileError / UnsupportedError as {@link readHfLlama}; the fs error for missing files.
 * @example
 * ```ts
 * const { config, tensors, tokenizer } = await readHfLlamaDir('path/to/TinyLlama');
 * ```
 */
export async function readHfLlamaDir(dir: string, options: HfLlamaReadOptions = {}): Promise<HfLlamaCheckpoint> {
  checkPath(dir, 'dir');
  const where = options.source ?? dir;
  const file = (name: string) => nodePath.join(dir, name);
  const exists = async (name: string) => fs.promises.stat(file(name)).then((s) => s.isFile(), () => false);
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const text = async (name: string, cap: number) =>
    new TextDecoder().decode(await readFileWithinBudget(file(name), Math.min(budget, cap), name, where));
  const config = await text('config.json', MAX_JSON_BYTES);
  const hfConfig = parseJson(config, `${where} config.json`);
  const llama = hfConfigToLlama(hfConfig, { source: where });
  let shardNames: string[];
  if (await exists('model.safetensors')) {
    shardNames = ['model.safetensors'];
  } else if (await exists('model.safetensors.index.json')) {
    const index = parseJson(await text('model.safetensors.index.json', MAX_JSON_BYTES), `${where} model.safetensors.index.json`);
    const map = index.weight_map;
    if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new CorruptFileError(`Expected an object weight_map in ${where} model.safetensors.index.json but received ${describe(map)}`);
    const names = new Set<string>();
    for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
      if (typeof v !== 'string' || v.length === 0 || v.includes('/') || v.includes('\\') || v === '.' || v === '..') {
        throw new CorruptFileError(`Expected a plain file name for weight_map[${JSON.stringify(k)}] in ${where} model.safetensors.index.json but received ${describe(v)}`);
      }
      names.add(v);
    }
    shardNames = [...names].sort();
  } else {
    throw new CorruptFileError(`Expected model.safetensors or model.safetensors.index.json in ${where} but received neither`);
  }
  // The shards together must fit the budget: sizes are checked before the first one is read.
  let total = 0;
  for (const name of shardNames) {
    const st = await fs.promises.stat(file(name)).catch((err: Error) => {
      throw new CorruptFileError(`Expected the weight shard ${name} in ${where} but it could not be read: ${err.message}`);
    });
    total += st.size;
  }
  checkLoadBudget(total, budget, `the ${shardNames.length} weight shard(s)`, where);
  const hf = new Map<string, Tensor>();
  for (const name of shardNames) {
    const bytes = await readFileWithinBudget(file(name), budget, name, where);
    for (const [k, t] of readSafetensors(bytes, { source: `${where}/${name}`, maxBytes: budget }).tensors) {
      if (hf.has(k)) throw new CorruptFileError(`Expected each tensor in one shard of ${where} but received ${JSON.stringify(k)} twice`);
      hf.set(k, t);
    }
  }
  const tensors = toCanonical(llama, hf, where);
  const out: HfLlamaCheckpoint = { config: llama, tensors, hfConfig };
  if (await exists('tokenizer.json')) out.tokenizer = HfTokenizer.fromJSON(await text('tokenizer.json', Math.floor(budget / 10)), { source: `${where}/tokenizer.json`, maxBytes: budget });
  return out;
}
