/**
 * The quantkit error family. Every error quantkit throws or rejects with is a {@link QkError} with a stable
 * string {@link QkError.code}, so callers can branch on `err.code` without parsing messages.
 *
 * @example
 * ```ts
 * import { absMaxQuantize, QkError } from 'quantkit';
 * try {
 *   await absMaxQuantize(tensor, { axis: 5 });
 * } catch (err) {
 *   if (err instanceof QkError && err.code === 'QK_INVALID_ARGUMENT') console.error(err.message);
 * }
 * ```
 * @packageDocumentation
 */

/** Stable error codes. New codes may be added; existing ones never change meaning. */
export type QkErrorCode =
  | 'QK_INVALID_ARGUMENT'
  | 'QK_SHAPE_MISMATCH'
  | 'QK_UNSUPPORTED'
  | 'QK_NOT_BUILT'
  | 'QK_ALREADY_QUANTIZED'
  | 'QK_CORRUPT_FILE'
  | 'QK_DEVICE'
  | 'QK_OUT_OF_MEMORY'
  | 'QK_NATIVE_LOAD'
  | 'QK_DISPOSED'
  | 'QK_ABORTED'
  | 'QK_INTERNAL';

/**
 * Base class of every quantkit error.
 *
 * @example
 * ```ts
 * if (err instanceof QkError) console.log(err.code); // e.g. 'QK_SHAPE_MISMATCH'
 * ```
 */
export class QkError extends Error {
  /** The stable machine-readable code. */
  readonly code: QkErrorCode;
  constructor(code: QkErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * An argument has the wrong type or a value outside what the call accepts.
 * @example
 * ```ts
 * throw new InvalidArgumentError('Expected an integer for axis but received 1.5');
 * ```
 */
export class InvalidArgumentError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_INVALID_ARGUMENT', message, options);
  }
}

/**
 * Shapes or lengths of arguments disagree (for example a GEMM with mismatched inner dimensions).
 * @example
 * ```ts
 * throw new ShapeMismatchError('Expected b.shape[0] = 3 for b but received 4');
 * ```
 */
export class ShapeMismatchError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_SHAPE_MISMATCH', message, options);
  }
}

/**
 * A valid request this build, CPU or device cannot serve (for example CUDA on a machine without it).
 * @example
 * ```ts
 * throw new UnsupportedError('CUDA is not available');
 * ```
 */
export class UnsupportedError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_UNSUPPORTED', message, options);
  }
}

/**
 * A layer or model was used before it was built.
 * @example
 * ```ts
 * throw new NotBuiltError("Layer 'dense' must be built before quantize()");
 * ```
 */
export class NotBuiltError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_NOT_BUILT', message, options);
  }
}

/**
 * A layer is already quantized and cannot be quantized again.
 * @example
 * ```ts
 * throw new AlreadyQuantizedError("Layer 'dense' is already quantized with mode 'int8'");
 * ```
 */
export class AlreadyQuantizedError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_ALREADY_QUANTIZED', message, options);
  }
}

/**
 * A file is truncated, inconsistent or hostile.
 * @example
 * ```ts
 * throw new CorruptFileError('model.keras: zip entry config.json is truncated');
 * ```
 */
export class CorruptFileError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_CORRUPT_FILE', message, options);
  }
}

/**
 * The CUDA runtime or driver reported an error; the message carries its text.
 * @example
 * ```ts
 * throw new DeviceError('cudaMalloc failed: out of memory');
 * ```
 */
export class DeviceError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_DEVICE', message, options);
  }
}

/**
 * An allocation failed (host or device).
 * @example
 * ```ts
 * throw new OutOfMemoryError('Out of memory allocating GEMM packing buffers');
 * ```
 */
export class OutOfMemoryError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_OUT_OF_MEMORY', message, options);
  }
}

/**
 * The native addon could not be loaded. {@link NativeLoadError.tried} lists every place that was searched.
 * @example
 * ```ts
 * catch (err) { if (err instanceof NativeLoadError) console.error(err.tried); }
 * ```
 */
export class NativeLoadError extends QkError {
  /** Paths and mechanisms that were tried, in order. */
  readonly tried: string[];
  constructor(message: string, tried: string[], options?: { cause?: unknown }) {
    super('QK_NATIVE_LOAD', message, options);
    this.tried = tried;
  }
}

/**
 * An object was used after `dispose()`.
 * @example
 * ```ts
 * throw new DisposedError('DeviceBuffer was disposed');
 * ```
 */
export class DisposedError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_DISPOSED', message, options);
  }
}

/**
 * Work was cancelled through an `AbortSignal`.
 * @example
 * ```ts
 * throw new AbortedError('quantize() was aborted');
 * ```
 */
export class AbortedError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_ABORTED', message, options);
  }
}

/**
 * A bug in quantkit. Please report it with the message.
 * @example
 * ```ts
 * throw new InternalError('unexpected state');
 * ```
 */
export class InternalError extends QkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('QK_INTERNAL', message, options);
  }
}

const byCode: Record<string, new (message: string, options?: { cause?: unknown }) => QkError> = {
  QK_INVALID_ARGUMENT: InvalidArgumentError,
  QK_SHAPE_MISMATCH: ShapeMismatchError,
  QK_UNSUPPORTED: UnsupportedError,
  QK_NOT_BUILT: NotBuiltError,
  QK_ALREADY_QUANTIZED: AlreadyQuantizedError,
  QK_CORRUPT_FILE: CorruptFileError,
  QK_DEVICE: DeviceError,
  QK_OUT_OF_MEMORY: OutOfMemoryError,
  QK_DISPOSED: DisposedError,
  QK_ABORTED: AbortedError,
  QK_INTERNAL: InternalError,
};

/**
 * Converts an error thrown by the native addon (a plain `Error` with a `code` property) into the matching
 * {@link QkError} subclass. `callSite` (an `Error` created where the public API was entered) supplies the
 * caller's JavaScript stack, which native rejections do not have.
 *
 * @example
 * ```ts
 * const site = new Error();
 * try { await native.sgemm(...); } catch (e) { throw toQkError(e, site); }
 * ```
 */
export function toQkError(err: unknown, callSite?: Error): QkError {
  if (err instanceof QkError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const Ctor = typeof code === 'string' ? byCode[code] : undefined;
  const out = Ctor ? new Ctor(message, { cause: err }) : new InternalError(message, { cause: err });
  if (callSite?.stack) {
    const frames = callSite.stack.split('\n').slice(1).join('\n');
    out.stack = `${out.name}: ${message}\n${frames}`;
  }
  return out;
}
