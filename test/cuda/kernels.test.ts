// CUDA Dense GEMMs (int8 W8A8, fp8), fused dequantize GEMM/GEMV (GPTQ 2/3/4/8-bit, grouped int4), packing, fp8
// conversion and device buffers vs the CPU reference ops ('ref' ISA). The device comparisons run only where
// quantkit was built with CUDA and a device is visible; elsewhere the tests check that every op refuses cleanly
// with QK_UNSUPPORTED and skip the rest (the host-side layout checks are in host-layout.test.ts).
import {
  capabilities, cudaAvailable, cudaDenseFp8, cudaDenseW8A8, cudaDenseWq, cudaDeviceHas, cudaFp8Convert, cudaPack,
  DeviceBuffer, UnsupportedError,
} from '../../lib';
import { loadNative } from '../../lib/native/load';
import { randomF32 } from '../helpers';

const caps = capabilities();
const device = cudaAvailable();
if (!device) {
  // eslint-disable-next-line no-console
  console.log(
    `CUDA kernel device tests skipped: ${caps.cuda.compiled ? `no CUDA device (${caps.cuda.error ?? 'none found'})` : 'quantkit was built without CUDA'}`,
  );
}
const native = loadNative();

function randInt8(n: number, seed: number): Int8Array {
  const out = new Int8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; ++i) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = (s % 255) - 127;
  }
  return out;
}
function randBytes(n: number, seed: number, max: number): Uint8Array {
  const b = new Uint8Array(randInt8(n, seed).buffer);
  for (let i = 0; i < n; ++i) b[i] %= max + 1;
  return b;
}
function relErr(got: Float32Array, want: Float32Array): number {
  let num = 0, den = 1e-12;
  for (let i = 0; i < want.length; ++i) {
    num = Math.max(num, Math.abs(got[i] - want[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return num / den;
}

const SHAPES: Array<[number, number, number]> = [[1, 1, 1], [1, 70, 100], [3, 64, 64], [65, 130, 129], [17, 8, 300], [128, 256, 512], [1, 4096, 4096]];

describe('CUDA kernels without a device', () => {
  (device ? test.skip : test)('every op rejects with QK_UNSUPPORTED and the process survives', async () => {
    const x = new Float32Array(4);
    await expect(cudaDenseW8A8(x, new Int8Array(4), new Float32Array(2), 2, 2, 2)).rejects.toBeInstanceOf(UnsupportedError);
    await expect(cudaDenseFp8(x, 1, new Uint8Array(4), 1, 2, 2, 2)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaDenseWq(x, new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, 2, 2, 2)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaPack('packInt4', new Uint8Array(4), 1, 4, 1)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    await expect(cudaFp8Convert(x, 'e4m3fn')).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    expect(() => DeviceBuffer.alloc(16)).toThrow(expect.objectContaining({ code: 'QK_UNSUPPORTED' }));
    expect(cudaDeviceHas('int8Mma')).toBe(false);
  });
  (caps.cuda.compiled && !device ? test : test.skip)('the raw native entry points refuse with a CUDA reason, not a crash', async () => {
    const y = new Float32Array(4);
    await expect(native.cudaDenseW8A8(0, new Float32Array(4), 2, 2, 2, new Int8Array(4), new Float32Array(2), null, -127, 127, 1e-7, y))
      .rejects.toMatchObject({ code: 'QK_UNSUPPORTED', message: expect.stringMatching(/CUDA device 0 is not available/) });
    expect(() => native.cudaBufferAlloc(0, 16)).toThrow(expect.objectContaining({ code: 'QK_UNSUPPORTED' }));
    expect(() => native.cudaMemoryStats(0)).toThrow(expect.objectContaining({ code: 'QK_UNSUPPORTED' }));
  });
  test('argument errors are reported synchronously, before any device work', () => {
    expect(() => native.cudaDenseW8A8(0, new Float32Array(3), 2, 2, 2, new Int8Array(4), new Float32Array(2), null, -127, 127, 1e-7, new Float32Array(4)))
      .toThrow(expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }));
    expect(() => native.cudaDenseWq(0, 0, new Float32Array(4), 2, 2, 2, new Uint8Array(2), 5, false, new Float32Array(2), new Uint8Array(2), 2, null, new Float32Array(4)))
      .toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
    // g_idx must have K entries; the path is 0, 1 or 2.
    expect(() => native.cudaDenseWq(0, 0, new Float32Array(4), 2, 2, 2, new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, null, new Float32Array(4), new Int32Array(3)))
      .toThrow(expect.objectContaining({ code: 'QK_SHAPE_MISMATCH' }));
    expect(() => native.cudaDenseWq(0, 0, new Float32Array(4), 2, 2, 2, new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, null, new Float32Array(4), null, 3 as 0))
      .toThrow(expect.objectContaining({ code: 'QK_INVALID_ARGUMENT' }));
  });
  test("cudaDenseWq rejects an unknown path naming options.path", async () => {
    await expect(cudaDenseWq(new Float32Array(4), new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, 2, 2, 2, { path: 'fast' as 'mma' }))
      .rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringMatching(/options\.path/) });
  });
});

(device ? describe : describe.skip)('CUDA kernels vs the CPU reference (device present)', () => {
  test('int8 W8A8 GEMM is bit-exact with dense_w8a8 (ref) over the size sweep, with and without bias', async () => {
    let seed = 1;
    for (const [M, N, K] of SHAPES) {
      const x = randomF32(M * K, seed++, 3);
      const w = randInt8(K * N, seed++);
      const ws = randomF32(N, seed++, 1).map((v) => Math.abs(v) + 0.5);
      for (const bias of [null, randomF32(N, seed++, 2)]) {
        const want = new Float32Array(M * N);
        await native.denseW8A8(M, N, K, x, w, ws, bias, -127, 127, 1e-7, want, 'ref');
        const got = await cudaDenseW8A8(x, w, ws, M, N, K, { bias });
        expect([M, N, K, Buffer.compare(Buffer.from(got.buffer), Buffer.from(want.buffer))]).toEqual([M, N, K, 0]);
      }
    }
  });
  test('fp8 GEMM matches dense_fp8 (sm_89+) or refuses with QK_UNSUPPORTED', async () => {
    let seed = 100;
    for (const [M, N, K] of SHAPES) {
      const x = randomF32(M * K, seed++, 3);
      const w8 = new Uint8Array(K * N);
      native.convertSync('f32_to_e4m3fn', randomF32(K * N, seed++, 4), w8);
      const want = new Float32Array(M * N);
      await native.denseFp8(M, N, K, x, 0.05, w8, 0.5, null, want, 'ref');
      if (!cudaDeviceHas('fp8Mma')) {
        await expect(cudaDenseFp8(x, 0.05, w8, 0.5, M, N, K)).rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
        return;
      }
      const got = await cudaDenseFp8(x, 0.05, w8, 0.5, M, N, K);
      expect(relErr(got, want)).toBeLessThan(1e-4);
    }
  });
  test('fused dequantize GEMM/GEMV matches dense_gptq (2/3/4/8 bits) and dense_w4g, float32 activations', async () => {
    let seed = 200;
    for (const [M, N, K] of SHAPES) {
      for (const bits of [2, 3, 4, 8] as const) {
        const group = K >= 128 ? 128 : Math.max(1, K >> 1);
        const G = Math.ceil(K / group);
        const x = randomF32(M * K, seed++, 1);
        const scale = randomF32(G * N, seed++, 0.1);
        const zero = randBytes(G * N, seed++, (1 << bits) - 1);
        const q = randBytes(N * K, seed++, (1 << bits) - 1);
        const wq = new Uint8Array(K * Math.ceil((bits * N) / 8));
        await native.gptqRuntimePack(q, N, K, null, bits, wq, 'ref');
        const want = new Float32Array(M * N);
        await native.denseGptq(M, N, K, x, wq, bits, scale, zero, group, null, want, 'ref');
        const got = (await cudaDenseWq(x, wq, bits, false, scale, zero, group, M, N, K)) as Float32Array;
        expect([M, N, K, bits, relErr(got, want) < 1e-4]).toEqual([M, N, K, bits, true]);
        if (bits === 4) {
          const w4 = randBytes(K * Math.ceil(N / 2), seed++, 255);
          const z4 = randInt8(G * N, seed++).map((v) => (v % 8));
          const want4 = new Float32Array(M * N);
          await native.denseW4G(M, N, K, x, w4, scale, z4, group, null, want4, 'ref');
          const got4 = (await cudaDenseWq(x, w4, 4, true, scale, z4, group, M, N, K)) as Float32Array;
          expect(relErr(got4, want4)).toBeLessThan(1e-4);
        }
      }
    }
  });
  test('float16 / bfloat16 activations give the float32 result within their precision', async () => {
    const [M, N, K, group] = [3, 300, 256, 64];
    const bits = 4 as const;
    const x = randomF32(M * K, 7, 1);
    const G = K / group;
    const scale = randomF32(G * N, 8, 0.05);
    const zero = randBytes(G * N, 9, 15);
    const wq = randBytes(K * Math.ceil((bits * N) / 8), 10, 255);
    const want = (await cudaDenseWq(x, wq, bits, false, scale, zero, group, M, N, K)) as Float32Array;
    for (const [dtype, kind, back] of [['float16', 'f32_to_f16', 'f16_to_f32'], ['bfloat16', 'f32_to_bf16', 'bf16_to_f32']] as const) {
      const xh = new Uint16Array(M * K);
      native.convertSync(kind, x, xh);
      const yh = (await cudaDenseWq(xh, wq, bits, false, scale, zero, group, M, N, K, { dtype })) as Uint16Array;
      const y = new Float32Array(M * N);
      native.convertSync(back, yh, y);
      expect(relErr(y, want)).toBeLessThan(dtype === 'float16' ? 2e-2 : 5e-2);
    }
  });
  test('Tensor-Core path (float16 / bfloat16 mma, sm_80+) and the CUDA-core path match dense_gptq / dense_w4g over the sweep, with and without g_idx', async () => {
    const mma = cudaDeviceHas('f16Mma');
    let seed = 900;
    for (const [M, N, K] of [...SHAPES, [64, 64, 32], [200, 520, 384]] as Array<[number, number, number]>) {
      for (const bits of [2, 3, 4, 8] as const) {
        const group = K >= 128 ? 128 : Math.max(1, K >> 1);
        const G = Math.ceil(K / group);
        const x32 = randomF32(M * K, seed++, 1);
        const scale = randomF32(G * N, seed++, 0.05);
        const zero = randBytes(G * N, seed++, (1 << bits) - 1);
        const q = randBytes(N * K, seed++, (1 << bits) - 1);
        // act order: runtime rows permuted (reference) vs rows in input order addressed through g_idx (device)
        const perm = Int32Array.from({ length: K }, (_, i) => i);
        for (let i = K - 1; i > 0; --i) { const j = (i * 7919 + seed) % (i + 1); [perm[i], perm[j]] = [perm[j], perm[i]]; }
        const gIdx = new Int32Array(K);
        for (let j = 0; j < K; ++j) gIdx[perm[j]] = Math.floor(j / group);
        const rowBytes = Math.ceil((bits * N) / 8);
        const wRt = new Uint8Array(K * rowBytes), wIn = new Uint8Array(K * rowBytes);
        await native.gptqRuntimePack(q, N, K, perm, bits, wRt, 'ref');
        await native.gptqRuntimePack(q, N, K, null, bits, wIn, 'ref');
        for (const [dtype, kind, back, tol] of [['float16', 'f32_to_f16', 'f16_to_f32', 4e-3], ['bfloat16', 'f32_to_bf16', 'bf16_to_f32', 3e-2]] as const) {
          const xh = new Uint16Array(M * K);
          native.convertSync(kind, x32, xh);
          const xw = new Float32Array(M * K); // the 16-bit activations, widened: what the reference sees
          native.convertSync(back, xh, xw);
          const xp = new Float32Array(M * K);
          for (let i = 0; i < M; ++i) for (let k = 0; k < K; ++k) xp[i * K + k] = xw[i * K + perm[k]];
          // reference 1: runtime layout (act-order permutation applied) on permuted x; reference 2: in-order rows
          const wantPerm = new Float32Array(M * N), wantInOrder = new Float32Array(M * N);
          await native.denseGptq(M, N, K, xp, wRt, bits, scale, zero, group, null, wantPerm, 'ref');
          await native.denseGptq(M, N, K, xw, wIn, bits, scale, zero, group, null, wantInOrder, 'ref');
          for (const path of mma ? (['simt', 'mma'] as const) : (['simt'] as const)) {
            for (const withGIdx of [false, true]) {
              const yh = (await cudaDenseWq(xh, wIn, bits, false, scale, zero, group, M, N, K,
                { dtype, path, gIdx: withGIdx ? gIdx : null })) as Uint16Array;
              const y = new Float32Array(M * N);
              native.convertSync(back, yh, y);
              const err = relErr(y, withGIdx ? wantPerm : wantInOrder);
              expect([M, N, K, bits, dtype, path, withGIdx, err < tol]).toEqual([M, N, K, bits, dtype, path, withGIdx, true]);
            }
          }
        }
      }
    }
  }, 600000);
  test("path 'mma' refuses float32 activations and devices below 8.0 with a clear error", async () => {
    const x = new Float32Array(4);
    await expect(cudaDenseWq(x, new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, 2, 2, 2, { path: 'mma' }))
      .rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT' });
    if (!cudaDeviceHas('f16Mma')) {
      await expect(cudaDenseWq(new Uint16Array(4), new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, 2, 2, 2, { path: 'mma', dtype: 'float16' }))
        .rejects.toMatchObject({ code: 'QK_UNSUPPORTED' });
    }
  });
  test('g_idx entries outside [0, G) are rejected before any device work', async () => {
    await expect(cudaDenseWq(new Float32Array(4), new Uint8Array(2), 4, false, new Float32Array(2), new Uint8Array(2), 2, 2, 2, 2, { gIdx: new Int32Array([0, 1]) }))
      .rejects.toMatchObject({ code: 'QK_INVALID_ARGUMENT', message: expect.stringMatching(/g_idx\[1\] = 1 is outside \[0, 1\)/) });
  });
  test('pack/unpack int4/int2 and fp8 conversions are bit-exact with the CPU', async () => {
    for (const [outer, len, inner] of [[1, 1, 1], [2, 7, 3], [3, 64, 33]]) {
      const src = randInt8(outer * len * inner, outer + len + inner);
      const cpu4 = new Uint8Array(outer * Math.ceil(len / 2) * inner);
      await native.packInt4(src, outer, len, inner, cpu4, 'ref');
      expect(await cudaPack('packInt4', src, outer, len, inner)).toEqual(cpu4);
      const cpu2 = new Uint8Array(outer * Math.ceil(len / 4) * inner);
      await native.packInt2(src, outer, len, inner, cpu2, 'ref');
      expect(await cudaPack('packInt2', src, outer, len, inner)).toEqual(cpu2);
      const un = await cudaPack('unpackInt4Signed', cpu4, outer, len, inner);
      expect(Array.from(new Int8Array(un.buffer))).toEqual(Array.from(src).map((v) => (((v & 15) ^ 8) - 8)));
    }
    const f = randomF32(4096, 3, 600);
    for (const [fmt, kind] of [['e4m3fn', 'f32_to_e4m3fn'], ['e5m2', 'f32_to_e5m2']] as const) {
      const cpu = new Uint8Array(f.length);
      native.convertSync(kind, f, cpu);
      expect(await cudaFp8Convert(f, fmt)).toEqual(cpu);
    }
  });
  test('DeviceBuffer round trip, dispose, memory stats', async () => {
    const data = randomF32(1000, 5, 1);
    const buf = DeviceBuffer.alloc(data.byteLength);
    await buf.upload(data);
    const back = new Float32Array(1000);
    await buf.download(back);
    expect(back).toEqual(data);
    buf.dispose();
    expect(buf.alive).toBe(false);
    await expect(buf.download(back)).rejects.toMatchObject({ code: 'QK_DISPOSED' });
    expect(() => DeviceBuffer.alloc(2 ** 50)).toThrow(expect.objectContaining({ code: 'QK_OUT_OF_MEMORY' }));
  });
});
