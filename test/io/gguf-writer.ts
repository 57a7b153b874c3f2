// An independent GGUF writer for tests (written from the format description, not from lib/io/gguf.ts): it can
// produce valid files of every value type, and - through its low-level knobs - files that lie.

export type KV =
  | { type: 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64'; value: number }
  | { type: 'uint64' | 'int64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: string; value: unknown[] }
  /** Raw: the value type number and the bytes of the value, written as they are. */
  | { type: 'raw'; typeId: number; bytes: Uint8Array };

export interface TensorSpec {
  name: string;
  /** ggml dims, innermost first. */
  dims: number[];
  /** ggml type id (0 F32, 1 F16, 2 Q4_0, 30 BF16, ...). */
  typeId: number;
  data: Uint8Array;
  /** Override the relative offset written in the header. */
  offset?: bigint;
  /** Override n_dims written in the header. */
  nDims?: number;
}

export interface GgufSpec {
  version?: number;
  kv: Array<[string, KV]>;
  tensors: TensorSpec[];
  alignment?: number;
  /** Override the counts written in the header. */
  tensorCount?: bigint;
  kvCount?: bigint;
  magic?: string;
}

const TYPE_IDS: Record<string, number> = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
};

class Out {
  parts: number[] = [];
  u8(v: number) {
    this.parts.push(v & 0xff);
  }
  bytes(b: ArrayLike<number>) {
    for (let i = 0; i < b.length; i++) this.parts.push(b[i]);
  }
  num(type: string, v: number | bigint) {
    const sizes: Record<string, number> = { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, uint64: 8, int64: 8, float64: 8 };
    const b = new Uint8Array(sizes[type]);
    const dv = new DataView(b.buffer);
    switch (type) {
      case 'uint8': dv.setUint8(0, v as number); break;
      case 'int8': dv.setInt8(0, v as number); break;
      case 'uint16': dv.setUint16(0, v as number, true); break;
      case 'int16': dv.setInt16(0, v as number, true); break;
      case 'uint32': dv.setUint32(0, v as number, true); break;
      case 'int32': dv.setInt32(0, v as number, true); break;
      case 'float32': dv.setFloat32(0, v as number, true); break;
      case 'float64': dv.setFloat64(0, v as number, true); break;
      case 'uint64': dv.setBigUint64(0, BigInt(v), true); break;
      case 'int64': dv.setBigInt64(0, BigInt(v), true); break;
    }
    this.bytes(b);
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.num('uint64', BigInt(b.length));
    this.bytes(b);
  }
  value(type: string, v: unknown, itemType?: string) {
    if (type === 'string') this.str(v as string);
    else if (type === 'bool') this.u8(v ? 1 : 0);
    else if (type === 'array') {
      const items = v as unknown[];
      this.num('uint32', TYPE_IDS[itemType!]);
      this.num('uint64', BigInt(items.length));
      for (const it of items) {
        if (itemType === 'array') {
          const inner = it as { itemType: string; value: unknown[] };
          this.value('array', inner.value, inner.itemType);
        } else this.value(itemType!, it);
      }
    } else this.num(type, v as number | bigint);
  }
}

/** Builds a GGUF file. Tensor data is laid out in order, each padded to the alignment. */
export function buildGguf(spec: GgufSpec): Uint8Array {
  const align = spec.alignment ?? 32;
  const o = new Out();
  o.bytes(new TextEncoder().encode(spec.magic ?? 'GGUF'));
  o.num('uint32', spec.version ?? 3);
  o.num('uint64', spec.tensorCount ?? BigInt(spec.tensors.length));
  o.num('uint64', spec.kvCount ?? BigInt(spec.kv.length));
  for (const [key, kv] of spec.kv) {
    o.str(key);
    if (kv.type === 'raw') {
      o.num('uint32', kv.typeId);
      o.bytes(kv.bytes);
    } else {
      o.num('uint32', TYPE_IDS[kv.type]);
      o.value(kv.type, kv.value, kv.type === 'array' ? kv.itemType : undefined);
    }
  }
  let rel = 0;
  const offsets: number[] = [];
  for (const t of spec.tensors) {
    offsets.push(rel);
    rel += Math.ceil(t.data.length / align) * align;
  }
  spec.tensors.forEach((t, i) => {
    o.str(t.name);
    o.num('uint32', t.nDims ?? t.dims.length);
    for (const d of t.dims) o.num('uint64', BigInt(d));
    o.num('uint32', t.typeId);
    o.num('uint64', t.offset ?? BigInt(offsets[i]));
  });
  while (o.parts.length % align !== 0) o.u8(0);
  const dataStart = o.parts.length;
  const out = new Uint8Array(dataStart + rel);
  out.set(o.parts);
  spec.tensors.forEach((t, i) => out.set(t.data, dataStart + offsets[i]));
  return out;
}

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
