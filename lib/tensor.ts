/**
 * `Tensor`: a dtype, a shape and a contiguous row-major TypedArray. int4/uint4 tensors are packed two values per
 * byte along the last axis (low nibble first; an odd last dimension leaves the top nibble of each row's last
 * byte zero). Conversions between float32 and float16/bfloat16/fp8 run in native code with
 * round-to-nearest-even and the NaN/Inf rules of ml_dtypes (see {@link Tensor.astype}).
 * @packageDocumentation
 */
import {
  DType,
  DTypeContainerMap,
  Container,
  dtypeInfo,
  containerCtor,
  isContainerOf,
} from './dtype';
import { InvalidArgumentError, OutOfMemoryError, ShapeMismatchError, toQkError } from './errors';
import type { ConversionKind } from './native/binding';
import { loadNative } from './native/load';
import { chargeAllocation } from './alloc-budget';

const CONTAINER_BYTES: Record<string, number> = { Float32Array: 4, Int32Array: 4, Uint16Array: 2, Int8Array: 1, Uint8Array: 1 };

/** A shape: non-negative integer dimensions, row-major. */
export type Shape = readonly number[];

/**
 * Checks that `shape` is an array of non-negative safe integers and returns a frozen copy.
 * @throws InvalidArgumentError naming `name`.
 * @example
 * ```ts
 * validateShape([2, 3]); // [2, 3]
 * validateShape([2, -1]); // throws: Expected a non-negative integer for shape[1] but received -1
 * ```
 */
export function validateShape(shape: unknown, name = 'shape'): Shape {
  if (!Array.isArray(shape)) {
    throw new InvalidArgumentError(`Expected an array of non-negative integers for ${name} but received ${describe(shape)}`);
  }
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new InvalidArgumentError(`Expected a non-negative integer for ${name}[${i}] but received ${describe(d)}`);
    }
  });
  let n = 1;
  for (const d of shape as number[]) {
    n *= d;
    if (!Number.isSafeInteger(n)) {
      throw new InvalidArgumentError(`Expected a shape whose element count fits in 2^53 for ${name} but received [${shape.join(', ')}]`);
    }
  }
  return Object.freeze([...(shape as number[])]);
}

/**
 * Number of elements of a shape (1 for a scalar shape `[]`).
 * @example
 * ```ts
 * shapeSize([2, 3, 4]); // 24
 * ```
 */
export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Container elements a tensor of `dtype` and `shape` needs (packed dtypes pad each last-axis row to whole bytes).
 * @example
 * ```ts
 * containerLengthForShape('int4', [3, 5]); // 9  (3 rows x 3 bytes)
 * ```
 */
export function containerLengthForShape(dtype: DType, shape: Shape): number {
  const info = dtypeInfo(dtype);
  if (!info.packed) return shapeSize(shape);
  const last = shape.length === 0 ? 1 : shape[shape.length - 1];
  const rows = shape.length === 0 ? 1 : shapeSize(shape.slice(0, -1));
  return rows * Math.ceil((last * info.bits) / 8);
}

/** Anything `tensor()` accepts as data. */
export type TensorLike = Container | number[] | number;

/**
 * An n-dimensional array with a dtype. Immutable metadata; `data` is the caller's array (not copied).
 *
 * @example
 * ```ts
 * import { Tensor } from 'quantkit';
 * const t = new Tensor('float32', [2, 2], new Float32Array([1, 2, 3, 4]));
 * const h = t.astype('float16');          // native, round-to-nearest-even
 * h.toFloat32().data;                     // Float32Array [1, 2, 3, 4]
 * ```
 */
export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: Shape;
  readonly data: DTypeContainerMap[D];

  /**
   * @param dtype - element type
   * @param shape - dimensions (validated)
   * @param data - container of the dtype's TypedArray type and exact length; zero-filled when omitted
   */
  constructor(dtype: D, shape: readonly number[], data?: DTypeContainerMap[D]) {
    const info = dtypeInfo(dtype, 'dtype');
    this.shape = validateShape(shape as number[]);
    this.dtype = dtype;
    const need = containerLengthForShape(dtype, this.shape);
    if (data === undefined) {
      chargeAllocation(need * CONTAINER_BYTES[info.container], `a ${dtype} tensor of shape [${this.shape.join(', ')}]`);
      try {
        this.data = containerCtor(dtype)(need);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        throw new OutOfMemoryError(`Expected to allocate a ${dtype} tensor of shape [${this.shape.join(', ')}] but the allocation failed: ${err.message}`, { cause: err });
      }
    } else {
      if (!isContainerOf(dtype, data)) {
        throw new InvalidArgumentError(
          `Expected a ${info.container} for data of a ${dtype} tensor but received ${describe(data)}`,
        );
      }
      if (data.length !== need) {
        throw new ShapeMismatchError(
          `Expected ${need} elements for data of a ${dtype} tensor of shape [${this.shape.join(', ')}] but received ${data.length}`,
        );
      }
      this.data = data;
    }
  }

  /** Number of logical elements. */
  get size(): number {
    return shapeSize(this.shape);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Bytes held by `data`. */
  get byteLength(): number {
    return this.data.byteLength;
  }

  /**
   * A tensor with the same data and another shape of the same size (int4/uint4: the last dimension must stay).
   * @example
   * ```ts
   * t.reshape([4]);
   * ```
   */
  reshape(shape: readonly number[]): Tensor<D> {
    const s = validateShape(shape as number[]);
    if (shapeSize(s) !== this.size) {
      throw new ShapeMismatchError(`Expected a shape with ${this.size} elements for shape but received [${s.join(', ')}]`);
    }
    if (dtypeInfo(this.dtype).packed && s[s.length - 1] !== this.shape[this.shape.length - 1]) {
      throw new InvalidArgumentError(`Expected the last dimension ${this.shape[this.shape.length - 1]} to stay for shape of a packed ${this.dtype} tensor but received [${s.join(', ')}]`);
    }
    return new Tensor(this.dtype, s, this.data);
  }

  /**
   * Converts to float32 (exact for every dtype).
   * @example
   * ```ts
   * new Tensor('int4', [3], new Int8Array([0x2d, 0x07])).toFloat32().data; // [-3, 2, 7]
   * ```
   */
  toFloat32(): Tensor<'float32'> {
    const out = new Float32Array(this.size);
    const d = this.dtype as DType;
    switch (d) {
      case 'float32':
        out.set(this.data as Float32Array);
        break;
      case 'float16':
        nativeConvert('f16_to_f32', this.data, out);
        break;
      case 'bfloat16':
        nativeConvert('bf16_to_f32', this.data, out);
        break;
      case 'float8_e4m3fn':
        nativeConvert('e4m3fn_to_f32', this.data, out);
        break;
      case 'float8_e5m2':
        nativeConvert('e5m2_to_f32', this.data, out);
        break;
      case 'int4':
      case 'uint4': {
        const last = this.rank === 0 ? 1 : this.shape[this.rank - 1];
        const rowBytes = Math.ceil(last / 2);
        const rows = last === 0 ? 0 : this.size / last;
        const bytes = this.data as Int8Array | Uint8Array;
        const signed = d === 'int4';
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < last; j++) {
            const b = bytes[r * rowBytes + (j >> 1)] & 0xff;
            const v = (j & 1) === 0 ? b & 0xf : b >> 4;
            out[r * last + j] = signed ? (v ^ 8) - 8 : v;
          }
        }
        break;
      }
      default:
        for (let i = 0; i < out.length; i++) out[i] = (this.data as Int8Array)[i];
    }
    return new Tensor('float32', this.shape, out);
  }

  /**
   * Converts to another dtype. Float targets round to nearest even; float16 and float8_e5m2 overflow to ±inf;
   * float8_e4m3fn has no infinity, so ±inf and values that round past ±448 become NaN (ml_dtypes behaviour —
   * quantizers clip to the finite range before casting, as Keras does). Integer targets round half to even and
   * throw when a value is out of range or NaN (use a quantizer for scaling).
   * @example
   * ```ts
   * tensor([1.5, 1000], [2]).astype('float8_e4m3fn').toFloat32().data; // [1.5, NaN]
   * ```
   */
  astype<T extends DType>(dtype: T): Tensor<T> {
    const info = dtypeInfo(dtype, 'dtype');
    if ((this.dtype as DType) === dtype) return this as unknown as Tensor<T>;
    const src = this.dtype === 'float32' ? (this.data as Float32Array) : this.toFloat32().data;
    const t = new Tensor(dtype, this.shape);
    const kinds: Partial<Record<DType, ConversionKind>> = {
      float16: 'f32_to_f16',
      bfloat16: 'f32_to_bf16',
      float8_e4m3fn: 'f32_to_e4m3fn',
      float8_e5m2: 'f32_to_e5m2',
    };
    const kind = kinds[dtype];
    if (dtype === 'float32') {
      (t.data as Float32Array).set(src);
    } else if (kind) {
      nativeConvert(kind, src, t.data);
    } else {
      const values = new Float64Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = roundHalfEven(src[i]);
        if (!(v >= info.min && v <= info.max)) {
          throw new InvalidArgumentError(
            `Expected values within [${info.min}, ${info.max}] to cast to ${dtype} but received ${src[i]} at index ${i}; ` +
              'use absMaxQuantize() to scale floats into an integer range',
          );
        }
        values[i] = v;
      }
      if (info.packed) {
        const last = this.rank === 0 ? 1 : this.shape[this.rank - 1];
        const rowBytes = Math.ceil(last / 2);
        const rows = last === 0 ? 0 : this.size / last;
        const bytes = t.data as Int8Array | Uint8Array;
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < last; j += 2) {
            const lo = values[r * last + j] & 0xf;
            const hi = j + 1 < last ? values[r * last + j + 1] & 0xf : 0;
            bytes[r * rowBytes + (j >> 1)] = lo | (hi << 4);
          }
        }
      } else {
        (t.data as Int8Array).set(values);
      }
    }
    return t;
  }

  /**
   * The values as a flat array of numbers (converted through float32).
   * @example
   * ```ts
   * tensor([1, 2], [2], 'int8').toArray(); // [1, 2]
   * ```
   */
  toArray(): number[] {
    return Array.from(this.toFloat32().data);
  }

  /** A short description for logs. */
  toString(): string {
    return `Tensor<${this.dtype}>[${this.shape.join(', ')}]`;
  }
}

/**
 * Creates a tensor from numbers or a TypedArray. Numbers are converted to `dtype` (default float32) with
 * {@link Tensor.astype} rules; a TypedArray must already be the dtype's container.
 * @example
 * ```ts
 * const x = tensor([0.3, -0.6, 0.9], [1, 3]);
 * const q = tensor(new Int8Array([1, 2]), [2], 'int8');
 * ```
 */
export function tensor<D extends DType = 'float32'>(data: TensorLike, shape?: readonly number[], dtype?: D): Tensor<D> {
  const dt = (dtype ?? 'float32') as D;
  dtypeInfo(dt, 'dtype');
  if (typeof data === 'number') data = [data];
  if (Array.isArray(data)) {
    const s = shape ?? [data.length];
    const f = new Float32Array(data.length);
    data.forEach((v, i) => {
      if (typeof v !== 'number') throw new InvalidArgumentError(`Expected a number for data[${i}] but received ${describe(v)}`);
      f[i] = v;
    });
    return new Tensor('float32', s, f).astype(dt);
  }
  return new Tensor(dt, shape ?? [data.length], data as DTypeContainerMap[D]);
}

/**
 * Round half to even, the one rounding rule quantkit uses.
 * @example
 * ```ts
 * [0.5, 1.5, 2.5, -2.5].map(roundHalfEven); // [0, 2, 2, -2]
 * ```
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function nativeConvert(kind: ConversionKind, src: ArrayBufferView, dst: ArrayBufferView): void {
  const site = new Error();
  try {
    loadNative().convertSync(kind, src, dst);
  } catch (err) {
    throw toQkError(err, site);
  }
}

/** A short description of any value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length?: number }).length ?? v.byteLength})`;
  if (Array.isArray(v)) return `an Array(${v.length})`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
}
