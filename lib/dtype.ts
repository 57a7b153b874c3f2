/**
 * Data types. Names follow Keras / ml_dtypes. 16-bit floats ride in `Uint16Array`, fp8 in `Uint8Array`,
 * and int4/uint4 are packed two per byte (low nibble first) along the last axis.
 * The table here must equal the native one (`csrc/include/qk/dtype.h`); a test checks it.
 * @packageDocumentation
 */
import { InvalidArgumentError } from './errors';

/** Every dtype quantkit tensors can hold. */
export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int8'
  | 'uint8'
  | 'int32'
  | 'int4'
  | 'uint4'
  | 'float8_e4m3fn'
  | 'float8_e5m2';

/** The JavaScript container of each dtype's bytes. */
export interface DTypeContainerMap {
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  int32: Int32Array;
  int4: Int8Array;
  uint4: Uint8Array;
  float8_e4m3fn: Uint8Array;
  float8_e5m2: Uint8Array;
}

/** A TypedArray type quantkit uses as a container. */
export type Container = DTypeContainerMap[DType];

/** Static facts about a dtype. */
export interface DTypeInfo {
  /** Native enum value (`qk::DType`). */
  readonly id: number;
  readonly name: DType;
  /** Bits per logical element. */
  readonly bits: number;
  /** Name of the TypedArray that carries the bytes. */
  readonly container: 'Float32Array' | 'Uint16Array' | 'Int8Array' | 'Uint8Array' | 'Int32Array';
  /** True for floating-point formats. */
  readonly isFloat: boolean;
  /** True for sub-byte formats packed several elements per byte. */
  readonly packed: boolean;
  /** Smallest and largest finite value (integers: the exact range). */
  readonly min: number;
  readonly max: number;
}

const info = (
  id: number,
  name: DType,
  bits: number,
  container: DTypeInfo['container'],
  isFloat: boolean,
  min: number,
  max: number,
): DTypeInfo => Object.freeze({ id, name, bits, container, isFloat, packed: bits < 8, min, max });

/**
 * The dtype table, indexed by native id.
 * @example
 * ```ts
 * DTYPES.find((d) => d.name === 'float8_e4m3fn')!.max; // 448
 * ```
 */
export const DTYPES: readonly DTypeInfo[] = Object.freeze([
  info(0, 'float32', 32, 'Float32Array', true, -3.4028234663852886e38, 3.4028234663852886e38),
  info(1, 'float16', 16, 'Uint16Array', true, -65504, 65504),
  info(2, 'bfloat16', 16, 'Uint16Array', true, -3.3895313892515355e38, 3.3895313892515355e38),
  info(3, 'int8', 8, 'Int8Array', false, -128, 127),
  info(4, 'uint8', 8, 'Uint8Array', false, 0, 255),
  info(5, 'int32', 32, 'Int32Array', false, -2147483648, 2147483647),
  info(6, 'int4', 4, 'Int8Array', false, -8, 7),
  info(7, 'uint4', 4, 'Uint8Array', false, 0, 15),
  info(8, 'float8_e4m3fn', 8, 'Uint8Array', true, -448, 448),
  info(9, 'float8_e5m2', 8, 'Uint8Array', true, -57344, 57344),
]);

const byName = new Map<string, DTypeInfo>(DTYPES.map((d) => [d.name, d]));

/**
 * True when `name` is a dtype quantkit knows.
 * @example
 * ```ts
 * isDType('bfloat16'); // true
 * ```
 */
export function isDType(name: unknown): name is DType {
  return typeof name === 'string' && byName.has(name);
}

/**
 * Facts about a dtype; throws {@link InvalidArgumentError} naming `argName` for an unknown name.
 * @example
 * ```ts
 * dtypeInfo('int4').bits; // 4
 * ```
 */
export function dtypeInfo(name: DType | string, argName = 'dtype'): DTypeInfo {
  const d = byName.get(name as string);
  if (!d) {
    throw new InvalidArgumentError(
      `Expected one of ${DTYPES.map((x) => x.name).join(', ')} for ${argName} but received ${JSON.stringify(name)}`,
    );
  }
  return d;
}

const ctors = {
  Float32Array,
  Uint16Array,
  Int8Array,
  Uint8Array,
  Int32Array,
} as const;

/**
 * Number of container elements needed for `count` logical elements of `dtype` (packed types round up).
 * @example
 * ```ts
 * containerLength('int4', 5); // 3
 * ```
 */
export function containerLength(dtype: DType, count: number): number {
  const d = dtypeInfo(dtype);
  return d.packed ? Math.ceil((count * d.bits) / 8) : count;
}

/**
 * Allocates a zeroed container for `count` logical elements of `dtype`.
 * @example
 * ```ts
 * const bytes = allocContainer('float16', 10); // Uint16Array(10)
 * ```
 */
export function allocContainer<D extends DType>(dtype: D, count: number): DTypeContainerMap[D] {
  const d = dtypeInfo(dtype);
  return new ctors[d.container](containerLength(dtype, count)) as DTypeContainerMap[D];
}

/**
 * A function that allocates a zeroed container with `length` elements (not logical elements) for `dtype`.
 * @example
 * ```ts
 * containerCtor('bfloat16')(4); // Uint16Array(4)
 * ```
 */
export function containerCtor<D extends DType>(dtype: D): (length: number) => DTypeContainerMap[D] {
  const C = ctors[dtypeInfo(dtype).container];
  return (length: number) => new C(length) as DTypeContainerMap[D];
}

/**
 * True when `data` is the container type of `dtype`.
 * @example
 * ```ts
 * isContainerOf('int8', new Int8Array(3)); // true
 * ```
 */
export function isContainerOf(dtype: DType, data: unknown): boolean {
  const d = dtypeInfo(dtype);
  return data instanceof ctors[d.container];
}
