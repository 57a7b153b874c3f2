/**
 * Helpers shared by the op wrappers: calling the addon with the caller's stack kept, and axis handling.
 * @internal
 * @packageDocumentation
 */
import { InvalidArgumentError, toQkError } from '../errors';
import type { IsaName, NativeBinding } from '../native/binding';
import { loadNative } from '../native/load';
import { describe, Shape } from '../tensor';

/** Options every op accepts. `isa` forces one kernel variant (a testing hook; default = the active ISA). */
export interface OpOptions {
  /** Run this ISA's kernel variant instead of the active one (see {@link _kernelImpls}). */
  isa?: IsaName;
}

/**
 * Runs an async native call; rejections become {@link QkError}s carrying the caller's stack.
 *
 * The call site is captured only when the call fails: an `Error` created here, after the `await`, carries V8's
 * async stack trace (this function, then every `async` caller awaiting it, up to the public API entry), which is
 * the caller's stack. Capturing it eagerly cost 3-7 us per call (a stack walk through cold caches after a large
 * kernel), a large part of a layer call's overhead.
 * @internal
 */
export async function callNative<T>(fn: (native: NativeBinding) => Promise<T>): Promise<T> {
  try {
    return await fn(loadNative());
  } catch (err) {
    throw toQkError(err, new Error());
  }
}

/**
 * Normalises a possibly negative axis against `rank`.
 * @throws InvalidArgumentError naming `name`.
 * @internal
 */
export function normalizeAxis(axis: unknown, rank: number, name = 'axis'): number {
  if (typeof axis !== 'number' || !Number.isInteger(axis) || axis < -Math.max(rank, 1) || axis >= Math.max(rank, 1)) {
    throw new InvalidArgumentError(
      `Expected an integer in [${-Math.max(rank, 1)}, ${Math.max(rank, 1) - 1}] for ${name} but received ${describe(axis)}`,
    );
  }
  return axis < 0 ? axis + Math.max(rank, 1) : axis;
}

/**
 * The [outer, len, inner] view of `shape` for a contiguous run of axes `first..last`.
 * @internal
 */
export function axisView(shape: Shape, first: number, last: number): { outer: number; len: number; inner: number } {
  let outer = 1;
  let len = 1;
  let inner = 1;
  shape.forEach((d, i) => {
    if (i < first) outer *= d;
    else if (i <= last) len *= d;
    else inner *= d;
  });
  return { outer, len, inner };
}
