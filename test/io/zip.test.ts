// ZIP: round trips checked against an independent implementation (fflate's zip/unzip), a known CRC-32 vector,
// and hostile archives built by hand in this file (not with writeZip), each rejected with CorruptFileError.
import { deflateSync, unzipSync, zipSync, strToU8 } from 'fflate';
import { readZip, writeZip, crc32, ZIP_RATIO_FLOOR_BYTES } from '../../lib/io/zip';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../../lib/errors';

const enc = new TextEncoder();

// ---- an independent raw ZIP builder (the format written out field by field) ----
interface RawEntry {
  name: string;
  body: Uint8Array; // bytes as stored (compressed for method 8)
  method?: number;
  crc: number;
  size: number; // declared uncompressed size
  compSize?: number; // declared compressed size (default body.length)
  localName?: string;
  flags?: number;
  offsetOverride?: number; // central directory's local-header offset
}

function u16(n: number) {
  return [n & 0xff, (n >>> 8) & 0xff];
}
function u32(n: number) {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function buildZip(entries: RawEntry[], opts: { skipLocals?: boolean } = {}): Uint8Array {
  const out: number[] = [];
  const offsets: number[] = [];
  for (const e of entries) {
    offsets.push(out.length);
    if (opts.skipLocals && offsets.length > 1) continue;
    const name = enc.encode(e.localName ?? e.name);
    out.push(...u32(0x04034b50), ...u16(20), ...u16(e.flags ?? 0), ...u16(e.method ?? 0), ...u16(0), ...u16(0x21));
    out.push(...u32(e.crc), ...u32(e.compSize ?? e.body.length), ...u32(e.size), ...u16(name.length), ...u16(0));
    out.push(...name, ...e.body);
  }
  const cd = out.length;
  entries.forEach((e, i) => {
    const name = enc.encode(e.name);
    out.push(...u32(0x02014b50), ...u16(20), ...u16(20), ...u16(e.flags ?? 0), ...u16(e.method ?? 0), ...u16(0), ...u16(0x21));
    out.push(...u32(e.crc), ...u32(e.compSize ?? e.body.length), ...u32(e.size), ...u16(name.length), ...u16(0), ...u16(0));
    out.push(...u16(0), ...u16(0), ...u32(0), ...u32(e.offsetOverride ?? offsets[i]), ...name);
  });
  const cdSize = out.length - cd;
  out.push(...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(entries.length), ...u16(entries.length));
  out.push(...u32(cdSize), ...u32(cd), ...u16(0));
  return Uint8Array.from(out);
}

function stored(name: string, text: string): RawEntry {
  const body = enc.encode(text);
  return { name, body, crc: crc32(body), size: body.length };
}

function expectCorrupt(fn: () => unknown, pattern: RegExp) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CorruptFileError);
  expect((err as Error).message).toMatch(pattern);
}

describe('crc32', () => {
  test('standard check value', () => {
    expect(crc32(enc.encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    // incremental = one shot
    const a = enc.encode('hello, '), b = enc.encode('world');
    expect(crc32(b, crc32(a))).toBe(crc32(enc.encode('hello, world')));
  });
});

describe('round trips', () => {
  const entries: Array<[string, Uint8Array]> = [
    ['metadata.json', enc.encode('{"keras_version":"3.16.0"}')],
    ['config.json', enc.encode(JSON.stringify({ class_name: 'Sequential', ünïcode: 'ok' }))],
    ['assets/vocab/tokens.txt', enc.encode('a\nb\nc\n'.repeat(1000))],
    ['model.weights.h5', Uint8Array.from({ length: 70000 }, (_, i) => (i * 2654435761) >>> 24)],
    ['empty.bin', new Uint8Array(0)],
  ];

  test.each([0, 1, 6, 9])('writeZip level %i is read back by fflate and by readZip', (level) => {
    const bytes = writeZip(entries, { level });
    const other = unzipSync(bytes);
    expect(Object.keys(other)).toEqual(entries.map(([n]) => n));
    for (const [n, d] of entries) expect(Buffer.from(other[n]).equals(Buffer.from(d))).toBe(true);
    const mine = readZip(bytes);
    expect([...mine.keys()]).toEqual(entries.map(([n]) => n));
    for (const [n, d] of entries) expect(Buffer.from(mine.get(n)!).equals(Buffer.from(d))).toBe(true);
    if (level === 0) expect(bytes.length).toBeGreaterThan(entries.reduce((s, [, d]) => s + d.length, 0));
    else expect(bytes.length).toBeLessThan(entries.reduce((s, [, d]) => s + d.length, 0));
  });

  test('readZip reads archives written by fflate (deflated and stored)', () => {
    const z = zipSync({ 'a.txt': strToU8('hello '.repeat(500)), 'dir/b.bin': [new Uint8Array([1, 2, 3]), { level: 0 }] });
    const m = readZip(z);
    expect(new TextDecoder().decode(m.get('a.txt'))).toBe('hello '.repeat(500));
    expect([...m.get('dir/b.bin')!]).toEqual([1, 2, 3]);
  });

  test('a very compressible entry is stored rather than exceeding the default ratio', () => {
    const zeros = new Uint8Array(ZIP_RATIO_FLOOR_BYTES * 3);
    const bytes = writeZip([['zeros', zeros]], { level: 9 });
    expect(readZip(bytes).get('zeros')!.length).toBe(zeros.length);
  });

  test('directory entries are checked and skipped', () => {
    const z = buildZip([stored('assets/', ''), stored('assets/x', 'x')]);
    expect([...readZip(z).keys()]).toEqual(['assets/x']);
  });

  test('bad arguments', () => {
    expect(() => writeZip([['../x', new Uint8Array(1)]])).toThrow(InvalidArgumentError);
    expect(() => writeZip([['a', new Uint8Array(1)], ['a', new Uint8Array(1)]])).toThrow(/duplicate/);
    expect(() => writeZip([], { level: 10 })).toThrow(InvalidArgumentError);
    expect(() => readZip('nope' as never)).toThrow(InvalidArgumentError);
    expect(() => readZip(new Uint8Array(100), { limits: { maxRatio: -1 } })).toThrow(InvalidArgumentError);
  });
});

/** A ZIP64 archive by hand: placeholders in the headers, sizes/offset in ZIP64 extras, ZIP64 end records. */
function buildZip64(name: string, body: Uint8Array): Uint8Array {
  const n = enc.encode(name);
  const u64 = (v: number) => [...u32(v), ...u32(0)];
  const out: number[] = [];
  out.push(...u32(0x04034b50), ...u16(45), ...u16(0), ...u16(0), ...u16(0), ...u16(0x21), ...u32(crc32(body)));
  out.push(...u32(0xffffffff), ...u32(0xffffffff), ...u16(n.length), ...u16(20), ...n);
  out.push(...u16(1), ...u16(16), ...u64(body.length), ...u64(body.length), ...body);
  const cd = out.length;
  out.push(...u32(0x02014b50), ...u16(45), ...u16(45), ...u16(0), ...u16(0), ...u16(0), ...u16(0x21), ...u32(crc32(body)));
  out.push(...u32(0xffffffff), ...u32(0xffffffff), ...u16(n.length), ...u16(28), ...u16(0), ...u16(0), ...u16(0), ...u32(0));
  out.push(...u32(0xffffffff), ...n, ...u16(1), ...u16(24), ...u64(body.length), ...u64(body.length), ...u64(0));
  const cdSize = out.length - cd;
  const rec = out.length;
  out.push(...u32(0x06064b50), ...u64(44), ...u16(45), ...u16(45), ...u32(0), ...u32(0), ...u64(1), ...u64(1), ...u64(cdSize), ...u64(cd));
  out.push(...u32(0x07064b50), ...u32(0), ...u64(rec), ...u32(1));
  out.push(...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(0xffff), ...u16(0xffff), ...u32(0xffffffff), ...u32(0xffffffff), ...u16(0));
  return Uint8Array.from(out);
}

describe('ZIP64', () => {
  test('an archive with ZIP64 extras and end records is read', () => {
    const m = readZip(buildZip64('model.weights.h5', enc.encode('sixty-four')));
    expect(new TextDecoder().decode(m.get('model.weights.h5'))).toBe('sixty-four');
  });

  test('placeholders without a ZIP64 locator are corrupt', () => {
    const z = buildZip64('a', enc.encode('x'));
    const cut = z.slice();
    const loc = Buffer.from(cut).lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07]));
    cut[loc] = 0; // break the locator signature
    expectCorrupt(() => readZip(cut), /ZIP64 locator/);
  });
});

describe('hostile archives', () => {
  const good = buildZip([stored('config.json', '{"a":1}'), stored('model.weights.h5', 'WEIGHTDATA')]);

  test('the hand-built archive is valid', () => {
    expect(new TextDecoder().decode(readZip(good).get('config.json'))).toBe('{"a":1}');
  });

  test('truncated at every length', () => {
    for (let n = 0; n < good.length; n++) {
      expectCorrupt(() => readZip(good.subarray(0, n), { source: 'm.keras' }), /m\.keras/);
    }
  });

  test('wrong CRC-32', () => {
    const e = stored('config.json', '{"a":1}');
    expectCorrupt(() => readZip(buildZip([{ ...e, crc: e.crc ^ 1 }]), { source: 'm.keras' }), /CRC-32.*"config\.json" in m\.keras/);
  });

  test('a flipped data byte is caught by the CRC', () => {
    const z = good.slice();
    const at = Buffer.from(z).indexOf('WEIGHTDATA');
    z[at] ^= 0x20;
    expectCorrupt(() => readZip(z), /CRC-32.*model\.weights\.h5/);
  });

  test.each([
    ['../evil', /'\.\.'/],
    ['a/../../evil', /'\.\.'/],
    ['/etc/passwd', /absolute/],
    ['C:/Windows/x', /absolute/],
    ['a\\..\\b', /backslash/],
    ['a//b', /empty segments/],
  ])('name %s is refused', (name, pattern) => {
    expectCorrupt(() => readZip(buildZip([stored(name, 'x')]), { source: 'm.keras' }), pattern);
  });

  test('duplicate names', () => {
    expectCorrupt(() => readZip(buildZip([stored('a', 'x'), stored('a', 'y')])), /duplicate/);
  });

  test('central directory and local header disagree', () => {
    expectCorrupt(() => readZip(buildZip([{ ...stored('a', 'x'), localName: 'b' }])), /same name in the local header/);
    const e = stored('a', 'xyz');
    expectCorrupt(() => readZip(buildZip([{ ...e, size: 2, compSize: 2 }])), /./);
  });

  test('sizes beyond the file are refused before reading', () => {
    const e = stored('a', 'xyz');
    expectCorrupt(() => readZip(buildZip([{ ...e, size: 1e9, compSize: 1e9 }])), /before the central directory|local header/);
  });

  test('entries sharing bytes (overlapping-entry bomb) are refused', () => {
    const e = stored('a', 'payload');
    expectCorrupt(() => readZip(buildZip([e, { ...e, name: 'b', localName: 'a', offsetOverride: 0 }], { skipLocals: true })), /./);
  });

  test('encryption and unknown methods are unsupported', () => {
    expect(() => readZip(buildZip([{ ...stored('a', 'x'), flags: 1 }]))).toThrow(UnsupportedError);
    expect(() => readZip(buildZip([{ ...stored('a', 'x'), method: 12 }]))).toThrow(UnsupportedError);
  });

  test('too many entries', () => {
    const z = buildZip(Array.from({ length: 20 }, (_, i) => stored(`f${i}`, 'x')));
    expectCorrupt(() => readZip(z, { limits: { maxEntries: 10 } }), /maxEntries/);
  });

  test('zip bomb claiming 4 GB from a few KB is refused by the ratio guard without inflating', () => {
    const chunk = deflateSync(new Uint8Array(4 << 20), { level: 9 }); // ~4 KB
    expect(chunk.length).toBeLessThan(10_000);
    const z = buildZip([{ name: 'bomb.bin', body: chunk, method: 8, crc: 0, size: 0xfffffff0 }]);
    const t0 = Date.now();
    expectCorrupt(() => readZip(z, { source: 'bomb.keras' }), /compression ratio of at most 200.*bomb\.keras/);
    expect(Date.now() - t0).toBeLessThan(500);
  });

  test('zip bomb declaring a small size but inflating to more is stopped while inflating', () => {
    const body = deflateSync(new Uint8Array(64 << 20), { level: 9 }); // 64 MiB of zeros in ~64 KB
    const z = buildZip([{ name: 'liar.bin', body, method: 8, crc: 0, size: 1000 }]);
    const t0 = Date.now();
    expectCorrupt(() => readZip(z), /at most 1000 uncompressed bytes.*liar\.bin/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test('size and total limits', () => {
    const body = enc.encode('x'.repeat(100));
    const e = { name: 'a', body, crc: crc32(body), size: 100 };
    expectCorrupt(() => readZip(buildZip([e]), { limits: { maxEntryBytes: 50 } }), /maxEntryBytes/);
    expectCorrupt(() => readZip(buildZip([e, { ...e, name: 'b' }]), { limits: { maxTotalBytes: 150 } }), /maxTotalBytes/);
  });

  test('invalid deflate data', () => {
    const body = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x12]);
    expectCorrupt(() => readZip(buildZip([{ name: 'a', body, method: 8, crc: 0, size: 10 }])), /deflate|uncompressed/);
  });

  test('random damage never escapes as anything but CorruptFileError or UnsupportedError', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let t = 0; t < 200; t++) {
      const z = good.slice();
      for (let k = 0; k < 3; k++) z[rnd() % z.length] = rnd();
      try {
        readZip(z);
      } catch (e) {
        expect(e instanceof CorruptFileError || e instanceof UnsupportedError).toBe(true);
      }
    }
  });
});
