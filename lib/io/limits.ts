/**
 * The memory budget of every file reader: the most bytes one load may allocate for the data a file declares
 * (tensors, archive entries, vocabularies, KV caches). Readers compare declared sizes with the file's length and
 * with this budget BEFORE allocating anything, so a hostile or broken file fails with a typed error instead of
 * exhausting memory.
 *
 * The budget of a call is, in order: the call's `maxBytes` option; the process-wide value set with
 * {@link setMaxLoadBytes}; the environment variable `QK_MAX_LOAD_BYTES` (bytes, or with a `K`/`M`/`G`/`T` suffix,
 * powers of 1024); the default {@link defaultMaxLoadBytes} (the machine's total memory, at most 16 GiB).
 *
 * @example
 * ```ts
 * import { setMaxLoadBytes, loadModel } from 'quantkit';
 * setMaxLoadBytes(2 * 2 ** 30);                                   // every load: at most 2 GiB
 * const model = await loadModel('untrusted.keras', { maxBytes: 512 * 2 ** 20 }); // this one: 512 MiB
 * ```
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { CorruptFileError, InvalidArgumentError, OutOfMemoryError } from '../errors';
import { describe } from '../tensor';

const GIB = 2 ** 30;
let processMax: number | null = null;

/**
 * The default budget: the machine's total memory, at most 16 GiB (and at least 256 MiB).
 * @example
 * ```ts
 * defaultMaxLoadBytes(); // e.g. 17179869184 on a 64 GiB machine
 * ```
 */
export function defaultMaxLoadBytes(): number {
  return Math.max(256 * 2 ** 20, Math.min(16 * GIB, os.totalmem()));
}

function parseEnv(raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(raw);
  const mult: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
  const v = m ? Math.floor(Number(m[1]) * mult[m[2].toLowerCase()]) : NaN;
  if (!(v > 0) || !Number.isSafeInteger(v)) {
    throw new InvalidArgumentError(`Expected a positive number of bytes (optionally with K, M, G or T) for the environment variable QK_MAX_LOAD_BYTES but received ${JSON.stringify(raw)}`);
  }
  return v;
}

/**
 * Sets the process-wide budget (bytes) used when a call passes no `maxBytes`; `null` returns to
 * `QK_MAX_LOAD_BYTES` / the default.
 * @throws InvalidArgumentError for anything but a positive safe integer or null
 * @example
 * ```ts
 * setMaxLoadBytes(4 * 2 ** 30);
 * setMaxLoadBytes(null); // back to the default
 * ```
 */
export function setMaxLoadBytes(bytes: number | null): void {
  if (bytes !== null && !(Number.isSafeInteger(bytes) && bytes > 0)) {
    throw new InvalidArgumentError(`Expected a positive integer number of bytes or null for bytes but received ${describe(bytes)}`);
  }
  processMax = bytes;
}

/**
 * The budget in force for calls without a `maxBytes` option (see the module description for the order).
 * @throws InvalidArgumentError when `QK_MAX_LOAD_BYTES` is set but malformed
 * @example
 * ```ts
 * getMaxLoadBytes(); // e.g. 17179869184
 * ```
 */
export function getMaxLoadBytes(): number {
  if (processMax !== null) return processMax;
  const env = process.env.QK_MAX_LOAD_BYTES;
  if (env !== undefined && env !== '') return parseEnv(env);
  return defaultMaxLoadBytes();
}

/**
 * The budget of one call: `value` (an option) when given, else {@link getMaxLoadBytes}.
 * @param name - the option's name for the error message
 * @throws InvalidArgumentError for a `value` that is not a positive safe integer
 * @example
 * ```ts
 * const budget = resolveMaxLoadBytes(options.maxBytes, 'options.maxBytes');
 * ```
 */
export function resolveMaxLoadBytes(value: unknown, name = 'options.maxBytes'): number {
  if (value === undefined || value === null) return getMaxLoadBytes();
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`Expected a positive integer number of bytes for ${name} but received ${describe(value)}`);
  }
  return value;
}

/**
 * Throws unless `bytes` (what `what` in `source` would allocate) fits in `budget`.
 * @throws OutOfMemoryError (`QK_OUT_OF_MEMORY`) naming the budget and how to raise it
 * @example
 * ```ts
 * checkLoadBudget(count * 4, budget, 'tensor "wq"', 'model.gguf');
 * ```
 */
export function checkLoadBudget(bytes: number, budget: number, what: string, source: string): void {
  if (!(bytes <= budget)) {
    throw new OutOfMemoryError(
      `Expected at most ${budget} bytes (the load budget: options.maxBytes, setMaxLoadBytes() or QK_MAX_LOAD_BYTES) for ${what} in ${source} but it needs ${bytes} bytes`,
    );
  }
}

/**
 * The byte size `prod(shape) * itemBytes` of a tensor a file declares, checked step by step: every dimension a
 * non-negative integer (at most 2^31 - 1 when `maxDim` says so, the native kernels' int32 limit), every partial
 * product below 2^53.
 * @throws CorruptFileError naming `what` and `source` for a bad dimension or an overflowing product
 * @example
 * ```ts
 * checkedByteSize([4096, 11008], 2, 'tensor "w1"', 'model.gguf'); // 90177536
 * ```
 */
export function checkedByteSize(shape: readonly number[], itemBytes: number, what: string, source: string, maxDim = 2 ** 31 - 1): number {
  let n = itemBytes;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0 || d > maxDim) {
      throw new CorruptFileError(`Expected a dimension in [0, ${maxDim}] for shape[${i}] of ${what} in ${source} but received ${describe(d)}`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) {
      throw new CorruptFileError(`Expected a size below 2^53 bytes for ${what} in ${source} but shape [${shape.join(', ')}] × ${itemBytes} bytes overflows`);
    }
  }
  return n;
}

/**
 * Reads a whole file after checking that it is a regular file whose size fits in `budget` (nothing is read when
 * it does not).
 * @param what - what the file is, for the error message (e.g. 'config.json')
 * @returns the file's bytes
 * @throws OutOfMemoryError when the file is larger than `budget`; InvalidArgumentError when it is missing or not
 *   a regular file
 * @example
 * ```ts
 * const bytes = await readFileWithinBudget('model.keras', resolveMaxLoadBytes(options.maxBytes), 'the archive', 'model.keras');
 * ```
 */
export async function readFileWithinBudget(file: string, budget: number, what: string, source: string): Promise<Uint8Array> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (err) {
    throw new InvalidArgumentError(`Expected an existing file for ${what} but '${file}' could not be read: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isFile()) throw new InvalidArgumentError(`Expected a regular file for ${what} but '${file}' is not one`);
  checkLoadBudget(st.size, budget, what, source);
  return new Uint8Array(await fs.promises.readFile(file));
}
