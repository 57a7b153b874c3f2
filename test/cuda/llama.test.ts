// The Llama float-path kernels on the CUDA device (cuda/llama.cu) vs the CPU reference ops ('ref' ISA) over the
// size sweep: RMSNorm, RoPE, row softmax, SiLU·mul and causal GQA attention over a KV cache, by float32 tolerance
// (parallel sums; CUDA's expf / cosf / sinf may differ from glibc in the last bit). Without a device: every op
// rejects with QK_UNSUPPORTED and shape errors are reported before any device work.
import {
  attentionDecode, capabilities, createKVCacheView, cudaAttentionDecode, cudaAvailable, cudaRmsNorm, cudaRope, cudaSiluMul,
  cudaSoftmaxRows, kvCacheWrite, rmsNorm, rope, siluMul, softmaxRows,
} from '../../lib';
import { loadNative } from '../../lib/native/load';
import { randomF32 } from '../helpers';

const caps = capabilities();
const device = cudaAvailable();
if (!device) {
  // eslint-disable-next-line no-console
  console.log(
    `CUDA Llama device tests skipped: ${caps.cuda.compiled ? `no CUDA device (${caps.cuda.error ?? 'none found'})` : 'quantkit was built without CUDA'}`,
  );
}

function maxRel(got: Float32Array, want: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; ++i) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + 1e-3));
  return got.length === want.length ? worst : Infinity;
}

describe('CUDA Llama ops without a device', () => {
  (device ? test.skip : test)('every op rejects with QK_UNSUPPORTED', async () => {
    const x = new Float32Array(8);
    await expect(cudaRmsNorm(x, new Float32Array(4), 2, 4, 1e-5)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaRope(x, Int32Array.of(0), 1, 2, 4, 10000)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaSoftmaxRows(x, 2, 4)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaSiluMul(x, x)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaAttentionDecode(x, x, x, { T: 1, heads: 2, kvHeads: 1, headDim: 4, maxSeq: 2, pos0: 0 }))
      .rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
  });
  test('the raw entry point checks every length and dimension before any device work', () => {
    const n = loadNative();
    const dims = (...v: number[]) => new Float64Array([...v, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8));
    expect(() => n.cudaLlama(0, 0, new Float32Array(7), new Float32Array(4), null, null, dims(2, 4), 1e-5, 0, new Float32Array(8)))
      .toThrow(expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }));
    expect(() => n.cudaLlama(0, 1, new Float32Array(6), null, null, Int32Array.of(0), dims(1, 0, 2, 0, 3), 0, 1e4, new Float32Array(6)))
      .toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' })); // odd headDim
    expect(() => n.cudaLlama(0, 4, new Float32Array(8), new Float32Array(8), new Float32Array(8), null, dims(0, 0, 2, 1, 4, 2, 2, 1), 0, 0, new Float32Array(8)))
      .toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' })); // pos0 + T > maxSeq
    expect(() => n.cudaLlama(0, 7 as 0, new Float32Array(1), null, null, null, dims(), 0, 0, new Float32Array(1)))
      .toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
  });
});

(device ? describe : describe.skip)('CUDA Llama ops vs the CPU reference (device present)', () => {
  test('RMSNorm, softmax and SiLU·mul over the size sweep', async () => {
    let seed = 1;
    for (const [rows, n] of [[1, 1], [1, 7], [3, 64], [5, 257], [2, 4096], [33, 1000]]) {
      const x = randomF32(rows * n, seed++, 3), w = randomF32(n, seed++, 1);
      const want = await rmsNorm(x, w, 1e-5, { isa: 'ref' });
      expect([rows, n, maxRel(await cudaRmsNorm(x, w, rows, n, 1e-5), want) < 1e-5]).toEqual([rows, n, true]);
      const sm = await softmaxRows(Float32Array.from(x), { n, isa: 'ref' });
      expect([rows, n, maxRel(await cudaSoftmaxRows(x, rows, n), sm) < 1e-5]).toEqual([rows, n, true]);
      const up = randomF32(rows * n, seed++, 2);
      const sw = await siluMul(x, up, { isa: 'ref' });
      expect(maxRel(await cudaSiluMul(x, up), sw)).toBeLessThan(1e-5);
    }
  });
  test('RoPE at positions up to 4095', async () => {
    for (const [rows, heads, headDim] of [[1, 1, 2], [3, 4, 64], [7, 8, 128]]) {
      const x = randomF32(rows * heads * headDim, rows * 13 + heads, 1);
      const pos = Int32Array.from({ length: rows }, (_, i) => (i * 977) % 4096);
      const want = await rope(Float32Array.from(x), pos, { headDim, isa: 'ref' });
      expect(maxRel(await cudaRope(x, pos, rows, heads, headDim, 10000), want)).toBeLessThan(2e-5);
    }
  });
  test('causal GQA attention over a KV cache (decode and prefill chunks)', async () => {
    for (const [T, heads, kvHeads, headDim, maxSeq, pos0] of [[1, 1, 1, 4, 1, 0], [1, 8, 4, 64, 300, 257], [5, 4, 2, 32, 64, 10], [16, 6, 6, 128, 16, 0]]) {
      const cache = createKVCacheView(kvHeads, maxSeq, headDim);
      const total = pos0 + T;
      const k = randomF32(total * kvHeads * headDim, T + heads, 1), v = randomF32(total * kvHeads * headDim, T + heads + 1, 1);
      await kvCacheWrite(cache, k, v, Int32Array.from({ length: total }, (_, i) => i));
      const q = randomF32(T * heads * headDim, 99, 1);
      const want = await attentionDecode(q, cache, { heads, startPos: pos0, isa: 'ref' });
      const got = await cudaAttentionDecode(q, cache.k, cache.v, { T, heads, kvHeads, headDim, maxSeq, pos0 });
      expect([T, heads, kvHeads, headDim, maxRel(got, want as Float32Array) < 1e-4]).toEqual([T, heads, kvHeads, headDim, true]);
    }
  });
});
