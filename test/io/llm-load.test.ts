// loadLlamaCheckpoint: the three formats of the same model load to identical canonical checkpoints, and the public
// exports of the package include the importers and tokenizers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as qk from '../../lib/index';
import { loadLlamaCheckpoint } from '../../lib/io/llm';
import { writeSafetensors } from '../../lib/io/safetensors';
import { interleavedToHalfSplit, LLAMA_TENSOR_NAMES as N } from '../../lib/io/llama-common';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { CorruptFileError, InvalidArgumentError } from '../../lib/errors';
import type { Tensor } from '../../lib/tensor';
import { tokenizerJson } from './hf-helpers';

const LLM = path.join(__dirname, '..', '..', 'models', 'stories260K');
const BIN = path.join(LLM, 'stories260K.bin');
const GGUF = path.join(LLM, 'stories260K.gguf');
const TOK = path.join(LLM, 'tok512.bin');

const sameBytes = (a: ArrayBufferView, b: ArrayBufferView) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('public exports', () => {
  for (const name of [
    'Llama2cTokenizer', 'HfTokenizer', 'loadLlamaCheckpoint', 'readLlama2c', 'readLlama2cFile', 'writeLlama2c', 'readGguf', 'readGgufFile',
    'readGgufHeaderFile', 'parseGgufHeader', 'readGgufLlama', 'readGgufLlamaFile', 'ggufToLlama', 'ggufTokenizer', 'readHfLlama', 'readHfLlamaDir',
    'hfConfigToLlama', 'llamaTensorSpecs', 'validateLlamaConfig', 'validateLlamaCheckpoint', 'halfSplitToInterleaved', 'interleavedToHalfSplit',
    'LLAMA_TENSOR_NAMES', 'llamaHeadSize',
  ]) {
    expect((qk as Record<string, unknown>)[name]).toBeDefined();
  }
});

test('llama2.c, GGUF and HF loads of stories260K are identical', async () => {
  const a = await loadLlamaCheckpoint(BIN, { tokenizer: TOK });
  const b = await loadLlamaCheckpoint(GGUF);
  expect(a.format).toBe('llama2c');
  expect(b.format).toBe('gguf');
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-load-'));
  try {
    // An HF directory written with the library's own helpers (the independent writer is in hf-llama.test.ts).
    const names: Record<string, string> = { [N.tokEmbeddings]: 'model.embed_tokens.weight', [N.norm]: 'model.norm.weight' };
    for (let i = 0; i < a.config.nLayers; i++) {
      const p = `model.layers.${i}.`;
      Object.assign(names, {
        [N.attentionNorm(i)]: `${p}input_layernorm.weight`, [N.wq(i)]: `${p}self_attn.q_proj.weight`, [N.wk(i)]: `${p}self_attn.k_proj.weight`,
        [N.wv(i)]: `${p}self_attn.v_proj.weight`, [N.wo(i)]: `${p}self_attn.o_proj.weight`, [N.ffnNorm(i)]: `${p}post_attention_layernorm.weight`,
        [N.w1(i)]: `${p}mlp.gate_proj.weight`, [N.w2(i)]: `${p}mlp.down_proj.weight`, [N.w3(i)]: `${p}mlp.up_proj.weight`,
      });
    }
    const hfT: Array<[string, Tensor]> = [...a.tensors].map(([k, t]) => {
      const layer = Number(k.split('.')[1]);
      if (k === N.wq(layer)) return [names[k], interleavedToHalfSplit(t, a.config.nHeads)];
      if (k === N.wk(layer)) return [names[k], interleavedToHalfSplit(t, a.config.nKvHeads)];
      return [names[k], t];
    });
    await fs.promises.writeFile(path.join(dir, 'model.safetensors'), writeSafetensors(hfT));
    await fs.promises.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(a.tokenizer as Llama2cTokenizer)));
    await fs.promises.writeFile(
      path.join(dir, 'config.json'),
      JSON.stringify({
        model_type: 'llama', hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5, num_attention_heads: 8, num_key_value_heads: 4,
        vocab_size: 512, max_position_embeddings: 512, rms_norm_eps: 1e-5, tie_word_embeddings: true,
      }),
    );
    const c = await loadLlamaCheckpoint(dir);
    expect(c.format).toBe('hf');
    expect(c.config).toEqual(a.config);
    expect(b.config).toEqual({ ...a.config, seqLen: 2048 });
    for (const [k, t] of a.tensors) {
      expect(sameBytes(b.tensors.get(k)!.data, t.data)).toBe(true);
      expect(sameBytes(c.tensors.get(k)!.data, t.data)).toBe(true);
    }
    for (const ck of [a, b, c]) expect(ck.tokenizer!.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    // A tokenizer.json given explicitly for a llama2.c checkpoint.
    const d = await loadLlamaCheckpoint(BIN, { tokenizer: path.join(dir, 'tokenizer.json') });
    expect(d.tokenizer!.decode(d.tokenizer!.encode('Lily and Tom'))).toBe('Lily and Tom');
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
});

test('tokenizer option errors', async () => {
  const t = await loadLlamaCheckpoint(BIN, { tokenizer: await Llama2cTokenizer.fromFile(TOK) });
  expect(t.tokenizer!.vocabSize).toBe(512);
  expect((await loadLlamaCheckpoint(BIN)).tokenizer).toBeUndefined();
  await expect(loadLlamaCheckpoint(BIN, { tokenizer: 42 as never })).rejects.toThrow(InvalidArgumentError);
  // A tokenizer.bin with a different token count than the model's vocab_size.
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'qk-load-'));
  try {
    const small = path.join(dir, 'tok.bin');
    const bytes = fs.readFileSync(TOK);
    await fs.promises.writeFile(small, bytes.subarray(0, bytes.length - 1));
    await expect(loadLlamaCheckpoint(BIN, { tokenizer: small })).rejects.toThrow(CorruptFileError);
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
});
