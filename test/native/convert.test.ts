// float16 / bfloat16 / float8 conversions: every code decodes as an independent JS decoder says, every code
// round-trips, float32 -> narrow rounds to nearest even (checked against a JS nearest-value search), the
// overflow/NaN rules of ml_dtypes hold, and every ISA variant is bit-exact with the scalar reference.
import { Tensor, tensor, _kernelImpls, IsaName } from '../../lib';
import { loadNative } from '../../lib/native/load';
import { randomF32, rng, SIZES } from '../helpers';

const native = loadNative();
const ISAS = _kernelImpls('convert') as IsaName[];

interface Fmt {
  name: 'float16' | 'bfloat16' | 'float8_e4m3fn' | 'float8_e5m2';
  bits: 8 | 16;
  expBits: number;
  manBits: number;
  bias: number;
  // 'ieee': all-ones exponent = inf/NaN; 'fn': only S.1111.111 is NaN, no inf
  kind: 'ieee' | 'fn';
  enc: string;
  dec: string;
}
const FMTS: Fmt[] = [
  { name: 'float16', bits: 16, expBits: 5, manBits: 10, bias: 15, kind: 'ieee', enc: 'f32_to_f16', dec: 'f16_to_f32' },
  { name: 'bfloat16', bits: 16, expBits: 8, manBits: 7, bias: 127, kind: 'ieee', enc: 'f32_to_bf16', dec: 'bf16_to_f32' },
  { name: 'float8_e4m3fn', bits: 8, expBits: 4, manBits: 3, bias: 7, kind: 'fn', enc: 'f32_to_e4m3fn', dec: 'e4m3fn_to_f32' },
  { name: 'float8_e5m2', bits: 8, expBits: 5, manBits: 2, bias: 15, kind: 'ieee', enc: 'f32_to_e5m2', dec: 'e5m2_to_f32' },
];

/** Independent decoder from the format definition. */
function decode(f: Fmt, code: number): number {
  const sign = code >> (f.bits - 1) ? -1 : 1;
  const e = (code >> f.manBits) & ((1 << f.expBits) - 1);
  const m = code & ((1 << f.manBits) - 1);
  const emax = (1 << f.expBits) - 1;
  if (f.kind === 'ieee' && e === emax) return m === 0 ? sign * Infinity : NaN;
  if (f.kind === 'fn' && e === emax && m === (1 << f.manBits) - 1) return NaN;
  if (e === 0) return sign * m * 2 ** (1 - f.bias - f.manBits);
  return sign * (1 + m / (1 << f.manBits)) * 2 ** (e - f.bias);
}

function codes(f: Fmt): Uint8Array | Uint16Array {
  const n = 1 << f.bits;
  const c = f.bits === 8 ? new Uint8Array(n) : new Uint16Array(n);
  for (let i = 0; i < n; i++) c[i] = i;
  return c;
}

/** Nearest-even encode by search over the positive finite codes (plus the overflow code above the maximum). */
function makeEncoder(f: Fmt): (x: number) => number | 'nan' {
  const pos: Array<[number, number]> = [];
  const half = 1 << (f.bits - 1);
  for (let c = 0; c < half; c++) {
    const v = decode(f, c);
    if (Number.isFinite(v)) pos.push([v, c]);
  }
  const [maxV, maxC] = pos[pos.length - 1];
  const ulp = maxV - pos[pos.length - 2][0];
  pos.push([maxV + ulp, maxC + 1]); // the first value past the maximum: inf for IEEE formats, NaN for 'fn'
  return (x: number) => {
    if (Number.isNaN(x)) return 'nan';
    const s = x < 0 || Object.is(x, -0) ? half : 0;
    const a = Math.abs(x);
    if (a === Infinity) return f.kind === 'fn' ? 'nan' : s | ((1 << (f.bits - 1)) - (1 << f.manBits));
    let lo = 0;
    let hi = pos.length - 1;
    if (a >= pos[hi][0]) return f.kind === 'fn' ? 'nan' : s | pos[hi][1];
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (pos[mid][0] <= a) lo = mid;
      else hi = mid;
    }
    const [vl, cl] = pos[lo];
    const [vh, ch] = pos[hi];
    const c = a - vl < vh - a ? cl : a - vl > vh - a ? ch : cl % 2 === 0 ? cl : ch;
    if (c === maxC + 1 && f.kind === 'fn') return 'nan';
    return s | c;
  };
}

describe.each(FMTS)('$name', (f) => {
  test('every code decodes to the value its definition gives', () => {
    const c = codes(f);
    const out = new Float32Array(c.length);
    native.convertSync(f.dec as never, c, out);
    // mismatches are collected and checked once (one expect per element made this file slow)
    const bad: unknown[] = [];
    for (let i = 0; i < c.length; i++) {
      const want = decode(f, i);
      if (Number.isNaN(want) ? !Number.isNaN(out[i]) : !Object.is(out[i], want)) bad.push([i, out[i], want]);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });

  test('every non-NaN code round-trips bit-exactly through float32', () => {
    const c = codes(f);
    const wide = new Float32Array(c.length);
    native.convertSync(f.dec as never, c, wide);
    const back = f.bits === 8 ? new Uint8Array(c.length) : new Uint16Array(c.length);
    native.convertSync(f.enc as never, wide, back);
    const bad: unknown[] = [];
    for (let i = 0; i < c.length; i++) {
      if (Number.isNaN(decode(f, i)) ? !Number.isNaN(decode(f, back[i])) : back[i] !== i) bad.push([i, back[i]]);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });

  test('float32 -> format rounds to nearest even, overflow and NaN follow ml_dtypes', () => {
    const enc = makeEncoder(f);
    const xs: number[] = [];
    // every midpoint between adjacent codes, and its float32 neighbours
    const half = 1 << (f.bits - 1);
    const vals: number[] = [];
    for (let c = 0; c < half; c++) if (Number.isFinite(decode(f, c))) vals.push(decode(f, c));
    for (let i = 0; i + 1 < vals.length; i++) {
      const mid = (vals[i] + vals[i + 1]) / 2;
      const m32 = Math.fround(mid);
      const bits = new Uint32Array(new Float32Array([m32]).buffer)[0];
      const nb = new Float32Array(new Uint32Array([bits - 1, bits, bits + 1]).buffer);
      xs.push(...nb, vals[i]);
    }
    const top = vals[vals.length - 1];
    xs.push(top * 1.03, top * 1.07, top * 1.2, top * 4, 3.0e38, Infinity, NaN, 0, -0);
    xs.push(...randomF32(2000, 5, top * 1.1));
    const all = new Float32Array([...xs, ...xs.map((x) => -x)]);
    const out = f.bits === 8 ? new Uint8Array(all.length) : new Uint16Array(all.length);
    native.convertSync(f.enc as never, all, out);
    const bad: unknown[] = [];
    for (let i = 0; i < all.length; i++) {
      const want = enc(all[i]);
      if (want === 'nan' ? !Number.isNaN(decode(f, out[i])) : out[i] !== want) bad.push([all[i], out[i], want]);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });

  test.each(ISAS)('isa=%s is bit-exact with ref over sizes and random bit patterns', (isa) => {
    const r = rng(99);
    for (const n of [0, ...SIZES, 4099]) {
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = Math.floor(r() * 2 ** 32);
      const x = new Float32Array(bits.buffer);
      const mk = () => (f.bits === 8 ? new Uint8Array(n) : new Uint16Array(n));
      const a = mk();
      const b = mk();
      native.convertSync(f.enc as never, x, a, isa);
      native.convertSync(f.enc as never, x, b, 'ref');
      expect([n, Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))]).toEqual([n, 0]);
      const wa = new Float32Array(n);
      const wb = new Float32Array(n);
      native.convertSync(f.dec as never, a, wa, isa);
      native.convertSync(f.dec as never, a, wb, 'ref');
      expect([n, Buffer.compare(Buffer.from(wa.buffer), Buffer.from(wb.buffer))]).toEqual([n, 0]);
    }
  });
});

describe('Tensor.astype', () => {
  test('e4m3fn: 464 is a tie that rounds to 448, larger magnitudes and inf become NaN', () => {
    const t = tensor([448, 464, 465, 1000, -Infinity, 0.001953125], [6]).astype('float8_e4m3fn');
    const back = t.toFloat32().data;
    expect(back[0]).toBe(448);
    expect(back[1]).toBe(448);
    expect(Number.isNaN(back[2])).toBe(true);
    expect(Number.isNaN(back[3])).toBe(true);
    expect(Number.isNaN(back[4])).toBe(true);
    expect(back[5]).toBe(0.001953125); // smallest subnormal 2^-9
  });
  test('integer casts round half to even and refuse out-of-range values', () => {
    expect(tensor([0.5, 1.5, 2.5, -2.5], [4], 'int8').toArray()).toEqual([0, 2, 2, -2]);
    expect(() => tensor([128], [1], 'int8')).toThrow(/within \[-128, 127\]/);
    expect(new Tensor('int4', [3], new Int8Array([0x7d, 0x08])).toArray()).toEqual([-3, 7, -8]);
    expect(tensor([-3, 7, -8], [3], 'int4').data).toEqual(new Int8Array([0x7d, 0x08]));
  });
});
