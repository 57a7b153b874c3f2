/**
 * An allocation budget that follows an async call chain: while a file is turned into a model (`loadModel`,
 * `fromPreset`), every weight the model's config makes quantkit allocate (layer builds, initializers, empty
 * quantized states) is charged against the load's memory budget BEFORE the memory is allocated, so a hostile
 * `config.json` declaring gigantic layers fails with `QK_OUT_OF_MEMORY` instead of exhausting memory. Outside
 * such a call nothing is charged.
 *
 * @example
 * ```ts
 * await runWithAllocationBudget(2 ** 30, 'model.keras', () => deserializeLayer(config));
 * chargeAllocation(4 * n, 'a float32 tensor'); // inside: throws once the total passes 1 GiB
 * ```
 * @packageDocumentation
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { OutOfMemoryError } from './errors';

interface Budget {
  readonly limit: number;
  used: number;
  readonly source: string;
}

const current = new AsyncLocalStorage<Budget>();

/**
 * Runs `fn` with an allocation budget of `limit` bytes (nested budgets: the innermost applies).
 * @example
 * ```ts
 * const model = await runWithAllocationBudget(budget, 'model.keras', () => rebuild(config));
 * ```
 */
export function runWithAllocationBudget<T>(limit: number, source: string, fn: () => Promise<T>): Promise<T> {
  return current.run({ limit, used: 0, source }, fn);
}

/**
 * Charges `bytes` against the budget of the current call chain, if any.
 * @throws OutOfMemoryError when the total would pass the budget
 * @example
 * ```ts
 * chargeAllocation(shapeSize(shape) * 4, `weights of shape [${shape}]`);
 * const data = new Float32Array(shapeSize(shape));
 * ```
 */
export function chargeAllocation(bytes: number, what: string): void {
  const b = current.getStore();
  if (!b) return;
  b.used += bytes;
  if (!(b.used <= b.limit)) {
    throw new OutOfMemoryError(
      `Expected the model described by ${b.source} to need at most ${b.limit} bytes of weights (the load budget: options.maxBytes, setMaxLoadBytes() or QK_MAX_LOAD_BYTES) but it needs more (${b.used} bytes so far, at ${what})`,
    );
  }
}
