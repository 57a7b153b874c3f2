/**
 * GPTQ calibration data (Keras `get_dataloader`, spec §3.3): a dataset of strings (tokenized) or of token arrays
 * becomes `numSamples` windows of `sequenceLength` token ids, chosen deterministically from a seed.
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import { describe, Tensor } from '../tensor';

/**
 * What quantkit accepts as a tokenizer: an object with `tokenize(text)` (KerasHub) or `encode(text)`
 * (transformers.js, tiktoken, quantkit's own tokenizers), or a function `text => ids`. The result may be an
 * array of numbers, a TypedArray, an integer Tensor, an object with `ids` / `input_ids`, or a Promise of those.
 */
export type TokenizerLike =
  | ((text: string) => unknown)
  | { tokenize(text: string): unknown }
  | { encode(text: string): unknown };

/** How window starts are chosen (Keras strategies). */
export type CalibrationStrategy = 'strided' | 'linspace' | 'random';

/** Options of {@link calibrationWindows}. */
export interface CalibrationWindowOptions {
  /** Windows to return (default 128). */
  numSamples?: number;
  /** Tokens per window (default 512). */
  sequenceLength?: number;
  /** Seed of the start offset (`strided`) or of the starts (`random`); default 42. */
  seed?: number;
  /** Default `'strided'`: evenly spaced starts from a seeded offset (reproducible across processes, unlike Keras). */
  strategy?: CalibrationStrategy;
  /** Token put between documents (default none, as Keras). */
  eosId?: number | null;
}

/** A small deterministic 32-bit PRNG (mulberry32), used for window starts. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function toIds(v: unknown, what: string): number[] | Int32Array {
  if (v instanceof Tensor) v = v.data;
  if (v && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v)) {
    const o = v as { ids?: unknown; input_ids?: unknown; inputIds?: unknown };
    v = o.ids ?? o.input_ids ?? o.inputIds ?? v;
    if (v instanceof Tensor) v = v.data;
  }
  if (Array.isArray(v) && v.some((x) => Array.isArray(x) || ArrayBuffer.isView(x))) v = (v as unknown[]).flat(Infinity);
  if (Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView))) {
    const arr = v as ArrayLike<number | bigint>;
    const out = new Int32Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const x = Number(arr[i]);
      if (!Number.isInteger(x) || x < 0 || x > 2147483647) {
        throw new InvalidArgumentError(`Expected non-negative integer token ids in ${what} but found ${describe(arr[i])} at position ${i}`);
      }
      out[i] = x;
    }
    return out;
  }
  throw new InvalidArgumentError(`Expected token ids (an array, TypedArray, integer Tensor or { ids }) for ${what} but received ${describe(v)}`);
}

/** Resolves a tokenizer to a function (throws a clear error for anything else). */
export function tokenizerFunction(tokenizer: unknown): (text: string) => unknown {
  if (typeof tokenizer === 'function') return tokenizer as (t: string) => unknown;
  if (tokenizer && typeof tokenizer === 'object') {
    const t = tokenizer as { tokenize?: unknown; encode?: unknown };
    if (typeof t.tokenize === 'function') return (s) => (t.tokenize as (s: string) => unknown).call(tokenizer, s);
    if (typeof t.encode === 'function') return (s) => (t.encode as (s: string) => unknown).call(tokenizer, s);
  }
  throw new InvalidArgumentError(
    `Expected a tokenizer with tokenize(text) or encode(text), or a function text => ids, for tokenizer but received ${describe(tokenizer)}`,
  );
}

/**
 * The calibration windows: int32 arrays of `sequenceLength` token ids (spec §3.3). Strings are tokenized and
 * everything is concatenated into one stream (tiled when shorter than `numSamples · sequenceLength`); window
 * starts follow `strategy`. Deterministic for a given seed, in every process.
 *
 * @example
 * ```ts
 * const windows = await calibrationWindows(texts, tokenizer, { numSamples: 16, sequenceLength: 128 });
 * windows.length;      // 16
 * windows[0].length;   // 128
 * ```
 * @throws InvalidArgumentError for a non-iterable or string dataset, an empty dataset ("Provided dataset is
 *   empty."), a missing tokenizer for string data, bad token ids, or too few tokens for one window.
 */
export async function calibrationWindows(
  dataset: unknown,
  tokenizer: unknown,
  options: CalibrationWindowOptions = {},
): Promise<Int32Array[]> {
  const numSamples = options.numSamples ?? 128;
  const L = options.sequenceLength ?? 512;
  const seed = options.seed ?? 42;
  const strategy = options.strategy ?? 'strided';
  for (const [name, v] of [['numSamples', numSamples], ['sequenceLength', L]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new InvalidArgumentError(`Expected a positive integer for ${name} but received ${describe(v)}`);
  }
  if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError(`Expected an integer for seed but received ${describe(seed)}`);
  if (!['strided', 'linspace', 'random'].includes(strategy)) {
    throw new InvalidArgumentError(`Expected one of 'strided', 'linspace', 'random' for strategy but received ${describe(strategy)}`);
  }
  if (typeof dataset === 'string' || dataset instanceof Uint8Array) {
    throw new InvalidArgumentError(
      `Expected an iterable of strings or token arrays for dataset but received ${describe(dataset)}: pass a list of texts, not one string`,
    );
  }
  if (
    dataset === null ||
    dataset === undefined ||
    (typeof (dataset as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== 'function' &&
      typeof (dataset as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] !== 'function')
  ) {
    throw new InvalidArgumentError(`Expected an iterable of strings or token arrays for dataset but received ${describe(dataset)}`);
  }
  const eos = options.eosId ?? null;
  const parts: (number[] | Int32Array)[] = [];
  let total = 0;
  let index = 0;
  let tok: ((t: string) => unknown) | null = null;
  for await (const item of dataset as AsyncIterable<unknown>) {
    let ids: number[] | Int32Array;
    if (typeof item === 'string') {
      if (tokenizer === null || tokenizer === undefined) {
        throw new InvalidArgumentError('GPTQ quantization requires a tokenizer to tokenize string samples: pass tokenizer in the GPTQConfig');
      }
      tok ??= tokenizerFunction(tokenizer);
      ids = toIds(await tok(item), `the tokenization of dataset[${index}]`);
    } else {
      ids = toIds(item, `dataset[${index}]`);
    }
    if (eos !== null && index > 0) {
      parts.push([eos]);
      total += 1;
    }
    parts.push(ids);
    total += ids.length;
    index++;
  }
  if (index === 0) throw new InvalidArgumentError('Provided dataset is empty.');
  if (total < L) throw new InvalidArgumentError(`Not enough tokens to form one sample of length ${L} (have ${total}).`);
  let stream = new Int32Array(total);
  let off = 0;
  for (const p of parts) {
    stream.set(p, off);
    off += p.length;
  }
  const required = numSamples * L;
  if (total < required) {
    const reps = Math.ceil(required / total);
    const tiled = new Int32Array(total * reps);
    for (let r = 0; r < reps; r++) tiled.set(stream, r * total);
    stream = tiled;
  }
  const maxStart = stream.length - L;
  const starts: number[] = [];
  if (strategy === 'strided') {
    const stride = Math.max(1, Math.floor((maxStart + 1) / numSamples));
    const offset = maxStart === 0 ? 0 : Math.floor(seededRandom(seed)() * (maxStart + 1));
    for (let i = 0; i < numSamples; i++) starts.push((offset + i * stride) % (maxStart + 1));
  } else if (strategy === 'linspace') {
    for (let i = 0; i < numSamples; i++) starts.push(numSamples === 1 ? 0 : Math.floor((i * maxStart) / (numSamples - 1)));
  } else {
    const rnd = seededRandom(seed);
    for (let i = 0; i < numSamples; i++) starts.push(Math.floor(rnd() * (maxStart + 1)));
  }
  return starts.map((s) => stream.slice(s, s + L));
}
