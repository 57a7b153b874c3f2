// Builders of Hugging Face files from the llama2.c fixtures, written from the published formats (tokenizer.json
// of Llama tokenizers; the HF q/k row permutation of convert_llama_weights_to_hf.py), so that the HF readers can be
// tested without a network.
import type { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';

/** The HF spelling of a tok512 piece: BOS/EOS as <s>/</s>, spaces as ▁. */
export function hfPiece(tok: Llama2cTokenizer, id: number): string {
  if (id === tok.bosId) return '<s>';
  if (id === tok.eosId) return '</s>';
  return new TextDecoder().decode(tok.piece(id)).replace(/ /g, '\u2581');
}

export type TokenizerStyle = 'legacy' | 'metaspace';

/**
 * A Llama-style tokenizer.json for a llama2.c vocabulary. Merges: every split of every non-special piece into two
 * pieces, ranked by the merged piece's score (higher first), as SentencePiece's converter does.
 * - 'legacy': Llama 2's original file: normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, decoder
 *   Replace/ByteFallback/Fuse/Strip, string merges.
 * - 'metaspace': the newer file: no normalizer, pre-tokenizer Metaspace(prepend_scheme "first", split false),
 *   decoder Metaspace + ByteFallback + Fuse, merges as [left, right] pairs.
 */
export function tokenizerJson(tok: Llama2cTokenizer, style: TokenizerStyle = 'legacy'): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (let id = 0; id < tok.vocabSize; id++) vocab[hfPiece(tok, id)] = id;
  const merges: Array<{ a: string; b: string; score: number; left: number }> = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    const p = hfPiece(tok, id);
    if (id < 3 || /^<0x[0-9A-F]{2}>$/.test(p)) continue;
    const chars = [...p];
    for (let k = 1; k < chars.length; k++) {
      const a = chars.slice(0, k).join('');
      const b = chars.slice(k).join('');
      if (a in vocab && b in vocab) merges.push({ a, b, score: tok.score(id), left: vocab[a] });
    }
  }
  merges.sort((x, y) => y.score - x.score || x.left - y.left);
  const added = [0, 1, 2].map((id) => ({ id, content: hfPiece(tok, id), single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const template = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
  };
  const model = {
    type: 'BPE',
    dropout: null,
    unk_token: '<unk>',
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: true,
    byte_fallback: true,
    ...(style === 'metaspace' ? { ignore_merges: false } : {}),
    vocab,
    merges: style === 'legacy' ? merges.map((m) => `${m.a} ${m.b}`) : merges.map((m) => [m.a, m.b]),
  };
  if (style === 'legacy') {
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
      pre_tokenizer: null,
      post_processor: template,
      decoder: {
        type: 'Sequence',
        decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
      },
      model,
    };
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
    post_processor: template,
    decoder: { type: 'Sequence', decoders: [{ type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false }, { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model,
  };
}

/**
 * Hugging Face's q/k row order from llama2.c's, as convert_llama_weights_to_hf.py's `permute` does it:
 * view [heads, headSize/2, 2, in], swap the middle axes, view [rows, in]. Written as an index map.
 */
export function hfPermute(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const hs = rows / heads;
  const out = new Float32Array(w.length);
  // out viewed as [heads, 2, hs/2, cols] equals w viewed as [heads, hs/2, 2, cols] transposed on axes 1, 2.
  for (let h = 0; h < heads; h++) {
    for (let a = 0; a < 2; a++) {
      for (let b = 0; b < hs / 2; b++) {
        const dst = ((h * 2 + a) * (hs / 2) + b) * cols;
        const src = ((h * (hs / 2) + b) * 2 + a) * cols;
        for (let c = 0; c < cols; c++) out[dst + c] = w[src + c];
      }
    }
  }
  return out;
}
