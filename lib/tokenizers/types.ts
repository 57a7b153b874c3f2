/**
 * The interface every quantkit tokenizer implements (llama2.c `tokenizer.bin`, GGUF vocabularies, Hugging Face
 * `tokenizer.json`), which is what `LlamaCausalLM` generation, perplexity and GPTQ calibration consume.
 * @packageDocumentation
 */

/**
 * Options of {@link Tokenizer.encode}.
 * @example
 * ```ts
 * tokenizer.encode('Once upon a time', { bos: true, eos: false });
 * ```
 */
export interface EncodeOptions {
  /** Prepend the beginning-of-sequence token (default true). */
  bos?: boolean;
  /** Append the end-of-sequence token (default false). */
  eos?: boolean;
}

/**
 * A text tokenizer: text to token ids and back.
 * @example
 * ```ts
 * const tok: Tokenizer = await Llama2cTokenizer.fromFile('tok512.bin');
 * tok.decode(tok.encode('Once upon a time')); // 'Once upon a time'
 * ```
 */
export interface Tokenizer {
  /** Number of token ids (`0 … vocabSize - 1`). */
  readonly vocabSize: number;
  /** Beginning-of-sequence id (-1 when the vocabulary has none). */
  readonly bosId: number;
  /** End-of-sequence id (-1 when the vocabulary has none). */
  readonly eosId: number;
  /** Token ids of `text`. */
  encode(text: string, options?: EncodeOptions): number[];
  /** Text of `ids` (special tokens dropped; invalid UTF-8 becomes U+FFFD). */
  decode(ids: ArrayLike<number>): string;
  /**
   * The bytes token `id` adds to the text when it follows token `prev` (for streaming: feed the bytes to a
   * `TextDecoder` with `{ stream: true }`, since one character may span several byte tokens).
   */
  decodeToken(prev: number, id: number): Uint8Array;
}
