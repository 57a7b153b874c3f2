// llama2.c tokenizer (tok512.bin): the goldens of the fixtures README, an O(n²) transcription of run.c's encode
// as an independent reference, streaming decode, serialization, and hostile tokenizer files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { CorruptFileError, InvalidArgumentError } from '../../lib/errors';
import { rng } from '../helpers';

const LLM = path.join(__dirname, '..', '..', 'models', 'stories260K');
const TEXT = path.join(__dirname, '..', '..', 'models', 'stories260K', 'tinystories_valid_head.txt');
const tokBytes = new Uint8Array(fs.readFileSync(path.join(LLM, 'tok512.bin')));
const tok = Llama2cTokenizer.fromBytes(tokBytes, { source: 'tok512.bin' });
const text = fs.readFileSync(TEXT, 'utf8');
/** The README's blocks: split at blank lines, each stripped (as Python's str.strip()). */
const blocks = text.split('\n\n').map((b) => b.trim()).filter((b) => b.length > 0);

/** run.c's encode, transcribed literally (linear scans, no heap), from the raw file records. */
function referenceEncode(file: Uint8Array, s: string, bos: boolean, eos: boolean): number[] {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const vocab: string[] = [];
  const scores: number[] = [];
  for (let pos = 4; pos < file.length; ) {
    scores.push(dv.getFloat32(pos, true));
    const len = dv.getInt32(pos + 4, true);
    vocab.push(Buffer.from(file.subarray(pos + 8, pos + 8 + len)).toString('hex'));
    pos += 8 + len;
  }
  // str_lookup: bsearch over the sorted vocabulary (unique pieces in tok512, so any match is the match).
  const index = new Map(vocab.map((hex, id) => [hex, id]));
  const lookup = (hex: string) => index.get(hex) ?? -1;
  const bytes = Buffer.from(s, 'utf8');
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length > 0) tokens.push(lookup(Buffer.from(' ').toString('hex')));
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if ((bytes[i] & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[i]);
    if (i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup(Buffer.from(buf).toString('hex'));
    if (id !== -1) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup(vocab[tokens[i]] + vocab[tokens[i + 1]]);
      if (id !== -1 && scores[id] > bestScore) {
        bestScore = scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

describe('tok512.bin', () => {
  test('format facts from the fixtures README', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.maxTokenLength).toBe(7);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    const td = new TextDecoder();
    expect(td.decode(tok.piece(0))).toBe('<unk>');
    expect(td.decode(tok.piece(1))).toBe('\n<s>\n');
    expect(td.decode(tok.piece(2))).toBe('\n</s>\n');
    expect(td.decode(tok.piece(3))).toBe('<0x00>');
    expect(td.decode(tok.piece(258))).toBe('<0xFF>');
    expect(td.decode(tok.piece(259))).toBe(' t');
    expect(td.decode(tok.piece(260))).toBe('he');
    for (let id = 259; id < 512; id++) expect(tok.score(id)).toBe(-(id - 259));
    expect(tok.tokenToId(' Once')).toBe(403);
  });

  test('"Once upon a time" golden', () => {
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', { bos: false, eos: true })).toEqual([403, 407, 261, 378, 2]);
    expect(tok.decode([1, 403, 407, 261, 378])).toBe('Once upon a time');
  });

  test('empty text: no dummy prefix', () => {
    expect(tok.encode('')).toEqual([1]);
    expect(tok.encode('', { bos: false })).toEqual([]);
    expect(tok.decode([])).toBe('');
  });

  test('all 4,300 blocks round-trip and total 384,962 tokens with BOS', () => {
    expect(blocks.length).toBe(4300);
    let total = 0;
    const bad: number[] = [];
    blocks.forEach((b, i) => {
      const ids = tok.encode(b);
      total += ids.length;
      if (tok.decode(ids) !== b) bad.push(i);
    });
    expect(bad).toEqual([]);
    expect(total).toBe(384962);
    // README: 380,662 scored tokens (every id but the BOS of each block); the first block scores 84 tokens and
    // the first story (blocks 1-2 joined by "\n") 169.
    expect(total - blocks.length).toBe(380662);
    expect(tok.encode(blocks[0]).length - 1).toBe(84);
    expect(tok.encode(`${blocks[0]}\n${blocks[1]}`).length - 1).toBe(169);
  });

  test('the heap merge equals the literal run.c loop (300 blocks, mojibake and random strings)', () => {
    for (let i = 0; i < 4300; i += 15) expect(tok.encode(blocks[i])).toEqual(referenceEncode(tokBytes, blocks[i], true, false));
    // The text holds mojibake such as "â€™" (multi-byte code points that are not pieces: byte fallback).
    const moj = blocks.filter((b) => /[^\x00-\x7f]/.test(b)).slice(0, 20);
    expect(moj.length).toBe(20);
    for (const b of moj) expect(tok.encode(b)).toEqual(referenceEncode(tokBytes, b, true, false));
    const alphabet = ['a', 'e', 't', 'h', ' ', '  ', '\n', 'Th', 'é', '日本', '😀', '\u0301', 'Once', ' upon', '.', ',', '"', '\t', '\u0000', '\uFFFD', 'x'];
    const r = rng(7);
    for (let k = 0; k < 300; k++) {
      let s = '';
      const n = Math.floor(r() * 30);
      for (let j = 0; j < n; j++) s += alphabet[Math.floor(r() * alphabet.length)];
      const bos = r() < 0.5;
      const eos = r() < 0.5;
      expect(tok.encode(s, { bos, eos })).toEqual(referenceEncode(tokBytes, s, bos, eos));
      expect(tok.decode(tok.encode(s))).toBe(s); // encode → decode is lossless
    }
  });

  test('whole text at once (n log n merge) round-trips', () => {
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    expect(ids.length).toBe(393019);
  });

  test('decodeToken follows run.c: BOS strips a leading space, <0xXX> is a raw byte, specials are empty', () => {
    const td = new TextDecoder();
    expect(td.decode(tok.decodeToken(1, 403))).toBe('Once');
    expect(td.decode(tok.decodeToken(403, 407))).toBe(' upon');
    expect(Array.from(tok.decodeToken(5, 3 + 0xe2))).toEqual([0xe2]);
    expect(tok.decodeToken(0, 1).length).toBe(0);
    expect(tok.decodeToken(0, 2).length).toBe(0);
    // Streaming a multi-byte character through byte tokens.
    const ids = tok.encode('😀 ok');
    const dec = new TextDecoder();
    let out = '';
    let prev = -1;
    for (const id of ids) {
      out += dec.decode(tok.decodeToken(prev, id), { stream: true });
      prev = id;
    }
    out += dec.decode();
    expect(out).toBe('😀 ok');
    // Invalid UTF-8 from lone byte tokens becomes U+FFFD.
    expect(tok.decode([3 + 0xff, 3 + 0x41])).toBe('\uFFFDA');
  });

  test('toBytes round-trips the file byte for byte', () => {
    expect(Buffer.from(tok.toBytes()).equals(Buffer.from(tokBytes))).toBe(true);
  });

  test('fromFile and argument validation', async () => {
    const t2 = await Llama2cTokenizer.fromFile(path.join(LLM, 'tok512.bin'), { vocabSize: 512 });
    expect(t2.encode('Lily')).toEqual(tok.encode('Lily'));
    expect(() => tok.encode(5 as never)).toThrow(InvalidArgumentError);
    expect(() => tok.decodeToken(0, 512)).toThrow(InvalidArgumentError);
    expect(() => tok.decode([1, -3])).toThrow(InvalidArgumentError);
    expect(() => new Llama2cTokenizer({ pieces: ['a', 'b'], scores: [0] })).toThrow(InvalidArgumentError);
    expect(() => new Llama2cTokenizer({ pieces: ['a', 'b', 'c'], scores: [0, NaN, 0] })).toThrow(InvalidArgumentError);
  });

  test('a custom vocabulary without byte pieces or a space piece', () => {
    const t = new Llama2cTokenizer({ pieces: ['<unk>', '<s>', '</s>', 'a', 'b', 'ab'], scores: [0, 0, 0, -3, -4, -1], bosId: 1, eosId: 2 });
    // " " is not a piece: the dummy prefix falls back to byte 0x20 + 3 (= 35, out of range) → 0 (<unk>).
    expect(t.encode('ab', { bos: false })).toEqual([0, 5]);
  });
});

describe('hostile tokenizer files', () => {
  const expectCorrupt = (bytes: Uint8Array, re: RegExp, opts = {}) => {
    let err: unknown;
    try {
      Llama2cTokenizer.fromBytes(bytes, { source: 'evil.bin', ...opts });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptFileError);
    expect((err as Error).message).toMatch(/evil\.bin/);
    expect((err as Error).message).toMatch(re);
  };
  const recordEnds = new Set<number>();
  {
    const dv = new DataView(tokBytes.buffer, tokBytes.byteOffset);
    for (let pos = 4; pos < tokBytes.length; ) {
      pos += 8 + dv.getInt32(pos + 4, true);
      recordEnds.add(pos);
    }
  }

  test('truncated at every offset of the first and last 600 bytes, and every 5th in between', () => {
    for (let n = 0; n < tokBytes.length; n += n < 600 || n >= tokBytes.length - 600 ? 1 : 5) {
      const cut = tokBytes.subarray(0, n);
      // With the model's vocab size every truncation is refused.
      expectCorrupt(cut, /Expected/, { vocabSize: 512 });
      // Without it, a cut at a record boundary is a valid smaller vocabulary; everything else is refused.
      if (!recordEnds.has(n)) expectCorrupt(cut, /Expected/);
    }
  });

  test('lying lengths, scores and counts', () => {
    const mutate = (f: (dv: DataView) => void) => {
      const b = tokBytes.slice();
      f(new DataView(b.buffer));
      return b;
    };
    expectCorrupt(mutate((dv) => dv.setInt32(0, 0, true)), /max_token_length/);
    expectCorrupt(mutate((dv) => dv.setInt32(0, -7, true)), /max_token_length/);
    expectCorrupt(mutate((dv) => dv.setInt32(8, -1, true)), /piece length/); // token 0's length
    expectCorrupt(mutate((dv) => dv.setInt32(8, 0x7fffffff, true)), /piece length/);
    expectCorrupt(mutate((dv) => dv.setInt32(8, 7, true)), /Expected/); // a valid-looking length that misaligns the rest
    expectCorrupt(mutate((dv) => dv.setFloat32(4, NaN, true)), /NaN/);
    expectCorrupt(tokBytes, /511|exactly 511/, { vocabSize: 511 });
    expectCorrupt(new Uint8Array([7, 0, 0, 0]), /at least one token/);
    expect(() => Llama2cTokenizer.fromBytes('abc' as never)).toThrow(InvalidArgumentError);
  });
});
