/**
 * A Hugging Face `tokenizer.json` tokenizer, covering what Llama-family (SentencePiece-derived BPE) files use:
 *
 * - **model** `BPE` with `vocab`, `merges` (either `"a b"` strings or `["a", "b"]` pairs), `unk_token`,
 *   `fuse_unk`, `byte_fallback` (`<0xXX>` tokens for characters outside the vocabulary) and `ignore_merges`. Merges
 *   are applied as the `tokenizers` crate does: repeatedly the pair of adjacent symbols with the lowest merge rank
 *   (the leftmost on ties).
 * - **normalizers** `Sequence`, `Prepend`, `Replace` (string or regex pattern), `NFC`, `NFD`, `NFKC`, `NFKD`,
 *   `Lowercase`, `Strip` (Llama 2's files: `Prepend("▁")` + `Replace(" ", "▁")`).
 * - **pre-tokenizers** `Metaspace` (`replacement`, `prepend_scheme` always/first/never or the older
 *   `add_prefix_space`, `split`), `Sequence` of those (newer Llama files: `Metaspace(prepend_scheme: "first",
 *   split: false)`).
 * - **added tokens** (`<s>`, `</s>`, …): found in the raw text first (leftmost, longest on ties; `lstrip`,
 *   `rstrip`, `single_word` honoured), the text between them is normalized and tokenized separately.
 * - **post-processor** `TemplateProcessing` (its `single` template, e.g. `<s> $A`), also inside `Sequence`.
 * - **decoders** `Sequence`, `Replace`, `ByteFallback`, `Fuse`, `Strip`, `Metaspace`.
 *
 * Anything else (byte-level BPE as in GPT-2/Llama 3, WordPiece, Unigram models, regex `Split` pre-tokenizers,
 * BPE dropout) is refused with an {@link UnsupportedError} when the file is loaded, never silently mis-tokenized.
 * Added tokens with `normalized: true` are matched in the raw text (the `tokenizers` crate matches them after
 * normalization; for Llama files the two agree).
 *
 * @example
 * ```ts
 * import { HfTokenizer } from 'quantkit';
 * const tok = await HfTokenizer.fromFile('tokenizer.json');
 * const ids = tok.encode('Once upon a time'); // BOS + pieces, as the file's template says
 * tok.decode(ids); // 'Once upon a time'
 * ```
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../errors';
import { describe } from '../tensor';
import { checkPath } from '../io/le-bytes';
import type { EncodeOptions, Tokenizer } from './types';
import { checkLoadBudget, readFileWithinBudget, resolveMaxLoadBytes } from '../io/limits';

/**
 * Options of {@link HfTokenizer.encode}.
 * @example
 * ```ts
 * tok.encode('hi', { addSpecialTokens: false });
 * tok.encode('hi', { bos: true, eos: true });
 * ```
 */
export interface HfEncodeOptions extends EncodeOptions {
  /**
   * Apply the file's post-processor template (default true). Ignored when `bos` or `eos` is given: then exactly
   * those tokens are added.
   */
  addSpecialTokens?: boolean;
  /** Recognise added/special tokens written in the text (default true, as `tokenizers` does). */
  parseSpecial?: boolean;
}

/**
 * Options of {@link HfTokenizer.fromJSON} / {@link HfTokenizer.fromFile}.
 * @example
 * ```ts
 * HfTokenizer.fromJSON(json, { source: 'tokenizer.json', eosToken: '</s>' });
 * ```
 */
export interface HfTokenizerOptions {
  /** Names the file in errors. */
  source?: string;
  /** The BOS token's text (default: the template's leading special token, else `<s>` or another usual name). */
  bosToken?: string;
  /** The EOS token's text (default `</s>` or another usual name). */
  eosToken?: string;
  /**
   * Memory budget in bytes (default `getMaxLoadBytes()`): parsed JSON takes up to ~10× its text, so the text may
   * be at most a tenth of it (`QK_OUT_OF_MEMORY` otherwise, before parsing).
   */
  maxBytes?: number;
}

type Json = Record<string, unknown>;
type Normalizer = (s: string) => string;
type PreTokenizer = (s: string, first: boolean) => string[];
type Decoder = (tokens: string[]) => string[];

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
/** Token ids are below 2^26, so a pair of ids packs into one safe integer Map key. */
const MAX_ID = 2 ** 26;
const BOS_NAMES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
const EOS_NAMES = ['</s>', '<|end_of_text|>', '<|endoftext|>', '<eos>', '<|eot_id|>'];

/** Is `c` a "word" character for `single_word` matching. */
function isWordChar(c: string | undefined): boolean {
  return c !== undefined && /[\p{L}\p{N}_]/u.test(c);
}

interface MergeEntry {
  rank: number;
  pos: number;
  newId: number;
}

function mergeBefore(a: MergeEntry, b: MergeEntry): boolean {
  return a.rank < b.rank || (a.rank === b.rank && a.pos < b.pos);
}

class MinHeap {
  private a: MergeEntry[] = [];
  get size(): number {
    return this.a.length;
  }
  push(e: MergeEntry): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!mergeBefore(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): MergeEntry {
    const a = this.a;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && mergeBefore(a[l], a[m])) m = l;
        if (r < a.length && mergeBefore(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * A Hugging Face `tokenizer.json` BPE tokenizer (see the module documentation for what is supported).
 * @example
 * ```ts
 * const tok = HfTokenizer.fromJSON(fs.readFileSync('tokenizer.json', 'utf8'));
 * tok.encode('Hello'); tok.decode([1, 15043]);
 * ```
 */
export class HfTokenizer implements Tokenizer {
  /** 1 + the largest token id (model vocabulary and added tokens). */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, or -1. */
  readonly bosId: number;
  /** End-of-sequence id, or -1. */
  readonly eosId: number;
  private readonly vocab = new Map<string, number>();
  private readonly idToTok = new Map<number, string>();
  /** (left id · vocabSize + right id) → rank and merged id. */
  private readonly merges = new Map<number, { rank: number; newId: number }>();
  private readonly unkId: number;
  private readonly fuseUnk: boolean;
  private readonly byteFallback: boolean;
  private readonly ignoreMerges: boolean;
  private readonly byteIds: Int32Array | null;
  private readonly added: AddedToken[];
  private readonly specialIds = new Set<number>();
  private readonly normalize: Normalizer;
  private readonly preTokenize: PreTokenizer;
  private readonly decoders: Decoder;
  /** The `single` template: numbers are token ids, null is the sequence. */
  private readonly template: Array<number | null> | null;
  /** Does decoding drop the first token's leading space (Strip / Metaspace decoders)? */
  private readonly stripsLeadingSpace: boolean;
  private readonly replaceChar: string | null;

  private constructor(json: Json, options: HfTokenizerOptions) {
    const source = options.source ?? 'tokenizer.json';
    const fail = (what: string, received: unknown): never => {
      throw new CorruptFileError(`Expected ${what} in ${source} but received ${typeof received === 'string' ? received : describe(received)}`);
    };
    const unsupported = (what: string, received: unknown): never => {
      throw new UnsupportedError(`Expected ${what} in ${source} but received ${typeof received === 'string' ? received : describe(received)}`);
    };
    const obj = (v: unknown, what: string): Json => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(`an object for ${what}`, v);
      return v as Json;
    };
    const model = obj(json.model, 'model');
    if (model.type !== undefined && model.type !== 'BPE') unsupported('a BPE model (model.type "BPE")', JSON.stringify(model.type));
    const vocab = obj(model.vocab, 'model.vocab');
    let maxId = -1;
    for (const [tok, raw] of Object.entries(vocab)) {
      if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw < 0 || raw >= MAX_ID) fail(`a token id in [0, 2^26) for model.vocab[${JSON.stringify(tok)}]`, raw);
      const id = raw as number;
      if (this.idToTok.has(id)) fail('unique ids in model.vocab', `id ${id} for ${JSON.stringify(this.idToTok.get(id))} and ${JSON.stringify(tok)}`);
      this.vocab.set(tok, id);
      this.idToTok.set(id, tok);
      maxId = Math.max(maxId, id);
    }
    // Added tokens.
    const addedRaw = json.added_tokens ?? [];
    if (!Array.isArray(addedRaw)) fail('an array for added_tokens', addedRaw);
    this.added = (addedRaw as unknown[]).map((a, i) => {
      const o = obj(a, `added_tokens[${i}]`);
      if (typeof o.id !== 'number' || !Number.isSafeInteger(o.id) || o.id < 0 || o.id >= MAX_ID) fail(`a token id in [0, 2^26) for added_tokens[${i}].id`, o.id);
      if (typeof o.content !== 'string' || o.content.length === 0) fail(`a non-empty string for added_tokens[${i}].content`, o.content);
      const t: AddedToken = {
        id: o.id as number,
        content: o.content as string,
        special: o.special === true,
        lstrip: o.lstrip === true,
        rstrip: o.rstrip === true,
        singleWord: o.single_word === true,
      };
      const known = this.idToTok.get(t.id);
      if (known !== undefined && known !== t.content) fail(`added_tokens[${i}] (${JSON.stringify(t.content)}) to agree with model.vocab for id ${t.id}`, JSON.stringify(known));
      this.idToTok.set(t.id, t.content);
      if (!this.vocab.has(t.content)) this.vocab.set(t.content, t.id);
      if (t.special) this.specialIds.add(t.id);
      maxId = Math.max(maxId, t.id);
      return t;
    });
    if (maxId < 0) fail('a non-empty vocabulary', 'none');
    this.vocabSize = maxId + 1;

    // Model options.
    for (const k of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      if (model[k] !== undefined && model[k] !== null && model[k] !== '') unsupported(`no model.${k}`, JSON.stringify(model[k]));
    }
    if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) unsupported('no BPE dropout (model.dropout null)', model.dropout);
    this.fuseUnk = model.fuse_unk === true;
    this.byteFallback = model.byte_fallback === true;
    this.ignoreMerges = model.ignore_merges === true;
    if (model.unk_token === undefined || model.unk_token === null) this.unkId = -1;
    else {
      if (typeof model.unk_token !== 'string') fail('a string or null for model.unk_token', model.unk_token);
      const u = this.vocab.get(model.unk_token as string);
      if (u === undefined) fail(`model.unk_token ${JSON.stringify(model.unk_token)} in the vocabulary`, 'none');
      this.unkId = u as number;
    }
    if (this.byteFallback) {
      const ids = new Int32Array(256).fill(-1);
      for (let b = 0; b < 256; b++) ids[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
      this.byteIds = ids;
    } else this.byteIds = null;

    const merges = model.merges ?? [];
    if (!Array.isArray(merges)) fail('an array for model.merges', merges);
    (merges as unknown[]).forEach((m, rank) => {
      let a: string;
      let b: string;
      if (typeof m === 'string') {
        const parts = m.split(' ');
        if (parts.length !== 2) fail(`"left right" for model.merges[${rank}]`, JSON.stringify(m));
        [a, b] = parts;
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        [a, b] = m as [string, string];
      } else {
        return fail(`a "left right" string or a [left, right] pair for model.merges[${rank}]`, m);
      }
      const ia = this.vocab.get(a);
      const ib = this.vocab.get(b);
      const inew = this.vocab.get(a + b);
      if (ia === undefined || ib === undefined || inew === undefined) {
        fail(`tokens of model.merges[${rank}] (${JSON.stringify(a)}, ${JSON.stringify(b)} and their merge) in the vocabulary`, 'a missing token');
      }
      const key = ia! * this.vocabSize + ib!;
      if (!this.merges.has(key)) this.merges.set(key, { rank, newId: inew! });
    });

    this.normalize = this.buildNormalizer(json.normalizer, 'normalizer', fail, unsupported);
    this.preTokenize = this.buildPreTokenizer(json.pre_tokenizer, 'pre_tokenizer', fail, unsupported);
    const dec = this.buildDecoder(json.decoder, 'decoder', fail, unsupported);
    this.decoders = dec.fn;
    this.stripsLeadingSpace = dec.stripsLeadingSpace;
    this.replaceChar = dec.replaceChar;
    this.template = this.buildTemplate(json.post_processor, fail, unsupported);

    const byName = (names: string[]) => {
      for (const n of names) {
        const id = this.vocab.get(n);
        if (id !== undefined) return id;
      }
      return -1;
    };
    const pick = (explicit: string | undefined, fallback: number, what: string): number => {
      if (explicit === undefined) return fallback;
      if (typeof explicit !== 'string') throw new InvalidArgumentError(`Expected a string for options.${what} but received ${describe(explicit)}`);
      const id = this.vocab.get(explicit);
      if (id === undefined) throw new InvalidArgumentError(`Expected a token of ${source} for options.${what} but received ${JSON.stringify(explicit)}`);
      return id;
    };
    const templBos = this.template && this.template[0] !== null ? (this.template[0] as number) : -1;
    this.bosId = pick(options.bosToken, templBos >= 0 ? templBos : byName(BOS_NAMES), 'bosToken');
    this.eosId = pick(options.eosToken, byName(EOS_NAMES), 'eosToken');
  }

  /**
   * Builds a tokenizer from the parsed or textual contents of a `tokenizer.json`.
   * @throws CorruptFileError for malformed JSON or inconsistent contents; UnsupportedError for components
   *   outside the supported set.
   * @example
   * ```ts
   * const tok = HfTokenizer.fromJSON(await fs.promises.readFile('tokenizer.json', 'utf8'));
   * ```
   */
  static fromJSON(json: string | object, options: HfTokenizerOptions = {}): HfTokenizer {
    const source = options.source ?? 'tokenizer.json';
    let parsed: unknown = json;
    if (typeof json === 'string') {
      // UTF-16 length <= UTF-8 bytes: the same bound as fromFile's
      checkLoadBudget(json.length * 10, resolveMaxLoadBytes(options.maxBytes), 'the parsed tokenizer.json (~10x its text)', source);
      try {
        parsed = JSON.parse(json);
      } catch (err) {
        throw new CorruptFileError(`Expected JSON in ${source} but received invalid JSON: ${(err as Error).message}`, { cause: err });
      }
    } else if (ArrayBuffer.isView(json)) {
      throw new InvalidArgumentError(`Expected a string or a parsed object for json but received ${describe(json)}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new CorruptFileError(`Expected a JSON object in ${source} but received ${describe(parsed)}`);
    }
    return new HfTokenizer(parsed as Json, options);
  }

  /**
   * Reads a `tokenizer.json` file.
   * @example
   * ```ts
   * const tok = await HfTokenizer.fromFile('model/tokenizer.json');
   * ```
   */
  static async fromFile(path: string, options: HfTokenizerOptions = {}): Promise<HfTokenizer> {
    checkPath(path);
    const budget = Math.floor(resolveMaxLoadBytes(options.maxBytes) / 10);
    const text = new TextDecoder().decode(await readFileWithinBudget(path, budget, 'tokenizer.json (a tenth of the budget)', options.source ?? path));
    return HfTokenizer.fromJSON(text, { ...options, source: options.source ?? path });
  }

  /**
   * The id of a token (model vocabulary or added token), or undefined.
   * @example
   * ```ts
   * tok.tokenToId('<s>'); // 1
   * ```
   */
  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  /**
   * The text of a token id, or undefined.
   * @example
   * ```ts
   * tok.idToToken(1); // '<s>'
   * ```
   */
  idToToken(id: number): string | undefined {
    return this.idToTok.get(id);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Components

  private buildNormalizer(spec: unknown, where: string, fail: (w: string, r: unknown) => never, unsupported: (w: string, r: unknown) => never): Normalizer {
    if (spec === null || spec === undefined) return (s) => s;
    if (typeof spec !== 'object' || Array.isArray(spec)) return fail(`an object or null for ${where}`, spec);
    const n = spec as Json;
    switch (n.type) {
      case 'Sequence': {
        if (!Array.isArray(n.normalizers)) fail(`an array for ${where}.normalizers`, n.normalizers);
        const fns = (n.normalizers as unknown[]).map((x, i) => this.buildNormalizer(x, `${where}.normalizers[${i}]`, fail, unsupported));
        return (s) => fns.reduce((acc, f) => f(acc), s);
      }
      case 'Prepend': {
        if (typeof n.prepend !== 'string') fail(`a string for ${where}.prepend`, n.prepend);
        const p = n.prepend as string;
        return (s) => (s.length > 0 ? p + s : s);
      }
      case 'Replace': {
        const re = this.pattern(n.pattern, `${where}.pattern`, fail, unsupported);
        if (typeof n.content !== 'string') fail(`a string for ${where}.content`, n.content);
        return (s) => s.replace(re, () => n.content as string);
      }
      case 'NFC':
      case 'NFD':
      case 'NFKC':
      case 'NFKD': {
        const form = n.type as string;
        return (s) => s.normalize(form);
      }
      case 'Lowercase':
        return (s) => s.toLowerCase();
      case 'Strip': {
        const left = n.strip_left !== false;
        const right = n.strip_right !== false;
        return (s) => (left && right ? s.trim() : left ? s.trimStart() : right ? s.trimEnd() : s);
      }
      default:
        return unsupported(`a supported normalizer (Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip) for ${where}`, JSON.stringify(n.type));
    }
  }

  private pattern(p: unknown, where: string, fail: (w: string, r: unknown) => never, unsupported: (w: string, r: unknown) => never): RegExp {
    if (p === null || typeof p !== 'object') return fail(`{ String } or { Regex } for ${where}`, p);
    const o = p as Json;
    if (typeof o.String === 'string') return new RegExp(o.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
    if (typeof o.Regex === 'string') {
      try {
        return new RegExp(o.Regex, 'gu');
      } catch (err) {
        return unsupported(`a regular expression JavaScript supports for ${where}`, `${JSON.stringify(o.Regex)} (${(err as Error).message})`);
      }
    }
    return fail(`{ String } or { Regex } for ${where}`, p);
  }

  private buildPreTokenizer(spec: unknown, where: string, fail: (w: string, r: unknown) => never, unsupported: (w: string, r: unknown) => never): PreTokenizer {
    if (spec === null || spec === undefined) return (s) => [s];
    if (typeof spec !== 'object' || Array.isArray(spec)) return fail(`an object or null for ${where}`, spec);
    const n = spec as Json;
    switch (n.type) {
      case 'Sequence': {
        if (!Array.isArray(n.pretokenizers)) fail(`an array for ${where}.pretokenizers`, n.pretokenizers);
        const fns = (n.pretokenizers as unknown[]).map((x, i) => this.buildPreTokenizer(x, `${where}.pretokenizers[${i}]`, fail, unsupported));
        return (s, first) => fns.reduce<string[]>((words, f) => words.flatMap((w, k) => f(w, first && k === 0)), [s]);
      }
      case 'Metaspace': {
        const rep = n.replacement ?? '\u2581';
        if (typeof rep !== 'string' || [...rep].length !== 1) fail(`a single character for ${where}.replacement`, rep);
        let scheme: string;
        if (n.prepend_scheme !== undefined) {
          if (n.prepend_scheme !== 'always' && n.prepend_scheme !== 'first' && n.prepend_scheme !== 'never') fail(`"always", "first" or "never" for ${where}.prepend_scheme`, n.prepend_scheme);
          scheme = n.prepend_scheme as string;
        } else scheme = n.add_prefix_space === false ? 'never' : 'always';
        const split = n.split !== false;
        const r = rep as string;
        return (s, first) => {
          let t = s.replace(/ /g, r);
          if ((scheme === 'always' || (scheme === 'first' && first)) && !t.startsWith(r) && t.length > 0) t = r + t;
          if (!split) return [t];
          const out: string[] = [];
          let start = 0;
          for (let i = t.indexOf(r, 1); i >= 0; i = t.indexOf(r, i + 1)) {
            if (i > start) out.push(t.slice(start, i));
            start = i;
          }
          if (start < t.length) out.push(t.slice(start));
          return out;
        };
      }
      default:
        return unsupported(`a supported pre_tokenizer (Metaspace, Sequence; byte-level BPE is not supported) for ${where}`, JSON.stringify(n.type));
    }
  }

  private buildDecoder(
    spec: unknown,
    where: string,
    fail: (w: string, r: unknown) => never,
    unsupported: (w: string, r: unknown) => never,
  ): { fn: Decoder; stripsLeadingSpace: boolean; replaceChar: string | null } {
    if (spec === null || spec === undefined) return { fn: (t) => t, stripsLeadingSpace: false, replaceChar: null };
    if (typeof spec !== 'object' || Array.isArray(spec)) return fail(`an object or null for ${where}`, spec);
    const n = spec as Json;
    switch (n.type) {
      case 'Sequence': {
        if (!Array.isArray(n.decoders)) fail(`an array for ${where}.decoders`, n.decoders);
        const parts = (n.decoders as unknown[]).map((x, i) => this.buildDecoder(x, `${where}.decoders[${i}]`, fail, unsupported));
        return {
          fn: (t) => parts.reduce((acc, p) => p.fn(acc), t),
          stripsLeadingSpace: parts.some((p) => p.stripsLeadingSpace),
          replaceChar: parts.find((p) => p.replaceChar !== null)?.replaceChar ?? null,
        };
      }
      case 'Replace': {
        const re = this.pattern(n.pattern, `${where}.pattern`, fail, unsupported);
        if (typeof n.content !== 'string') fail(`a string for ${where}.content`, n.content);
        const c = n.content as string;
        const p = n.pattern as Json;
        return { fn: (t) => t.map((s) => s.replace(re, () => c)), stripsLeadingSpace: false, replaceChar: c === ' ' && typeof p.String === 'string' ? p.String : null };
      }
      case 'ByteFallback':
        return {
          fn: (tokens) => {
            const out: string[] = [];
            let bytes: number[] = [];
            const flush = () => {
              if (bytes.length === 0) return;
              try {
                out.push(strictUtf8.decode(Uint8Array.from(bytes)));
              } catch {
                out.push('\uFFFD'.repeat(bytes.length));
              }
              bytes = [];
            };
            for (const t of tokens) {
              const m = BYTE_TOKEN.exec(t);
              if (m) bytes.push(parseInt(m[1], 16));
              else {
                flush();
                out.push(t);
              }
            }
            flush();
            return out;
          },
          stripsLeadingSpace: false,
          replaceChar: null,
        };
      case 'Fuse':
        return { fn: (t) => [t.join('')], stripsLeadingSpace: false, replaceChar: null };
      case 'Strip': {
        if (typeof n.content !== 'string' || [...n.content].length !== 1) fail(`a single character for ${where}.content`, n.content);
        const c = n.content as string;
        const start = Number(n.start ?? 0);
        const stop = Number(n.stop ?? 0);
        if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(stop) || stop < 0) fail(`non-negative integers for ${where}.start/stop`, `${n.start}, ${n.stop}`);
        return {
          fn: (tokens) =>
            tokens.map((t) => {
              let a = 0;
              let z = t.length;
              for (let k = 0; k < start && t.startsWith(c, a); k++) a += c.length;
              for (let k = 0; k < stop && z - c.length >= a && t.startsWith(c, z - c.length); k++) z -= c.length;
              return t.slice(a, z);
            }),
          stripsLeadingSpace: c === ' ' && start > 0,
          replaceChar: null,
        };
      }
      case 'Metaspace': {
        const rep = (n.replacement ?? '\u2581') as string;
        if (typeof rep !== 'string' || [...rep].length !== 1) fail(`a single character for ${where}.replacement`, rep);
        const scheme = n.prepend_scheme !== undefined ? n.prepend_scheme : n.add_prefix_space === false ? 'never' : 'always';
        const strip = scheme !== 'never';
        return {
          // As the tokenizers crate: in the first token every replacement character is dropped (when prepending).
          fn: (tokens) => tokens.map((t, i) => [...t].map((ch) => (ch === rep ? (i === 0 && strip ? '' : ' ') : ch)).join('')),
          stripsLeadingSpace: strip,
          replaceChar: rep,
        };
      }
      default:
        return unsupported(`a supported decoder (Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace; byte-level is not supported) for ${where}`, JSON.stringify(n.type));
    }
  }

  private buildTemplate(spec: unknown, fail: (w: string, r: unknown) => never, unsupported: (w: string, r: unknown) => never): Array<number | null> | null {
    if (spec === null || spec === undefined) return null;
    if (typeof spec !== 'object' || Array.isArray(spec)) return fail('an object or null for post_processor', spec);
    const p = spec as Json;
    if (p.type === 'Sequence') {
      if (!Array.isArray(p.processors)) fail('an array for post_processor.processors', p.processors);
      let found: Array<number | null> | null = null;
      for (const q of p.processors as unknown[]) {
        if (q && typeof q === 'object' && (q as Json).type === 'ByteLevel') continue;
        const t = this.buildTemplate(q, fail, unsupported);
        if (t) found = t;
      }
      return found;
    }
    if (p.type !== 'TemplateProcessing') return unsupported('a TemplateProcessing post_processor (or none)', JSON.stringify(p.type));
    if (!Array.isArray(p.single)) fail('an array for post_processor.single', p.single);
    const specials = (p.special_tokens ?? {}) as Json;
    if (typeof specials !== 'object') fail('an object for post_processor.special_tokens', specials);
    const out: Array<number | null> = [];
    for (const item of p.single as unknown[]) {
      const it = (item ?? {}) as Json;
      if (it.Sequence !== undefined) {
        out.push(null);
      } else if (it.SpecialToken !== undefined) {
        const name = (it.SpecialToken as Json)?.id;
        const entry = (typeof name === 'string' ? specials[name] : undefined) as Json | undefined;
        const ids = entry?.ids;
        if (!Array.isArray(ids) || !ids.every((x) => Number.isSafeInteger(x) && x >= 0 && x < this.vocabSize)) {
          fail(`post_processor.special_tokens[${JSON.stringify(name)}].ids: token ids in [0, ${this.vocabSize})`, ids);
        }
        out.push(...(ids as number[]));
      } else {
        fail('{ Sequence } or { SpecialToken } items in post_processor.single', item);
      }
    }
    if (out.filter((x) => x === null).length !== 1) fail('exactly one $A sequence in post_processor.single', `${out.filter((x) => x === null).length}`);
    return out;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Encoding

  /** Splits text around added tokens: strings are plain text, numbers are added-token ids. */
  private splitAdded(text: string, parse: boolean): Array<string | number> {
    if (!parse || this.added.length === 0) return [text];
    const out: Array<string | number> = [];
    let pos = 0;
    let plainStart = 0;
    while (pos < text.length) {
      // Leftmost match, longest on ties.
      let best: AddedToken | null = null;
      let bestAt = -1;
      for (const t of this.added) {
        let at = text.indexOf(t.content, pos);
        while (at >= 0 && t.singleWord && (isWordChar(text[at - 1]) || isWordChar(text[at + t.content.length]))) at = text.indexOf(t.content, at + 1);
        if (at < 0) continue;
        if (best === null || at < bestAt || (at === bestAt && t.content.length > best.content.length)) {
          best = t;
          bestAt = at;
        }
      }
      if (best === null) break;
      let from = bestAt;
      let to = bestAt + best.content.length;
      if (best.lstrip) while (from > plainStart && /\s/u.test(text[from - 1])) from--;
      if (best.rstrip) while (to < text.length && /\s/u.test(text[to])) to++;
      if (from > plainStart) out.push(text.slice(plainStart, from));
      out.push(best.id);
      pos = to;
      plainStart = to;
    }
    if (plainStart < text.length) out.push(text.slice(plainStart));
    return out;
  }

  /** BPE of one pre-tokenized word (the tokenizers crate's `Word::merge_all`). */
  private bpeWord(word: string, out: number[]): void {
    if (this.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) {
        out.push(id);
        return;
      }
    }
    const sym: number[] = [];
    let lastUnk = false;
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        sym.push(id);
        lastUnk = false;
        continue;
      }
      if (this.byteIds) {
        const bytes = utf8.encode(ch);
        const ids = Array.from(bytes, (b) => this.byteIds![b]);
        if (ids.every((x) => x >= 0)) {
          sym.push(...ids);
          lastUnk = false;
          continue;
        }
      }
      if (this.unkId >= 0) {
        if (!(this.fuseUnk && lastUnk)) sym.push(this.unkId);
        lastUnk = true;
      }
    }
    const n = sym.length;
    if (n < 2) {
      out.push(...sym);
      return;
    }
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const V = this.vocabSize;
    const heap = new MinHeap();
    const consider = (l: number, r: number) => {
      const m = this.merges.get(sym[l] * V + sym[r]);
      if (m) heap.push({ rank: m.rank, pos: l, newId: m.newId });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    while (heap.size > 0) {
      const top = heap.pop();
      const l = top.pos;
      if (!alive[l]) continue;
      const r = next[l];
      if (r < 0) continue;
      // Stale entries are recognised by their merged id, as in the tokenizers crate.
      const m = this.merges.get(sym[l] * V + sym[r]);
      if (!m || m.newId !== top.newId) continue;
      sym[l] = top.newId;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      if (prev[l] >= 0) consider(prev[l], l);
      if (next[l] >= 0) consider(l, next[l]);
    }
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  }

  /**
   * Encodes text: added tokens, then per plain segment normalizer → pre-tokenizer → BPE, then the template (or
   * exactly the requested `bos`/`eos`).
   * @example
   * ```ts
   * tok.encode('Once upon a time'); // [1, …] with a "<s> $A" template
   * tok.encode('Once upon a time', { addSpecialTokens: false });
   * ```
   */
  encode(text: string, options: HfEncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new InvalidArgumentError(`Expected a string for text but received ${describe(text)}`);
    const parse = options.parseSpecial ?? true;
    const ids: number[] = [];
    let first = true;
    for (const seg of this.splitAdded(text, parse)) {
      if (typeof seg === 'number') {
        ids.push(seg);
      } else {
        const norm = this.normalize(seg);
        for (const w of this.preTokenize(norm, first)) if (w.length > 0) this.bpeWord(w, ids);
      }
      first = false;
    }
    if (options.bos !== undefined || options.eos !== undefined) {
      const out: number[] = [];
      if (options.bos) {
        if (this.bosId < 0) throw new InvalidArgumentError('Expected a tokenizer with a BOS token for options.bos but received none (pass options.bosToken when loading)');
        out.push(this.bosId);
      }
      out.push(...ids);
      if (options.eos) {
        if (this.eosId < 0) throw new InvalidArgumentError('Expected a tokenizer with an EOS token for options.eos but received none (pass options.eosToken when loading)');
        out.push(this.eosId);
      }
      return out;
    }
    if ((options.addSpecialTokens ?? true) && this.template) return this.template.flatMap((x) => (x === null ? ids : [x]));
    return ids;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Decoding

  private checkId(id: unknown): number {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || !this.idToTok.has(id)) {
      throw new InvalidArgumentError(`Expected a token id of this tokenizer for id but received ${describe(id)}`);
    }
    return id;
  }

  /**
   * Decodes ids as the `tokenizers` crate does (special tokens skipped by default, then the decoder chain).
   * @example
   * ```ts
   * tok.decode(tok.encode('Hello world')); // 'Hello world'
   * ```
   */
  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new InvalidArgumentError(`Expected an array of token ids for ids but received ${describe(ids)}`);
    const skip = options.skipSpecialTokens ?? true;
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(Number(ids[i]));
      if (skip && this.specialIds.has(id)) continue;
      tokens.push(this.idToTok.get(id)!);
    }
    return this.decoders(tokens).join('');
  }

  /**
   * The bytes token `id` adds after `prev` when streaming: a `<0xXX>` token is its byte; otherwise its text with
   * the decoder's replacement character turned into spaces, and its leading space dropped when it starts the
   * text (`prev` is BOS or -1) and the decoder strips one. Special tokens add nothing.
   * @example
   * ```ts
   * const dec = new TextDecoder();
   * let prev = tok.bosId;
   * for (const id of ids) { process.stdout.write(dec.decode(tok.decodeToken(prev, id), { stream: true })); prev = id; }
   * ```
   */
  decodeToken(prev: number, id: number): Uint8Array {
    this.checkId(id);
    if (typeof prev !== 'number' || !Number.isSafeInteger(prev)) throw new InvalidArgumentError(`Expected an integer for prev but received ${describe(prev)}`);
    if (this.specialIds.has(id)) return new Uint8Array(0);
    const t = this.idToTok.get(id)!;
    const m = this.byteFallback ? BYTE_TOKEN.exec(t) : null;
    if (m) return Uint8Array.of(parseInt(m[1], 16));
    let s = this.replaceChar ? t.split(this.replaceChar).join(' ') : t;
    if (this.stripsLeadingSpace && (prev === this.bosId || prev === -1) && s.startsWith(' ')) s = s.slice(1);
    return utf8.encode(s);
  }
}
