/**
 * Pre-packed weights for the fp32 and int8 W8A8 GEMMs: a cache that packs a projection's weights ONCE into the
 * micro-kernel's panel layout (csrc/include/qk/packed.h) instead of the kernels repacking every weight inside every
 * call (the limit measured in docs/cpu-kernel-limits.md at M >= 128).
 *
 * How it is used: {@link denseForward} (and so the `Dense` / `EinsumDense` layers and the models built on them) and
 * {@link matmul} / {@link matmulInt8} ask {@link packedWeightsFor} for the packed copy of the weight array they were
 * given. Rules:
 * - only calls with at least {@link PACK_MIN_ROWS} rows use it: decode (M = 1) and small-M calls read the weights
 *   in place and never allocate a packed copy;
 * - an array is packed the SECOND time it is seen with such an M (the first call runs unpacked), so arrays made for
 *   one call (a permuted einsum kernel, a calibration product) never pay for a pack;
 * - only when the ISA in use has a packed layout (AVX-512 today; `QK_FORCE_ISA=avx2|ref` or `isa: 'avx2'` run the
 *   unpacked kernels and pack nothing);
 * - packing runs on the native worker pool (a Promise), like every op.
 *
 * Cache key: the weight TypedArray object itself (a WeakMap, so the packed copy is freed with the array).
 * `Variable.assign` and weight loading replace a layer's arrays, so new weights are packed anew. Writing INTO a
 * weight array in place after it was packed is not seen: call {@link clearPackedWeights} on it, or assign a new
 * tensor.
 *
 * Memory: a packed copy lives next to the Keras-layout array (which stays: saving, decode and small M read it):
 * fp32 `4 * K * ceil(N / 32) * 32` bytes, int8 `round_up(K, 4) * ceil(N / 64) * 64` bytes, i.e. the weights'
 * size again (+ < 0.1% padding at LLM shapes) for every projection called with M >= {@link PACK_MIN_ROWS}.
 * Disable with the environment variable `QK_PACK_WEIGHTS=0`, {@link setWeightPacking}`(false)`, or per call with
 * `packWeights: false` ({@link DenseForwardOptions}).
 * @packageDocumentation
 */
import type { IsaName } from '../native/binding';
import { loadNative } from '../native/load';

/**
 * The packed layouts: fp32 GEMM panels, int8 W8A8 (VNNI, +128 bias precomputed).
 * @example
 * ```ts
 * const kind: PackKind = 'w8a8';
 * ```
 */
export type PackKind = 'f32' | 'w8a8';

/**
 * Calls with fewer rows (M) than this never use or create packed weights (fp32: sgemm's small-M path reads B in
 * place up to 16 rows; int8: kept equal, so that batched decode does not double the weight memory).
 * @example
 * ```ts
 * if (rows >= PACK_MIN_ROWS) console.log('this call uses (or makes) packed weights');
 * ```
 */
export const PACK_MIN_ROWS = 17;

type Weights = Float32Array | Int8Array;

interface Entry {
  kind: PackKind;
  K: number;
  N: number;
  /** null: seen once, not packed; a Promise while packing; an ArrayBuffer when packed; false: cannot pack. */
  packed: null | Promise<ArrayBuffer | null> | ArrayBuffer | false;
}

const cache = new WeakMap<Weights, Entry>();
let override: boolean | null = null;

/**
 * Turns the packed-weights cache on or off for this process (`null`: back to the default, which is on unless the
 * environment variable `QK_PACK_WEIGHTS=0`). Turning it off does not free packs already made (see
 * {@link clearPackedWeights}).
 * @example
 * ```ts
 * setWeightPacking(false); // every GEMM repacks per call, no packed copies are kept
 * ```
 */
export function setWeightPacking(enabled: boolean | null): void {
  override = enabled;
}

/**
 * Whether the packed-weights cache is on (see {@link setWeightPacking}).
 * @example
 * ```ts
 * if (weightPackingEnabled()) console.log('weights are packed once per projection');
 * ```
 */
export function weightPackingEnabled(): boolean {
  return override ?? process.env.QK_PACK_WEIGHTS !== '0';
}

/**
 * Forgets the packed copy of `weights` (after writing into the array in place), so the next large call packs anew.
 * @example
 * ```ts
 * layer.kernel.value.data[0] = 1; // in-place edit
 * clearPackedWeights(layer.kernel.value.data);
 * ```
 */
export function clearPackedWeights(weights: Float32Array | Int8Array): void {
  cache.delete(weights);
}

/**
 * The cache state of a weight array (a testing and diagnostics hook).
 * @example
 * ```ts
 * _packedWeightsState(layer.kernel.value.data); // 'none' | 'seen' | 'packing' | 'packed' | 'unpackable'
 * ```
 * @internal
 */
export function _packedWeightsState(weights: Float32Array | Int8Array): 'none' | 'seen' | 'packing' | 'packed' | 'unpackable' {
  const e = cache.get(weights);
  if (!e) return 'none';
  if (e.packed === null) return 'seen';
  if (e.packed === false) return 'unpackable';
  return e.packed instanceof ArrayBuffer ? 'packed' : 'packing';
}

/**
 * Packs `w` ([K, N], row-major) once into the layout of `kind` for the ISA in use (or `isa`), on the worker pool.
 * Resolves to null when that ISA has no packed layout. The result can be passed as the `packed` argument of the
 * native `denseF32` / `sgemm` (f32) or `denseW8A8` / `igemm` (w8a8) entry points.
 * @example
 * ```ts
 * const buf = await packWeights('w8a8', kernelInt8, K, N); // ArrayBuffer | null
 * ```
 */
export async function packWeights(kind: PackKind, w: Weights, K: number, N: number, isa?: IsaName): Promise<ArrayBuffer | null> {
  const n = loadNative();
  const bytes = n.packWeightsBytes(kind, K, N, isa);
  if (bytes === 0) return null;
  const buf = new ArrayBuffer(bytes);
  await n.packWeights(kind, K, N, w, buf, isa);
  return buf;
}

/**
 * The packed copy to pass for a call with M rows over weights `w` ([K, N]), following the rules of this module:
 * null (run unpacked), the packed buffer, or a Promise of either while the pack is made (the call awaits it).
 * Never throws for packing failures (e.g. out of memory): the array is then marked unpackable and runs unpacked.
 * @example
 * ```ts
 * const pk = packedWeightsFor('f32', w, K, N, M);
 * await withPacked(pk, (buf) => native.denseF32(M, N, K, x, w, null, y, undefined, buf));
 * ```
 * @internal
 */
export function packedWeightsFor(
  kind: PackKind,
  w: Weights,
  K: number,
  N: number,
  M: number,
  isa?: IsaName,
  enabled = true,
): ArrayBuffer | null | Promise<ArrayBuffer | null> {
  if (M < PACK_MIN_ROWS || !enabled || (isa !== undefined && isa !== 'avx512') || !weightPackingEnabled()) return null;
  const e = cache.get(w);
  if (e === undefined || e.kind !== kind || e.K !== K || e.N !== N) {
    cache.set(w, { kind, K, N, packed: null });
    return null;
  }
  if (e.packed === false) return null;
  if (e.packed !== null) return e.packed;
  const p = packWeights(kind, w, K, N, isa).then(
    (buf) => {
      e.packed = buf ?? false;
      return buf;
    },
    () => {
      e.packed = false;
      return null;
    },
  );
  e.packed = p;
  return p;
}

/**
 * Runs `fn` with the value of {@link packedWeightsFor}: synchronously when it is known (no extra promise hop on the
 * hot path), after the pack otherwise.
 * @example
 * ```ts
 * await withPacked(packedWeightsFor('w8a8', w, K, N, M), (pk) => native.denseW8A8(M, N, K, x, w, s, null, -127, 127, 1e-7, y, undefined, pk));
 * ```
 * @internal
 */
export function withPacked<T>(pk: ArrayBuffer | null | Promise<ArrayBuffer | null>, fn: (packed: ArrayBuffer | null) => Promise<T>): Promise<T> {
  return pk instanceof Promise ? pk.then(fn) : fn(pk);
}

