/**
 * Sub-byte packing in the Keras layouts (`keras.quantizers.pack_int4` / `pack_int2`):
 * int4 packs two values per byte along `axis` (element 2k in the low nibble, 2k+1 in the high nibble; an odd
 * length is padded with 0); int2 packs four values per byte (element 4k+j in bits 2j..2j+1). The container dtype
 * is kept: int8 values pack into int8 bytes (two's complement), uint8 values into uint8 bytes.
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import { Tensor, describe } from '../tensor';
import { axisView, callNative, normalizeAxis, OpOptions } from './call';

/** Container dtypes of packed data. */
export type PackDType = 'int8' | 'uint8';

/** Result of {@link packInt4} / {@link packInt2}. */
export interface Packed {
  /** Packed bytes, same dtype as the input, `packedShape`. */
  packed: Tensor<PackDType>;
  /** The input shape with the axis length divided (rounded up) by the values per byte. */
  packedShape: number[];
  /** The unpadded length of the packed axis (pass it to the unpack function). */
  origLen: number;
}

function checkInput(arr: unknown, dtype: PackDType | undefined, lo: number, hi: number, bits: number): Tensor<PackDType> {
  if (!(arr instanceof Tensor) || (arr.dtype !== 'int8' && arr.dtype !== 'uint8')) {
    throw new InvalidArgumentError(`Expected an int8 or uint8 Tensor for arr but received ${arr instanceof Tensor ? `a ${arr.dtype} tensor` : describe(arr)}`);
  }
  const d = dtype ?? arr.dtype;
  if (d !== arr.dtype) {
    throw new InvalidArgumentError(`Expected arr to already have dtype '${d}' for dtype but received a ${arr.dtype} tensor`);
  }
  const data = arr.data as Int8Array | Uint8Array;
  const [min, max] = arr.dtype === 'int8' ? [lo, hi] : [0, (1 << bits) - 1];
  for (let i = 0; i < data.length; i++) {
    if (data[i] < min || data[i] > max) {
      throw new InvalidArgumentError(
        `Expected ${bits}-bit values in [${min}, ${max}] for arr but received ${data[i]} at flat index ${i}`,
      );
    }
  }
  return arr as Tensor<PackDType>;
}

async function pack(
  arr: unknown,
  axis: number,
  dtype: PackDType | undefined,
  per: number,
  options: OpOptions,
): Promise<Packed> {
  const bits = 8 / per;
  const t = checkInput(arr, dtype, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, bits);
  if (t.rank === 0) throw new InvalidArgumentError('Expected a tensor of rank >= 1 for arr but received a scalar');
  const ax = normalizeAxis(axis, t.rank);
  const { outer, len, inner } = axisView(t.shape, ax, ax);
  const plen = Math.ceil(len / per);
  const packedShape = t.shape.map((d, i) => (i === ax ? plen : d));
  const out = t.dtype === 'int8' ? new Int8Array(outer * plen * inner) : new Uint8Array(outer * plen * inner);
  const data = t.data as Int8Array | Uint8Array;
  await callNative((n) =>
    per === 2 ? n.packInt4(data, outer, len, inner, out, options.isa) : n.packInt2(data, outer, len, inner, out, options.isa),
  );
  return { packed: new Tensor(t.dtype, packedShape, out as never), packedShape, origLen: len };
}

async function unpack(
  packed: unknown,
  origLen: number,
  axis: number,
  dtype: PackDType,
  per: number,
  options: OpOptions,
): Promise<Tensor<PackDType>> {
  if (!(packed instanceof Tensor) || (packed.dtype !== 'int8' && packed.dtype !== 'uint8')) {
    throw new InvalidArgumentError(`Expected an int8 or uint8 Tensor for packed but received ${packed instanceof Tensor ? `a ${packed.dtype} tensor` : describe(packed)}`);
  }
  if (dtype !== 'int8' && dtype !== 'uint8') {
    throw new InvalidArgumentError(`Expected 'int8' or 'uint8' for dtype but received ${describe(dtype)}`);
  }
  if (packed.rank === 0) throw new InvalidArgumentError('Expected a tensor of rank >= 1 for packed but received a scalar');
  const ax = normalizeAxis(axis, packed.rank);
  const plen = packed.shape[ax];
  if (!Number.isSafeInteger(origLen) || origLen < 0 || Math.ceil(origLen / per) !== plen) {
    throw new InvalidArgumentError(
      `Expected an integer origLen with ceil(origLen / ${per}) = ${plen} (the packed axis length) for origLen but received ${describe(origLen)}`,
    );
  }
  const shape = packed.shape.map((d, i) => (i === ax ? origLen : d));
  const { outer, inner } = axisView(packed.shape, ax, ax);
  const out = dtype === 'int8' ? new Int8Array(outer * origLen * inner) : new Uint8Array(outer * origLen * inner);
  const src = packed.data as Int8Array | Uint8Array;
  const signed = dtype === 'int8';
  await callNative((n) =>
    per === 2
      ? n.unpackInt4(src, outer, origLen, inner, signed, out, options.isa)
      : n.unpackInt2(src, outer, origLen, inner, signed, out, options.isa),
  );
  return new Tensor(dtype, shape, out as never);
}

/**
 * Packs int4 values (int8 in [-8, 7] or uint8 in [0, 15]) two per byte along `axis`.
 * @example
 * ```ts
 * const { packed, origLen } = await packInt4(tensor([-3, 7, 2, -8, 1, 0], [3, 2], 'int8'), 0);
 * // packed = [[45, -121], [1, 0]] (int8), origLen = 3
 * ```
 */
export function packInt4(arr: Tensor, axis = 0, dtype?: PackDType, options: OpOptions = {}): Promise<Packed> {
  return pack(arr, axis, dtype, 2, options);
}

/**
 * Inverse of {@link packInt4}: `dtype` 'int8' sign-extends each nibble, 'uint8' zero-extends.
 * @example
 * ```ts
 * const x = await unpackInt4(packed, 3, 0, 'int8'); // [[-3, 7], [2, -8], [1, 0]]
 * ```
 */
export function unpackInt4(
  packed: Tensor,
  origLen: number,
  axis = 0,
  dtype: PackDType = 'int8',
  options: OpOptions = {},
): Promise<Tensor<PackDType>> {
  return unpack(packed, origLen, axis, dtype, 2, options);
}

/**
 * Packs int2 values (int8 in [-2, 1] or uint8 in [0, 3]) four per byte along `axis`.
 * @example
 * ```ts
 * const { packed } = await packInt2(tensor([-2, 1, 0, -1, 1, -2, 0, 1, -1, 0], [5, 2], 'int8'), 0);
 * // packed = [[18, 109], [3, 0]]
 * ```
 */
export function packInt2(arr: Tensor, axis = 0, dtype?: PackDType, options: OpOptions = {}): Promise<Packed> {
  return pack(arr, axis, dtype, 4, options);
}

/**
 * Inverse of {@link packInt2}.
 * @example
 * ```ts
 * const x = await unpackInt2(packed, 5, 0, 'int8');
 * ```
 */
export function unpackInt2(
  packed: Tensor,
  origLen: number,
  axis = 0,
  dtype: PackDType = 'int8',
  options: OpOptions = {},
): Promise<Tensor<PackDType>> {
  return unpack(packed, origLen, axis, dtype, 4, options);
}
