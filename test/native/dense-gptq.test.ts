// GPTQ inference (dense_gptq over the GPTQ runtime layout): the scalar reference against a float64 JS
// dequantize-then-matmul written here, every optimised ISA against the reference over awkward sizes (all bit
// widths, groups, with and without bias and act-order permutation), the runtime packing bit-exact against an
// independent JS packer and round-tripping on every ISA, and bad arguments rejected with typed errors.
import {
  Tensor,
  _kernelImpls,
  IsaName,
  denseGptq,
  packGptqRuntime,
  unpackGptqRuntime,
  gptqRuntimeRowBytes,
  GptqBits,
  InvalidArgumentError,
  ShapeMismatchError,
  QkError,
} from '../../lib';
import { loadNative } from '../../lib/native/load';
import { firstMismatch, randomF32, rng } from '../helpers';

const ISAS = _kernelImpls('dense_gptq') as IsaName[];
const OPT = ISAS.filter((i) => i !== 'ref');
const BITS: GptqBits[] = [2, 3, 4, 8];

/** Independent JS packer of the documented rule: row k is a little-endian bit stream, level j at bits [b*j, b*j+b). */
function packJs(levels: Uint8Array, N: number, K: number, bits: number, perm: Int32Array | null): Uint8Array {
  const rb = Math.ceil((bits * N) / 8);
  const out = new Uint8Array(K * rb);
  for (let k = 0; k < K; k++) {
    const src = perm ? perm[k] : k;
    for (let j = 0; j < N; j++) {
      const v = levels[j * K + src];
      for (let b = 0; b < bits; b++) {
        if ((v >> b) & 1) {
          const bit = bits * j + b;
          out[k * rb + (bit >> 3)] |= 1 << (bit & 7);
        }
      }
    }
  }
  return out;
}

interface Problem {
  bits: GptqBits;
  N: number;
  K: number;
  group: number;
  levels: Uint8Array; // [N, K], Keras layout
  perm: Int32Array | null;
  packed: Uint8Array; // runtime layout
  scale: Float32Array; // [G, N]
  zero: Uint8Array; // [G, N]
  bias: Float32Array | null;
  wAbs: Float64Array; // |W_hat| [K, N] in runtime order, for the tolerance
  wScale: Float64Array; // |W_hat| + s * 2^(bits-1): the SIMD GEMV's error scale (see magnitude())
}

function shuffled(K: number, seed: number): Int32Array {
  const r = rng(seed);
  const p = Int32Array.from({ length: K }, (_, i) => i);
  for (let i = K - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** xorshift32: the bulk generator for levels (cheaper than helpers' rng under jest's module wrapper). */
function xorshift(seed: number): () => number {
  let s = seed | 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function makeProblem(bits: GptqBits, N: number, K: number, group: number, withPerm: boolean, withBias: boolean, seed: number): Problem {
  const r = xorshift(seed * 7919 + 1);
  const maxq = (1 << bits) - 1;
  const G = Math.ceil(K / group);
  const levels = new Uint8Array(N * K);
  for (let i = 0; i < levels.length; i++) levels[i] = Math.floor(r() * (maxq + 1));
  const perm = withPerm ? shuffled(K, seed + 1) : null;
  const scale = new Float32Array(G * N);
  const zero = new Uint8Array(G * N);
  for (let i = 0; i < G * N; i++) {
    scale[i] = 0.001 + 0.05 * r();
    zero[i] = Math.floor(r() * (maxq + 1));
  }
  const bias = withBias ? randomF32(N, seed + 2) : null;
  const packed = packJs(levels, N, K, bits, perm);
  const wAbs = new Float64Array(K * N);
  const wScale = new Float64Array(K * N);
  const centre = 2 ** (bits - 1);
  for (let k = 0, g = 0; k < K; k++) {
    if (k > 0 && k % group === 0) g++;
    const src = perm ? perm[k] : k;
    for (let j = 0, o = k * N, go = g * N; j < N; j++) {
      const sc = scale[go + j];
      const a = Math.abs((levels[j * K + src] - zero[go + j]) * sc);
      wAbs[o + j] = a;
      wScale[o + j] = a + sc * centre;
    }
  }
  return { bits, N, K, group, levels, perm, packed, scale, zero, bias, wAbs, wScale };
}

function weights(p: Problem) {
  return { bits: p.bits, kernel: p.packed, scale: p.scale, zero: p.zero, groupSize: p.group };
}

/** x in runtime order from x in input order: x'[k] = x[perm[k]]. */
function permuteX(x: Float32Array, M: number, K: number, perm: Int32Array | null): Float32Array {
  if (!perm) return x;
  const out = new Float32Array(M * K);
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) out[i * K + k] = x[i * K + perm[k]];
  return out;
}

/** float64 dequantize-then-matmul in INPUT order (weights W[in, out] rebuilt from the Keras [out, in] levels). */
function naive(p: Problem, x: Float32Array, M: number): Float64Array {
  const { N, K, group, levels, perm, scale, zero, bias } = p;
  const rowOfInput = new Int32Array(K);
  for (let k = 0; k < K; k++) rowOfInput[perm ? perm[k] : k] = k;
  const y = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let kin = 0; kin < K; kin++) {
        const g = Math.floor(rowOfInput[kin] / group);
        const w = Math.fround((levels[j * K + kin] - zero[g * N + j]) * scale[g * N + j]);
        s += x[i * K + kin] * w;
      }
      y[i * N + j] = s + (bias ? bias[j] : 0);
    }
  }
  return y;
}

/**
 * sum_k |x'[i,k]| |W_hat[k,j]| + |bias[j]|: the scale every rounding error is measured against. With simd = true
 * |W_hat| is replaced by |W_hat| + s * 2^(bits-1): the optimised GEMV sums x * (q - 2^(bits-1)) per group and
 * subtracts (z - 2^(bits-1)) * sum x at the group's end (documented in kernels.h), so its rounding errors scale
 * with the centred levels and zero points, not with |q - z| alone (an all-zero column, q == z, gives tiny noise).
 */
function magnitude(p: Problem, xr: Float32Array, M: number, simd = false): Float64Array {
  const { N, K, bias } = p;
  const wAbs = simd ? p.wScale : p.wAbs;
  const m = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const a = Math.abs(xr[i * K + k]);
      if (a === 0) continue;
      for (let j = 0; j < N; j++) m[i * N + j] += a * wAbs[k * N + j];
    }
    if (bias) for (let j = 0; j < N; j++) m[i * N + j] += Math.abs(bias[j]);
  }
  return m;
}

/** Tolerances, relative to the magnitude above: float32 sums of up to ~600 terms (ref: one chain in k order;
 * SIMD: FMA chains, per-group partial sums t and s * (t - z * sum x), blocked GEMM order). */
const TOL = {
  refVsFloat64: 2e-6,
  isaVsRef: { 2: 4e-6, 3: 4e-6, 4: 4e-6, 8: 4e-6 } as Record<GptqBits, number>,
};

function worstRelative(a: ArrayLike<number>, b: ArrayLike<number>, mag: Float64Array): { err: number; at: number } {
  let err = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (mag[i] + 1e-30);
    if (!(e <= err)) {
      err = e;
      at = i;
    }
  }
  return { err, at };
}

describe('reference kernel vs float64 JS dequantize-then-matmul', () => {
  test.each(BITS)('%i bits: groups, perm, bias, batch', async (bits) => {
    const cases: Array<[number, number, number, number, boolean, boolean]> = [
      [1, 17, 33, 8, false, true],
      [3, 33, 129, 32, true, false],
      [2, 5, 300, 128, true, true],
      [4, 129, 17, 17, false, false],
      [1, 3, 100, 1, true, true],
    ];
    let seed = 100 * bits;
    for (const [M, N, K, group, withPerm, withBias] of cases) {
      const p = makeProblem(bits, N, K, group, withPerm, withBias, seed++);
      const x = randomF32(M * K, seed++);
      const xr = permuteX(x, M, K, p.perm);
      const y = await denseGptq(new Tensor('float32', [M, K], xr), weights(p), N, p.bias, { isa: 'ref' });
      expect(y.shape).toEqual([M, N]);
      const { err, at } = worstRelative(y.data as Float32Array, naive(p, x, M), magnitude(p, xr, M));
      if (err > TOL.refVsFloat64) throw new Error(`bits ${bits} M ${M} N ${N} K ${K} group ${group}: rel err ${err} at ${at}`);
    }
  });

  test('known values: 3-bit levels straddling bytes, zero points, one group (-1) and rank-3 input', async () => {
    // N = 3, K = 2; W_hat[k, j] = (q - z) * s with q[out j, in k] = [[7, 1], [2, 5], [0, 6]], z = [3, 2, 1], s = 0.5
    const levels = new Uint8Array([7, 1, 2, 5, 0, 6]);
    const kernel = await packGptqRuntime(levels, 3, 2, 3);
    // row 0 levels (7, 2, 0) at bits 0-2, 3-5, 6-8 -> 0b00010111, 0; row 1 (1, 5, 6): 6 = 0b110 straddles the
    // bytes (bits 6, 7 = 0, 1 and bit 8 = 1) -> 0b10101001, 0b1
    expect(Array.from(kernel)).toEqual([0x17, 0x00, 0xa9, 0x01]);
    const w = { bits: 3 as const, kernel, scale: new Float32Array([0.5, 0.5, 0.5]), zero: new Uint8Array([3, 2, 1]), groupSize: -1 };
    const x = new Tensor('float32', [1, 2, 2], new Float32Array([1, 0, 1, 2]));
    // the exact weight-only kernel (the default on AVX-512 VNNI quantizes activations, docs/lowbit-a8.md)
    const y = await denseGptq(x, w, 3, new Float32Array([0, 0, 10]), { weightOnlyExact: true });
    // W_hat = [[2, 0, -0.5], [-1, 1.5, 2.5]]
    expect(y.shape).toEqual([1, 2, 3]);
    expect(Array.from(y.data)).toEqual([2, 0, 9.5, 0, 3, 14.5]);
  });
});

describe('every optimised ISA vs the reference', () => {
  const Ms = [1, 2, 3, 17, 33];
  const Ns = [1, 3, 17, 33, 127, 129];
  const Ks = [1, 3, 17, 33, 127, 129, 300];
  const x64 = randomF32(33 * 300, 7);

  test.each(BITS)('%i bits over M x N x K x group, with and without bias and perm', async (bits) => {
    if (OPT.length === 0) return;
    let seed = 1000 * bits;
    let checked = 0;
    for (const N of Ns) {
      for (const K of Ks) {
        for (const group of [...new Set([1, 3, 32, 128, K])]) {
          const variant = seed % 4;
          const p = makeProblem(bits, N, K, group, variant >= 2, variant % 2 === 1, seed++);
          for (const M of Ms) {
            const xr = x64.subarray(0, M * K);
            const xt = new Tensor('float32', [M, K], xr);
            const ref = await denseGptq(xt, weights(p), N, p.bias, { isa: 'ref' });
            const mag = magnitude(p, xr, M, true);
            for (const isa of OPT) {
              const y = await denseGptq(xt, weights(p), N, p.bias, { isa, weightOnlyExact: true });
              const { err, at } = worstRelative(y.data as Float32Array, ref.data as Float32Array, mag);
              if (!(err <= TOL.isaVsRef[bits])) {
                throw new Error(`${isa} bits ${bits} M ${M} N ${N} K ${K} group ${group}: rel err ${err} at ${at}`);
              }
              checked++;
            }
          }
        }
      }
    }
    expect(checked).toBe(OPT.length * Ms.length * Ns.length * Ks.reduce((a, K) => a + new Set([1, 3, 32, 128, K]).size, 0));
  });

  test.each(BITS)('%i bits, sizes that split work over threads, strips and K ranges', async (bits) => {
    for (const [M, N, K, group] of [
      [1, 2048 + 65, 200, 64], // two 2048-column strips (one thread: under 1 MFLOP)
      [1, 1000, 520, 100], // two K ranges on two threads, a group straddling their boundary (row 260)
      [20, 300, 450, 64], // GEMM: several tasks and K blocks
      [1, 64, 1100, 7], // many small groups
    ]) {
      const p = makeProblem(bits as GptqBits, N, K, group, true, true, 5000 + N + bits);
      const xr = randomF32(M * K, N + K);
      const xt = new Tensor('float32', [M, K], xr);
      const ref = await denseGptq(xt, weights(p), N, p.bias, { isa: 'ref' });
      const mag = magnitude(p, xr, M, true);
      for (const isa of OPT) {
        const y = await denseGptq(xt, weights(p), N, p.bias, { isa, weightOnlyExact: true });
        const { err, at } = worstRelative(y.data as Float32Array, ref.data as Float32Array, mag);
        if (!(err <= TOL.isaVsRef[bits])) throw new Error(`${isa} bits ${bits} M ${M} N ${N} K ${K}: rel err ${err} at ${at}`);
      }
    }
  });

  test('empty dimensions: K = 0 gives the bias, M = 0 and N = 0 give empty outputs', async () => {
    for (const isa of ISAS) {
      const w = { bits: 4 as const, kernel: new Uint8Array(0), scale: new Float32Array(0), zero: new Uint8Array(0), groupSize: 8 };
      const y = await denseGptq(new Tensor('float32', [2, 0], new Float32Array(0)), w, 3, new Float32Array([1, 2, 3]), { isa });
      expect(Array.from(y.data)).toEqual([1, 2, 3, 1, 2, 3]);
      const w0 = { bits: 2 as const, kernel: new Uint8Array(0), scale: new Float32Array(0), zero: new Uint8Array(0), groupSize: 4 };
      const y0 = await denseGptq(new Tensor('float32', [0, 5], new Float32Array(0)), { ...w0, kernel: new Uint8Array(5 * 2), scale: new Float32Array(2 * 7), zero: new Uint8Array(2 * 7) }, 7, null, { isa });
      expect(y0.shape).toEqual([0, 7]);
      const yn = await denseGptq(new Tensor('float32', [2, 5], new Float32Array(10)), { ...w0, scale: new Float32Array(0), zero: new Uint8Array(0) }, 0, null, { isa });
      expect(yn.shape).toEqual([2, 0]);
    }
  });
});

describe('runtime packing', () => {
  test.each(BITS)('%i bits: bit-exact vs the JS packer and round trip on every ISA', async (bits) => {
    const maxq = (1 << bits) - 1;
    let seed = 77 * bits;
    for (const N of [1, 2, 3, 5, 7, 8, 17, 33, 63, 64, 65, 127, 129, 300]) {
      for (const K of [1, 3, 17, 65]) {
        for (const withPerm of [false, true]) {
          const r = rng(seed++);
          const levels = Uint8Array.from({ length: N * K }, () => Math.floor(r() * (maxq + 1)));
          if (N * K > 2) levels[0] = maxq; // the extreme levels always appear
          if (N * K > 2) levels[1] = 0;
          const perm = withPerm ? shuffled(K, seed) : null;
          const expected = packJs(levels, N, K, bits, perm);
          for (const isa of ISAS) {
            const packed = await packGptqRuntime(levels, N, K, bits, perm, { isa });
            expect(packed.length).toBe(K * gptqRuntimeRowBytes(N, bits));
            const at = firstMismatch(packed, expected);
            if (at !== -1) throw new Error(`${isa} pack bits ${bits} N ${N} K ${K}: byte ${at} ${packed[at]} vs ${expected[at]}`);
            const back = await unpackGptqRuntime(packed, N, K, bits, { isa });
            for (let k = 0; k < K; k++) {
              for (let j = 0; j < N; j++) {
                const want = levels[j * K + (perm ? perm[k] : k)];
                if (back[k * N + j] !== want) throw new Error(`${isa} unpack bits ${bits} N ${N} K ${K} at (${k}, ${j})`);
              }
            }
          }
        }
      }
    }
  });

  // Found by the sanitizer build (npm run test:asan): with K = 0 the destination is empty (a null data pointer)
  // and the reference pack called memset(nullptr, 0, 0), undefined behaviour that UBSan stops on.
  test('empty shapes (K = 0 or N = 0) pack and unpack to empty arrays on every ISA', async () => {
    for (const [N, K] of [[5, 0], [0, 4], [0, 0]]) {
      for (const bits of [2, 3, 4, 8] as const) {
        for (const isa of ISAS) {
          const packed = await packGptqRuntime(new Uint8Array(N * K), N, K, bits, null, { isa });
          expect(packed.length).toBe(K * gptqRuntimeRowBytes(N, bits));
          expect((await unpackGptqRuntime(packed, N, K, bits, { isa })).length).toBe(N * K);
        }
      }
    }
  });

  test('row bytes: exactly bits/8 per weight, rounded up per row', () => {
    expect(gptqRuntimeRowBytes(4096, 3)).toBe(1536);
    expect(gptqRuntimeRowBytes(4096, 2)).toBe(1024);
    expect(gptqRuntimeRowBytes(5, 3)).toBe(2);
    expect(gptqRuntimeRowBytes(5, 4)).toBe(3);
    expect(gptqRuntimeRowBytes(5, 8)).toBe(5);
    expect(gptqRuntimeRowBytes(0, 2)).toBe(0);
  });

  test('perm given as a number[] and as an Int32Array pack the same', async () => {
    const levels = Uint8Array.from({ length: 4 * 5 }, (_, i) => i % 16);
    const a = await packGptqRuntime(levels, 4, 5, 4, [4, 2, 0, 1, 3]);
    const b = await packGptqRuntime(levels, 4, 5, 4, Int32Array.from([4, 2, 0, 1, 3]));
    expect(Array.from(a)).toEqual(Array.from(b));
  });
});

describe('bad arguments: typed errors, never a crash', () => {
  const N = 5;
  const K = 7;
  const bits = 3;
  const rb = Math.ceil((bits * N) / 8);
  interface Args {
    x: Float32Array;
    wq: Uint8Array;
    scale: Float32Array;
    zero: Uint8Array;
    bias: Float32Array;
    y: Float32Array;
  }
  const good = (): Args => ({
    x: new Float32Array(2 * K),
    wq: new Uint8Array(K * rb),
    scale: new Float32Array(2 * N),
    zero: new Uint8Array(2 * N),
    bias: new Float32Array(N),
    y: new Float32Array(2 * N),
  });
  const native = () => loadNative();

  async function rejectsWith(p: () => Promise<unknown>, code: string, text: RegExp): Promise<void> {
    let err: unknown = null;
    try {
      await p();
    } catch (e) {
      err = e;
    }
    expect(err).not.toBeNull();
    expect((err as { code?: string }).code).toBe(code);
    expect(String((err as Error).message)).toMatch(text);
  }

  test('native denseGptq: every length, bits, group and type checked before any work', async () => {
    const n = native();
    const call = (o: Partial<Args> & { bits?: unknown; group?: unknown; M?: number }) => {
      const g = { ...good(), ...o };
      return () => n.denseGptq(o.M ?? 2, N, K, g.x, g.wq, (o.bits ?? bits) as number, g.scale, g.zero, (o.group ?? 4) as number, g.bias, g.y);
    };
    await call({})(); // the good call works
    await rejectsWith(call({ x: new Float32Array(2 * K + 1) }), 'QK_SHAPE_MISMATCH', /elements for x but received 15/);
    await rejectsWith(call({ wq: new Uint8Array(K * rb - 1) }), 'QK_SHAPE_MISMATCH', /for wq/);
    await rejectsWith(call({ wq: new Uint8Array(K * 5) }), 'QK_SHAPE_MISMATCH', /Expected 14 elements for wq but received 35/);
    await rejectsWith(call({ scale: new Float32Array(N) }), 'QK_SHAPE_MISMATCH', /for scale/);
    await rejectsWith(call({ zero: new Uint8Array(3 * N) }), 'QK_SHAPE_MISMATCH', /for zero/);
    await rejectsWith(call({ bias: new Float32Array(N + 1) }), 'QK_SHAPE_MISMATCH', /for bias/);
    await rejectsWith(call({ y: new Float32Array(N) }), 'QK_SHAPE_MISMATCH', /for y/);
    await rejectsWith(call({ bits: 5 }), 'QK_INVALID_ARGUMENT', /Expected one of 2, 3, 4, 8 for bits but received 5/);
    await rejectsWith(call({ bits: '4' }), 'QK_INVALID_ARGUMENT', /for bits/);
    await rejectsWith(call({ group: 0 }), 'QK_INVALID_ARGUMENT', /Expected a group size >= 1 for group but received 0/);
    await rejectsWith(call({ group: 1.5 }), 'QK_INVALID_ARGUMENT', /for group/);
    await rejectsWith(call({ zero: new Int8Array(2 * N) as unknown as Uint8Array }), 'QK_INVALID_ARGUMENT', /Expected Uint8Array for zero but received Int8Array/);
    await rejectsWith(call({ M: -1 }), 'QK_INVALID_ARGUMENT', /for M/);
    const shared = new Float32Array(4 * N);
    await rejectsWith(
      () => n.denseGptq(2, N, K, new Float32Array(2 * K), new Uint8Array(K * rb), bits, shared.subarray(0, 2 * N), new Uint8Array(2 * N), 4, null, shared.subarray(N, 3 * N)),
      'QK_INVALID_ARGUMENT',
      /y not to share memory with scale/,
    );
    await rejectsWith(
      () => n.denseGptq(2 ** 40, 2 ** 40, 2 ** 40, new Float32Array(0), new Uint8Array(0), 8, new Float32Array(0), new Uint8Array(0), 1, null, new Float32Array(0)),
      'QK_INVALID_ARGUMENT',
      /overflows 64 bits/,
    );
  });

  test('native pack/unpack: lengths, perm (range, duplicates, length), levels out of range', async () => {
    const n = native();
    const q = new Uint8Array(N * K);
    const dst = new Uint8Array(K * rb);
    await n.gptqRuntimePack(q, N, K, null, bits, dst);
    await rejectsWith(() => n.gptqRuntimePack(new Uint8Array(N * K - 1), N, K, null, bits, dst), 'QK_SHAPE_MISMATCH', /for q/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, null, bits, new Uint8Array(K * rb + 1)), 'QK_SHAPE_MISMATCH', /for dst/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, Int32Array.from([0, 1, 2, 3, 4, 5]), bits, dst), 'QK_SHAPE_MISMATCH', /for perm/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, Int32Array.from([0, 1, 2, 3, 4, 5, 7]), bits, dst), 'QK_INVALID_ARGUMENT', /permutation of 0\.\.6 for perm but received perm\[6\] = 7/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, Int32Array.from([0, 1, 2, 3, -1, 5, 6]), bits, dst), 'QK_INVALID_ARGUMENT', /perm\[4\] = -1/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, Int32Array.from([0, 1, 2, 3, 4, 4, 6]), bits, dst), 'QK_INVALID_ARGUMENT', /received 4 twice/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, null, 5, dst), 'QK_INVALID_ARGUMENT', /for bits but received 5/);
    const high = new Uint8Array(N * K);
    high[9] = 8;
    await rejectsWith(() => n.gptqRuntimePack(high, N, K, null, bits, dst), 'QK_INVALID_ARGUMENT', /levels in \[0, 7\] for q \(3 bits\) but received q\[9\] = 8/);
    await rejectsWith(() => n.gptqRuntimePack(q, N, K, null, bits, q.subarray(0, K * rb)), 'QK_INVALID_ARGUMENT', /dst not to share memory with q/);
    await rejectsWith(() => n.gptqRuntimeUnpack(dst, N, K, bits, new Uint8Array(N * K - 1)), 'QK_SHAPE_MISMATCH', /for dst/);
    await rejectsWith(() => n.gptqRuntimeUnpack(new Uint8Array(1), N, K, bits, new Uint8Array(N * K)), 'QK_SHAPE_MISMATCH', /for src/);
    await rejectsWith(() => n.gptqRuntimeUnpack(dst, N, K, 0, new Uint8Array(N * K)), 'QK_INVALID_ARGUMENT', /for bits/);
  });

  test('TS wrappers: InvalidArgumentError / ShapeMismatchError naming the argument', async () => {
    const g = good();
    const w = { bits: bits as GptqBits, kernel: g.wq, scale: g.scale, zero: g.zero, groupSize: 4 };
    const x = new Tensor('float32', [2, K], g.x);
    await expect(denseGptq(x, { ...w, bits: 5 as GptqBits }, N, null)).rejects.toThrow(InvalidArgumentError);
    await expect(denseGptq(x, { ...w, bits: 5 as GptqBits }, N, null)).rejects.toThrow(/for w\.bits but received 5/);
    await expect(denseGptq(x, { ...w, groupSize: 0 }, N, null)).rejects.toThrow(/for w\.groupSize but received 0/);
    await expect(denseGptq(x, { ...w, kernel: new Uint8Array(3) }, N, null)).rejects.toThrow(ShapeMismatchError);
    await expect(denseGptq(x, { ...w, scale: new Float32Array(3) }, N, null)).rejects.toThrow(/for w\.scale/);
    await expect(denseGptq(x, { ...w, zero: new Uint8Array(3) }, N, null)).rejects.toThrow(/for w\.zero/);
    await expect(denseGptq(x, w, N, new Float32Array(2))).rejects.toThrow(/for bias/);
    await expect(denseGptq(x, w, -1, null)).rejects.toThrow(/for units/);
    await expect(denseGptq(new Tensor('int8', [2, K], new Int8Array(2 * K)) as unknown as Tensor, w, N, null)).rejects.toThrow(/float32 Tensor for inputs/);
    await expect(packGptqRuntime(new Uint8Array(N * K), N, K, 3, [0, 1, 2, 3, 4, 5, 5])).rejects.toThrow(/received 5 twice/);
    await expect(packGptqRuntime(new Uint8Array(N * K), N, K, 3, [0, 1, 2, 3, 4, 5, 1.5])).rejects.toThrow(/perm\[6\] = 1\.5/);
    await expect(packGptqRuntime(new Uint8Array(N * K), N, K, 3, [0, 1])).rejects.toThrow(ShapeMismatchError);
    await expect(packGptqRuntime(new Uint8Array(N * K), N, K, 6 as GptqBits)).rejects.toThrow(/for bits but received 6/);
    await expect(packGptqRuntime(new Uint8Array(N * K - 1), N, K, 3)).rejects.toThrow(/for levels/);
    await expect(unpackGptqRuntime(new Uint8Array(3), N, K, 3)).rejects.toThrow(/for packed/);
    const e = await packGptqRuntime(new Uint8Array(N * K).fill(9), N, K, 3).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(QkError);
    expect((e as QkError).code).toBe('QK_INVALID_ARGUMENT');
  });
});
