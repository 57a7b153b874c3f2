/**
 * Tokenizers: llama2.c's `tokenizer.bin` (also built from GGUF vocabularies) and Hugging Face `tokenizer.json`
 * (SentencePiece-style BPE as Llama-family models use), behind one {@link Tokenizer} interface.
 *
 * @example
 * ```ts
 * import { Llama2cTokenizer, HfTokenizer } from 'quantkit';
 * const tok = await Llama2cTokenizer.fromFile('tok512.bin');
 * tok.encode('Once upon a time'); // [1, 403, 407, 261, 378]
 * const hf = await HfTokenizer.fromFile('tokenizer.json');
 * ```
 * @packageDocumentation
 */
export type { Tokenizer, EncodeOptions } from './types';
export { Llama2cTokenizer } from './llama2c';
export type { Llama2cTokenizerOptions, Llama2cTokenizerReadOptions } from './llama2c';
export { HfTokenizer } from './hf';
export type { HfEncodeOptions, HfTokenizerOptions } from './hf';
