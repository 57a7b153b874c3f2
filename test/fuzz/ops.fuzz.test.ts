// Property-based fuzzing of the public ops and layers (issue 9, "Fuzzing"): random shapes (including empty ones),
// lengths that disagree with the shapes, wrong dtypes, NaN / ±Inf / denormals / huge values and out-of-range
// arguments. Every call must either return a correct result (checked against a small JavaScript reference where
// that is cheap) or reject with a typed quantkit error (`err.code` starting with 'QK_'): never crash the process,
// hang, or return silently wrong numbers for finite inputs. Seeds are fixed so CI runs the same cases every time.
import fc from 'fast-check';
import {
  Tensor,
  absMax,
  absMaxQuantize,
  packInt4,
  unpackInt4,
  packInt2,
  unpackInt2,
  matmul,
  matmulInt8,
  denseForward,
  denseGptq,
  packGptqRuntime,
  unpackGptqRuntime,
  gptqRuntimeRowBytes,
  rmsNorm,
  rope,
  softmaxRows,
  siluMul,
  createKVCacheView,
  kvCacheWrite,
  attentionDecode,
  gptqHessian,
  gptqQuantizeMatrix,
  Dense,
  EinsumDense,
  Embedding,
} from '../../lib';

const SEED = 20261124;
const RUNS = 150;
const opts = (numRuns = RUNS) => ({ seed: SEED, numRuns, endOnFailure: true });

/** Resolves to `{ ok: value }` or `{ err }`; an error that is not a quantkit error fails the property. */
async function okOrQk<T>(fn: () => Promise<T> | T): Promise<{ ok: T } | { err: { code: string; message: string } }> {
  try {
    return { ok: await fn() };
  } catch (e) {
    const code = (e as { code?: unknown })?.code;
    if (typeof code !== 'string' || !code.startsWith('QK_')) {
      throw new Error(`expected a QkError but got ${String((e as Error)?.name)}: ${String((e as Error)?.message ?? e)}`);
    }
    return { err: e as { code: string; message: string } };
  }
}

// ---------------------------------------------------------------------------------------------------- arbitraries

const SPECIALS = [NaN, Infinity, -Infinity, 0, -0, 1e-45, -1e-45, 1.17e-38, 3.4e38, -3.4e38, 1e30, -1e-30];
/** A float32 value: mostly ordinary, sometimes special (NaN, ±Inf, denormal, huge, signed zero). */
const f32 = (specials = true) =>
  specials
    ? fc.oneof(
        { weight: 8, arbitrary: fc.float({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true }) },
        { weight: 2, arbitrary: fc.constantFrom(...SPECIALS) },
      )
    : fc.float({ min: -100, max: 100, noNaN: true, noDefaultInfinity: true });

const dim = fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 6, arbitrary: fc.integer({ min: 1, max: 7 }) });
const shapeArb = (minRank = 0, maxRank = 3) => fc.array(dim, { minLength: minRank, maxLength: maxRank });
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** A float32 tensor of a random shape; values may be special. */
const f32Tensor = (minRank = 0, maxRank = 3, specials = true) =>
  shapeArb(minRank, maxRank).chain((shape) =>
    fc.array(f32(specials), { minLength: size(shape), maxLength: size(shape) }).map((v) => new Tensor('float32', shape, Float32Array.from(v))),
  );

/** A Tensor whose data was swapped for one of the wrong length after construction (a hostile or buggy caller). */
function corrupt<T extends Tensor>(t: T, delta: number): T {
  const C = t.data.constructor as new (n: number) => typeof t.data;
  (t as unknown as { data: unknown }).data = new C(Math.max(0, t.data.length + delta));
  return t;
}

const isFiniteArr = (a: ArrayLike<number>) => Array.prototype.every.call(a, (v: number) => Number.isFinite(v));
const close = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol * (1 + Math.abs(b));

// ---------------------------------------------------------------------------------------------------- abs-max

describe('absMax / absMaxQuantize', () => {
  test('absMax along any axis equals the JS reference (NaN policy: NaN in, NaN out)', async () => {
    await fc.assert(
      fc.asyncProperty(f32Tensor(0, 3), fc.integer({ min: -4, max: 4 }), async (x, axis) => {
        const r = await okOrQk(() => absMax(x, axis, { keepdims: true }));
        const rank = Math.max(x.rank, 1);
        if (x.rank === 0) {
          // A scalar is reduced whole whatever the axis.
          if ('err' in r) throw new Error(r.err.message);
          expect(r.ok.data[0]).toBe(Math.abs(x.data[0] as number));
          return;
        }
        if ('err' in r) {
          // Only an out-of-range axis may be refused.
          expect(axis < -rank || axis >= rank).toBe(true);
          return;
        }
        expect(axis >= -rank && axis < rank).toBe(true);
        if (x.rank === 0) return;
        const ax = axis < 0 ? axis + x.rank : axis;
        const outer = size(x.shape.slice(0, ax));
        const len = x.shape[ax];
        const inner = size(x.shape.slice(ax + 1));
        const got = r.ok.data as Float32Array;
        expect(got.length).toBe(outer * inner);
        const xd = x.data as Float32Array;
        for (let o = 0; o < outer; o++) {
          for (let i = 0; i < inner; i++) {
            let m = 0;
            let nan = false;
            for (let l = 0; l < len; l++) {
              const v = xd[(o * len + l) * inner + i];
              if (Number.isNaN(v)) nan = true;
              else m = Math.max(m, Math.abs(v));
            }
            const g = got[o * inner + i];
            if (nan) expect(Number.isNaN(g)).toBe(true);
            else expect(g).toBe(m);
          }
        }
      }),
      opts(),
    );
  });

  test('absMaxQuantize: finite rows round to the int8 reference; any input gives int8 in range or a QkError', async () => {
    await fc.assert(
      fc.asyncProperty(f32Tensor(1, 3), fc.integer({ min: -3, max: 3 }), async (x, axis) => {
        const r = await okOrQk(() => absMaxQuantize(x, axis, { valueRange: [-127, 127], epsilon: 1e-7 }));
        if ('err' in r) {
          expect(axis < -x.rank || axis >= x.rank).toBe(true);
          return;
        }
        const q = r.ok.quantized.data as Int8Array;
        expect(q.length).toBe(x.size);
        for (const v of q) expect(v >= -127 && v <= 127).toBe(true);
        // Reference for the rows that are fully finite and not tiny (keras: scale = 127 / (max|x| + eps)).
        const ax = axis < 0 ? axis + x.rank : axis;
        const outer = size(x.shape.slice(0, ax));
        const len = x.shape[ax];
        const inner = size(x.shape.slice(ax + 1));
        const xd = x.data as Float32Array;
        for (let o = 0; o < outer; o++) {
          for (let i = 0; i < inner; i++) {
            const idx = (l: number) => (o * len + l) * inner + i;
            let m = 0;
            let finite = true;
            for (let l = 0; l < len; l++) {
              finite &&= Number.isFinite(xd[idx(l)]);
              m = Math.max(m, Math.abs(xd[idx(l)]));
            }
            if (!finite || m < 1e-3 || m > 1e30) continue;
            const s = 127 / (m + 1e-7);
            for (let l = 0; l < len; l++) {
              const want = Math.max(-127, Math.min(127, Math.round(xd[idx(l)] * s)));
              expect(Math.abs(q[idx(l)] - want)).toBeLessThanOrEqual(1);
            }
          }
        }
      }),
      opts(),
    );
  });

  test('tensors whose data length disagrees with the shape are refused, not read out of bounds', async () => {
    await fc.assert(
      fc.asyncProperty(f32Tensor(1, 3, false), fc.integer({ min: -3, max: 3 }).filter((d) => d !== 0), async (x, delta) => {
        const bad = corrupt(x, delta);
        if (bad.data.length === x.size) return;
        const a = await okOrQk(() => absMax(bad, -1));
        const b = await okOrQk(() => absMaxQuantize(bad, -1));
        expect('err' in a && 'err' in b).toBe(true);
      }),
      opts(40),
    );
  });
});

// ---------------------------------------------------------------------------------------------------- packing

describe('packInt4 / unpackInt4 / packInt2 / unpackInt2', () => {
  const packCase = fc
    .record({ shape: shapeArb(1, 3), bits: fc.constantFrom(4, 2), axisPick: fc.integer({ min: -4, max: 4 }), signed: fc.boolean() })
    .chain(({ shape, bits, axisPick, signed }) => {
      const lo = signed ? -(1 << (bits - 1)) : 0;
      const hi = signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
      return fc
        .array(fc.integer({ min: lo, max: hi }), { minLength: size(shape), maxLength: size(shape) })
        .map((v) => ({ shape, bits, axis: axisPick, signed, values: v }));
    });

  test('unpack(pack(x)) === x for in-range values on any shape and axis; bad axes are QkErrors', async () => {
    await fc.assert(
      fc.asyncProperty(packCase, async ({ shape, bits, axis, signed, values }) => {
        const dtype = signed ? 'int8' : 'uint8';
        const x = signed ? new Tensor('int8', shape, Int8Array.from(values)) : new Tensor('uint8', shape, Uint8Array.from(values));
        const pack = bits === 4 ? packInt4 : packInt2;
        const unpack = bits === 4 ? unpackInt4 : unpackInt2;
        const p = await okOrQk(() => pack(x, axis, dtype));
        if ('err' in p) {
          expect(axis < -shape.length || axis >= shape.length).toBe(true);
          return;
        }
        const u = await okOrQk(() => unpack(p.ok.packed, p.ok.origLen, axis, dtype));
        if ('err' in u) throw new Error(`unpack refused a packed tensor: ${u.err.message}`);
        expect(u.ok.shape).toEqual(shape);
        expect(Array.from(u.ok.data as Int8Array)).toEqual(values);
      }),
      opts(),
    );
  });

  test('hostile unpack arguments (origLen, axis, dtype, corrupted lengths) give results of the right size or QkErrors', async () => {
    await fc.assert(
      fc.asyncProperty(
        shapeArb(0, 3),
        fc.constantFrom(4, 2),
        fc.integer({ min: -8, max: 40 }),
        fc.integer({ min: -4, max: 4 }),
        fc.constantFrom('int8', 'uint8', 'float32', 'int32'),
        fc.integer({ min: -2, max: 2 }),
        async (shape, bits, origLen, axis, dtype, delta) => {
          const t = dtype === 'float32' ? new Tensor('float32', shape) : dtype === 'int32' ? new Tensor('int32', shape) : new Tensor(dtype as 'int8', shape);
          if (delta !== 0) corrupt(t, delta);
          const corrupted = t.data.length !== size(shape);
          const unpack = bits === 4 ? unpackInt4 : unpackInt2;
          const r = await okOrQk(() => unpack(t, origLen, axis, 'int8'));
          if ('ok' in r) {
            expect(r.ok.data.length).toBe(size(r.ok.shape));
            expect(corrupted).toBe(false);
          }
          const pack = bits === 4 ? packInt4 : packInt2;
          const p = await okOrQk(() => pack(t, axis, dtype as 'int8'));
          if ('ok' in p) expect(corrupted).toBe(false);
        },
      ),
      opts(),
    );
  });
});

// ---------------------------------------------------------------------------------------------------- matmul

function matmulRef(a: Float32Array, b: Float32Array, M: number, K: number, N: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) y[m * N + n] += a[m * K + k] * b[k * N + n];
  return y;
}

describe('matmul / matmulInt8', () => {
  const mkn = fc.tuple(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 9 }));

  test('matmul of finite inputs matches the reference; specials propagate without crashing; mismatches are QkErrors', async () => {
    await fc.assert(
      fc.asyncProperty(mkn, fc.integer({ min: -1, max: 1 }), fc.boolean(), fc.integer({ min: 0, max: 1 << 30 }), async ([M, K, N], dk, specials, seed) => {
        const K2 = Math.max(0, K + dk);
        const r = fc.sample(fc.array(f32(specials), { minLength: M * K + K2 * N, maxLength: M * K + K2 * N }), { seed, numRuns: 1 })[0];
        const a = new Tensor('float32', [M, K], Float32Array.from(r.slice(0, M * K)));
        const b = new Tensor('float32', [K2, N], Float32Array.from(r.slice(M * K, M * K + K2 * N)));
        const y = await okOrQk(() => matmul(a, b));
        if (K2 !== K) {
          expect('err' in y).toBe(true);
          return;
        }
        if ('err' in y) throw new Error(`matmul refused matching shapes [${M},${K}]x[${K},${N}]: ${y.err.message}`);
        expect(y.ok.shape).toEqual([M, N]);
        if (!specials) {
          const ref = matmulRef(a.data as Float32Array, b.data as Float32Array, M, K, N);
          const got = y.ok.data as Float32Array;
          for (let i = 0; i < ref.length; i++) expect(close(got[i], ref[i], 1e-4 * Math.max(1, K))).toBe(true);
        }
      }),
      opts(),
    );
  });

  test('matmulInt8 is exact in int32; wrong dtypes, ranks and corrupted lengths are QkErrors', async () => {
    await fc.assert(
      fc.asyncProperty(mkn, fc.constantFrom('int8', 'int8', 'float32', 'uint8'), fc.integer({ min: -1, max: 1 }), fc.integer({ min: 0, max: 1 << 30 }), async ([M, K, N], dt, delta, seed) => {
        const vals = fc.sample(fc.array(fc.integer({ min: -128, max: 127 }), { minLength: M * K + K * N, maxLength: M * K + K * N }), { seed, numRuns: 1 })[0];
        const a = new Tensor('int8', [M, K], Int8Array.from(vals.slice(0, M * K)));
        const b =
          dt === 'int8'
            ? new Tensor('int8', [K, N], Int8Array.from(vals.slice(M * K)))
            : dt === 'uint8'
              ? new Tensor('uint8', [K, N], Uint8Array.from(vals.slice(M * K).map((v) => v & 0xff)))
              : new Tensor('float32', [K, N], Float32Array.from(vals.slice(M * K)));
        if (delta !== 0) corrupt(b, delta);
        const y = await okOrQk(() => matmulInt8(a, b));
        if (dt !== 'int8' || (delta !== 0 && b.data.length !== K * N)) {
          expect('err' in y).toBe(true);
          return;
        }
        if ('err' in y) throw new Error(`matmulInt8 refused: ${y.err.message}`);
        const got = y.ok.data as Int32Array;
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += vals[m * K + k] * vals[M * K + k * N + n];
            expect(got[m * N + n]).toBe(s);
          }
      }),
      opts(),
    );
  });
});

// ---------------------------------------------------------------------------------------------------- dense

type Fmt = 'float32' | 'int8' | 'int8-a8' | 'int4' | 'int4-a8' | 'int4-grouped' | 'float8' | 'bogus';

describe('denseForward in every format', () => {
  test('random M, K, N, formats, lengths and values: reference for float32 / int8 weight-only, QkError for bad lengths', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 33 }), fc.integer({ min: 0, max: 9 })),
        fc.constantFrom<Fmt>('float32', 'int8', 'int8-a8', 'int4', 'int4-a8', 'int4-grouped', 'float8', 'bogus'),
        fc.constantFrom(0, 0, 0, -1, 1),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom(1, 2, 3, 4, 8, 0, -1),
        fc.integer({ min: 0, max: 1 << 30 }),
        async ([M, K, N], fmt, delta, specials, withBias, groupSize, seed) => {
          const vals = fc.sample(fc.array(f32(specials), { minLength: M * K, maxLength: M * K }), { seed, numRuns: 1 })[0];
          const x = new Tensor('float32', [M, K], Float32Array.from(vals));
          const r = (i: number) => ((i * 2654435761) % 255) - 127;
          const wf = Float32Array.from({ length: K * N }, (_, i) => r(i) / 127);
          const bias = withBias ? Float32Array.from({ length: N + (delta === 1 ? 1 : 0) }, (_, i) => i / 8) : null;
          const kLen = (n: number) => Math.max(0, n + delta);
          const half = Math.ceil(K / 2) * N;
          const groups = groupSize > 0 ? Math.ceil(K / groupSize) : 1;
          let w: unknown;
          let act: { valueRange: [number, number]; epsilon: number } | null = null;
          switch (fmt) {
            case 'float32':
              w = { format: 'float32', kernel: wf.slice(0, kLen(K * N)) };
              break;
            case 'int8':
            case 'int8-a8':
              w = { format: 'int8', kernel: Int8Array.from({ length: kLen(K * N) }, (_, i) => r(i)), scale: new Float32Array(N).fill(127) }; // Keras: w = q / scale
              if (fmt === 'int8-a8') act = { valueRange: [-127, 127], epsilon: 1e-7 };
              break;
            case 'int4':
            case 'int4-a8':
              w = { format: 'int4', kernel: new Int8Array(kLen(half)).fill(0x21), scale: new Float32Array(N).fill(0.1) };
              if (fmt === 'int4-a8') act = { valueRange: [-127, 127], epsilon: 1e-7 };
              break;
            case 'int4-grouped':
              w = {
                format: 'int4-grouped',
                kernel: new Uint8Array(kLen(half)).fill(0x87),
                scale: new Float32Array(groups * N).fill(0.05),
                zero: new Int8Array(groups * N),
                groupSize,
              };
              break;
            case 'float8':
              w = { format: 'float8', kernel: new Uint8Array(kLen(K * N)).fill(0x38), scale: 1 };
              break;
            default:
              w = { format: 'bogus', kernel: wf };
          }
          const y = await okOrQk(() => denseForward(x, w as never, N, bias, { activation: act }));
          // Too-short kernels (or biases of the wrong length) must be refused; a longer kernel may be accepted.
          const isInt4 = fmt === 'int4' || fmt === 'int4-a8' || fmt === 'int4-grouped';
          const tooShort = delta === -1 && (isInt4 ? kLen(half) < half : kLen(K * N) < K * N);
          if (fmt === 'bogus' || tooShort || (withBias && delta === 1)) expect('err' in y).toBe(true);
          if ('err' in y) return;
          expect(y.ok.shape).toEqual([M, N]);
          if (!specials && delta === 0 && (fmt === 'float32' || fmt === 'int8')) {
            const kern = fmt === 'float32' ? wf : Float32Array.from({ length: K * N }, (_, i) => r(i) / 127);
            const ref = matmulRef(x.data as Float32Array, kern, M, K, N);
            const got = y.ok.data as Float32Array;
            for (let m = 0; m < M; m++)
              for (let n = 0; n < N; n++) {
                const want = ref[m * N + n] + (bias ? bias[n] : 0);
                expect(close(got[m * N + n], want, 1e-4 * Math.max(1, K))).toBe(true);
              }
          }
          if (!specials && delta === 0) expect(isFiniteArr(y.ok.data as Float32Array)).toBe(true);
        },
      ),
      opts(120),
    );
  });

  test('denseGptq / packGptqRuntime / unpackGptqRuntime: round trip, finite outputs, QkError for bad geometry', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: 17 })),
        fc.constantFrom(2, 3, 4, 8, 5, 0),
        fc.constantFrom(-1, 4, 8, 3, 0, 100),
        fc.boolean(),
        fc.constantFrom(0, 0, 1, -1),
        async ([M, K, N], bits, groupSize, permute, delta) => {
          const hi = bits > 0 && bits <= 8 ? (1 << bits) - 1 : 255;
          const levels = Uint8Array.from({ length: N * K }, (_, i) => (i * 7) % (hi + 1));
          const perm = permute ? Int32Array.from({ length: K }, (_, i) => K - 1 - i) : null;
          const packed = await okOrQk(() => packGptqRuntime(levels, N, K, bits as never, perm));
          if ('err' in packed) {
            expect([2, 3, 4, 8]).not.toContain(bits);
            return;
          }
          expect(packed.ok.length).toBe(K * gptqRuntimeRowBytes(N, bits as 4));
          const un = await okOrQk(() => unpackGptqRuntime(packed.ok, N, K, bits as never));
          if ('err' in un) throw new Error(un.err.message);
          // Row k of the runtime layout holds input perm[k] (or k): levels is [N, K].
          for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) expect(un.ok[k * N + n]).toBe(levels[n * K + (perm ? perm[k] : k)]);
          const groups = groupSize > 0 ? Math.ceil(K / groupSize) : 1;
          const w = {
            bits,
            kernel: delta === 0 ? packed.ok : packed.ok.slice(0, Math.max(0, packed.ok.length + delta)),
            scale: new Float32Array(groups * N).fill(0.01),
            zero: new Uint8Array(groups * N).fill(1 << (bits - 1)),
            groupSize,
          };
          const x = new Tensor('float32', [M, K], Float32Array.from({ length: M * K }, (_, i) => Math.sin(i)));
          const y = await okOrQk(() => denseGptq(x, w as never, N, null));
          if ('ok' in y) {
            expect(y.ok.shape).toEqual([M, N]);
            expect(isFiniteArr(y.ok.data as Float32Array)).toBe(true);
            if (delta !== 0) expect(w.kernel.length).toBe(packed.ok.length); // only a no-op truncation may pass
          }
        },
      ),
      opts(80),
    );
  });
});

// ---------------------------------------------------------------------------------------------------- llama ops

describe('Llama ops', () => {
  const vec = (n: number, specials: boolean) => fc.array(f32(specials), { minLength: n, maxLength: n }).map((v) => Float32Array.from(v));

  test('rmsNorm matches the reference for finite rows and refuses ragged lengths', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: -1, max: 1 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 1 << 30 }),
        async (rows, n, dx, specials, seed) => {
          const [x, w] = fc.sample(fc.tuple(vec(Math.max(0, rows * n + dx), specials), vec(n, false)), { seed, numRuns: 1 })[0];
          const y = await okOrQk(() => rmsNorm(x, w, 1e-5));
          if ('err' in y) {
            expect(n === 0 ? x.length !== 0 : x.length % n !== 0).toBe(true);
            return;
          }
          expect(y.ok.length).toBe(x.length);
          if (specials || n === 0) return;
          for (let r = 0; r < x.length / n; r++) {
            let ss = 0;
            for (let i = 0; i < n; i++) ss += x[r * n + i] ** 2;
            const inv = 1 / Math.sqrt(ss / n + 1e-5);
            for (let i = 0; i < n; i++) expect(close(y.ok[r * n + i], x[r * n + i] * inv * w[i], 1e-4)).toBe(true);
          }
        },
      ),
      opts(),
    );
  });

  test('softmaxRows sums to 1 on finite rows; siluMul matches; rope keeps norms; lengths are checked', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 9 }).map((h) => h * 2),
        fc.integer({ min: 0, max: 3 }),
        fc.boolean(),
        fc.integer({ min: -1, max: 1 }),
        fc.integer({ min: 0, max: 1 << 30 }),
        async (rows, headDim, heads, specials, du, seed) => {
          const n = headDim * heads;
          const [x, u] = fc.sample(fc.tuple(vec(rows * n, specials), vec(Math.max(0, rows * n + du), specials)), { seed, numRuns: 1 })[0];
          // softmaxRows
          const s = x.slice();
          const sm = await okOrQk(() => softmaxRows(s, { n }));
          if ('ok' in sm && !specials && n > 0) {
            for (let r = 0; r < rows; r++) {
              let t = 0;
              for (let i = 0; i < n; i++) t += s[r * n + i];
              expect(Math.abs(t - 1)).toBeLessThan(1e-4);
            }
          }
          if ('err' in sm) expect(n === 0 && x.length !== 0).toBe(true);
          // siluMul
          const g = await okOrQk(() => siluMul(x, u));
          if ('err' in g) expect(u.length).not.toBe(x.length);
          else {
            expect(u.length).toBe(x.length);
            if (!specials) for (let i = 0; i < x.length; i++) expect(close(g.ok[i], (x[i] / (1 + Math.exp(-x[i]))) * u[i], 1e-4)).toBe(true);
          }
          // rope on [rows, heads, headDim]
          const rr = x.slice();
          const pos = Array.from({ length: rows }, (_, i) => i * 3);
          const ro = await okOrQk(() => rope(rr, pos, { headDim: headDim === 0 ? 1 : headDim }));
          if ('ok' in ro && !specials) {
            for (let p = 0; p + 1 < x.length; p += 2) {
              const before = Math.hypot(x[p], x[p + 1]);
              expect(close(Math.hypot(rr[p], rr[p + 1]), before, 1e-4)).toBe(true);
            }
          }
        },
      ),
      opts(),
    );
  });

  test('kvCacheWrite + attentionDecode: in-range writes are read back; out-of-range positions / heads are QkErrors', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 10 }),
        fc.boolean(),
        async (kvHeads, group, maxSeq, headDim, T, start, specials) => {
          const cache = createKVCacheView(kvHeads, maxSeq, headDim);
          const per = kvHeads * headDim;
          const k = Float32Array.from({ length: T * per }, (_, i) => (specials && i % 5 === 0 ? NaN : i / 10));
          const v = Float32Array.from({ length: T * per }, (_, i) => -i / 10);
          const w = await okOrQk(() => kvCacheWrite(cache, k, v, start));
          if ('err' in w) expect(start + T > maxSeq).toBe(true);
          else {
            expect(start + T <= maxSeq || T === 0).toBe(true);
            for (let t = 0; t < T; t++)
              for (let h = 0; h < kvHeads; h++)
                for (let d = 0; d < headDim; d++) expect(cache.v[(h * maxSeq + start + t) * headDim + d]).toBe(v[(t * kvHeads + h) * headDim + d]);
          }
          const heads = kvHeads * group;
          const q = Float32Array.from({ length: Math.max(1, T) * heads * headDim }, (_, i) => Math.cos(i));
          const a = await okOrQk(() => attentionDecode(q, cache, { heads, startPos: start }));
          if ('ok' in a) {
            expect(start + Math.max(1, T) <= maxSeq).toBe(true);
            expect(a.ok.length).toBe(q.length);
            if (!specials) expect(isFiniteArr(a.ok)).toBe(true);
          }
          // A head count that is not a multiple of kvHeads, or a cache whose arrays were swapped, must be refused.
          if (kvHeads > 1) expect('err' in (await okOrQk(() => attentionDecode(q, cache, { heads: heads + 1, startPos: 0 })))).toBe(true);
          const shrunk = { ...cache, k: new Float32Array(Math.max(0, cache.k.length - 1)) };
          if (cache.k.length > 0) expect('err' in (await okOrQk(() => attentionDecode(q, shrunk, { heads, startPos: 0 })))).toBe(true);
        },
      ),
      opts(),
    );
  });
});

// ---------------------------------------------------------------------------------------------------- GPTQ

describe('gptqHessian / gptqQuantizeMatrix', () => {
  test('random kernels and Hessians: levels in range and a finite dequantized kernel, or a QkError for non-finite input', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 20 }),
        fc.constantFrom(2, 3, 4, 8),
        fc.constantFrom(-1, 4, 5, 128),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 1 << 30 }),
        async (inF, outF, rows, bits, groupSize, actOrder, specials, seed) => {
          const [xs, ks] = fc.sample(fc.tuple(fc.array(f32(specials), { minLength: rows * inF, maxLength: rows * inF }), fc.array(f32(specials), { minLength: inF * outF, maxLength: inF * outF })), { seed, numRuns: 1 })[0];
          const h = await okOrQk(() => gptqHessian([new Tensor('float32', [rows, inF], Float32Array.from(xs))]));
          if ('err' in h) {
            expect(specials).toBe(true);
            return;
          }
          expect(h.ok.hessian.length).toBe(inF * inF);
          const kernel = new Tensor('float32', [inF, outF], Float32Array.from(ks));
          const r = await okOrQk(() => gptqQuantizeMatrix(kernel, h.ok.hessian, { weightBits: bits, groupSize, activationOrder: actOrder }));
          if ('err' in r) {
            // Refusals are for non-finite data or a Hessian that stays indefinite (e.g. all zeros, rows = 0).
            expect(specials || rows === 0 || ['QK_INVALID_ARGUMENT'].includes(r.err.code)).toBe(true);
            return;
          }
          for (const l of r.ok.levels.data as Uint8Array) expect(l).toBeLessThan(1 << bits);
          expect(r.ok.levels.shape).toEqual([outF, inF]);
          if (!specials) expect(isFiniteArr(r.ok.dequantized!.data as Float32Array)).toBe(true);
        },
      ),
      opts(50),
    );
  });

  test('a Hessian of the wrong size and mixed-width batches are QkErrors', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: -2, max: 2 }).filter((d) => d !== 0), async (inF, outF, d) => {
        const kernel = new Tensor('float32', [inF, outF], new Float32Array(inF * outF).fill(0.5));
        const hl = Math.max(0, inF * inF + d);
        expect('err' in (await okOrQk(() => gptqQuantizeMatrix(kernel, new Float64Array(hl).fill(1))))).toBe(true);
        const mixed = [new Tensor('float32', [2, inF]), new Tensor('float32', [2, Math.max(1, inF + d)])];
        const hm = await okOrQk(() => gptqHessian(mixed));
        if (inF + d !== inF && inF + d >= 1) expect('err' in hm).toBe(true);
      }),
      opts(30),
    );
  });
});

// ---------------------------------------------------------------------------------------------------- layers

describe('Dense / EinsumDense / Embedding layers', () => {
  test('a built layer given random input shapes and values answers the right shape or a QkError, in every mode', async () => {
    const modes = [null, 'int8', 'int4', 'float8'] as const;
    const dense = await Promise.all(
      modes.map(async (m) => {
        const l = new Dense({ units: 5, seed: 3 } as never);
        await l.apply(new Tensor('float32', [1, 6]));
        if (m) await l.quantize(m);
        return l;
      }),
    );
    const einsum = await Promise.all(
      modes.map(async (m) => {
        const l = new EinsumDense({ equation: 'abc,cd->abd', outputShape: [null, 4] as never, seed: 5 } as never);
        await l.apply(new Tensor('float32', [1, 2, 6]));
        if (m) await l.quantize(m);
        return l;
      }),
    );
    const emb = await Promise.all(
      [null, 'int8', 'int4'].map(async (m) => {
        const l = new Embedding({ inputDim: 11, outputDim: 4, seed: 9 } as never);
        await l.apply(new Tensor('int32', [1], Int32Array.of(0)));
        if (m) await l.quantize(m);
        return l;
      }),
    );
    await fc.assert(
      fc.asyncProperty(f32Tensor(0, 4), fc.integer({ min: 0, max: 3 }), fc.array(fc.integer({ min: -3, max: 14 }), { maxLength: 8 }), async (x, mi, ids) => {
        const yd = await okOrQk(() => dense[mi].apply(x));
        const lastOk = x.rank >= 1 && x.shape[x.rank - 1] === 6;
        if ('ok' in yd) {
          expect(lastOk).toBe(true);
          expect(yd.ok.shape).toEqual([...x.shape.slice(0, -1), 5]);
        } else expect(lastOk).toBe(false);
        const ye = await okOrQk(() => einsum[mi].apply(x));
        if ('ok' in ye) expect(x.rank === 3 && x.shape[2] === 6).toBe(true);
        const e = emb[Math.min(mi, 2)];
        const ids32 = new Tensor('int32', [ids.length], Int32Array.from(ids));
        const ye2 = await okOrQk(() => e.apply(ids32));
        const inRange = ids.every((i) => i >= 0 && i < 11);
        if ('ok' in ye2) {
          expect(inRange).toBe(true);
          expect(ye2.ok.shape).toEqual([ids.length, 4]);
        } else expect(inRange).toBe(false);
        // Float ids (e.g. what a Keras model passes in) and a corrupted ids tensor.
        if (x.rank >= 1 && x.size > 0) await okOrQk(() => e.apply(x));
        if (ids.length > 0) expect('err' in (await okOrQk(() => e.apply(corrupt(new Tensor('int32', [ids.length], Int32Array.from(ids)), 1))))).toBe(true);
      }),
      opts(80),
    );
  });
});
