// LlamaCausalLM on the real pretrained stories260K (llama2.c checkpoint and GGUF): the goldens of an independent
// reference (models/stories260K/README.md) — top-5 logits, greedy continuations, seeded llama2.c sampling,
// perplexities — then quantization in every mode, GPTQ vs round-to-nearest, and save/load of a quantized model.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { monitorEventLoopDelay } from 'perf_hooks';
import { GPTQConfig, Int4QuantizationConfig, loadModel, Tensor, terminateHdf5Worker } from '../../lib';
import { readLlama2cFile } from '../../lib/io/llama2c';
import { interleavedToHalfSplit } from '../../lib/io/llama-common';
import { writeSafetensors } from '../../lib/io/safetensors';
import { readGgufLlamaFile } from '../../lib/io/gguf-llama';
import { Llama2cTokenizer } from '../../lib/tokenizers/llama2c';
import { LlamaCausalLM, XorShiftRng } from '../../lib/models/llama';

const FIX = path.join(__dirname, '..', 'fixtures');
const MODELS = path.join(__dirname, '..', '..', 'models', 'stories260K');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-llama-'));
afterAll(async () => {
  await terminateHdf5Worker();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const PROMPT_IDS = [1, 403, 407, 261, 378];
const GREEDY_32 = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394];
const TOP5: Array<[number, number]> = [
  [432, 17.7994], // ','
  [383, 14.2813], // ' there'
  [322, 9.7097], // ' in'
  [353, 9.5873], // ' on'
  [323, 9.1342], // 'ut'
];
const text = fs.readFileSync(path.join(MODELS, 'tinystories_valid_head.txt'), 'utf8');
const blocks = text.split(/\n\s*\n/).filter((b) => b.trim().length > 0);

let tokenizer: Llama2cTokenizer;
let fromBin: LlamaCausalLM;
let fromGguf: LlamaCausalLM;
beforeAll(async () => {
  tokenizer = await Llama2cTokenizer.fromFile(path.join(MODELS, 'tok512.bin'));
  fromBin = await LlamaCausalLM.fromCheckpoint(await readLlama2cFile(path.join(MODELS, 'stories260K.bin')), tokenizer);
  const g = await readGgufLlamaFile(path.join(MODELS, 'stories260K.gguf'));
  fromGguf = await LlamaCausalLM.fromCheckpoint(g, g.tokenizer ?? null);
});

async function load(): Promise<LlamaCausalLM> {
  return LlamaCausalLM.fromCheckpoint(await readLlama2cFile(path.join(MODELS, 'stories260K.bin')), tokenizer);
}

describe.each([
  ['llama2.c .bin', () => fromBin],
  ['GGUF', () => fromGguf],
] as const)('float32 stories260K from %s reproduces the goldens', (_name, model) => {
  test('top-5 logits after "Once upon a time" (1e-3) and the prompt encoding', async () => {
    expect(Array.from(model().tokenizer!.encode('Once upon a time', { bos: true }))).toEqual(PROMPT_IDS);
    const logits = ((await model().predict(new Tensor('int32', [1, 5], Int32Array.from(PROMPT_IDS)))) as Tensor).data as Float32Array;
    const last = Array.from(logits.subarray(4 * 512, 5 * 512));
    const top = last.map((v, i) => [i, v]).sort((a, b) => b[1] - a[1]).slice(0, 5);
    top.forEach(([id, v], i) => {
      expect(id).toBe(TOP5[i][0]);
      expect(Math.abs(v - TOP5[i][1])).toBeLessThan(1e-3);
    });
  });

  test('greedy: the 32-token continuation exactly, and the 200-step story', async () => {
    const r = await model().generate('Once upon a time', { maxNewTokens: 32 });
    expect(r.tokens).toEqual(GREEDY_32);
    expect(r.text).toBe(', there was a little girl named Lily. She loved to play outside in the park. One day, she saw');
    const long = await model().generate('Once upon a time', { maxNewTokens: 200 - 5 + 1 });
    const story = 'Once upon a time' + long.text;
    expect(story.startsWith('Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily\'s mom said, "Lily, let\'s go to the park."')).toBe(true);
    expect(story.endsWith("Lily didn't want to help her mom, so she")).toBe(true);
  });

  test('seeded sampling from BOS reproduces llama2.c (temperature 1, seed 42; top-p 1 and 0.95)', async () => {
    const a = await model().generate([1], { maxNewTokens: 40, temperature: 1, seed: 42 });
    expect(a.text.startsWith('Once upon a time, there was a big roof. The fox was ready to look for people inside.')).toBe(true);
    const b = await model().generate([1], { maxNewTokens: 40, temperature: 1, topP: 0.95, seed: 42 });
    expect(b.text.startsWith('Once upon a time, there was a little boy named Timmy. Timmy loved going to the park with his mom.')).toBe(true);
  });

  test('perplexity of the first block (4.136) and the first story (3.543), to 0.5%', async () => {
    const first = await model().perplexity(blocks[0]);
    expect(Math.abs(first.nll - 1.4197)).toBeLessThan(5e-3 * 1.4197);
    expect(Math.abs(first.perplexity / 4.136 - 1)).toBeLessThan(5e-3);
    const story = await model().perplexity(`${blocks[0]}\n${blocks[1]}`);
    expect(Math.abs(story.perplexity / 3.543 - 1)).toBeLessThan(5e-3);
  });
});

test('llama2.c-style perplexity of the whole held-out text: BOS-separated stream in 512-token windows = 5.354 (0.5%)', async () => {
  // blocks as the reference cut them: split at blank lines, whitespace stripped (384,962 tokens with BOS)
  const stripped = text.split('\n\n').map((b) => b.trim()).filter((b) => b.length > 0);
  expect(stripped.length).toBe(4300);
  const ids: number[] = [];
  for (const b of stripped) ids.push(...tokenizer.encode(b, { bos: true }));
  expect(ids.length).toBe(384962);
  const r = await fromBin.perplexity(ids, { window: 512, stride: 512 });
  expect(Math.abs(r.nll - 1.6779)).toBeLessThan(5e-3 * 1.6779);
  expect(Math.abs(r.perplexity / 5.354 - 1)).toBeLessThan(5e-3);
}, 300000);

test('generation keeps the event loop responsive: tiny ops run inline, but every token yields (max delay < 100 ms, or twice the idle delay on a loaded machine)', async () => {
  // The idle loop's own delay on this machine right now (a shared CI box can be far from idle).
  const idle = monitorEventLoopDelay({ resolution: 1 });
  idle.enable();
  await new Promise((r) => setTimeout(r, 300));
  idle.disable();
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  const r = await fromBin.generate('Once upon a time', { maxNewTokens: 150 });
  const wall = performance.now() - t0;
  h.disable();
  expect(r.tokens.length).toBe(150);
  const maxMs = h.max / 1e6;
  expect(maxMs).toBeLessThan(Math.max(100, 2 * (idle.max / 1e6)));
  // a generate() that never yielded would block the loop for its whole duration
  expect(maxMs).toBeLessThan(wall / 2);
});

test('LlamaCausalLM.fromFile loads a Hugging Face folder (half-split q/k rows) into the same model', async () => {
  const ckpt = await readLlama2cFile(path.join(MODELS, 'stories260K.bin'));
  const c = ckpt.config;
  const t = (n: string) => ckpt.tensors.get(n)!;
  const hf: Array<[string, Tensor]> = [['model.embed_tokens.weight', t('tok_embeddings.weight')], ['model.norm.weight', t('norm.weight')]];
  for (let i = 0; i < c.nLayers; i++) {
    const L = `model.layers.${i}`;
    hf.push(
      [`${L}.self_attn.q_proj.weight`, interleavedToHalfSplit(t(`layers.${i}.attention.wq.weight`), c.nHeads)],
      [`${L}.self_attn.k_proj.weight`, interleavedToHalfSplit(t(`layers.${i}.attention.wk.weight`), c.nKvHeads)],
      [`${L}.self_attn.v_proj.weight`, t(`layers.${i}.attention.wv.weight`)],
      [`${L}.self_attn.o_proj.weight`, t(`layers.${i}.attention.wo.weight`)],
      [`${L}.mlp.gate_proj.weight`, t(`layers.${i}.feed_forward.w1.weight`)],
      [`${L}.mlp.down_proj.weight`, t(`layers.${i}.feed_forward.w2.weight`)],
      [`${L}.mlp.up_proj.weight`, t(`layers.${i}.feed_forward.w3.weight`)],
      [`${L}.input_layernorm.weight`, t(`layers.${i}.attention_norm.weight`)],
      [`${L}.post_attention_layernorm.weight`, t(`layers.${i}.ffn_norm.weight`)],
    );
  }
  const dir = path.join(tmp, 'hf-stories');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(hf));
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: c.dim, intermediate_size: c.hiddenDim, num_hidden_layers: c.nLayers,
      num_attention_heads: c.nHeads, num_key_value_heads: c.nKvHeads, vocab_size: c.vocabSize, max_position_embeddings: c.seqLen,
      rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, hidden_act: 'silu',
    }),
  );
  const m = await LlamaCausalLM.fromFile(dir, { tokenizer: path.join(MODELS, 'tok512.bin') });
  const r = await m.generate('Once upon a time', { maxNewTokens: 32 });
  expect(r.tokens).toEqual(GREEDY_32);
});

test('xorshift RNG: run.c sequence (first values for seed 42 are stable across calls)', () => {
  const a = new XorShiftRng(42);
  const b = new XorShiftRng(42);
  const xs = Array.from({ length: 5 }, () => a.nextU32());
  expect(Array.from({ length: 5 }, () => b.nextU32())).toEqual(xs);
  expect(xs.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)).toBe(true);
  expect(new XorShiftRng(42).nextFloat()).toBe(Math.fround((xs[0] >>> 8) / 16777216));
});

describe('quantized stories260K', () => {
  const evalText = blocks.slice(40, 60);
  let floatPpl: number;
  beforeAll(async () => {
    floatPpl = (await fromBin.perplexity(evalText)).perplexity;
  });
  const calib = () => new GPTQConfig({ dataset: blocks.slice(0, 200), tokenizer, numSamples: 16, sequenceLength: 128, weightBits: 4, groupSize: 32 });

  test('int8 keeps the first 16 greedy tokens; every mode has a finite perplexity within measured bounds', async () => {
    // bounds on the perplexity ratio to float32 on this text; measured on 2026-11-24: int8 1.0038, int4 g32 (with the
    // embedding) 1.1511, float8 1.0148, GPTQ 4-bit g32 1.0685 (float 4.6951)
    const modes: Array<[string, (m: LlamaCausalLM) => Promise<unknown>, number]> = [
      ['int8', (m) => m.quantize('int8', { verbose: false }), 1.02],
      ['int4', (m) => m.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 32 }), verbose: false }), 1.25],
      ['float8', (m) => m.quantize('float8', { verbose: false }), 1.05],
      ['gptq 4-bit g32', (m) => m.quantize('gptq', { config: calib(), verbose: false }), 1.15],
    ];
    const lines: string[] = [];
    for (const [name, q, bound] of modes) {
      const m = await load();
      await q(m);
      const ppl = (await m.perplexity(evalText)).perplexity;
      lines.push(`${name}: ${ppl.toFixed(4)} (float ${floatPpl.toFixed(4)}, ratio ${(ppl / floatPpl).toFixed(4)})`);
      expect(Number.isFinite(ppl)).toBe(true);
      expect(ppl / floatPpl).toBeLessThan(bound);
      if (name === 'int8') {
        const r = await m.generate('Once upon a time', { maxNewTokens: 16 });
        expect(r.tokens).toEqual(GREEDY_32.slice(0, 16));
      }
    }
    console.log(lines.join('\n'));
  }, 120000);

  test('GPTQ 4-bit beats round-to-nearest 4-bit at the same group size', async () => {
    const g = await load();
    await g.quantize('gptq', { config: calib(), verbose: false });
    const gptq = (await g.perplexity(evalText)).perplexity;
    // round-to-nearest with the same parameter rules = GPTQ with an identity Hessian, i.e. no error feedback:
    // calibrate on a dataset where every input is dead is not possible, so use the int4 grouped mode (asymmetric
    // min/max per group of 32, the same rule) as the round-to-nearest baseline
    const r = await load();
    await r.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 32 }), filters: (l) => !l.path.includes('token_embedding'), verbose: false });
    const rtn = (await r.perplexity(evalText)).perplexity;
    console.log(`GPTQ 4-bit g32 ${gptq.toFixed(4)} vs round-to-nearest int4 g32 ${rtn.toFixed(4)} (float ${floatPpl.toFixed(4)})`);
    expect(gptq).toBeLessThan(rtn);
  }, 120000);

  test('presets: saveToPreset -> fromPreset (float32 and int8) generate identically; int8 weights ~4x smaller', async () => {
    const f = await load();
    const fdir = path.join(tmp, 'preset-f32');
    await f.saveToPreset(fdir);
    const q = await load();
    await q.quantize('int8', { verbose: false });
    const want = await q.generate('Once upon a time', { maxNewTokens: 24 });
    const qdir = path.join(tmp, 'preset-int8');
    await q.saveToPreset(qdir);
    for (const file of ['config.json', 'model.weights.h5', 'tokenizer.json', 'metadata.json', 'assets/tokenizer/tokenizer.bin']) {
      expect(fs.existsSync(path.join(qdir, file))).toBe(true);
    }
    const again = await LlamaCausalLM.fromPreset(qdir);
    expect(again.decoderBlocks[2].sublayers.down.quantizationMode).toBe('int8');
    const got = await again.generate('Once upon a time', { maxNewTokens: 24 });
    expect(got.tokens).toEqual(want.tokens);
    expect(got.text).toBe(want.text);
    const f2 = await LlamaCausalLM.fromPreset(fdir);
    expect((await f2.generate('Once upon a time', { maxNewTokens: 32 })).tokens).toEqual(GREEDY_32);
    // stored weight bytes shrink ~3.8x (the RMSNorm gains stay float32); the .h5 file adds ~1.7 KB of HDF5 metadata
    // per dataset, which dominates for this 260K-parameter model (measured: 1,175,104 -> 421,424 bytes, 2.79x) and
    // vanishes for real models (3.98x for 12.6M parameters, see the README)
    const stored = (m: LlamaCausalLM) => m.variables.reduce((a, v) => a + v.value.byteLength, 0);
    expect(stored(f) / stored(q)).toBeGreaterThan(3.7);
    const ratio = fs.statSync(path.join(fdir, 'model.weights.h5')).size / fs.statSync(path.join(qdir, 'model.weights.h5')).size;
    console.log(`preset weights: stored bytes float32 / int8 = ${(stored(f) / stored(q)).toFixed(2)}, files ${ratio.toFixed(2)}`);
    expect(ratio).toBeGreaterThan(2.5);
    await expect(LlamaCausalLM.fromPreset(path.join(tmp, 'nope'))).rejects.toMatchObject({ code: 'QK_CORRUPT_FILE' });
  }, 120000);

  test('a saved quantized LlamaCausalLM reloads and generates identically', async () => {
    const m = await load();
    await m.quantize('gptq', { config: calib(), verbose: false });
    const want = await m.generate('Once upon a time', { maxNewTokens: 24 });
    const file = path.join(tmp, 'stories-gptq.keras');
    await m.save(file);
    const loaded = (await loadModel(file)) as LlamaCausalLM;
    expect(loaded).toBeInstanceOf(LlamaCausalLM);
    loaded.tokenizer = tokenizer;
    const got = await loaded.generate('Once upon a time', { maxNewTokens: 24 });
    expect(got.tokens).toEqual(want.tokens);
    const q = loaded.decoderBlocks[0].sublayers.query;
    expect(q.quantizationMode).toBe('gptq');
  }, 120000);
});
