// Hugging Face Llama layout: directories written here from the llama2.c fixture (q/k permuted as
// convert_llama_weights_to_hf.py does, float32 and float16, single file and shards), read back into the canonical
// layout; the permutation helpers; refusals.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readHfLlama, readHfLlamaDir, hfConfigToLlama } from '../../lib/io/hf-llama';
import { readLlama2c } from '../../lib/io/llama2c';
import { halfSplitToInterleaved, interleavedToHalfSplit, LLAMA_TENSOR_NAMES as N, validateLlamaCheckpoint, LlamaCheckpoint } from '../../lib/io/llama-common';
import { writeSafetensors } from '../../lib/io/safetensors';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { CorruptFileError, UnsupportedError } from '../../lib/errors';
import { Tensor } from '../../lib/tensor';
import { hfPermute, tokenizerJson } from './hf-helpers';

const LLM = path.join(__dirname, '..', '..', 'models', 'stories260K');
const bin = readLlama2c(new Uint8Array(fs.readFileSync(path.join(LLM, 'stories260K.bin'))));
const tok512 = Llama2cTokenizer.fromBytes(new Uint8Array(fs.readFileSync(path.join(LLM, 'tok512.bin'))));
const C = bin.config;

const sameBytes = (a: ArrayBufferView, b: ArrayBufferView) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function hfConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: C.dim,
    intermediate_size: C.hiddenDim,
    num_hidden_layers: C.nLayers,
    num_attention_heads: C.nHeads,
    num_key_value_heads: C.nKvHeads,
    vocab_size: C.vocabSize,
    max_position_embeddings: C.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    torch_dtype: 'float32',
    ...over,
  };
}

/** The HF state dict of a canonical checkpoint (written independently of the reader's mapping). */
function hfTensors(ck: LlamaCheckpoint, dtype: 'float32' | 'float16' = 'float32', lmHead?: Float32Array): Array<[string, Tensor]> {
  const t = (name: string) => ck.tensors.get(name)!;
  const out: Array<[string, Tensor]> = [];
  const put = (name: string, x: Tensor) => out.push([name, dtype === 'float32' ? x : x.astype('float16')]);
  put('model.embed_tokens.weight', t(N.tokEmbeddings));
  const kv = C.nKvHeads * (C.dim / C.nHeads);
  for (let i = 0; i < C.nLayers; i++) {
    const p = `model.layers.${i}.`;
    put(`${p}input_layernorm.weight`, t(N.attentionNorm(i)));
    put(`${p}self_attn.q_proj.weight`, new Tensor('float32', [C.dim, C.dim], hfPermute(t(N.wq(i))!.data as Float32Array, C.dim, C.dim, C.nHeads)));
    put(`${p}self_attn.k_proj.weight`, new Tensor('float32', [kv, C.dim], hfPermute(t(N.wk(i))!.data as Float32Array, kv, C.dim, C.nKvHeads)));
    put(`${p}self_attn.v_proj.weight`, t(N.wv(i)));
    put(`${p}self_attn.o_proj.weight`, t(N.wo(i)));
    put(`${p}post_attention_layernorm.weight`, t(N.ffnNorm(i)));
    put(`${p}mlp.gate_proj.weight`, t(N.w1(i)));
    put(`${p}mlp.down_proj.weight`, t(N.w2(i)));
    put(`${p}mlp.up_proj.weight`, t(N.w3(i)));
    out.push([`${p}self_attn.rotary_emb.inv_freq`, new Tensor('float32', [4], new Float32Array([1, 0.1, 0.01, 0.001]))]);
  }
  put('model.norm.weight', t(N.norm));
  if (lmHead) put('lm_head.weight', new Tensor('float32', [C.vocabSize, C.dim], lmHead));
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-hf-llama-'));
  try {
    await fn(dir);
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

describe('rotary row permutation', () => {
  test('halfSplitToInterleaved undoes the HF permutation; interleavedToHalfSplit is it', () => {
    const wq = bin.tensors.get(N.wq(2))!;
    const hf = hfPermute(wq.data as Float32Array, 64, 64, 8);
    expect(sameBytes(interleavedToHalfSplit(wq, 8).data, hf)).toBe(true);
    expect(sameBytes(halfSplitToInterleaved(new Tensor('float32', [64, 64], hf), 8).data, wq.data)).toBe(true);
    // Small explicit case: one head of size 4, rows r0..r3 (pairs (r0,r1), (r2,r3)) → HF order r0, r2, r1, r3.
    const w = new Tensor('float32', [4, 1], new Float32Array([0, 1, 2, 3]));
    expect(Array.from(interleavedToHalfSplit(w, 1).data)).toEqual([0, 2, 1, 3]);
    expect(() => halfSplitToInterleaved(new Tensor('float32', [6, 2]), 2)).toThrow(/even size/);
  });
});

describe('Hugging Face Llama directories', () => {
  test('float32, tied, single model.safetensors + tokenizer.json: equal to the llama2.c checkpoint bit for bit', async () => {
    await withDir(async (dir) => {
      await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfig()));
      await fs.promises.writeFile(path.join(dir, 'model.safetensors'), writeSafetensors(hfTensors(bin), { format: 'pt' }));
      await fs.promises.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(tok512)));
      const r = await readHfLlamaDir(dir);
      validateLlamaCheckpoint(r);
      expect(r.config).toEqual(C);
      expect([...r.tensors.keys()]).toEqual([...bin.tensors.keys()]);
      for (const [name, t] of bin.tensors) expect(sameBytes(r.tensors.get(name)!.data, t.data)).toBe(true);
      expect(r.tokenizer!.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
      expect(r.hfConfig.model_type).toBe('llama');
    });
  });

  test('float16, untied lm_head, two shards with model.safetensors.index.json', async () => {
    const lm = Float32Array.from(bin.tensors.get(N.tokEmbeddings)!.data as Float32Array, (v) => -v);
    const all = hfTensors(bin, 'float16', lm);
    await withDir(async (dir) => {
      const half = Math.floor(all.length / 2);
      const shards = [all.slice(0, half), all.slice(half)];
      const weightMap: Record<string, string> = {};
      for (let s = 0; s < 2; s++) {
        const name = `model-0000${s + 1}-of-00002.safetensors`;
        for (const [k] of shards[s]) weightMap[k] = name;
        await fs.promises.writeFile(path.join(dir, name), writeSafetensors(shards[s]));
      }
      await fs.promises.writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
      await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfig({ tie_word_embeddings: false, torch_dtype: 'float16' })));
      const r = await readHfLlamaDir(dir);
      expect(r.tokenizer).toBeUndefined();
      expect(r.config.tiedEmbeddings).toBe(false);
      validateLlamaCheckpoint(r);
      let worst = 0;
      for (const [name, t] of [...bin.tensors, [N.output, new Tensor('float32', [512, 64], lm)] as [string, Tensor]]) {
        const u = r.tensors.get(name)!.data as Float32Array;
        const a = t.data as Float32Array;
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(u[i] - a[i]) - (Math.abs(a[i]) * 2 ** -11 + 2 ** -25));
      }
      expect(worst).toBeLessThanOrEqual(0);
    });
  });

  test('in-memory files (readHfLlama) and the config mapping', () => {
    const r = readHfLlama({ config: JSON.stringify(hfConfig()), weights: writeSafetensors(hfTensors(bin)), tokenizer: tokenizerJson(tok512, 'metaspace') });
    for (const [name, t] of bin.tensors) expect(sameBytes(r.tensors.get(name)!.data, t.data)).toBe(true);
    expect(r.tokenizer!.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    const fromMap = readHfLlama({ config: hfConfig(), weights: new Map(hfTensors(bin)) });
    expect(sameBytes(fromMap.tensors.get(N.wk(3))!.data, bin.tensors.get(N.wk(3))!.data)).toBe(true);
    // Defaults of transformers' LlamaConfig: rms_norm_eps 1e-6, rope_theta 10000, no tying, kv heads = heads.
    const d = hfConfigToLlama({ model_type: 'llama', hidden_size: 64, intermediate_size: 172, num_hidden_layers: 1, num_attention_heads: 8, vocab_size: 10, max_position_embeddings: 16 });
    expect(d).toEqual({ dim: 64, hiddenDim: 172, nLayers: 1, nHeads: 8, nKvHeads: 8, vocabSize: 10, seqLen: 16, normEps: 1e-6, ropeTheta: 10000, tiedEmbeddings: false });
    expect(hfConfigToLlama({ ...hfConfig(), rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }).ropeTheta).toBe(500000);
  });

  test('refusals', async () => {
    const st = writeSafetensors(hfTensors(bin));
    const read = (cfg: Record<string, unknown>, weights: Uint8Array | Map<string, Tensor> = st) => () => readHfLlama({ config: cfg, weights }, { source: 'm' });
    const expectErr = (fn: () => unknown, Ctor: new (...a: never[]) => Error, re: RegExp) => {
      expect(fn).toThrow(Ctor);
      expect(fn).toThrow(re);
    };
    expectErr(read(hfConfig({ model_type: 'mistral' })), UnsupportedError, /model_type "llama"/);
    expectErr(read(hfConfig({ rope_scaling: { type: 'linear', factor: 2 } })), UnsupportedError, /rope_scaling/);
    expectErr(read(hfConfig({ hidden_act: 'gelu' })), UnsupportedError, /silu/);
    expectErr(read(hfConfig({ head_dim: 16 })), UnsupportedError, /head_dim/);
    expectErr(read(hfConfig({ attention_bias: true })), UnsupportedError, /attention_bias/);
    expectErr(read(hfConfig({ rope_parameters: { rope_type: 'llama3', rope_theta: 1 } })), UnsupportedError, /rope_type/);
    expectErr(read(hfConfig({ hidden_size: '64' })), CorruptFileError, /hidden_size/);
    expectErr(read(hfConfig({ num_key_value_heads: 3 })), CorruptFileError, /nKvHeads/);
    expectErr(read(hfConfig({ vocab_size: 511 })), CorruptFileError, /\[511, 64\].*embed_tokens/);
    expectErr(read(hfConfig({ num_hidden_layers: 2 ** 31 - 1 })), CorruptFileError, /at least .* tensors/);
    expectErr(read(hfConfig({ tie_word_embeddings: false })), CorruptFileError, /lm_head\.weight/);
    const withBias = new Map(hfTensors(bin));
    withBias.set('model.layers.0.self_attn.q_proj.bias', new Tensor('float32', [64]));
    expectErr(read(hfConfig(), withBias), UnsupportedError, /q_proj\.bias/);
    const missing = new Map(hfTensors(bin));
    missing.delete('model.layers.4.mlp.up_proj.weight');
    missing.set('model.layers.9.self_attn.rotary_emb.inv_freq', new Tensor('float32', [4])); // keep the count
    expectErr(read(hfConfig(), missing), CorruptFileError, /model\.layers\.4\.mlp\.up_proj\.weight/);
    const wrongShape = new Map(hfTensors(bin));
    wrongShape.set('model.layers.1.self_attn.k_proj.weight', new Tensor('float32', [64, 64]));
    expectErr(read(hfConfig(), wrongShape), CorruptFileError, /\[32, 64\].*k_proj/);
    const ints = new Map(hfTensors(bin));
    ints.set('model.norm.weight', new Tensor('int8', [64]));
    expectErr(read(hfConfig(), ints), UnsupportedError, /int8/);
    expectErr(() => readHfLlama({ config: '{', weights: st }), CorruptFileError, /config\.json/);
    await withDir(async (dir) => {
      await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfig()));
      await expect(readHfLlamaDir(dir)).rejects.toThrow(/model\.safetensors or model\.safetensors\.index\.json/);
      await fs.promises.writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.norm.weight': '../secret.safetensors' } }));
      await expect(readHfLlamaDir(dir)).rejects.toThrow(/plain file name/);
      await fs.promises.writeFile(path.join(dir, 'model.safetensors'), st.subarray(0, st.length - 3));
      await expect(readHfLlamaDir(dir)).rejects.toThrow(CorruptFileError);
    });
  });
});
