/**
 * The llama2.c tokenizer (`tokenizer.bin` / `tok512.bin`, written by llama2.c's `tokenizer.py` from a
 * SentencePiece BPE model), reproducing `run.c`'s `encode` and `decode` exactly.
 *
 * File format (little-endian): int32 `max_token_length`, then one record per token id: float32 `score`, int32
 * `length`, `length` bytes of the piece (no terminator). Spaces are plain `' '` (SentencePiece's `▁` was replaced
 * when the file was written); byte-fallback pieces are spelled `<0x00>` … `<0xFF>`.
 *
 * Encoding (run.c `encode`): BOS (optional), then — if the text is not empty — the piece `" "` (SentencePiece's
 * dummy prefix), then one token per UTF-8 code point (the piece spelling that code point, else one byte-fallback
 * token per byte), then repeatedly the adjacent pair whose concatenation is a piece with the highest score is
 * merged (ties: the leftmost pair; scores must exceed -1e10), then EOS (optional). The merge loop here runs in
 * O(n log n) with a priority queue but picks exactly the pair run.c's O(n²) scan picks.
 *
 * @example
 * ```ts
 * import { Llama2cTokenizer } from 'quantkit';
 * const tok = await Llama2cTokenizer.fromFile('tok512.bin');
 * tok.encode('Once upon a time'); // [1, 403, 407, 261, 378]
 * tok.decode([1, 403, 407, 261, 378]); // 'Once upon a time'
 * ```
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import { CorruptFileError, InvalidArgumentError } from '../errors';
import { describe } from '../tensor';
import { checkBytes, checkPath } from '../io/le-bytes';
import type { EncodeOptions, Tokenizer } from './types';
import { checkLoadBudget, readFileWithinBudget, resolveMaxLoadBytes } from '../io/limits';

/** One-character strings for every byte value: a piece's bytes become a "binary string" Map key. */
const BYTE_CHARS = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b));

function binaryKey(bytes: Uint8Array, from = 0, to = bytes.length): string {
  let s = '';
  for (let i = from; i < to; i++) s += BYTE_CHARS[bytes[i]];
  return s;
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const utf8 = new TextEncoder();

/**
 * Options of the {@link Llama2cTokenizer} constructor.
 * @example
 * ```ts
 * new Llama2cTokenizer({ pieces: ['<unk>', '<s>', '</s>', ' ', 'a'], scores: [0, 0, 0, -1, -2] });
 * ```
 */
export interface Llama2cTokenizerOptions {
  /** The piece of every token id; strings are UTF-8 encoded. */
  pieces: ReadonlyArray<string | Uint8Array>;
  /** The merge score of every token id (stored as float32, as run.c does). */
  scores: ArrayLike<number>;
  /**
   * SentencePiece token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), e.g. GGUF's
   * `tokenizer.ggml.token_type`. Only used by decoding, which drops control tokens. Optional.
   */
  tokenTypes?: ArrayLike<number>;
  /** Beginning-of-sequence id (default 1, run.c's). */
  bosId?: number;
  /** End-of-sequence id (default 2, run.c's). */
  eosId?: number;
  /** Prepend the `" "` piece to non-empty text (default true: SentencePiece's `add_dummy_prefix`). */
  addDummyPrefix?: boolean;
  /** The file's `max_token_length` (default: the longest piece). Used by {@link Llama2cTokenizer.toBytes}. */
  maxTokenLength?: number;
}

/**
 * Options of {@link Llama2cTokenizer.fromBytes} and {@link Llama2cTokenizer.fromFile}.
 * @example
 * ```ts
 * Llama2cTokenizer.fromBytes(bytes, { source: 'tok512.bin', vocabSize: 512 });
 * ```
 */
export interface Llama2cTokenizerReadOptions {
  /** Names the file in error messages. */
  source?: string;
  /** Expected number of tokens (the model's vocab_size); a file with another count is refused. */
  vocabSize?: number;
  /** Beginning-of-sequence id (default 1). */
  bosId?: number;
  /** End-of-sequence id (default 2). */
  eosId?: number;
  /**
   * Memory budget in bytes (default `getMaxLoadBytes()`): the file plus ~96 bytes per possible token record must
   * fit, checked before any token is created (`QK_OUT_OF_MEMORY` otherwise).
   */
  maxBytes?: number;
}

/** Estimated bytes of JavaScript objects per token (piece array, score, lookup entry). */
const BYTES_PER_TOKEN = 96;

function checkId(v: unknown, name: string, vocabSize: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1 || v >= vocabSize) {
    throw new InvalidArgumentError(`Expected an integer token id in [-1, ${vocabSize}) for ${name} but received ${describe(v)}`);
  }
  return v;
}

/**
 * The llama2.c / SentencePiece-BPE tokenizer. See the module documentation for the exact algorithm.
 *
 * @example
 * ```ts
 * const tok = await Llama2cTokenizer.fromFile('tok512.bin');
 * const ids = tok.encode('Lily saw a dog.');
 * const text = tok.decode(ids);
 * ```
 */
export class Llama2cTokenizer implements Tokenizer {
  /** Number of token ids. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id. */
  readonly bosId: number;
  /** End-of-sequence id. */
  readonly eosId: number;
  /** Whether non-empty text gets the `" "` dummy-prefix token. */
  readonly addDummyPrefix: boolean;
  /** The `max_token_length` written by {@link toBytes}. */
  readonly maxTokenLength: number;
  private readonly pieces: Uint8Array[];
  private readonly keys: string[];
  private readonly scores: Float32Array;
  private readonly lookup = new Map<string, number>();
  private readonly byteIds = new Int32Array(256);
  private readonly byteValue: Int16Array;
  private readonly dropped: Uint8Array;
  private readonly spaceId: number;
  /** Id of each one-byte piece (-1 when the byte is not a piece). */
  private readonly singleByte = new Int32Array(256).fill(-1);
  /** For each id, the first id with the same piece (pair lookups are keyed by these). */
  private readonly canon: Int32Array;
  /** (canon left · vocabSize + canon right) → the id of their concatenation, for every such pair of pieces. */
  private readonly pairs = new Map<number, number>();

  /**
   * @param options - pieces and scores (same length), optional token types, BOS/EOS ids, dummy-prefix flag
   * @throws InvalidArgumentError for mismatched lengths, non-finite scores or ids out of range.
   */
  constructor(options: Llama2cTokenizerOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError(`Expected an options object but received ${describe(options)}`);
    const { pieces, scores } = options;
    if (!Array.isArray(pieces) || pieces.length === 0) throw new InvalidArgumentError(`Expected a non-empty array for options.pieces but received ${describe(pieces)}`);
    const n = pieces.length;
    if (scores === null || typeof scores !== 'object' || scores.length !== n) {
      throw new InvalidArgumentError(`Expected ${n} scores for options.scores but received ${describe(scores)}`);
    }
    this.vocabSize = n;
    this.pieces = pieces.map((p, i) => {
      if (typeof p === 'string') return utf8.encode(p);
      if (ArrayBuffer.isView(p) && Object.prototype.toString.call(p) === '[object Uint8Array]') return Uint8Array.from(p as Uint8Array);
      throw new InvalidArgumentError(`Expected a string or Uint8Array for options.pieces[${i}] but received ${describe(p)}`);
    });
    this.scores = Float32Array.from(scores as ArrayLike<number>);
    this.scores.forEach((s, i) => {
      if (Number.isNaN(s)) throw new InvalidArgumentError(`Expected a number for options.scores[${i}] but received NaN`);
    });
    this.bosId = checkId(options.bosId ?? 1, 'options.bosId', n);
    this.eosId = checkId(options.eosId ?? 2, 'options.eosId', n);
    this.addDummyPrefix = options.addDummyPrefix ?? true;
    if (typeof this.addDummyPrefix !== 'boolean') throw new InvalidArgumentError(`Expected a boolean for options.addDummyPrefix but received ${describe(options.addDummyPrefix)}`);
    const longest = this.pieces.reduce((m, p) => Math.max(m, p.length), 0);
    this.maxTokenLength = options.maxTokenLength ?? longest;
    if (!Number.isSafeInteger(this.maxTokenLength) || this.maxTokenLength < longest) {
      throw new InvalidArgumentError(`Expected an integer >= ${longest} (the longest piece) for options.maxTokenLength but received ${describe(options.maxTokenLength)}`);
    }
    const types = options.tokenTypes;
    if (types !== undefined && (types === null || typeof types !== 'object' || types.length !== n)) {
      throw new InvalidArgumentError(`Expected ${n} token types for options.tokenTypes but received ${describe(types)}`);
    }

    this.keys = this.pieces.map((p) => binaryKey(p));
    // run.c looks pieces up by binary search over the sorted vocabulary; with duplicate pieces (none in real
    // files) the first id wins here.
    this.keys.forEach((k, id) => {
      if (!this.lookup.has(k)) this.lookup.set(k, id);
    });
    this.canon = Int32Array.from(this.keys, (k) => this.lookup.get(k)!);
    for (let b = 0; b < 256; b++) this.singleByte[b] = this.lookup.get(BYTE_CHARS[b]) ?? -1;
    // Every split of every piece into two pieces is a possible merge (what run.c finds by concatenating the
    // pair and looking the result up).
    for (const [key, id] of this.lookup) {
      for (let k = 1; k < key.length; k++) {
        const l = this.lookup.get(key.slice(0, k));
        if (l === undefined) continue;
        const r = this.lookup.get(key.slice(k));
        if (r !== undefined) this.pairs.set(l * n + r, id);
      }
    }
    this.byteValue = new Int16Array(n).fill(-1);
    const latin1 = new TextDecoder('latin1');
    this.pieces.forEach((p, id) => {
      if (p.length !== 6) return;
      const m = BYTE_PIECE.exec(latin1.decode(p));
      if (m) this.byteValue[id] = parseInt(m[1], 16);
    });
    // Byte fallback: the id of the piece <0xXX> when the vocabulary has it, else run.c's byte + 3.
    for (let b = 0; b < 256; b++) this.byteIds[b] = b + 3 < n ? b + 3 : 0;
    for (let id = n - 1; id >= 0; id--) if (this.byteValue[id] >= 0) this.byteIds[this.byteValue[id]] = id;
    this.spaceId = this.lookup.get(' ') ?? this.byteIds[0x20];
    this.dropped = new Uint8Array(n);
    if (this.bosId >= 0) this.dropped[this.bosId] = 1;
    if (this.eosId >= 0) this.dropped[this.eosId] = 1;
    if (types) for (let i = 0; i < n; i++) if (Number(types[i]) === 3) this.dropped[i] = 1;
  }

  /**
   * Parses a llama2.c `tokenizer.bin` file (every record is validated against the file length and
   * `max_token_length` before it is read).
   * @throws CorruptFileError naming `options.source` for a truncated or inconsistent file.
   * @example
   * ```ts
   * const tok = Llama2cTokenizer.fromBytes(new Uint8Array(fs.readFileSync('tok512.bin')), { source: 'tok512.bin' });
   * tok.vocabSize; // 512
   * ```
   */
  static fromBytes(bytes: Uint8Array, options: Llama2cTokenizerReadOptions = {}): Llama2cTokenizer {
    checkBytes(bytes);
    const source = options.source ?? 'llama2.c tokenizer';
    const fail = (what: string, received: string): never => {
      throw new CorruptFileError(`Expected ${what} in ${source} but received ${received}`);
    };
    if (options.vocabSize !== undefined && (!Number.isSafeInteger(options.vocabSize) || options.vocabSize <= 0)) {
      throw new InvalidArgumentError(`Expected a positive integer for options.vocabSize but received ${describe(options.vocabSize)}`);
    }
    if (bytes.length < 4) fail('a 4-byte max_token_length', `a ${bytes.length}-byte file`);
    // Each record takes at least 8 bytes: an upper bound of the token count, checked before any token exists.
    checkLoadBudget(bytes.length + Math.floor((bytes.length - 4) / 8) * BYTES_PER_TOKEN, resolveMaxLoadBytes(options.maxBytes), 'the vocabulary', source);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const maxLen = dv.getInt32(0, true);
    if (maxLen <= 0) fail('a positive max_token_length', `${maxLen}`);
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    let pos = 4;
    while (pos < bytes.length) {
      const id = pieces.length;
      if (options.vocabSize !== undefined && id === options.vocabSize) {
        fail(`exactly ${options.vocabSize} token records (options.vocabSize) ending at byte ${pos}`, `${bytes.length - pos} more bytes`);
      }
      if (pos + 8 > bytes.length) fail(`an 8-byte (score, length) record for token ${id} at offset ${pos}`, `${bytes.length - pos} bytes`);
      const score = dv.getFloat32(pos, true);
      const len = dv.getInt32(pos + 4, true);
      if (Number.isNaN(score)) fail(`a score for token ${id} at offset ${pos}`, 'NaN');
      if (len < 0 || len > maxLen) fail(`a piece length in [0, ${maxLen}] (max_token_length) for token ${id} at offset ${pos + 4}`, `${len}`);
      if (pos + 8 + len > bytes.length) fail(`${len} piece bytes for token ${id} at offset ${pos + 8}`, `${bytes.length - pos - 8} bytes`);
      pieces.push(bytes.slice(pos + 8, pos + 8 + len));
      scores.push(score);
      pos += 8 + len;
    }
    if (pieces.length === 0) fail('at least one token record', 'none');
    if (options.vocabSize !== undefined && pieces.length !== options.vocabSize) fail(`${options.vocabSize} token records (options.vocabSize)`, `${pieces.length}`);
    const n = pieces.length;
    const bosId = options.bosId ?? (n > 1 ? 1 : -1);
    const eosId = options.eosId ?? (n > 2 ? 2 : -1);
    return new Llama2cTokenizer({ pieces, scores, bosId, eosId, maxTokenLength: maxLen });
  }

  /**
   * Reads a llama2.c `tokenizer.bin` file.
   * @example
   * ```ts
   * const tok = await Llama2cTokenizer.fromFile('tok512.bin', { vocabSize: 512 });
   * ```
   */
  static async fromFile(path: string, options: Llama2cTokenizerReadOptions = {}): Promise<Llama2cTokenizer> {
    checkPath(path);
    const bytes = await readFileWithinBudget(path, resolveMaxLoadBytes(options.maxBytes), 'the tokenizer file', options.source ?? path);
    return Llama2cTokenizer.fromBytes(bytes, { ...options, source: options.source ?? path });
  }

  /**
   * Serializes to the llama2.c `tokenizer.bin` format (round-trips {@link fromBytes}).
   * @example
   * ```ts
   * await fs.promises.writeFile('tokenizer.bin', tok.toBytes());
   * ```
   */
  toBytes(): Uint8Array {
    const total = 4 + this.pieces.reduce((a, p) => a + 8 + p.length, 0);
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    dv.setInt32(0, this.maxTokenLength, true);
    let pos = 4;
    this.pieces.forEach((p, i) => {
      dv.setFloat32(pos, this.scores[i], true);
      dv.setInt32(pos + 4, p.length, true);
      out.set(p, pos + 8);
      pos += 8 + p.length;
    });
    return out;
  }

  /**
   * The raw bytes of a token's piece (a copy).
   * @example
   * ```ts
   * new TextDecoder().decode(tok.piece(403)); // ' Once'
   * ```
   */
  piece(id: number): Uint8Array {
    this.checkToken(id, 'id');
    return this.pieces[id].slice();
  }

  /**
   * A token's merge score.
   * @example
   * ```ts
   * tok.score(259); // 0
   * ```
   */
  score(id: number): number {
    this.checkToken(id, 'id');
    return this.scores[id];
  }

  /**
   * The id whose piece is exactly `piece` (UTF-8), or undefined.
   * @example
   * ```ts
   * tok.tokenToId(' Once'); // 403
   * ```
   */
  tokenToId(piece: string): number | undefined {
    if (typeof piece !== 'string') throw new InvalidArgumentError(`Expected a string for piece but received ${describe(piece)}`);
    return this.lookup.get(binaryKey(utf8.encode(piece)));
  }

  /**
   * Encodes text exactly as llama2.c's `run.c` `encode` does.
   * @param text - any string (encoded to UTF-8; lone surrogates become U+FFFD)
   * @param options - `bos` (default true), `eos` (default false)
   * @example
   * ```ts
   * tok.encode('Once upon a time'); // [1, 403, 407, 261, 378]
   * tok.encode('', { bos: false }); // []
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new InvalidArgumentError(`Expected a string for text but received ${describe(text)}`);
    const bos = options.bos ?? true;
    const eos = options.eos ?? false;
    if (typeof bos !== 'boolean' || typeof eos !== 'boolean') {
      throw new InvalidArgumentError(`Expected booleans for options.bos and options.eos but received ${describe(options.bos)}, ${describe(options.eos)}`);
    }
    if (bos && this.bosId < 0) throw new InvalidArgumentError('Expected a vocabulary with a BOS token for options.bos but received none (bosId = -1)');
    if (eos && this.eosId < 0) throw new InvalidArgumentError('Expected a vocabulary with an EOS token for options.eos but received none (eosId = -1)');
    const bytes = utf8.encode(text);
    const toks: number[] = [];
    if (bos) toks.push(this.bosId);
    if (bytes.length > 0 && this.addDummyPrefix) toks.push(this.spaceId);
    // One token per code point (a lead byte plus at most 3 continuation bytes, as run.c groups them).
    for (let i = 0; i < bytes.length; ) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j] & 0xc0) === 0x80 && j - i < 4) j++;
      const id = j === i + 1 && this.singleByte[bytes[i]] >= 0 ? this.singleByte[bytes[i]] : this.lookup.get(binaryKey(bytes, i, j));
      if (id !== undefined) toks.push(id);
      else for (let k = i; k < j; k++) toks.push(this.byteIds[bytes[k]]);
      i = j;
    }
    const merged = this.merge(toks);
    if (eos) merged.push(this.eosId);
    return merged;
  }

  /** run.c's merge loop (best score, leftmost on ties, score > -1e10) with a heap and a linked list. */
  private merge(toks: number[]): number[] {
    const n = toks.length;
    if (n < 2) return toks;
    const tok = Int32Array.from(toks);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Candidate pairs: at most n - 1 initial ones plus 2 per merge (fewer than n merges).
    const cap = 3 * n;
    const eScore = new Float64Array(cap);
    const eLeft = new Int32Array(cap);
    const eRight = new Int32Array(cap);
    const eLv = new Int32Array(cap);
    const eRv = new Int32Array(cap);
    const eId = new Int32Array(cap);
    let entries = 0;
    // Binary heap of entry indices: highest score first, then the leftmost pair (run.c's rule).
    const heap = new Int32Array(cap);
    let size = 0;
    const before = (x: number, y: number) => eScore[x] > eScore[y] || (eScore[x] === eScore[y] && eLeft[x] < eLeft[y]);
    const consider = (l: number, r: number) => {
      const id = this.pairs.get(this.canon[tok[l]] * this.vocabSize + this.canon[tok[r]]);
      if (id === undefined) return;
      const score = this.scores[id];
      if (!(score > -1e10)) return;
      const e = entries++;
      eScore[e] = score;
      eLeft[e] = l;
      eRight[e] = r;
      eLv[e] = version[l];
      eRv[e] = version[r];
      eId[e] = id;
      let i = size++;
      heap[i] = e;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!before(heap[i], heap[p])) break;
        const t = heap[i];
        heap[i] = heap[p];
        heap[p] = t;
        i = p;
      }
    };
    const pop = (): number => {
      const top = heap[0];
      heap[0] = heap[--size];
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < size && before(heap[l], heap[m])) m = l;
        if (r < size && before(heap[r], heap[m])) m = r;
        if (m === i) break;
        const t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
      }
      return top;
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (size > 0) {
      const e = pop();
      const l = eLeft[e];
      const r = eRight[e];
      // Stale: a node of the pair was merged away or changed since the pair was queued.
      if (!alive[l] || !alive[r] || next[l] !== r || version[l] !== eLv[e] || version[r] !== eRv[e]) continue;
      tok[l] = eId[e];
      version[l]++;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      if (prev[l] >= 0) consider(prev[l], l);
      if (next[l] >= 0) consider(l, next[l]);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }

  /**
   * The bytes token `id` contributes after token `prev` (run.c `decode`): the piece, without its leading space
   * when `prev` is BOS, or the raw byte for a `<0xXX>` piece. BOS, EOS and control tokens contribute nothing.
   * @example
   * ```ts
   * new TextDecoder().decode(tok.decodeToken(1, 403)); // 'Once'
   * new TextDecoder().decode(tok.decodeToken(403, 407)); // ' upon'
   * ```
   */
  decodeToken(prev: number, id: number): Uint8Array {
    this.checkToken(id, 'id');
    if (typeof prev !== 'number' || !Number.isSafeInteger(prev)) throw new InvalidArgumentError(`Expected an integer for prev but received ${describe(prev)}`);
    if (this.dropped[id]) return new Uint8Array(0);
    const b = this.byteValue[id];
    if (b >= 0) return Uint8Array.of(b);
    const p = this.pieces[id];
    return prev === this.bosId && p.length > 0 && p[0] === 0x20 ? p.slice(1) : p.slice();
  }

  /**
   * Decodes ids to text (run.c's decode token by token, the bytes joined and read as UTF-8; invalid sequences
   * become U+FFFD). `encode` → `decode` returns the original text.
   * @example
   * ```ts
   * tok.decode(tok.encode('Hello, world!')); // 'Hello, world!'
   * ```
   */
  decode(ids: ArrayLike<number>): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new InvalidArgumentError(`Expected an array of token ids for ids but received ${describe(ids)}`);
    const parts: Uint8Array[] = [];
    let total = 0;
    let prev = -1;
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      const p = this.decodeToken(prev, id);
      parts.push(p);
      total += p.length;
      prev = id;
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  private checkToken(id: unknown, name: string): void {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new InvalidArgumentError(`Expected a token id in [0, ${this.vocabSize}) for ${name} but received ${describe(id)}`);
    }
  }
}
