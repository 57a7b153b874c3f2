/**
 * ZIP archives (the container of a `.keras` file), read and written in memory.
 *
 * The reader trusts nothing: every offset, size and count is checked against the file before anything is
 * allocated or inflated, entry names are checked for path traversal, CRC-32 is verified, and deflated entries
 * are inflated in small pieces with their output counted, so a zip bomb is stopped after at most a few MiB of
 * wasted work. Supports stored and deflated entries and ZIP64. Encryption, multi-disk archives and other
 * compression methods are refused.
 *
 * @example
 * ```ts
 * import { readZip, writeZip } from 'quantkit/io';
 * const zip = writeZip([['config.json', new TextEncoder().encode('{}')]]);
 * readZip(zip, { source: 'model.keras' }).get('config.json'); // Uint8Array [123, 125]
 * ```
 * @packageDocumentation
 */
import { deflateSync, Inflate } from 'fflate';
import { CorruptFileError, InvalidArgumentError, UnsupportedError } from '../errors';
import { describe } from '../tensor';
import { checkLoadBudget, resolveMaxLoadBytes } from './limits';

/** A Uint8Array (or Buffer) from any realm (jest's vm contexts included). */
function isUint8Array(x: unknown): x is Uint8Array {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Uint8Array]';
}

/** Limits {@link readZip} enforces against zip bombs and hostile archives. */
export interface ZipLimits {
  /** Most entries (files and directories) the central directory may list. Default 10000. */
  maxEntries?: number;
  /** Largest uncompressed size of one entry, in bytes. Default 8 GiB. */
  maxEntryBytes?: number;
  /** Largest sum of the uncompressed sizes of all entries, in bytes. Default 16 GiB. */
  maxTotalBytes?: number;
  /**
   * Largest uncompressed/compressed size ratio of a deflated entry. Default 200. Entries whose uncompressed
   * size is at most {@link ZIP_RATIO_FLOOR_BYTES} are exempt (a small, very compressible file is harmless).
   */
  maxRatio?: number;
}

/**
 * Entries up to this many uncompressed bytes are exempt from the compression-ratio limit.
 * @example
 * ```ts
 * ZIP_RATIO_FLOOR_BYTES; // 1048576
 * ```
 */
export const ZIP_RATIO_FLOOR_BYTES = 1 << 20;

const DEFAULT_LIMITS: Required<ZipLimits> = {
  maxEntries: 10000,
  maxEntryBytes: 8 * 2 ** 30,
  maxTotalBytes: 16 * 2 ** 30,
  maxRatio: 200,
};

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
const INFLATE_CHUNK = 16 * 1024;

let crcTable: Uint32Array | undefined;

/**
 * CRC-32 (IEEE 802.3, the ZIP checksum) of `bytes`, continuing from `crc` when given.
 * @example
 * ```ts
 * crc32(new TextEncoder().encode('123456789')).toString(16); // 'cbf43926'
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = (crc ^ U32_MAX) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ U32_MAX) >>> 0;
}

interface CentralEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
  dataStart: number;
  dataEnd: number;
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * Reads every file of a ZIP archive into memory, validating the archive first (see the module description).
 * Directory entries are checked but not returned.
 *
 * @param bytes - the whole archive
 * @param options - `limits` against hostile archives; `maxBytes` the memory budget of the uncompressed entries
 *   (default {@link getMaxLoadBytes}: `setMaxLoadBytes()`, `QK_MAX_LOAD_BYTES`, or min(total memory, 16 GiB));
 *   `source` names the archive in error messages
 * @returns entry name → contents, in central-directory order
 * @throws CorruptFileError for a truncated, inconsistent or hostile archive (the message names `source` and
 *   the entry), including symbolic links and other non-regular entries (Unix file types in the external
 *   attributes); OutOfMemoryError when the declared sizes exceed `maxBytes`; UnsupportedError for encryption,
 *   multi-disk archives or compression methods other than stored/deflate.
 * @example
 * ```ts
 * const files = readZip(await fs.promises.readFile('model.keras'), { source: 'model.keras' });
 * const config = JSON.parse(new TextDecoder().decode(files.get('config.json')));
 * ```
 */
export function readZip(
  bytes: Uint8Array,
  options: { limits?: ZipLimits; source?: string; maxBytes?: number } = {},
): Map<string, Uint8Array> {
  if (!isUint8Array(bytes)) {
    throw new InvalidArgumentError(`Expected a Uint8Array for bytes but received ${describe(bytes)}`);
  }
  const source = options.source ?? 'zip archive';
  const limits = resolveLimits(options.limits);
  const budget = resolveMaxLoadBytes(options.maxBytes);
  const fail = (what: string, received: string): never => {
    throw new CorruptFileError(`Expected ${what} in ${source} but received ${received}`);
  };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number, what: string) => {
    const v = dv.getBigUint64(o, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`a ${what} below 2^53`, v.toString());
    return Number(v);
  };

  // End of central directory: the last 22 bytes plus at most a 65535-byte comment.
  if (len < 22) fail('at least 22 bytes (an end-of-central-directory record)', `${len} bytes`);
  let eocd = -1;
  for (let p = len - 22; p >= Math.max(0, len - 22 - U16_MAX); p--) {
    if (u32(p) === SIG_EOCD && p + 22 + u16(p + 20) === len) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) fail('an end-of-central-directory record (the archive may be truncated)', 'none');
  let diskNo = u16(eocd + 4);
  let cdDisk = u16(eocd + 6);
  let entriesOnDisk = u16(eocd + 8);
  let entryCount = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  let cdEnd = eocd; // where the central directory must end
  const needs64 =
    entriesOnDisk === U16_MAX || entryCount === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX;
  if (eocd >= 20 && u32(eocd - 20) === SIG_ZIP64_LOCATOR) {
    const rec = u64(eocd - 20 + 8, 'ZIP64 record offset');
    if (u32(eocd - 20 + 4) !== 0 || u32(eocd - 20 + 16) !== 1) {
      throw new UnsupportedError(`Expected a single-disk archive for ${source} but received a multi-disk ZIP64 archive`);
    }
    if (rec + 56 > eocd - 20 || u32(rec) !== SIG_ZIP64_EOCD) {
      fail('a ZIP64 end-of-central-directory record at the offset its locator gives', String(rec));
    }
    diskNo = u32(rec + 16);
    cdDisk = u32(rec + 20);
    entriesOnDisk = u64(rec + 24, 'entry count');
    entryCount = u64(rec + 32, 'entry count');
    cdSize = u64(rec + 40, 'central directory size');
    cdOffset = u64(rec + 48, 'central directory offset');
    cdEnd = rec;
  } else if (needs64) {
    fail('a ZIP64 locator (the end record has ZIP64 placeholders)', 'none');
  }
  if (diskNo !== 0 || cdDisk !== 0 || entriesOnDisk !== entryCount) {
    throw new UnsupportedError(`Expected a single-disk archive for ${source} but received a multi-disk archive`);
  }
  if (entryCount > limits.maxEntries) {
    fail(`at most ${limits.maxEntries} entries (limits.maxEntries)`, String(entryCount));
  }
  if (cdOffset + cdSize > cdEnd) {
    fail(`a central directory ending before byte ${cdEnd}`, `offset ${cdOffset} + size ${cdSize}`);
  }
  // Each central header is at least 46 bytes: a cheap bound before walking.
  if (entryCount * 46 > cdSize) fail(`room for ${entryCount} central headers`, `${cdSize} bytes`);

  const entries: CentralEntry[] = [];
  const names = new Set<string>();
  let p = cdOffset;
  let declaredTotal = 0;
  for (let i = 0; i < entryCount; i++) {
    if (p + 46 > cdOffset + cdSize) fail(`central header ${i} inside the central directory`, `offset ${p}`);
    if (u32(p) !== SIG_CENTRAL) fail(`a central header signature at offset ${p}`, hex(u32(p)));
    const madeBy = u16(p + 4) >> 8;
    const flags = u16(p + 8);
    const method = u16(p + 10);
    const crc = u32(p + 16);
    let compressedSize = u32(p + 20);
    let size = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    const disk = u16(p + 34);
    const externalAttrs = u32(p + 38);
    let localOffset = u32(p + 42);
    const next = p + 46 + nameLen + extraLen + commentLen;
    if (next > cdOffset + cdSize) fail(`central header ${i} inside the central directory`, `end ${next}`);
    const name = decodeName(bytes.subarray(p + 46, p + 46 + nameLen), (flags & 0x800) !== 0);
    const entryFail = (what: string, received: string): never => {
      throw new CorruptFileError(`Expected ${what} for zip entry ${JSON.stringify(name)} in ${source} but received ${received}`);
    };
    // ZIP64 extended information: present fields follow in a fixed order, only for placeholders.
    if (size === U32_MAX || compressedSize === U32_MAX || localOffset === U32_MAX || disk === U16_MAX) {
      let q = p + 46 + nameLen;
      const extraEnd = q + extraLen;
      let found = false;
      while (q + 4 <= extraEnd) {
        const id = u16(q);
        const sz = u16(q + 2);
        if (q + 4 + sz > extraEnd) entryFail('extra fields inside the header', `a field of ${sz} bytes`);
        if (id === 0x0001) {
          found = true;
          let r = q + 4;
          const take = (what: string) => {
            if (r + 8 > q + 4 + sz) entryFail(`a ZIP64 ${what}`, 'a short ZIP64 field');
            const v = u64(r, what);
            r += 8;
            return v;
          };
          if (size === U32_MAX) size = take('size');
          if (compressedSize === U32_MAX) compressedSize = take('compressed size');
          if (localOffset === U32_MAX) localOffset = take('offset');
          break;
        }
        q += 4 + sz;
      }
      if (!found) entryFail('a ZIP64 extra field (the header has ZIP64 placeholders)', 'none');
    }
    checkName(name, entryFail);
    if (names.has(name)) entryFail('a unique name', 'a duplicate entry');
    // Unix (3) and macOS (19) archivers keep the file type in the high 16 bits of the external attributes:
    // only regular files and directories are accepted (a symlink could point outside the archive).
    const unixType = (externalAttrs >>> 16) & 0o170000;
    if ((madeBy === 3 || madeBy === 19) && unixType !== 0 && unixType !== 0o100000 && unixType !== 0o040000) {
      entryFail('a regular file or directory', unixType === 0o120000 ? 'a symbolic link' : `Unix file type 0o${unixType.toString(8)}`);
    }
    names.add(name);
    if (flags & 0x1) throw new UnsupportedError(`Expected an unencrypted zip entry ${JSON.stringify(name)} in ${source} but received an encrypted one`);
    if (method !== 0 && method !== 8) {
      throw new UnsupportedError(`Expected compression method 0 (stored) or 8 (deflate) for zip entry ${JSON.stringify(name)} in ${source} but received ${method}`);
    }
    if (method === 0 && compressedSize !== size) entryFail(`a compressed size equal to the size ${size} (stored)`, String(compressedSize));
    if (size > limits.maxEntryBytes) entryFail(`at most ${limits.maxEntryBytes} uncompressed bytes (limits.maxEntryBytes)`, String(size));
    if (method === 8 && size > ZIP_RATIO_FLOOR_BYTES && size > compressedSize * limits.maxRatio) {
      entryFail(`a compression ratio of at most ${limits.maxRatio} (limits.maxRatio)`, `${size} bytes from ${compressedSize}`);
    }
    declaredTotal += size;
    if (declaredTotal > limits.maxTotalBytes) {
      fail(`at most ${limits.maxTotalBytes} uncompressed bytes in total (limits.maxTotalBytes)`, `more at entry ${JSON.stringify(name)}`);
    }
    checkLoadBudget(declaredTotal, budget, `the uncompressed entries up to ${JSON.stringify(name)}`, source);
    // Local header: same name, data inside the file and before the central directory.
    if (localOffset + 30 > cdOffset) entryFail(`a local header before the central directory at ${cdOffset}`, `offset ${localOffset}`);
    if (u32(localOffset) !== SIG_LOCAL) entryFail(`a local header signature at offset ${localOffset}`, hex(u32(localOffset)));
    const lFlags = u16(localOffset + 6);
    const lMethod = u16(localOffset + 8);
    const lNameLen = u16(localOffset + 26);
    const lExtraLen = u16(localOffset + 28);
    if (lMethod !== method) entryFail(`the central directory's method ${method} in the local header`, String(lMethod));
    if ((lFlags & 0x1) !== (flags & 0x1)) entryFail('the same encryption flag in the local header', String(lFlags));
    const lName = decodeName(
      bytes.subarray(localOffset + 30, Math.min(localOffset + 30 + lNameLen, len)),
      (lFlags & 0x800) !== 0,
    );
    if (lName !== name) entryFail('the same name in the local header', JSON.stringify(lName));
    if ((lFlags & 0x8) === 0) {
      // Sizes in the local header must agree unless a data descriptor follows (or they are ZIP64 placeholders).
      const lCrc = u32(localOffset + 14);
      const lComp = u32(localOffset + 18);
      const lSize = u32(localOffset + 22);
      if (lCrc !== crc) entryFail(`the central directory's CRC-32 ${hex(crc)} in the local header`, hex(lCrc));
      if ((lComp !== U32_MAX && lComp !== compressedSize) || (lSize !== U32_MAX && lSize !== size)) {
        entryFail(`sizes ${compressedSize}/${size} in the local header`, `${lComp}/${lSize}`);
      }
    }
    const dataStart = localOffset + 30 + lNameLen + lExtraLen;
    const dataEnd = dataStart + compressedSize;
    if (dataEnd > cdOffset) {
      entryFail(`data ending before the central directory at ${cdOffset} (the archive may be truncated)`, `data ending at ${dataEnd}`);
    }
    entries.push({ name, method, flags, crc, compressedSize, size, localOffset, dataStart, dataEnd });
    p = next;
  }

  // Entries must not share bytes (overlapping entries are a zip-bomb technique).
  const byOffset = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  for (let i = 1; i < byOffset.length; i++) {
    if (byOffset[i].localOffset < byOffset[i - 1].dataEnd) {
      throw new CorruptFileError(
        `Expected zip entry ${JSON.stringify(byOffset[i].name)} in ${source} to start after the data of ${JSON.stringify(byOffset[i - 1].name)} (byte ${byOffset[i - 1].dataEnd}) but received offset ${byOffset[i].localOffset}`,
      );
    }
  }

  const out = new Map<string, Uint8Array>();
  for (const e of entries) {
    const raw = bytes.subarray(e.dataStart, e.dataEnd);
    const data = e.method === 0 ? raw.slice() : inflateBounded(raw, e, source);
    const actual = crc32(data);
    if (actual !== e.crc) {
      throw new CorruptFileError(`Expected a CRC-32 of ${hex(e.crc)} for zip entry ${JSON.stringify(e.name)} in ${source} but received ${hex(actual)}`);
    }
    if (e.name.endsWith('/')) {
      if (data.length !== 0) {
        throw new CorruptFileError(`Expected an empty directory entry for zip entry ${JSON.stringify(e.name)} in ${source} but received ${data.length} bytes`);
      }
      continue;
    }
    out.set(e.name, data);
  }
  return out;
}

function inflateBounded(raw: Uint8Array, e: CentralEntry, source: string): Uint8Array {
  const out = new Uint8Array(e.size);
  let written = 0;
  let done = false;
  const tooMuch = () =>
    new CorruptFileError(
      `Expected at most ${e.size} uncompressed bytes (the declared size) for zip entry ${JSON.stringify(e.name)} in ${source} but received more`,
    );
  const inflater = new Inflate((chunk, final) => {
    if (written + chunk.length > e.size) throw tooMuch();
    out.set(chunk, written);
    written += chunk.length;
    if (final) done = true;
  });
  try {
    for (let i = 0; i < raw.length; i += INFLATE_CHUNK) {
      const end = Math.min(i + INFLATE_CHUNK, raw.length);
      inflater.push(raw.subarray(i, end), end === raw.length);
    }
    if (raw.length === 0) inflater.push(new Uint8Array(0), true);
  } catch (err) {
    if (err instanceof CorruptFileError) throw err;
    throw new CorruptFileError(
      `Expected valid deflate data for zip entry ${JSON.stringify(e.name)} in ${source} but received an error: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!done || written !== e.size) {
    throw new CorruptFileError(
      `Expected ${e.size} uncompressed bytes for zip entry ${JSON.stringify(e.name)} in ${source} but received ${written}${done ? '' : ' (the deflate stream is truncated)'}`,
    );
  }
  return out;
}

function resolveLimits(l: ZipLimits | undefined): Required<ZipLimits> {
  const out = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(DEFAULT_LIMITS) as (keyof ZipLimits)[]) {
    const v = l?.[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !(v > 0) || Number.isNaN(v)) {
      throw new InvalidArgumentError(`Expected a positive number for limits.${k} but received ${describe(v)}`);
    }
    out[k] = v;
  }
  return out;
}

function decodeName(b: Uint8Array, utf8: boolean): string {
  if (utf8) return new TextDecoder('utf-8').decode(b);
  // Not flagged UTF-8: CP437 in theory; ASCII is what matters for `.keras`, keep other bytes as Latin-1.
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

function checkName(name: string, entryFail: (what: string, received: string) => never): void {
  if (name.length === 0) entryFail('a non-empty name', 'an empty name');
  if (name.includes('\\')) entryFail('a name with forward slashes only', 'a backslash');
  if (name.includes('\0')) entryFail('a name without NUL characters', 'a NUL character');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) entryFail('a relative name', 'an absolute path');
  const parts = name.split('/');
  parts.forEach((seg, i) => {
    if (seg === '..' || seg === '.') entryFail("a name without '.' or '..' segments", `segment ${JSON.stringify(seg)}`);
    if (seg === '' && i !== parts.length - 1) entryFail('a name without empty segments', '"//"');
  });
}

/**
 * Writes a ZIP archive. Entries are stored uncompressed by default (as Keras does); with `level` 1-9 they are
 * deflated, except where deflating would not shrink the data or would exceed the compression ratio
 * {@link readZip} accepts by default (then the entry is stored). ZIP64 records are written when sizes or
 * offsets need them. Timestamps are fixed (1980-01-01) so the output is reproducible.
 *
 * @param entries - `[name, bytes]` pairs, written in order; names are relative, `/`-separated, unique
 * @param options - `level`: 0 (store, default) to 9
 * @throws InvalidArgumentError for a bad name, a duplicate, or a bad level.
 * @example
 * ```ts
 * const bytes = writeZip([
 *   ['metadata.json', enc.encode('{"keras_version":"3.16.0"}')],
 *   ['model.weights.h5', weights],
 * ]);
 * ```
 */
export function writeZip(entries: Array<[string, Uint8Array]>, options: { level?: number } = {}): Uint8Array {
  const level = options.level ?? 0;
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new InvalidArgumentError(`Expected an integer in [0, 9] for options.level but received ${describe(level)}`);
  }
  if (!Array.isArray(entries)) throw new InvalidArgumentError(`Expected an array of [name, bytes] for entries but received ${describe(entries)}`);
  const enc = new TextEncoder();
  const seen = new Set<string>();
  const prepared = entries.map((pair, i) => {
    if (!Array.isArray(pair) || typeof pair[0] !== 'string' || !isUint8Array(pair[1])) {
      throw new InvalidArgumentError(`Expected a [string, Uint8Array] pair for entries[${i}] but received ${describe(pair)}`);
    }
    const [name, data] = pair;
    checkName(name, (what, received) => {
      throw new InvalidArgumentError(`Expected ${what} for entries[${i}] name ${JSON.stringify(name)} but received ${received}`);
    });
    if (seen.has(name)) throw new InvalidArgumentError(`Expected a unique name for entries[${i}] but received a duplicate ${JSON.stringify(name)}`);
    seen.add(name);
    let method = 0;
    let body = data;
    if (level > 0 && data.length > 0) {
      const d = deflateSync(data, { level: level as 1 });
      const ratioOk = data.length <= ZIP_RATIO_FLOOR_BYTES || data.length <= d.length * DEFAULT_LIMITS.maxRatio;
      if (d.length < data.length && ratioOk) {
        method = 8;
        body = d;
      }
    }
    return { nameBytes: enc.encode(name), data, body, method, crc: crc32(data) };
  });

  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of prepared) {
    const zip64 = e.data.length >= U32_MAX || e.body.length >= U32_MAX || offset >= U32_MAX;
    // Local header (ZIP64 sizes go in an extra field; the central directory carries the offset).
    const lExtra = zip64 ? 20 : 0;
    const local = new Uint8Array(30 + e.nameBytes.length + lExtra);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, zip64 ? 45 : 20, true);
    lv.setUint16(6, 0x800, true);
    lv.setUint16(8, e.method, true);
    lv.setUint16(10, 0, true); // time 00:00
    lv.setUint16(12, 0x21, true); // date 1980-01-01
    lv.setUint32(14, e.crc, true);
    lv.setUint32(18, zip64 ? U32_MAX : e.body.length, true);
    lv.setUint32(22, zip64 ? U32_MAX : e.data.length, true);
    lv.setUint16(26, e.nameBytes.length, true);
    lv.setUint16(28, lExtra, true);
    local.set(e.nameBytes, 30);
    if (zip64) {
      const x = 30 + e.nameBytes.length;
      lv.setUint16(x, 0x0001, true);
      lv.setUint16(x + 2, 16, true);
      lv.setBigUint64(x + 4, BigInt(e.data.length), true);
      lv.setBigUint64(x + 12, BigInt(e.body.length), true);
    }
    const cExtra = zip64 ? 28 : 0;
    const cen = new Uint8Array(46 + e.nameBytes.length + cExtra);
    const cv = new DataView(cen.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, zip64 ? 45 : 20, true); // made by: MS-DOS, spec version
    cv.setUint16(6, zip64 ? 45 : 20, true);
    cv.setUint16(8, 0x800, true);
    cv.setUint16(10, e.method, true);
    cv.setUint16(12, 0, true);
    cv.setUint16(14, 0x21, true);
    cv.setUint32(16, e.crc, true);
    cv.setUint32(20, zip64 ? U32_MAX : e.body.length, true);
    cv.setUint32(24, zip64 ? U32_MAX : e.data.length, true);
    cv.setUint16(28, e.nameBytes.length, true);
    cv.setUint16(30, cExtra, true);
    cv.setUint32(42, zip64 ? U32_MAX : offset, true);
    cen.set(e.nameBytes, 46);
    if (zip64) {
      const x = 46 + e.nameBytes.length;
      cv.setUint16(x, 0x0001, true);
      cv.setUint16(x + 2, 24, true);
      cv.setBigUint64(x + 4, BigInt(e.data.length), true);
      cv.setBigUint64(x + 12, BigInt(e.body.length), true);
      cv.setBigUint64(x + 20, BigInt(offset), true);
    }
    chunks.push(local, e.body);
    central.push(cen);
    offset += local.length + e.body.length;
  }
  const cdOffset = offset;
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const n = prepared.length;
  const zip64End = n >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX;
  const tail: Uint8Array[] = [];
  if (zip64End) {
    const rec = new Uint8Array(56 + 20);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, SIG_ZIP64_EOCD, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(n), true);
    rv.setBigUint64(32, BigInt(n), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdOffset), true);
    rv.setUint32(56, SIG_ZIP64_LOCATOR, true);
    rv.setBigUint64(64, BigInt(cdOffset + cdSize), true);
    rv.setUint32(72, 1, true);
    tail.push(rec);
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, SIG_EOCD, true);
  ev.setUint16(8, zip64End ? U16_MAX : n, true);
  ev.setUint16(10, zip64End ? U16_MAX : n, true);
  ev.setUint32(12, zip64End ? U32_MAX : cdSize, true);
  ev.setUint32(16, zip64End ? U32_MAX : cdOffset, true);
  tail.push(end);
  return concat([...chunks, ...central, ...tail]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of parts) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
