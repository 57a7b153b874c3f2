/**
 * The decode / small-batch GEMV of int4 (grouped and per-channel) and GPTQ weights: for batches below
 * {@link LOWBIT_GEMV_ROW_LIMIT} rows on AVX-512 VNNI, the int8-compute path (activations quantized per row to int8,
 * exact int32 dot products per group, group scales on float32 accumulators; `csrc/include/qk/lowbit_pack.h`) runs
 * over a copy of the weights packed ONCE into a `vpdpbusd`-ready layout. Its results are bit-identical to the
 * larger batches' int8-compute GEMM kernels (`denseLowbitA8`, `denseW4A8`), so a row's output no longer depends on the batch
 * size. The packed copy is made lazily at first use, on a worker thread, and cached in a `WeakMap` keyed by the
 * kernel TypedArray (and the identity of its scale / zero arrays): `Variable.assign` installs new arrays, hence a
 * new pack; mutating a kernel array in place after its first forward is not supported. The copy costs about as
 * much memory as the packed weights. `QK_WEIGHT_ONLY_EXACT=1` / `weightOnlyExact` keeps the exact weight-only
 * kernels (see lib/ops/lowbit-a8.ts and docs/lowbit-a8.md).
 * @packageDocumentation
 */
import type { IsaName } from '../native/binding';
import { loadNative } from '../native/load';
import { callNative } from './call';
import { useLowbitA8, WeightOnlyPathOptions } from './lowbit-a8';

/**
 * Batches of fewer rows than this run the packed GEMV rather than the int8-compute GEMM kernels — the measured
 * crossover on AVX-512 VNNI (docs/lowbit-a8.md, `bench/lowbit-cross.js`): `grouped` for int4 grouped and GPTQ
 * weights (against `denseLowbitA8`, which expands the weights into an int8 panel on every call), `perChannel` for
 * int4 per-channel weights (against `denseW4A8`). Both paths give the same bits for a row.
 * @example
 * ```ts
 * const prefillUsesPackedWeights = promptTokens < LOWBIT_GEMV_ROW_LIMIT.grouped;
 * ```
 */
export const LOWBIT_GEMV_ROW_LIMIT = { grouped: 128, perChannel: 64 } as const;

/** Weights the decode GEMV can pack: Keras int4 grouped / per-channel, or GPTQ runtime weights. */
export type LowbitPackSource =
  | { kind: 'int4-grouped'; kernel: Int8Array | Uint8Array; scale: Float32Array; zero: Int8Array; group: number }
  | { kind: 'gptq'; bits: 2 | 3 | 4 | 8; kernel: Uint8Array; scale: Float32Array; zero: Uint8Array; group: number }
  | { kind: 'int4'; kernel: Int8Array | Uint8Array; scale: Float32Array };

const KIND = { 'int4-grouped': 1, gptq: 2, int4: 3 } as const;

interface Entry {
  kind: number;
  bits: number;
  K: number;
  N: number;
  group: number;
  scale: Float32Array;
  zero: Int8Array | Uint8Array | null;
  packed: Uint8Array | null;
  pending: Promise<Uint8Array> | null;
}

const cache = new WeakMap<object, Entry[]>();

/**
 * The packed decode-GEMV copy of `src` (`[K, N]` logically): the cached buffer, or a Promise of it while it is
 * packed (on a worker, once; concurrent callers share the Promise).
 * @example
 * ```ts
 * const packed = await lowbitPacked({ kind: 'int4-grouped', kernel, scale, zero, group: 128 }, 4096, 4096);
 * ```
 */
export function lowbitPacked(src: LowbitPackSource, K: number, N: number): Uint8Array | Promise<Uint8Array> {
  const kind = KIND[src.kind];
  const bits = src.kind === 'gptq' ? src.bits : 4;
  const group = src.kind === 'int4' ? K : src.group;
  const zero = src.kind === 'int4' ? null : src.zero;
  let list = cache.get(src.kernel);
  if (list === undefined) {
    list = [];
    cache.set(src.kernel, list);
  }
  const hit = list.find((e) => e.kind === kind && e.bits === bits && e.K === K && e.N === N && e.group === group && e.scale === src.scale && e.zero === zero);
  if (hit) return hit.packed ?? (hit.pending as Promise<Uint8Array>);
  // A new scale / zero array for the same kernel replaces the old entry.
  for (let i = list.length - 1; i >= 0; i--) if (list[i].kind === kind && list[i].K === K && list[i].N === N) list.splice(i, 1);
  const entry: Entry = { kind, bits, K, N, group, scale: src.scale, zero, packed: null, pending: null };
  entry.pending = callNative(async (n) => {
    const dst = new Uint8Array(n.lowbitPackBytes(kind, bits, K, N, group));
    await n.lowbitPack(kind, bits, K, N, group, src.kernel, src.scale, zero, dst);
    return dst;
  }).then(
    (dst) => {
      entry.packed = dst;
      entry.pending = null;
      return dst;
    },
    (err) => {
      const l = cache.get(src.kernel);
      if (l) l.splice(l.indexOf(entry), 1);
      throw err;
    },
  );
  list.push(entry);
  return entry.pending;
}

/** Largest pack accepted, relative to the bytes of the weights it copies (see {@link lowbitGemv}). */
const MAX_PACK_RATIO = 1.5;
const worth = new WeakMap<object, { key: string; ok: boolean }>();

/**
 * Whether packing `src` costs at most {@link MAX_PACK_RATIO} times its own bytes: groups are padded to 8 (4-bit) to
 * 16 (2-bit) inputs and carry 6 bytes of parameters per output, so very small groups (a GPTQ file whose `g_idx`
 * gives every input its own scale row: group 1) would multiply the memory; those keep the exact kernels.
 */
function packWorthIt(src: LowbitPackSource, K: number, N: number, group: number): boolean {
  const bits = src.kind === 'gptq' ? src.bits : 4;
  const key = `${src.kind}/${bits}/${K}/${N}/${group}`;
  const seen = worth.get(src.kernel);
  if (seen && seen.key === key) return seen.ok;
  let ok = true; // an invalid geometry: let the pack report it as a typed error
  try {
    const bytes = loadNative().lowbitPackBytes(KIND[src.kind], bits, K, N, group);
    const own = src.kernel.byteLength + src.scale.byteLength + (src.kind === 'int4' ? 0 : src.zero.byteLength);
    ok = bytes <= MAX_PACK_RATIO * own + 4096;
  } catch {
    ok = true;
  }
  worth.set(src.kernel, { key, ok });
  return ok;
}

/**
 * Runs the packed GEMV `y[M, N] = x[M, K] @ W (+ bias)` when it applies — M below
 * {@link LOWBIT_GEMV_ROW_LIMIT} (of the weights' kind), the exact weight-only path not requested (weight-only formats), groups of at most
 * 65536 inputs, the pack costs at most 1.5x the weights' own bytes (not so for groups of 1-2 inputs), and the
 * (given or active) ISA's kernels are the fast AVX-512 VNNI ones — and returns its Promise;
 * otherwise returns null and the caller runs its other kernels. `act` is the activation quantization (default:
 * the int8-compute path's, range [-127, 127], epsilon 1e-7; the int4 per-channel W4A8 layers pass theirs).
 * @example
 * ```ts
 * const done = lowbitGemv({ kind: 'gptq', bits: 4, kernel, scale, zero, group: 128 }, 1, K, N, x, null, y);
 * if (done) await done;
 * ```
 */
export function lowbitGemv(
  src: LowbitPackSource,
  M: number,
  K: number,
  N: number,
  x: Float32Array,
  bias: Float32Array | null,
  y: Float32Array,
  options: WeightOnlyPathOptions & { isa?: IsaName; activation?: { valueRange: readonly [number, number]; epsilon: number } | null } = {},
): Promise<void> | null {
  const limit = src.kind === 'int4' ? LOWBIT_GEMV_ROW_LIMIT.perChannel : LOWBIT_GEMV_ROW_LIMIT.grouped;
  if (M >= limit || M === 0 || K === 0) return null;
  const act = options.activation ?? null;
  const group = src.kind === 'int4' ? K : src.group;
  // A W4A8 layer (act given) has no exact weight-only alternative: only the ISA decides.
  if (act === null ? !useLowbitA8(M, K, group, options, 1) : !loadNative().lowbitA8Fast(options.isa)) return null;
  if (!packWorthIt(src, K, N, group)) return null;
  const lo = act ? act.valueRange[0] : -127;
  const hi = act ? act.valueRange[1] : 127;
  const eps = act ? act.epsilon : 1e-7;
  const run = (packed: Uint8Array): Promise<void> => callNative((n) => n.denseLowbitPacked(M, N, K, x, packed, bias, lo, hi, eps, y, options.isa));
  const p = lowbitPacked(src, K, N);
  return p instanceof Uint8Array ? run(p) : p.then(run);
}
