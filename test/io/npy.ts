// A tiny .npy reader for tests: NPY format v1/v2/v3 header, little-endian <f4/<i4/<i8/<f8, C order.
// (Format: magic "\x93NUMPY", major, minor, header length u16 (v1) or u32 (v2+), then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (4, 10), } padded with spaces and a newline.)

export interface Npy {
  descr: '<f4' | '<i4' | '<i8' | '<f8';
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array | Float64Array;
}

export function readNpy(bytes: Uint8Array): Npy {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || !magic.every((b, i) => bytes[i] === b)) throw new Error('not an .npy file');
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLen = dv.getUint32(8, true);
    start = 12;
  } else {
    throw new Error(`unsupported .npy version ${major}`);
  }
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`bad .npy header ${header}`);
  if (fortran !== 'False') throw new Error('Fortran-order .npy is not supported');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const off = start + headerLen;
  const body = bytes.slice(off); // copy: aligned
  const ctors = { '<f4': Float32Array, '<i4': Int32Array, '<i8': BigInt64Array, '<f8': Float64Array } as const;
  const C = ctors[descr as keyof typeof ctors];
  if (!C) throw new Error(`unsupported .npy dtype ${descr}`);
  if (body.length !== count * C.BYTES_PER_ELEMENT) throw new Error(`.npy data has ${body.length} bytes, expected ${count * C.BYTES_PER_ELEMENT}`);
  return { descr: descr as Npy['descr'], shape, data: new C(body.buffer, 0, count) };
}
