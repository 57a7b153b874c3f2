/**
 * Language-model checkpoint importers (llama2.c `.bin`, GGUF, Hugging Face Llama directories), all producing the
 * canonical {@link LlamaCheckpoint} of `llama-common.ts`, and {@link loadLlamaCheckpoint}, which recognises the
 * format by itself.
 *
 * @example
 * ```ts
 * import { loadLlamaCheckpoint } from 'quantkit';
 * const { format, config, tensors, tokenizer } = await loadLlamaCheckpoint('stories260K.bin', { tokenizer: 'tok512.bin' });
 * ```
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { InvalidArgumentError } from '../errors';
import { describe } from '../tensor';
import { HfTokenizer } from '../tokenizers/hf';
import { Llama2cTokenizer } from '../tokenizers/llama2c';
import type { Tokenizer } from '../tokenizers/types';
import { readGgufLlamaFile } from './gguf-llama';
import { readHfLlamaDir } from './hf-llama';
import { checkPath } from './le-bytes';
import type { LlamaCheckpoint } from './llama-common';
import { readLlama2cFile } from './llama2c';

export {
  LLAMA_TENSOR_NAMES,
  llamaHeadSize,
  llamaTensorSpecs,
  validateLlamaConfig,
  validateLlamaCheckpoint,
  halfSplitToInterleaved,
  interleavedToHalfSplit,
} from './llama-common';
export type { LlamaConfig, LlamaCheckpoint } from './llama-common';
export { readLlama2c, readLlama2cFile, writeLlama2c, LLAMA2C_MAGIC } from './llama2c';
export type { Llama2cCheckpoint, Llama2cReadOptions } from './llama2c';
export { parseGgufHeader, readGguf, readGgufFile, readGgufHeaderFile, GGUF_VALUE_TYPES } from './gguf';
export type { GgufValueType, GgufValue, GgufMetadataEntry, GgufTensorInfo, GgufHeader, GgufFile, GgufReadOptions } from './gguf';
export { ggufToLlama, ggufTokenizer, readGgufLlama, readGgufLlamaFile } from './gguf-llama';
export type { GgufLlamaCheckpoint, GgufLlamaReadOptions } from './gguf-llama';
export { hfConfigToLlama, readHfLlama, readHfLlamaDir } from './hf-llama';
export type { HfLlamaCheckpoint, HfLlamaFiles, HfLlamaReadOptions } from './hf-llama';

/**
 * A checkpoint loaded by {@link loadLlamaCheckpoint}.
 * @example
 * ```ts
 * const ckpt: LoadedLlamaCheckpoint = await loadLlamaCheckpoint('stories260K.gguf');
 * ckpt.format; // 'gguf'
 * ```
 */
export interface LoadedLlamaCheckpoint extends LlamaCheckpoint {
  /** The format that was recognised. */
  format: 'llama2c' | 'gguf' | 'hf';
  /** The tokenizer: `options.tokenizer`, else the one embedded in / next to the checkpoint (GGUF, HF). */
  tokenizer?: Tokenizer;
}

/**
 * Options of {@link loadLlamaCheckpoint}.
 * @example
 * ```ts
 * await loadLlamaCheckpoint('model.bin', { tokenizer: 'tokenizer.bin' });
 * ```
 */
export interface LoadLlamaCheckpointOptions {
  /**
   * A tokenizer, or the path of one: `*.json` is read as a Hugging Face `tokenizer.json`, anything else as a
   * llama2.c `tokenizer.bin` (whose token count must equal the model's vocabSize). llama2.c checkpoints carry
   * no tokenizer, so pass this for them.
   */
  tokenizer?: string | Tokenizer;
  /** Names the checkpoint in error messages (default the path). */
  source?: string;
  /** Memory budget in bytes for the checkpoint and tokenizer (default `getMaxLoadBytes()`). */
  maxBytes?: number;
}

/**
 * Loads a Llama-family checkpoint in any supported format, recognised from the path: a directory is a Hugging
 * Face model (`config.json` + safetensors), a file starting with `GGUF` is a GGUF, any other file a llama2.c
 * checkpoint (legacy or "ak42" version 1).
 * @throws InvalidArgumentError for a bad path or tokenizer; CorruptFileError / UnsupportedError from the
 *   format's reader.
 * @example
 * ```ts
 * const { config, tensors, tokenizer } = await loadLlamaCheckpoint('stories260K.bin', { tokenizer: 'tok512.bin' });
 * tokenizer!.encode('Once upon a time'); // [1, 403, 407, 261, 378]
 * ```
 */
export async function loadLlamaCheckpoint(path: string, options: LoadLlamaCheckpointOptions = {}): Promise<LoadedLlamaCheckpoint> {
  checkPath(path);
  const source = options.source ?? path;
  const st = await fs.promises.stat(path);
  let out: LoadedLlamaCheckpoint;
  if (st.isDirectory()) {
    const r = await readHfLlamaDir(path, { source, maxBytes: options.maxBytes });
    out = { format: 'hf', config: r.config, tensors: r.tensors, tokenizer: r.tokenizer };
  } else {
    const fh = await fs.promises.open(path, 'r');
    const magic = new Uint8Array(4);
    try {
      await fh.read(magic, 0, 4, 0);
    } finally {
      await fh.close();
    }
    if (String.fromCharCode(...magic) === 'GGUF') {
      const r = await readGgufLlamaFile(path, { source, maxBytes: options.maxBytes });
      out = { format: 'gguf', config: r.config, tensors: r.tensors, tokenizer: r.tokenizer };
    } else {
      const r = await readLlama2cFile(path, { source, maxBytes: options.maxBytes });
      out = { format: 'llama2c', config: r.config, tensors: r.tensors };
    }
  }
  const t = options.tokenizer;
  if (t !== undefined) {
    if (typeof t === 'string') {
      checkPath(t, 'options.tokenizer');
      out.tokenizer = nodePath.extname(t).toLowerCase() === '.json'
        ? await HfTokenizer.fromFile(t, { maxBytes: options.maxBytes })
        : await Llama2cTokenizer.fromFile(t, { vocabSize: out.config.vocabSize, maxBytes: options.maxBytes });
    } else if (t !== null && typeof t === 'object' && typeof (t as Tokenizer).encode === 'function' && typeof (t as Tokenizer).decode === 'function') {
      out.tokenizer = t;
    } else {
      throw new InvalidArgumentError(`Expected a tokenizer path or a Tokenizer for options.tokenizer but received ${describe(t)}`);
    }
  }
  if (out.tokenizer === undefined) delete out.tokenizer;
  return out;
}
