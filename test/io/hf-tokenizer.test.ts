// Hugging Face tokenizer.json: files generated here from tok512's vocabulary in both Llama conventions (the
// original Prepend/Replace normalizer and the newer Metaspace pre-tokenizer) must encode the held-out text exactly
// like the llama2.c tokenizer; added tokens, byte fallback, decoding, refusals of unsupported components.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfTokenizer } from '../../lib/tokenizers/hf';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import { tokenizerJson } from './hf-helpers';

const LLM = path.join(__dirname, '..', '..', 'models', 'stories260K');
const tok512 = Llama2cTokenizer.fromBytes(new Uint8Array(fs.readFileSync(path.join(LLM, 'tok512.bin'))));
const text = fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'stories260K', 'tinystories_valid_head.txt'), 'utf8');
const blocks = text.split('\n\n').map((b) => b.trim()).filter((b) => b.length > 0);
const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

describe.each(['legacy', 'metaspace'] as const)('tokenizer.json (%s Llama style) from tok512', (style) => {
  const json = tokenizerJson(tok512, style);
  const hf = HfTokenizer.fromJSON(JSON.stringify(json), { source: 'tokenizer.json' });

  test('basic facts and the golden', () => {
    expect(hf.vocabSize).toBe(512);
    expect([hf.bosId, hf.eosId]).toEqual([1, 2]);
    expect(hf.tokenToId('\u2581Once')).toBe(403);
    expect(hf.idToToken(403)).toBe('\u2581Once');
    expect(hf.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(hf.encode('Once upon a time', { addSpecialTokens: false })).toEqual([403, 407, 261, 378]);
    expect(hf.encode('Once upon a time', { bos: true, eos: true })).toEqual([1, 403, 407, 261, 378, 2]);
    expect(hf.encode('Once upon a time', { bos: false })).toEqual([403, 407, 261, 378]);
    expect(hf.encode('')).toEqual([1]);
    expect(hf.decode([1, 403, 407, 261, 378])).toBe('Once upon a time');
    expect(hf.decode([1, 403, 407, 261, 378], { skipSpecialTokens: false })).toBe(style === 'legacy' ? '<s> Once upon a time' : '<s> Once upon a time');
  });

  test('encodes all 4,300 blocks and the whole text exactly like the llama2.c tokenizer, and decodes them back', () => {
    const differ: number[] = [];
    const notRoundTrip: number[] = [];
    blocks.forEach((b, i) => {
      const ids = hf.encode(b);
      if (!same(ids, tok512.encode(b))) differ.push(i);
      if (hf.decode(ids) !== b) notRoundTrip.push(i);
    });
    expect(differ).toEqual([]);
    expect(notRoundTrip).toEqual([]);
    const all = hf.encode(text);
    expect(same(all, tok512.encode(text))).toBe(true);
    expect(hf.decode(all)).toBe(text);
  });

  test('byte fallback, unknown characters and streaming decode', () => {
    const s = 'Lily saw 😀 and 日本!';
    const ids = hf.encode(s);
    expect(ids).toEqual(tok512.encode(s));
    expect(hf.decode(ids)).toBe(s);
    const dec = new TextDecoder();
    let out = '';
    let prev = -1;
    for (const id of ids) {
      out += dec.decode(hf.decodeToken(prev, id), { stream: true });
      prev = id;
    }
    out += dec.decode();
    expect(out).toBe(s);
    // A lone continuation byte decodes to U+FFFD, as the tokenizers crate does.
    expect(hf.decode([3 + 0x80])).toBe('\uFFFD');
  });

  test('added tokens in the text are recognised; each segment is tokenized on its own', () => {
    const a = hf.encode('Once</s>upon', { addSpecialTokens: false });
    const once = tok512.encode('Once', { bos: false });
    // legacy: the Prepend normalizer runs on every segment ("▁upon"); Metaspace "first": only the first segment
    // gets the "▁", so "upon" is tokenized as llama2.c would without its dummy prefix.
    const upon = style === 'legacy' ? tok512.encode('upon', { bos: false }) : noPrefix.encode('upon', { bos: false });
    expect(a).toEqual([...once, 2, ...upon]);
    expect(hf.encode('Once</s>upon', { addSpecialTokens: false, parseSpecial: false })).toEqual(tok512.encode('Once</s>upon', { bos: false }));
    expect(hf.decode(a)).toBe(style === 'legacy' ? 'Once upon' : 'Onceupon');
  });
});

/** tok512 without the dummy prefix. */
const noPrefix = new Llama2cTokenizer({
  pieces: Array.from({ length: 512 }, (_, i) => tok512.piece(i)),
  scores: Array.from({ length: 512 }, (_, i) => tok512.score(i)),
  addDummyPrefix: false,
});

describe('tokenizer.json features and refusals', () => {
  const base = () => tokenizerJson(tok512, 'legacy') as Record<string, any>;

  test('lstrip / rstrip / single_word added tokens and an added token beyond the model vocabulary', () => {
    const j = base();
    j.added_tokens.push({ id: 512, content: '<sep>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true });
    j.added_tokens.push({ id: 513, content: 'cat', single_word: true, lstrip: false, rstrip: false, normalized: false, special: false });
    const hf = HfTokenizer.fromJSON(j);
    expect(hf.vocabSize).toBe(514);
    const ab = hf.encode('a <sep> b', { addSpecialTokens: false });
    expect(ab).toEqual([...hf.encode('a', { addSpecialTokens: false }), 512, ...hf.encode('b', { addSpecialTokens: false })]);
    expect(hf.encode('cat', { addSpecialTokens: false })).toEqual([513]);
    expect(hf.encode('concatenate', { addSpecialTokens: false })).not.toContain(513);
    expect(hf.decode([512])).toBe('');
    expect(hf.decode([513])).toBe('cat');
  });

  test('without byte fallback unknown characters become <unk>, fused when fuse_unk', () => {
    const j = base();
    j.model.byte_fallback = false;
    const hf = HfTokenizer.fromJSON(j);
    expect(hf.encode('a😀😀b', { addSpecialTokens: false })).toEqual([...hf.encode('a', { addSpecialTokens: false }), 0, tok512.tokenToId('b')!]);
    j.model.fuse_unk = false;
    expect(HfTokenizer.fromJSON(j).encode('😀😀', { addSpecialTokens: false })).toEqual([tok512.tokenToId(' ')!, 0, 0]);
  });

  test('explicit BOS/EOS names and fromFile', async () => {
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-hf-tok-'));
    try {
      const p = path.join(dir, 'tokenizer.json');
      await fs.promises.writeFile(p, JSON.stringify(base()));
      const hf = await HfTokenizer.fromFile(p, { eosToken: '<unk>' });
      expect(hf.eosId).toBe(0);
      await fs.promises.writeFile(p, '{"model": ');
      await expect(HfTokenizer.fromFile(p)).rejects.toThrow(CorruptFileError);
      await expect(HfTokenizer.fromFile(p)).rejects.toThrow(/tokenizer\.json/);
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
    expect(() => HfTokenizer.fromJSON(base(), { bosToken: 'nope' })).toThrow(InvalidArgumentError);
    const noTemplate = base();
    noTemplate.post_processor = null;
    expect(HfTokenizer.fromJSON(noTemplate).encode('Once')).toEqual([403]);
  });

  test('unsupported components are refused, never approximated', () => {
    const cases: Array<[string, (j: Record<string, any>) => void, RegExp]> = [
      ['byte-level', (j) => (j.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: false }), /ByteLevel/],
      ['split', (j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: '\\s' }, behavior: 'Isolated' }), /Split/],
      ['wordpiece', (j) => (j.model.type = 'WordPiece'), /WordPiece/],
      ['unigram', (j) => (j.model.type = 'Unigram'), /Unigram/],
      ['dropout', (j) => (j.model.dropout = 0.1), /dropout/],
      ['prefix', (j) => (j.model.continuing_subword_prefix = '##'), /continuing_subword_prefix/],
      ['normalizer', (j) => (j.normalizer = { type: 'BertNormalizer' }), /BertNormalizer/],
      ['decoder', (j) => (j.decoder = { type: 'ByteLevel' }), /ByteLevel/],
      ['post', (j) => (j.post_processor = { type: 'BertProcessing' }), /BertProcessing/],
    ];
    for (const [, mutate, re] of cases) {
      const j = base();
      mutate(j);
      expect(() => HfTokenizer.fromJSON(j)).toThrow(UnsupportedError);
      expect(() => HfTokenizer.fromJSON(j)).toThrow(re);
    }
  });

  test('corrupt files are refused with CorruptFileError', () => {
    const cases: Array<(j: Record<string, any>) => void> = [
      (j) => (j.model.vocab = []),
      (j) => (j.model.vocab['\u2581Once'] = -1),
      (j) => (j.model.vocab['\u2581Once'] = 2 ** 40),
      (j) => (j.model.vocab['\u2581Once'] = 404), // duplicate id
      (j) => (j.model.merges = 'a b'),
      (j) => j.model.merges.push('zz qq'),
      (j) => j.model.merges.push('a b c'),
      (j) => j.model.merges.push(['a']),
      (j) => (j.model.unk_token = 'nope'),
      (j) => (j.added_tokens = [{ id: 1, content: '<x>' }]), // disagrees with the vocab
      (j) => (j.added_tokens = [{ id: 'one', content: '<s>' }]),
      (j) => (j.post_processor.special_tokens['<s>'].ids = [99999]),
      (j) => (j.post_processor.single = [{ SpecialToken: { id: '<s>' } }]),
      (j) => (j.decoder.decoders[3].start = -1),
      (j) => delete j.model,
    ];
    cases.forEach((mutate, i) => {
      const j = base();
      mutate(j);
      let err: unknown;
      try {
        HfTokenizer.fromJSON(j, { source: 'evil.json' });
      } catch (e) {
        err = e;
      }
      if (!(err instanceof CorruptFileError)) throw new Error(`case ${i} was not refused as corrupt: ${String(err)}`);
      expect((err as Error).message).toMatch(/evil\.json/);
    });
    expect(() => HfTokenizer.fromJSON('[1, 2]')).toThrow(CorruptFileError);
    expect(() => HfTokenizer.fromJSON('not json')).toThrow(CorruptFileError);
  });
});
