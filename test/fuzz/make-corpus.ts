// Writes the seed corpus of the reader fuzzer (test/fuzz/corpus/<target>/): small valid files of every format,
// made by quantkit's own writers (and the independent GGUF test writer) from a tiny random Llama and tiny Keras
// models, plus the companion files of the targets that fuzz one file of several (corpus/<target>/fixed/).
// Run: node test/fuzz/engine/cli.js --make-corpus
import * as fs from 'fs';
import * as path from 'path';
import { Dense, Embedding, Input, Model, applySymbolic, Int4QuantizationConfig } from '../../lib';
import { modelToKerasBytes } from '../../lib/io/keras';
import { exportSafetensors } from '../../lib/io/model-safetensors';
import { writeLlama2c } from '../../lib/io/llama2c';
import { llamaTensorSpecs, LlamaCheckpoint, LlamaConfig, LLAMA_TENSOR_NAMES as N } from '../../lib/io/llama-common';
import { writeSafetensors } from '../../lib/io/safetensors';
import { readZip, writeZip } from '../../lib/io/zip';
import { writeHdf5, h5Group, h5Dataset, terminateHdf5Worker } from '../../lib/io/hdf5';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { Tensor } from '../../lib/tensor';
import { buildGguf, f32Bytes, GgufSpec } from '../io/gguf-writer';
import { tokenizerJson } from '../io/hf-helpers';
import { CORPUS_DIR } from './targets';
import { randomF32 } from '../helpers';

const enc = new TextEncoder();

function put(target: string, name: string, bytes: Uint8Array): void {
  const dir = path.join(CORPUS_DIR, target);
  fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
  fs.writeFileSync(path.join(dir, name), bytes);
}

const CONFIG: LlamaConfig = { dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, vocabSize: 16, seqLen: 8, normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: true };

function tinyLlama(config: LlamaConfig): LlamaCheckpoint {
  const tensors = new Map<string, Tensor<'float32'>>();
  llamaTensorSpecs(config).forEach(({ name, shape }, i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, new Tensor('float32', shape, randomF32(n, 10 + i, 0.5)));
  });
  return { config, tensors };
}

function tinyTokenizer(): Llama2cTokenizer {
  const words = ['<unk>', '<s>', '</s>', ' ', 'a', 'b', 'o', 'n', ' a', 'on', ' on', 'ce', 'O', ' t', 'i', 'm'];
  return new Llama2cTokenizer({ pieces: words.map((w) => enc.encode(w)), scores: Float32Array.from(words, (_, i) => -i), bosId: 1, eosId: 2 });
}

async function tinyModels(): Promise<Model[]> {
  const dense = async (mode: string | null) => {
    const inp = Input({ shape: [8] });
    const h = await applySymbolic(new Dense({ units: 8, seed: 1, activation: 'relu' }), inp);
    const out = await applySymbolic(new Dense({ units: 4, seed: 2 }), h);
    const m = new Model({ inputs: inp, outputs: out, name: `tiny_${mode ?? 'float32'}` });
    if (mode === 'int4') await m.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 4 }), verbose: false });
    else if (mode) await m.quantize(mode as 'int8', { verbose: false });
    return m;
  };
  const emb = async () => {
    const inp = Input({ shape: [5], dtype: 'int32' });
    const out = await applySymbolic(new Embedding({ inputDim: 12, outputDim: 4, seed: 3 }), inp);
    const m = new Model({ inputs: inp, outputs: out, name: 'tiny_embedding' });
    await m.quantize('int8', { verbose: false });
    return m;
  };
  const out: Model[] = [];
  for (const mode of [null, 'int8', 'int4', 'float8']) out.push(await dense(mode));
  out.push(await emb());
  return out;
}

export async function makeCorpus(): Promise<void> {
  fs.rmSync(CORPUS_DIR, { recursive: true, force: true });
  // llama2.c checkpoint: v0 layout, shared and unshared classifier
  const ck = tinyLlama(CONFIG);
  put('llama2c', 'tiny-shared.bin', writeLlama2c(ck));
  const untied = tinyLlama({ ...CONFIG, tiedEmbeddings: false, nKvHeads: 2 });
  put('llama2c', 'tiny-unshared.bin', writeLlama2c(untied));
  // tokenizers
  const tok = tinyTokenizer();
  put('llama2c-tokenizer', 'tiny.bin', tok.toBytes());
  put('llama2c-tokenizer', 'tok512.bin', new Uint8Array(fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'stories260K', 'tok512.bin'))));
  put('hf-tokenizer', 'legacy.json', enc.encode(JSON.stringify(tokenizerJson(tok, 'legacy'))));
  put('hf-tokenizer', 'metaspace.json', enc.encode(JSON.stringify(tokenizerJson(tok, 'metaspace'))));
  // GGUF: the tiny Llama with its tokenizer
  const g = (name: string, t: Tensor) => ({ name, dims: [...t.shape].reverse(), typeId: 0, data: f32Bytes(t.data as Float32Array) });
  const T = (n: string) => ck.tensors.get(n)!;
  const pieces = Array.from({ length: tok.vocabSize }, (_, i) => new TextDecoder().decode(tok.piece(i)));
  const spec: GgufSpec = {
    kv: [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['general.name', { type: 'string', value: 'tiny' }],
      ['llama.context_length', { type: 'uint32', value: CONFIG.seqLen }],
      ['llama.embedding_length', { type: 'uint32', value: CONFIG.dim }],
      ['llama.feed_forward_length', { type: 'uint32', value: CONFIG.hiddenDim }],
      ['llama.block_count', { type: 'uint32', value: CONFIG.nLayers }],
      ['llama.attention.head_count', { type: 'uint32', value: CONFIG.nHeads }],
      ['llama.attention.head_count_kv', { type: 'uint32', value: CONFIG.nKvHeads }],
      ['llama.attention.layer_norm_rms_epsilon', { type: 'float32', value: 1e-5 }],
      ['llama.rope.freq_base', { type: 'float32', value: 10000 }],
      ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
      ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: pieces }],
      ['tokenizer.ggml.scores', { type: 'array', itemType: 'float32', value: pieces.map((_, i) => -i) }],
      ['tokenizer.ggml.token_type', { type: 'array', itemType: 'int32', value: pieces.map((_, i) => (i < 3 ? 3 : 1)) }],
      ['tokenizer.ggml.bos_token_id', { type: 'uint32', value: 1 }],
      ['tokenizer.ggml.eos_token_id', { type: 'uint32', value: 2 }],
    ],
    tensors: [
      g('token_embd.weight', T(N.tokEmbeddings)),
      g('blk.0.attn_norm.weight', T(N.attentionNorm(0))),
      g('blk.0.attn_q.weight', T(N.wq(0))),
      g('blk.0.attn_k.weight', T(N.wk(0))),
      g('blk.0.attn_v.weight', T(N.wv(0))),
      g('blk.0.attn_output.weight', T(N.wo(0))),
      g('blk.0.ffn_norm.weight', T(N.ffnNorm(0))),
      g('blk.0.ffn_gate.weight', T(N.w1(0))),
      g('blk.0.ffn_down.weight', T(N.w2(0))),
      g('blk.0.ffn_up.weight', T(N.w3(0))),
      g('output_norm.weight', T(N.norm)),
    ],
  };
  put('gguf', 'tiny-llama.gguf', buildGguf(spec));
  put('gguf', 'tiny-kv-only.gguf', buildGguf({ version: 2, kv: [['a', { type: 'array', itemType: 'uint64', value: [1n, 2n] }], ['b', { type: 'float64', value: 0.5 }], ['c', { type: 'bool', value: true }]], tensors: [] }));
  // safetensors: several dtypes
  put('safetensors', 'dtypes.safetensors', writeSafetensors([
    ['f32', new Tensor('float32', [2, 3], randomF32(6, 1))],
    ['f16', new Tensor('float32', [3], randomF32(3, 2)).astype('float16')],
    ['bf16', new Tensor('float32', [2], randomF32(2, 3)).astype('bfloat16')],
    ['i8', new Tensor('int8', [4], new Int8Array([1, -2, 3, -128]))],
    ['i32', new Tensor('int32', [1, 2], new Int32Array([7, -7]))],
    ['empty', new Tensor('float32', [0, 4], new Float32Array(0))],
  ], { format: 'pt' }));
  // Hugging Face: config.json + model.safetensors of the tiny Llama
  const hf: Array<[string, Tensor]> = [['model.embed_tokens.weight', T(N.tokEmbeddings)], ['model.norm.weight', T(N.norm)]];
  const p = 'model.layers.0.';
  hf.push([`${p}input_layernorm.weight`, T(N.attentionNorm(0))], [`${p}self_attn.q_proj.weight`, T(N.wq(0))], [`${p}self_attn.k_proj.weight`, T(N.wk(0))], [`${p}self_attn.v_proj.weight`, T(N.wv(0))], [`${p}self_attn.o_proj.weight`, T(N.wo(0))]);
  hf.push([`${p}post_attention_layernorm.weight`, T(N.ffnNorm(0))], [`${p}mlp.gate_proj.weight`, T(N.w1(0))], [`${p}mlp.down_proj.weight`, T(N.w2(0))], [`${p}mlp.up_proj.weight`, T(N.w3(0))]);
  const hfWeights = writeSafetensors(hf, { format: 'pt' });
  const hfCfg = enc.encode(JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 16, max_position_embeddings: 8, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, hidden_act: 'silu', torch_dtype: 'float32' }));
  put('hf-config', 'config.json', hfCfg);
  put('hf-config', 'fixed/model.safetensors', hfWeights);
  put('hf-weights', 'model.safetensors', hfWeights);
  put('hf-weights', 'fixed/config.json', hfCfg);
  // .keras archives of tiny models in every mode; their zip, config.json and model.weights.h5 parts
  const models = await tinyModels();
  for (const m of models) {
    const bytes = await modelToKerasBytes(m);
    const parts = readZip(bytes);
    put('keras', `${m.name}.keras`, bytes);
    put('keras-config', `${m.name}.config.json`, parts.get('config.json')!);
    put('keras-weights', `${m.name}.weights.h5`, parts.get('model.weights.h5')!);
    if (m.name === 'tiny_int4') {
      put('keras-config', 'fixed/metadata.json', parts.get('metadata.json')!);
      put('keras-config', 'fixed/model.weights.h5', parts.get('model.weights.h5')!);
      put('keras-weights', 'fixed/metadata.json', parts.get('metadata.json')!);
      put('keras-weights', 'fixed/config.json', parts.get('config.json')!);
    }
    if (m.name === 'tiny_int8' || m.name === 'tiny_float32') put('zip', `${m.name}.deflate.zip`, writeZip([...parts], { level: 6 }));
  }
  // quantkit's own safetensors export (int4: packed nibbles, grouped scales) and the model it belongs to
  const m4 = models.find((x) => x.name === 'tiny_int4')!;
  put('model-safetensors', 'tiny_int4.safetensors', exportSafetensors(m4));
  put('model-safetensors', 'fixed/model.keras', await modelToKerasBytes(m4));
  put('zip', 'two-entries.zip', writeZip([['a.txt', enc.encode('hello hello hello')], ['dir/b.bin', new Uint8Array([1, 2, 3])]], { level: 9 }));
  // HDF5: a tree with every dataset dtype, attributes and nesting
  const root = h5Group({ note: 'fuzz', n: 3, list: [1, 2] });
  const sub = h5Group({ dtype: 'x' });
  root.children.set('g', sub);
  sub.children.set('f32', h5Dataset('float32', [2, 2], new Float32Array([1, 2, 3, 4])));
  sub.children.set('i8', h5Dataset('int8', [3], new Int8Array([1, -1, 5])));
  root.children.set('u8', h5Dataset('uint8', [2], new Uint8Array([9, 8])));
  root.children.set('i32', h5Dataset('int32', [1], new Int32Array([42])));
  root.children.set('f16', h5Dataset('float16', [2], new Uint16Array([0x3c00, 0xc000])));
  root.children.set('bf16', h5Dataset('bfloat16', [1], new Uint16Array([0x3f80])));
  put('hdf5', 'tree.h5', await writeHdf5(root));
  await terminateHdf5Worker();
}
