/**
 * Matrix-level GPTQ for users and downstream libraries that bring their own activations or Hessians:
 * {@link GptqHessian} / {@link gptqHessian} accumulate `H = 2/N · Σ x xᵀ` natively (float64, streamed), and
 * {@link gptqQuantizeMatrix} runs the GPTQ algorithm (damping with retries, the inverse-Hessian factor through
 * a Cholesky factorization, the lazy-batch column sweep) and returns the Keras layouts. The model-level
 * calibration (`model.quantize('gptq', ...)`) uses exactly these functions.
 * @packageDocumentation
 */
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../errors';
import { loadNative } from '../native/load';
import { callNative, OpOptions } from '../ops/call';
import { packInt2, packInt4 } from '../ops/pack';
import { describe, Tensor } from '../tensor';

/** Options of {@link gptqQuantizeMatrix} (the numeric fields of `GPTQConfig`). */
export interface GptqMatrixOptions extends OpOptions {
  /** 2, 3, 4 or 8; default 4. */
  weightBits?: number;
  /** Inputs per group; `-1` = one group over all inputs (per output channel); default 128. */
  groupSize?: number;
  /** Symmetric scale and zero (`zero = 2^(bits-1)`); default false. */
  symmetric?: boolean;
  /** Process inputs in decreasing `diag(H)` order (the result is returned in the original order); default false. */
  activationOrder?: boolean;
  /** `λ = hessianDamping · mean(diag H)` is added to the diagonal, in [0, 1]; default 0.01. */
  hessianDamping?: number;
  /** `false` = one (scale, zero) per group shared by all outputs; default true. */
  perChannel?: boolean;
  /** Attempts of the factorization, damping ×10 each retry, before giving up; default 6. */
  maxDampingTries?: number;
  /** Zero the weights of inputs whose `diag(H)` is 0 (reference GPTQ does; Keras does not); default false. */
  zeroDeadInputs?: boolean;
  /** Also return the dequantized kernel `[in, out]`; default true. */
  dequantize?: boolean;
  /**
   * Use a Float64Array `hessian` as scratch instead of copying it (saves `8·in²` bytes; its contents are
   * destroyed); default false.
   */
  consumeHessian?: boolean;
  /**
   * Where to run: 'cpu' (default) or a CUDA device ('cuda' = device 0, 'cuda:1', ...). The CUDA GPTQ (Cholesky,
   * inverse, lazy-block sweep on the device) gives bit-identical results to the CPU; it has no
   * `perChannel: false`. Rejects with `QK_UNSUPPORTED` without CUDA or a device.
   */
  device?: GptqDevice;
}

/** 'cpu', or a CUDA device: 'cuda' (= 'cuda:0') or 'cuda:<index>'. */
export type GptqDevice = 'cpu' | 'cuda' | `cuda:${number}`;

/**
 * Checks a {@link GptqDevice} before any work: InvalidArgumentError for a bad string, UnsupportedError when it names
 * a CUDA device this process cannot use.
 * @internal
 * @example
 * ```ts
 * checkGptqDevice('cuda'); // throws QK_UNSUPPORTED without a CUDA device
 * ```
 */
export function checkGptqDevice(device: GptqDevice | undefined): void {
  const index = cudaIndex(device);
  if (index === undefined) return;
  const c = loadNative().capabilities().cuda;
  if (!c.compiled) throw new UnsupportedError('GPTQ on CUDA is not available: quantkit was built without CUDA');
  if (index >= c.devices.length) {
    throw new UnsupportedError(`GPTQ on CUDA device ${index} is not available: ${c.error ?? `${c.devices.length} CUDA device(s) found`}`);
  }
}

/**
 * The CUDA device index of a {@link GptqDevice} (undefined for the CPU); InvalidArgumentError for anything but
 * 'cpu', 'cuda' or 'cuda:<index>'. Shared with `Layer.to()` / `Model.to()`.
 * @example
 * ```ts
 * cudaIndex('cuda:1'); // 1
 * ```
 */
export function cudaIndex(device: GptqDevice | undefined): number | undefined {
  if (device === undefined || device === 'cpu') return undefined;
  if (device === 'cuda') return 0;
  const m = typeof device === 'string' ? /^cuda:(\d{1,4})$/.exec(device) : null;
  if (!m) throw new InvalidArgumentError(`Expected 'cpu', 'cuda' or 'cuda:<index>' for device but received ${describe(device)}`);
  return Number(m[1]);
}

/** What {@link gptqQuantizeMatrix} returns: Keras's GPTQ variables plus diagnostics. */
export interface GptqMatrixResult {
  /** Keras `quantized_kernel`: uint8 levels `[out, in]`; 4-bit packed two per byte along axis 0 (`[ceil(out/2), in]`), 2-bit four per byte (`[ceil(out/4), in]`), 3/8-bit unpacked. */
  quantizedKernel: Tensor<'uint8'>;
  /** The levels unpacked, uint8 `[out, in]` in `[0, 2^bits - 1]`. */
  levels: Tensor<'uint8'>;
  /** `kernel_scale`: float32 `[out, groups]` (w ≈ (q − zero) · scale). */
  scale: Tensor<'float32'>;
  /** `kernel_zero`: uint8 `[out, groups]`, in `[0, 2^bits − 1]`. */
  zero: Tensor<'uint8'>;
  /** `g_idx`: int32 `[in]`, the group of each input (non-decreasing unless activation order). */
  gIdx: Tensor<'int32'>;
  /** The dequantized kernel `[in, out]` (null when `dequantize: false`). */
  dequantized: Tensor<'float32'> | null;
  /** The proxy loss GPTQ minimizes, `Σ (w − q)² / d²` (d = diagonal of the inverse-Hessian factor). */
  loss: number;
  /** The relative damping that succeeded (equal to `hessianDamping` unless retries were needed). */
  dampingUsed: number;
  /** Factorization attempts (1 = the requested damping worked). */
  dampingTries: number;
  /** Inputs whose `diag(H)` was 0 (never activated in the calibration data). */
  deadInputs: number;
  /** Bit width and group size used (group size as given; `-1` = per channel). */
  weightBits: number;
  groupSize: number;
}

function intOption(v: unknown, name: string, ok: (n: number) => boolean, expected: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || !ok(v)) {
    throw new InvalidArgumentError(`Expected ${expected} for ${name} but received ${describe(v)}`);
  }
  return v;
}

function boolOption(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`Expected a boolean for ${name} but received ${describe(v)}`);
  return v;
}

/** Serializes async native calls on one mutable buffer. */
class Queue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * A streaming GPTQ Hessian for a layer with `inFeatures` inputs: `H = 2/N · Σ x xᵀ` over every row `x` of every
 * batch given to {@link GptqHessian.update} (N counts rows, i.e. tokens). The running sum is float64 and
 * streaming in any number of batches gives bit-for-bit the same H as one batch. Memory: `8 · inFeatures²` bytes.
 *
 * @example
 * ```ts
 * const h = new GptqHessian(512);
 * for (const batch of activations) await h.update(batch); // Tensor [..., 512] or Float32Array
 * const H = await h.finalize();                           // Float64Array [512 * 512]
 * ```
 */
export class GptqHessian {
  /** Inputs per row. */
  readonly inFeatures: number;
  private readonly sum: Float64Array;
  private readonly count = new Float64Array(1);
  private readonly queue = new Queue();
  private finalized = false;
  private readonly isa: OpOptions['isa'];
  private readonly device: number | undefined;

  /**
   * `options.device`: 'cpu' (default) or 'cuda' / 'cuda:<index>' to accumulate on a CUDA device (bit-identical).
   * @throws InvalidArgumentError for a non-positive or huge `inFeatures` (8·n² bytes must be allocatable).
   */
  constructor(inFeatures: number, options: OpOptions & { device?: GptqDevice } = {}) {
    this.inFeatures = intOption(inFeatures, 'inFeatures', (n) => n >= 1 && n <= 46340, 'an integer in [1, 46340]');
    this.device = cudaIndex(options.device);
    this.sum = new Float64Array(inFeatures * inFeatures);
    this.isa = options.isa;
  }

  /** Rows seen so far (tokens). */
  get rows(): number {
    return this.count[0];
  }

  /**
   * Adds every row of `x` (a float32 Tensor whose last dimension is `inFeatures`, or a Float32Array of whole rows).
   * Calls are queued, so they may overlap.
   * @throws ShapeMismatchError when the last dimension is not `inFeatures`; InvalidArgumentError after finalize.
   */
  update(x: Tensor | Float32Array): Promise<void> {
    if (this.finalized) return Promise.reject(new InvalidArgumentError('This GptqHessian was finalized: create a new one to accumulate more batches'));
    let data: Float32Array;
    if (x instanceof Tensor) {
      if (x.dtype !== 'float32') {
        return Promise.reject(new InvalidArgumentError(`Expected a float32 Tensor for x but received a ${x.dtype} tensor`));
      }
      if (x.rank < 1 || x.shape[x.rank - 1] !== this.inFeatures) {
        return Promise.reject(
          new ShapeMismatchError(`Expected x with last dimension ${this.inFeatures} but received shape [${x.shape.join(', ')}]`),
        );
      }
      data = x.data as Float32Array;
    } else if (x instanceof Float32Array) {
      if (x.length % this.inFeatures !== 0) {
        return Promise.reject(
          new ShapeMismatchError(`Expected a Float32Array whose length is a multiple of ${this.inFeatures} for x but received length ${x.length}`),
        );
      }
      data = x;
    } else {
      return Promise.reject(new InvalidArgumentError(`Expected a float32 Tensor or a Float32Array for x but received ${describe(x)}`));
    }
    const rows = data.length / this.inFeatures;
    return this.queue.run(() =>
      callNative((n) => n.gptqHessianAccumulate(data, rows, this.inFeatures, this.sum, this.count, this.isa, this.device)),
    );
  }

  /**
   * Mirrors and scales the sum into `H` (`[inFeatures, inFeatures]`, row-major, symmetric) and returns it. The
   * accumulator cannot be updated afterwards. With no rows seen, H is all zeros (every input "dead").
   */
  finalize(): Promise<Float64Array> {
    if (this.finalized) return this.queue.run(async () => this.sum);
    this.finalized = true;
    return this.queue.run(async () => {
      await callNative((n) => n.gptqHessianFinalize(this.sum, this.inFeatures, this.count, this.isa));
      return this.sum;
    });
  }
}

/**
 * Accumulates the GPTQ Hessian of a stream of activation batches (sync or async iterable of float32 Tensors
 * `[..., in]` or Float32Arrays) and returns `{ hessian, inFeatures, rows }`.
 * @example
 * ```ts
 * const { hessian } = await gptqHessian([x1, x2]);          // x1, x2: Tensor [rows, 64]
 * const r = await gptqQuantizeMatrix(kernel, hessian, { weightBits: 4, groupSize: 32 });
 * ```
 * @throws InvalidArgumentError for an empty stream without `inFeatures`, ShapeMismatchError for mixed widths.
 */
export async function gptqHessian(
  batches: Iterable<Tensor | Float32Array> | AsyncIterable<Tensor | Float32Array>,
  options: OpOptions & { inFeatures?: number; device?: GptqDevice } = {},
): Promise<{ hessian: Float64Array; inFeatures: number; rows: number }> {
  if (batches === null || typeof batches !== 'object' || (!(Symbol.iterator in batches) && !(Symbol.asyncIterator in batches))) {
    throw new InvalidArgumentError(`Expected an iterable of float32 Tensors or Float32Arrays for batches but received ${describe(batches)}`);
  }
  let acc: GptqHessian | null = options.inFeatures !== undefined ? new GptqHessian(options.inFeatures, options) : null;
  for await (const b of batches as AsyncIterable<Tensor | Float32Array>) {
    if (acc === null) {
      if (!(b instanceof Tensor) || b.rank < 1) {
        throw new InvalidArgumentError(
          `Expected the first batch to be a Tensor [..., in] (or pass options.inFeatures for Float32Array batches) but received ${describe(b)}`,
        );
      }
      acc = new GptqHessian(b.shape[b.rank - 1], options);
    }
    await acc.update(b);
  }
  if (acc === null) throw new InvalidArgumentError('Expected at least one batch (or options.inFeatures) for batches but received an empty iterable');
  const rows = acc.rows;
  const hessian = await acc.finalize();
  return { hessian, inFeatures: acc.inFeatures, rows };
}

/**
 * GPTQ of one weight matrix. `kernel` is the Keras Dense kernel `[in, out]` (float32), `hessian` the
 * `[in, in]` Hessian of the layer's inputs (from {@link gptqHessian}, or your own; symmetric). Neither is
 * modified (the Hessian is copied because the factorization consumes it).
 *
 * If the damped Hessian is not positive definite the damping is raised ×10 and retried (up to
 * `maxDampingTries`); `dampingUsed` reports what worked.
 *
 * @example
 * ```ts
 * const { hessian } = await gptqHessian([activations]);            // [tokens, 256]
 * const r = await gptqQuantizeMatrix(kernel, hessian, { weightBits: 4, groupSize: 128, activationOrder: true });
 * r.quantizedKernel.shape; // [ceil(out / 2), 256]   (Keras layout)
 * r.loss;                  // proxy loss
 * ```
 * @throws InvalidArgumentError for bad options, non-finite inputs or a Hessian that stays indefinite;
 *   ShapeMismatchError for inconsistent shapes.
 */
export async function gptqQuantizeMatrix(
  kernel: Tensor,
  hessian: Float64Array | Float32Array | Tensor,
  options: GptqMatrixOptions = {},
): Promise<GptqMatrixResult> {
  if (!(kernel instanceof Tensor) || kernel.dtype !== 'float32' || kernel.rank !== 2) {
    throw new InvalidArgumentError(
      `Expected a float32 Tensor of rank 2 ([in, out]) for kernel but received ${kernel instanceof Tensor ? `a ${kernel.dtype} tensor of shape [${kernel.shape.join(', ')}]` : describe(kernel)}`,
    );
  }
  const [inDim, outDim] = kernel.shape;
  let h: Float64Array;
  if (hessian instanceof Float64Array && options.consumeHessian === true) {
    h = hessian;
  } else if (hessian instanceof Float64Array || hessian instanceof Float32Array) {
    h = Float64Array.from(hessian);
  } else if (hessian instanceof Tensor && hessian.dtype === 'float32') {
    if (hessian.rank !== 2 || hessian.shape[0] !== inDim || hessian.shape[1] !== inDim) {
      throw new ShapeMismatchError(`Expected a hessian of shape [${inDim}, ${inDim}] but received [${hessian.shape.join(', ')}]`);
    }
    h = Float64Array.from(hessian.data as Float32Array);
  } else {
    throw new InvalidArgumentError(`Expected a Float64Array, Float32Array or float32 Tensor for hessian but received ${describe(hessian)}`);
  }
  if (h.length !== inDim * inDim) {
    throw new ShapeMismatchError(`Expected a hessian with ${inDim} x ${inDim} = ${inDim * inDim} elements for a kernel of shape [${inDim}, ${outDim}] but received ${h.length}`);
  }
  const bits = options.weightBits ?? 4;
  if (![2, 3, 4, 8].includes(bits as number)) throw new InvalidArgumentError(`Expected one of 2, 3, 4, 8 for weightBits but received ${describe(bits)}`);
  const groupSize = intOption(options.groupSize ?? 128, 'groupSize', (n) => n === -1 || n >= 1, '-1 or a positive integer');
  const damp = options.hessianDamping ?? 0.01;
  if (typeof damp !== 'number' || !(damp >= 0 && damp <= 1)) throw new InvalidArgumentError(`Expected a number in [0, 1] for hessianDamping but received ${describe(damp)}`);
  const tries = intOption(options.maxDampingTries ?? 6, 'maxDampingTries', (n) => n >= 1 && n <= 64, 'an integer in [1, 64]');
  const symmetric = boolOption(options.symmetric ?? false, 'symmetric');
  const actOrder = boolOption(options.activationOrder ?? false, 'activationOrder');
  const perChannel = boolOption(options.perChannel ?? true, 'perChannel');
  const zeroDead = boolOption(options.zeroDeadInputs ?? false, 'zeroDeadInputs');
  const wantDq = boolOption(options.dequantize ?? true, 'dequantize');

  const groups = groupSize === -1 ? 1 : Math.ceil(inDim / groupSize);
  const q = new Uint8Array(outDim * inDim);
  const scale = new Float32Array(outDim * groups);
  const zero = new Uint8Array(outDim * groups);
  const gIdx = new Int32Array(inDim);
  const dq = wantDq ? new Float32Array(inDim * outDim) : null;
  const result = new Float64Array(4);
  await callNative((n) =>
    n.gptqQuantizeMatrix(
      kernel.data as Float32Array, inDim, outDim, h, bits as number, groupSize, symmetric, perChannel, actOrder, damp, tries,
      zeroDead, q, scale, zero, gIdx, dq, result, options.isa, cudaIndex(options.device),
    ),
  );
  const levels = new Tensor('uint8', [outDim, inDim], q);
  let quantizedKernel: Tensor<'uint8'> = levels;
  if (bits === 4) quantizedKernel = (await packInt4(levels, 0, 'uint8')).packed as Tensor<'uint8'>;
  else if (bits === 2) quantizedKernel = (await packInt2(levels, 0, 'uint8')).packed as Tensor<'uint8'>;
  return {
    quantizedKernel,
    levels,
    scale: new Tensor('float32', [outDim, groups], scale),
    zero: new Tensor('uint8', [outDim, groups], zero),
    gIdx: new Tensor('int32', [inDim], gIdx),
    dequantized: dq ? new Tensor('float32', [inDim, outDim], dq) : null,
    loss: result[3],
    dampingUsed: result[0],
    dampingTries: result[1],
    deadInputs: result[2],
    weightBits: bits as number,
    groupSize,
  };
}
