/**
 * Which path the low-bit weight-only Dense forwards take: int4 (grouped and per-channel) and GPTQ weights run
 * either the exact weight-only kernels (float activations, weights dequantized in registers; the specification)
 * or, at every batch size on AVX-512 VNNI, an int8-compute path: activations quantized per
 * row to int8 (abs-max, range [-127, 127]), exact int32 dot products per group, group scales applied to float32
 * accumulators (`csrc/include/qk/lowbit_a8.h`, docs/lowbit-a8.md). The int8 path changes results by the
 * activation rounding (about 0.3% of each output's scale); set `QK_WEIGHT_ONLY_EXACT=1` in the environment, or
 * pass `weightOnlyExact: true` to the op, to keep the exact path at every M.
 * @packageDocumentation
 */
import type { IsaName } from '../native/binding';
import { loadNative } from '../native/load';

/**
 * Rows (M) from which the int8-compute GEMM kernels (`denseLowbitA8`, `denseW4A8`) may be used; below
 * `LOWBIT_GEMV_ROW_LIMIT` (lib/ops/lowbit-pack.ts: 128 rows for grouped and GPTQ weights, 64 per-channel) the packed GEMV,
 * bit-identical to them, is preferred, and the GEMM runs only when the packed GEMV does not apply.
 * @example
 * ```ts
 * const prefillTakesInt8Path = promptTokens >= LOWBIT_A8_MIN_ROWS;
 * ```
 */
export const LOWBIT_A8_MIN_ROWS = 16;

/**
 * Options of the ops that can take the int8-compute path.
 * @example
 * ```ts
 * const y = await denseGptq(x, weights, units, bias, { weightOnlyExact: true }); // Keras' weight-only numerics
 * ```
 */
export interface WeightOnlyPathOptions {
  /** Keep the exact weight-only path at every M (default: `process.env.QK_WEIGHT_ONLY_EXACT === '1'`). */
  weightOnlyExact?: boolean;
}

/**
 * True when a forward of `M` rows with groups of `group` inputs (of `K`) should take the int8-compute GEMM path: M
 * is at least `minRows` (default {@link LOWBIT_A8_MIN_ROWS}; smaller batches take the packed decode GEMV of
 * lib/ops/lowbit-pack.ts, which asks with `minRows = 1`), the exact path was not requested, the group keeps int32 sums exact
 * (min(group, K) <= 65536) and the kernel variant in use is the fast VNNI one.
 * @example
 * ```ts
 * if (useLowbitA8(128, 4096, 128)) console.log('int8-compute path');
 * ```
 */
export function useLowbitA8(
  M: number,
  K: number,
  group: number,
  options: WeightOnlyPathOptions & { isa?: IsaName } = {},
  minRows: number = LOWBIT_A8_MIN_ROWS,
): boolean {
  const exact = options.weightOnlyExact ?? process.env.QK_WEIGHT_ONLY_EXACT === '1';
  if (exact || M < minRows || Math.min(group, K) > 65536) return false;
  return loadNative().lowbitA8Fast(options.isa);
}
