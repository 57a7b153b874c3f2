/**
 * The canonical in-memory form of a Llama-family checkpoint, shared by every importer (llama2.c `.bin`, GGUF,
 * Hugging Face `config.json` + `model.safetensors`) and by the model that consumes them.
 *
 * ## Canonical layout (the llama2.c / Meta layout)
 *
 * Every tensor is a float32 {@link Tensor}, row-major and contiguous. Every matrix is `[out, in]` exactly as
 * llama2.c (and PyTorch's `nn.Linear.weight`) stores it: `y = W x` is `y[o] = Σ_i W[o, i] · x[i]`, so a Keras
 * `Dense` kernel (`[in, out]`) is its transpose. With `headSize = dim / nHeads` and `kvDim = nKvHeads · headSize`:
 *
 * | name | shape | role |
 * |---|---|---|
 * | `tok_embeddings.weight` | `[vocabSize, dim]` | token embedding (row = token); also the classifier when tied |
 * | `layers.{i}.attention_norm.weight` | `[dim]` | RMSNorm gain before attention |
 * | `layers.{i}.attention.wq.weight` | `[nHeads·headSize, dim]` | query projection (rows grouped by head) |
 * | `layers.{i}.attention.wk.weight` | `[kvDim, dim]` | key projection |
 * | `layers.{i}.attention.wv.weight` | `[kvDim, dim]` | value projection |
 * | `layers.{i}.attention.wo.weight` | `[dim, nHeads·headSize]` | attention output projection |
 * | `layers.{i}.ffn_norm.weight` | `[dim]` | RMSNorm gain before the feed-forward |
 * | `layers.{i}.feed_forward.w1.weight` | `[hiddenDim, dim]` | gate projection (SiLU applied) |
 * | `layers.{i}.feed_forward.w2.weight` | `[dim, hiddenDim]` | down projection |
 * | `layers.{i}.feed_forward.w3.weight` | `[hiddenDim, dim]` | up projection |
 * | `norm.weight` | `[dim]` | final RMSNorm gain |
 * | `output.weight` | `[vocabSize, dim]` | classifier, present only when `tiedEmbeddings` is false |
 *
 * The names are those of Meta's and llama2.c's PyTorch `Transformer` state dict.
 *
 * **Rotary convention:** interleaved pairs. Within each head, query/key features `(2j, 2j+1)` form one complex
 * number rotated by `pos · ropeTheta^(-2j / headSize)`, for `j = 0 … headSize/2 - 1` (llama2.c `run.c`, Meta's
 * reference code, ggml's normal RoPE mode). Hugging Face checkpoints store the rows of `wq`/`wk` in the
 * "half-split" order instead (feature `j` pairs with `j + headSize/2`); the HF importer converts them with
 * {@link halfSplitToInterleaved}. GGUF files of architecture `llama` already use the interleaved order (llama.cpp's
 * converter undoes Hugging Face's permutation), so the GGUF importer copies them unchanged.
 *
 * **Forward pass** (run.c semantics): `x = tok_embeddings[token]`; per layer
 * `x += wo · attention(rope(wq · rms(x)), rope(wk · rms(x)), wv · rms(x))` (causal, scale `1/√headSize`, query
 * head `h` reads KV head `h / (nHeads / nKvHeads)`), then `x += w2 · (silu(w1 · rms(x)) ⊙ (w3 · rms(x)))`;
 * logits = `(output ?? tok_embeddings) · rms(x)`, with `rms(x) = x / sqrt(mean(x²) + normEps) ⊙ gain`.
 *
 * @example
 * ```ts
 * import { readLlama2cFile, llamaTensorSpecs } from 'quantkit';
 * const { config, tensors } = await readLlama2cFile('stories260K.bin');
 * for (const { name, shape } of llamaTensorSpecs(config)) console.log(name, shape, tensors.get(name)!.shape);
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError } from '../errors';
import { describe, Tensor } from '../tensor';

/**
 * Hyper-parameters of a Llama-family decoder (llama2.c's `Config`, plus what llama2.c hard-codes).
 *
 * @example
 * ```ts
 * const config: LlamaConfig = {
 *   dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512,
 *   normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: true,
 * };
 * ```
 */
export interface LlamaConfig {
  /** Model width (`hidden_size`, `llama.embedding_length`). */
  dim: number;
  /** Feed-forward width (`intermediate_size`, `llama.feed_forward_length`). */
  hiddenDim: number;
  /** Number of decoder blocks. */
  nLayers: number;
  /** Query heads; divides `dim` and `headSize = dim / nHeads` is even. */
  nHeads: number;
  /** Key/value heads (grouped-query attention); divides `nHeads`. */
  nKvHeads: number;
  /** Vocabulary size (rows of the embedding). */
  vocabSize: number;
  /** Context length the checkpoint declares (llama2.c `seq_len`, `max_position_embeddings`, `llama.context_length`). */
  seqLen: number;
  /** RMSNorm epsilon (llama2.c hard-codes 1e-5). */
  normEps: number;
  /** RoPE base θ (llama2.c hard-codes 10000). */
  ropeTheta: number;
  /** The classifier is the token embedding (no `output.weight` tensor). */
  tiedEmbeddings: boolean;
}

/**
 * A checkpoint in the canonical layout: its config and its float32 tensors by canonical name.
 * @example
 * ```ts
 * const ckpt: LlamaCheckpoint = await readLlama2cFile('stories260K.bin');
 * ckpt.tensors.get('layers.0.attention.wq.weight')!.shape; // [64, 64]
 * ```
 */
export interface LlamaCheckpoint {
  /** Hyper-parameters. */
  config: LlamaConfig;
  /** Tensors by canonical name (see {@link llamaTensorSpecs}); all float32, `[out, in]` for matrices. */
  tensors: Map<string, Tensor<'float32'>>;
}

/**
 * Canonical tensor names.
 * @example
 * ```ts
 * LLAMA_TENSOR_NAMES.wq(3); // 'layers.3.attention.wq.weight'
 * ```
 */
export const LLAMA_TENSOR_NAMES = Object.freeze({
  tokEmbeddings: 'tok_embeddings.weight',
  norm: 'norm.weight',
  output: 'output.weight',
  attentionNorm: (i: number) => `layers.${i}.attention_norm.weight`,
  wq: (i: number) => `layers.${i}.attention.wq.weight`,
  wk: (i: number) => `layers.${i}.attention.wk.weight`,
  wv: (i: number) => `layers.${i}.attention.wv.weight`,
  wo: (i: number) => `layers.${i}.attention.wo.weight`,
  ffnNorm: (i: number) => `layers.${i}.ffn_norm.weight`,
  w1: (i: number) => `layers.${i}.feed_forward.w1.weight`,
  w2: (i: number) => `layers.${i}.feed_forward.w2.weight`,
  w3: (i: number) => `layers.${i}.feed_forward.w3.weight`,
});

/**
 * Size of one attention head, `dim / nHeads`.
 * @example
 * ```ts
 * llamaHeadSize({ dim: 64, nHeads: 8 }); // 8
 * ```
 */
export function llamaHeadSize(config: Pick<LlamaConfig, 'dim' | 'nHeads'>): number {
  return config.dim / config.nHeads;
}

/**
 * Every tensor a checkpoint with this config holds, in a fixed order (embedding, per-layer tensors layer by
 * layer, final norm, classifier if untied), with its canonical shape.
 * @example
 * ```ts
 * llamaTensorSpecs(config).map((s) => `${s.name} [${s.shape}]`);
 * ```
 */
export function llamaTensorSpecs(config: LlamaConfig): Array<{ name: string; shape: number[] }> {
  const { dim, hiddenDim, nLayers, vocabSize } = config;
  const kvDim = config.nKvHeads * llamaHeadSize(config);
  const n = LLAMA_TENSOR_NAMES;
  const out: Array<{ name: string; shape: number[] }> = [{ name: n.tokEmbeddings, shape: [vocabSize, dim] }];
  for (let i = 0; i < nLayers; i++) {
    out.push(
      { name: n.attentionNorm(i), shape: [dim] },
      { name: n.wq(i), shape: [dim, dim] },
      { name: n.wk(i), shape: [kvDim, dim] },
      { name: n.wv(i), shape: [kvDim, dim] },
      { name: n.wo(i), shape: [dim, dim] },
      { name: n.ffnNorm(i), shape: [dim] },
      { name: n.w1(i), shape: [hiddenDim, dim] },
      { name: n.w2(i), shape: [dim, hiddenDim] },
      { name: n.w3(i), shape: [hiddenDim, dim] },
    );
  }
  out.push({ name: n.norm, shape: [dim] });
  if (!config.tiedEmbeddings) out.push({ name: n.output, shape: [vocabSize, dim] });
  return out;
}

/**
 * Checks a config's fields and their relations. `fail(what, received)` reports the first problem (the readers
 * pass one that throws CorruptFileError naming the file). Returns the problem-free config.
 * @internal
 */
export function checkLlamaConfig(config: LlamaConfig, fail: (what: string, received: string) => never): LlamaConfig {
  if (config === null || typeof config !== 'object') fail('a LlamaConfig object', describe(config));
  const posInt = (key: keyof LlamaConfig, max = 2 ** 31 - 1) => {
    const v = config[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > max) fail(`a positive integer (at most ${max}) for ${key}`, describe(v));
  };
  posInt('dim');
  posInt('hiddenDim');
  posInt('nLayers');
  posInt('nHeads');
  posInt('nKvHeads');
  posInt('vocabSize');
  posInt('seqLen');
  if (config.dim % config.nHeads !== 0) fail(`nHeads dividing dim = ${config.dim}`, `nHeads = ${config.nHeads}`);
  if (llamaHeadSize(config) % 2 !== 0) fail('an even head size dim / nHeads (rotary pairs)', `${config.dim} / ${config.nHeads} = ${llamaHeadSize(config)}`);
  if (config.nKvHeads > config.nHeads || config.nHeads % config.nKvHeads !== 0) fail(`nKvHeads dividing nHeads = ${config.nHeads}`, `nKvHeads = ${config.nKvHeads}`);
  if (typeof config.normEps !== 'number' || !(config.normEps > 0) || !Number.isFinite(config.normEps)) fail('a positive finite normEps', describe(config.normEps));
  if (typeof config.ropeTheta !== 'number' || !(config.ropeTheta > 0) || !Number.isFinite(config.ropeTheta)) fail('a positive finite ropeTheta', describe(config.ropeTheta));
  if (typeof config.tiedEmbeddings !== 'boolean') fail('a boolean tiedEmbeddings', describe(config.tiedEmbeddings));
  return config;
}

/**
 * Validates a {@link LlamaConfig} (positive integers, `nHeads | dim`, even head size, `nKvHeads | nHeads`,
 * positive `normEps`/`ropeTheta`).
 * @throws InvalidArgumentError naming the first bad field.
 * @example
 * ```ts
 * validateLlamaConfig({ ...config, nKvHeads: 3 }); // throws: nKvHeads must divide nHeads
 * ```
 */
export function validateLlamaConfig(config: LlamaConfig): LlamaConfig {
  return checkLlamaConfig(config, (what, received) => {
    throw new InvalidArgumentError(`Expected ${what} for config but received ${received}`);
  });
}

/**
 * Validates a checkpoint: a valid config, and exactly the tensors of {@link llamaTensorSpecs}, each float32 with
 * its canonical shape.
 * @throws InvalidArgumentError (config), ShapeMismatchError (a tensor missing, extra, or of the wrong shape/dtype).
 * @example
 * ```ts
 * validateLlamaCheckpoint(await readGgufLlamaFile('stories260K.gguf'));
 * ```
 */
export function validateLlamaCheckpoint(checkpoint: LlamaCheckpoint): LlamaCheckpoint {
  if (checkpoint === null || typeof checkpoint !== 'object' || !(checkpoint.tensors instanceof Map)) {
    throw new InvalidArgumentError(`Expected a { config, tensors: Map } checkpoint but received ${describe(checkpoint)}`);
  }
  const c = validateLlamaConfig(checkpoint.config);
  const want = 9 * c.nLayers + (c.tiedEmbeddings ? 2 : 3);
  if (checkpoint.tensors.size !== want) {
    throw new ShapeMismatchError(`Expected ${want} tensors for a checkpoint of ${c.nLayers} layers (${c.tiedEmbeddings ? 'tied' : 'untied'}) but received ${checkpoint.tensors.size}`);
  }
  const specs = llamaTensorSpecs(c);
  for (const { name, shape } of specs) {
    const t = checkpoint.tensors.get(name);
    if (!(t instanceof Tensor)) throw new ShapeMismatchError(`Expected a tensor ${name} in the checkpoint but received ${describe(t)}`);
    if (t.dtype !== 'float32' || t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new ShapeMismatchError(`Expected float32 [${shape.join(', ')}] for ${name} but received ${t.dtype} [${t.shape.join(', ')}]`);
    }
  }
  return checkpoint;
}

function permuteRows(w: Tensor, nHeads: number, toInterleaved: boolean, fn: string): Tensor<'float32'> {
  if (!(w instanceof Tensor) || w.rank !== 2) throw new InvalidArgumentError(`Expected a 2-D Tensor for w of ${fn} but received ${describe(w)}`);
  if (!Number.isSafeInteger(nHeads) || nHeads <= 0) throw new InvalidArgumentError(`Expected a positive integer for nHeads of ${fn} but received ${describe(nHeads)}`);
  const [rows, cols] = w.shape;
  if (rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
    throw new ShapeMismatchError(`Expected rows divisible into ${nHeads} heads of even size for w of ${fn} but received [${rows}, ${cols}]`);
  }
  const src = w.dtype === 'float32' ? (w.data as Float32Array) : w.toFloat32().data;
  const out = new Float32Array(rows * cols);
  const hs = rows / nHeads;
  const half = hs / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < half; j++) {
      for (let p = 0; p < 2; p++) {
        const inter = h * hs + 2 * j + p; // interleaved row
        const split = h * hs + p * half + j; // half-split row
        const [from, to] = toInterleaved ? [split, inter] : [inter, split];
        out.set(src.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return new Tensor('float32', [rows, cols], out);
}

/**
 * Reorders the rows of a query/key projection `[nHeads·headSize, in]` from the Hugging Face "half-split" rotary
 * order (within a head, feature `j` pairs with `j + headSize/2`) to the canonical interleaved-pair order
 * (`(2j, 2j+1)`): canonical row `2j + p` of head `h` is HF row `p·headSize/2 + j`. One pass of row copies.
 * Pass `nKvHeads` for `wk`.
 * @example
 * ```ts
 * const wq = halfSplitToInterleaved(hfTensors.get('model.layers.0.self_attn.q_proj.weight')!, config.nHeads);
 * ```
 */
export function halfSplitToInterleaved(w: Tensor, nHeads: number): Tensor<'float32'> {
  return permuteRows(w, nHeads, true, 'halfSplitToInterleaved');
}

/**
 * The inverse of {@link halfSplitToInterleaved}: canonical (llama2.c/Meta/GGUF) rows of `wq`/`wk` to the Hugging
 * Face order (what `convert_llama_weights_to_hf.py` does).
 * @example
 * ```ts
 * const hfQ = interleavedToHalfSplit(ckpt.tensors.get('layers.0.attention.wq.weight')!, ckpt.config.nHeads);
 * ```
 */
export function interleavedToHalfSplit(w: Tensor, nHeads: number): Tensor<'float32'> {
  return permuteRows(w, nHeads, false, 'interleavedToHalfSplit');
}

/**
 * The shortest decimal that rounds to the same float32 (float32 metadata such as `1e-5` comes back as
 * `0.000009999999747…`; this returns `1e-5`). Non-float32 values come back unchanged.
 * @internal
 */
export function shortestFloat32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  for (let p = 1; p <= 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}
