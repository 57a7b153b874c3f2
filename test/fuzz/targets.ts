// The fuzz targets: one function per file reader, taking the raw bytes of one file. A target returns (or
// resolves) for input it accepts and throws a QkError for input it refuses; anything else is a finding of the
// coverage-guided fuzzer (test/fuzz/engine). Each target also uses what it read a little (encode/decode a
// string, map a GGUF to the Llama layout), so parse results that are inconsistent show up too.
//
// Loaded both by jest (ts-jest, for the regression tests) and by the fuzz worker (its own .ts loader).
import * as fs from 'fs';
import * as path from 'path';
import '../../lib'; // registers the built-in layer classes (loadModel needs them)
import { QkError } from '../../lib/errors';
import { readLlama2c } from '../../lib/io/llama2c';
import { readGguf } from '../../lib/io/gguf';
import { ggufToLlama, ggufTokenizer } from '../../lib/io/gguf-llama';
import { readSafetensors } from '../../lib/io/safetensors';
import { importSafetensors } from '../../lib/io/model-safetensors';
import { readHfLlama } from '../../lib/io/hf-llama';
import { readZip, writeZip } from '../../lib/io/zip';
import { loadModel } from '../../lib/io/keras';
import { readHdf5 } from '../../lib/io/hdf5';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { HfTokenizer } from '../../lib/tokenizers/hf';
import type { Layer } from '../../lib/layers/layer';

export const FUZZ_DIR = __dirname;
export const CORPUS_DIR = path.join(__dirname, 'corpus');
export const REGRESSIONS_DIR = path.join(__dirname, 'regressions');

const TEXT = 'Once upon a time, Lily saw a big dog. \u00e9\u4e16 \ud83d\ude00 <s> 123';
const utf8 = new TextDecoder('utf-8', { fatal: false });

/** A fixed companion file of a target (e.g. the config.json that goes with fuzzed weights). */
function fixture(target: string, name: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(CORPUS_DIR, target, 'fixed', name)));
}

let importModel: Promise<Layer> | undefined;

export interface FuzzTarget {
  /** What the input is. */
  describe: string;
  /** Extra text tokens for the mutator (key names of the format). */
  dict?: string[];
  /** Source files whose coverage guides the fuzzer (regex on the path). */
  cover: RegExp;
  run(bytes: Uint8Array): void | Promise<void>;
}

const READERS = /[\\/]lib[\\/](io|tokenizers)[\\/]/;
const KERAS = /[\\/]lib[\\/](io|tokenizers|models|layers|dtype-policies|quantizers)[\\/]/;

export const TARGETS: Record<string, FuzzTarget> = {
  llama2c: {
    describe: 'a llama2.c checkpoint (readLlama2c)',
    cover: READERS,
    run(bytes) {
      const c = readLlama2c(bytes, { source: 'fuzz.bin' });
      void c.tensors.size;
    },
  },
  'llama2c-tokenizer': {
    describe: 'a llama2.c tokenizer.bin (Llama2cTokenizer.fromBytes, then encode/decode/toBytes)',
    cover: READERS,
    run(bytes) {
      const tok = Llama2cTokenizer.fromBytes(bytes, { source: 'tokenizer.bin' });
      const ids = tok.encode(TEXT, { bos: true, eos: true });
      tok.decode(ids);
      tok.toBytes();
    },
  },
  gguf: {
    describe: 'a GGUF file (readGguf, then the Llama mapping and its tokenizer)',
    dict: ['general.architecture', 'llama.block_count', 'llama.embedding_length', 'tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'general.alignment'],
    cover: READERS,
    run(bytes) {
      const g = readGguf(bytes, { source: 'fuzz.gguf' });
      const tok = ggufTokenizer(g, { source: 'fuzz.gguf' });
      if (tok) tok.decode(tok.encode(TEXT));
      ggufToLlama(g, { source: 'fuzz.gguf' });
    },
  },
  safetensors: {
    describe: 'a safetensors file (readSafetensors)',
    dict: ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F16"', '"BF16"', '"I8"', '"U8"', '"F64"', '"I64"', '"BOOL"', '"F8_E4M3"'],
    cover: READERS,
    run(bytes) {
      readSafetensors(bytes, { source: 'fuzz.safetensors' });
    },
  },
  'model-safetensors': {
    describe: "quantkit's safetensors export of a small quantized model (importSafetensors)",
    dict: ['"qk_bitpacked3"', '"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', 'vars/0', 'vars/1', 'vars/2'],
    cover: READERS,
    async run(bytes) {
      if (!importModel) importModel = loadModel(fixture('model-safetensors', 'model.keras')) as Promise<Layer>;
      importSafetensors(await importModel, bytes, 'fuzz.safetensors');
    },
  },
  'hf-config': {
    describe: 'a Hugging Face config.json (readHfLlama with fixed weights)',
    dict: ['"hidden_size"', '"num_attention_heads"', '"num_key_value_heads"', '"vocab_size"', '"rope_theta"', '"rope_parameters"', '"head_dim"', '"tie_word_embeddings"', '"intermediate_size"'],
    cover: READERS,
    run(bytes) {
      readHfLlama({ config: utf8.decode(bytes), weights: fixture('hf-config', 'model.safetensors') }, { source: 'fuzz' });
    },
  },
  'hf-weights': {
    describe: 'a Hugging Face model.safetensors (readHfLlama with a fixed config.json)',
    dict: ['"dtype"', '"shape"', '"data_offsets"', '"F16"', '"BF16"', 'model.layers.0.', 'lm_head.weight'],
    cover: READERS,
    run(bytes) {
      readHfLlama({ config: utf8.decode(fixture('hf-weights', 'config.json')), weights: bytes }, { source: 'fuzz' });
    },
  },
  'hf-tokenizer': {
    describe: 'a Hugging Face tokenizer.json (HfTokenizer.fromJSON, then encode/decode)',
    dict: ['"model"', '"vocab"', '"merges"', '"added_tokens"', '"normalizer"', '"pre_tokenizer"', '"decoder"', '"byte_fallback"', '"Metaspace"', '"Sequence"', '"Replace"', '"<0x41>"', '"\\u2581"'],
    cover: READERS,
    run(bytes) {
      const tok = HfTokenizer.fromJSON(utf8.decode(bytes), { source: 'tokenizer.json' });
      const ids = tok.encode(TEXT);
      tok.decode(ids);
      tok.decode(ids, { skipSpecialTokens: true });
      for (let i = 0; i < Math.min(ids.length, 8); i++) tok.decodeToken(i ? ids[i - 1] : -1, ids[i]);
    },
  },
  zip: {
    describe: 'a zip archive (readZip)',
    cover: READERS,
    run(bytes) {
      readZip(bytes, { source: 'fuzz.zip', limits: { maxTotalBytes: 64 << 20, maxEntryBytes: 64 << 20 } });
    },
  },
  keras: {
    describe: 'a whole .keras archive (loadModel)',
    cover: KERAS,
    async run(bytes) {
      await loadModel(bytes, { limits: { maxTotalBytes: 64 << 20, maxEntryBytes: 64 << 20 }, maxWeightsBytes: 64 << 20 });
    },
  },
  'keras-config': {
    describe: 'the config.json of a .keras archive (loadModel of a stored zip with fixed weights)',
    dict: ['"class_name"', '"config"', '"units"', '"dtype"', '"build_config"', '"input_shape"', '"layers"', '"inbound_nodes"', '"quantization_config"', '"int8_from_float32"', '"int4/128_from_float32"', '"block_size"'],
    cover: KERAS,
    async run(bytes) {
      const zip = writeZip([['metadata.json', fixture('keras-config', 'metadata.json')], ['config.json', bytes], ['model.weights.h5', fixture('keras-config', 'model.weights.h5')]], { level: 0 });
      await loadModel(zip, { maxWeightsBytes: 64 << 20 });
    },
  },
  'keras-weights': {
    describe: 'the model.weights.h5 of a .keras archive (HDF5 through h5wasm, then applyWeightsTree)',
    cover: KERAS,
    async run(bytes) {
      const zip = writeZip([['metadata.json', fixture('keras-weights', 'metadata.json')], ['config.json', fixture('keras-weights', 'config.json')], ['model.weights.h5', bytes]], { level: 0 });
      await loadModel(zip, { maxWeightsBytes: 64 << 20 });
    },
  },
  hdf5: {
    describe: 'an HDF5 file (readHdf5)',
    cover: READERS,
    async run(bytes) {
      await readHdf5(bytes, { source: 'fuzz.h5', maxBytes: 64 << 20, timeoutMs: 20_000 });
    },
  },
};

/** True when `err` is an acceptable refusal (a typed QkError). */
export function isCleanError(err: unknown): boolean {
  return err instanceof QkError;
}

const keep: unknown[] = [];
/**
 * Targets with planted bugs, for the fuzzer's own tests (each must be reported): a TypeError, a hang, a memory
 * blow-up, each behind a check of a few input bytes that the mutations have to find.
 */
export const SELF_TEST_TARGETS: Record<string, FuzzTarget & { seeds: Uint8Array[] }> = {
  'selftest-exception': {
    describe: 'throws a TypeError when the input starts with ff ff',
    cover: /[\\/]test[\\/]fuzz[\\/]/,
    seeds: [new Uint8Array([1, 2, 3, 4])],
    run(bytes) {
      if (bytes.length > 1 && bytes[0] === 0xff && bytes[1] === 0xff) throw new TypeError('planted bug');
      if (bytes[0] !== 1) throw new QkError('QK_CORRUPT_FILE', 'refused');
    },
  },
  'selftest-hang': {
    describe: 'loops forever when the input is empty',
    cover: /[\\/]test[\\/]fuzz[\\/]/,
    seeds: [new Uint8Array([1, 2, 3, 4])],
    run(bytes) {
      // eslint-disable-next-line no-empty
      while (bytes.length === 0) {}
    },
  },
  'selftest-memory': {
    describe: 'keeps 64 MiB alive per call when the input starts with 80',
    cover: /[\\/]test[\\/]fuzz[\\/]/,
    seeds: [new Uint8Array([1, 2, 3, 4])],
    run(bytes) {
      if (bytes[0] === 0x80) keep.push(new Array(8 << 20).fill(1.5));
    },
  },
};
