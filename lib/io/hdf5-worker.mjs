// quantkit HDF5 worker (plain ESM JavaScript, run in a worker_thread by lib/io/hdf5.ts).
//
// h5wasm is ESM-only and runs the HDF5 C library in WebAssembly; keeping it in a worker means the CommonJS
// library can use it, the event loop stays free, and a WebAssembly abort on a hostile file kills only this
// worker (the parent turns it into a CorruptFileError and starts a fresh worker next time).
//
// Messages in:  { id, op: 'read', tmp: string, bytes: Uint8Array, maxBytes: number }
//               { id, op: 'write', tmp: string, root: H5Group }              (plain tree, see lib/io/hdf5.ts)
// Messages out: { id, ok: true, root } | { id, ok: true, bytes } |
//               { id, ok: false, kind: 'corrupt' | 'unsupported' | 'invalid' | 'internal', message, fatal }
//
// float16, bool and bfloat16 datasets: h5wasm cannot create those HDF5 types (bfloat16 is stored the way Keras's
// h5py does: 2-byte opaque data plus the attribute dtype="bfloat16"), so they are written with a placeholder
// type of the same element size (a one-member compound, whose datatype message is larger than the target's),
// and the datatype message is then rewritten in the file bytes (v1 object header, superblock v0), the unused
// tail becoming a NULL message. bool is h5py's enum {FALSE: 0, TRUE: 1} over int8.
import { parentPort } from 'node:worker_threads';

// h5wasm's Node build uses NODERAWFS: its file system is the real one. Files go to the OS temp directory under
// random names chosen by the parent (which also removes them if this worker dies).
const h5mod = await import('h5wasm/node');
const h5wasm = h5mod.default;
const { Attribute, ExternalLink, BrokenSoftLink } = h5mod;
const Module = await h5wasm.ready;
const FS = Module.FS;
// HDF5 errors become JavaScript exceptions carrying HDF5's error stack, instead of text printed to the
// process's stderr. Unwinding skips some cleanup in h5wasm's glue, so the parent replaces the worker after
// any failed request.
Module.activate_throwing_error_handler();

const H5T_INTEGER = 0;
const H5T_FLOAT = 1;
const H5T_STRING = 3;
const H5T_OPAQUE = 5;
const H5T_COMPOUND = 6;
const H5T_ENUM = 8;
const MAX_DEPTH = 64;
const MAX_NODES = 1_000_000;
const MAX_CHUNKED_RATIO = 1024;

class WorkerError extends Error {
  constructor(kind, message, fromHdf5 = false) {
    super(message);
    this.kind = kind;
    this.fromHdf5 = fromHdf5;
  }
}

function hdf5Summary(text) {
  // Lines look like "  #003: .../H5Fint.c line 2092 in H5F_open(): unable to read superblock" then
  // "    major: File accessibility" / "    minor: File has been truncated".
  let last = '';
  let minor = '';
  for (const line of String(text).split('\n')) {
    const m = /#\d+: .* in (\w+\(\)): (.*)$/.exec(line);
    if (m) last = `${m[1]}: ${m[2]}`;
    const n = /minor: (.*)$/.exec(line);
    if (n) minor = n[1].trim();
  }
  if (!last) return '';
  return minor ? `${last} (${minor})` : last;
}

function describeError(err) {
  const msg = err instanceof Error ? err.message : String(err);
  const h = hdf5Summary(msg);
  return h ? `HDF5 ${h}` : msg.split('\n')[0];
}

// ------------------------------------------------------------------------------------------------ reading

const UNSUPPORTED_ATTR = Symbol('unsupported');

function normalizeNumber(v) {
  if (typeof v === 'bigint') {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  return v;
}

function readAttr(obj, name) {
  const a = new Attribute(obj.file_id, obj.path, name);
  const md = a.metadata;
  if (a.shape === null) return UNSUPPORTED_ATTR;
  const scalar = a.shape.length === 0;
  if (md.type === H5T_STRING) {
    const v = a.value;
    if (scalar) return Array.isArray(v) ? v[0] : v;
    return Array.isArray(v) ? v.flat(Infinity) : [v];
  }
  if (md.type === H5T_INTEGER || md.type === H5T_FLOAT) {
    if (md.type === H5T_FLOAT && md.size !== 4 && md.size !== 8) return UNSUPPORTED_ATTR;
    const v = a.value;
    if (scalar) return normalizeNumber(ArrayBuffer.isView(v) ? v[0] : v);
    return ArrayBuffer.isView(v) ? Array.from(v, normalizeNumber) : [normalizeNumber(v)];
  }
  if (md.type === H5T_ENUM && isBoolEnum(md)) {
    const v = a.json_value;
    if (scalar) return Array.isArray(v) ? !!v[0] : !!v;
    return Array.isArray(v) ? v.map((x) => !!x) : [!!v];
  }
  return UNSUPPORTED_ATTR;
}

function readAttrs(obj) {
  const out = {};
  const names = Module.get_attribute_names(obj.file_id, obj.path);
  for (const name of names) {
    let v;
    try {
      v = readAttr(obj, name);
    } catch {
      v = UNSUPPORTED_ATTR; // an attribute type this reader does not decode: skipped
    }
    if (v !== UNSUPPORTED_ATTR) out[name] = v;
  }
  return out;
}

function isBoolEnum(md) {
  const e = md.enum_type;
  if (!e || md.size !== 1 || e.nmembers !== 2) return false;
  return e.members.FALSE === 0 && e.members.TRUE === 1;
}

function datasetKind(md, attrs, path) {
  const bf16 = attrs.dtype === 'bfloat16';
  const { type, size, signed } = md;
  if (bf16 && size === 2 && (type === H5T_INTEGER || type === H5T_OPAQUE)) return ['bfloat16', Uint16Array];
  if (type === H5T_FLOAT) {
    if (size === 2) return ['float16', Uint16Array];
    if (size === 4) return ['float32', Float32Array];
    if (size === 8) return ['float64', Float64Array];
  } else if (type === H5T_INTEGER) {
    if (size === 1) return signed ? ['int8', Int8Array] : ['uint8', Uint8Array];
    if (size === 2 && signed) return ['int16', Int16Array];
    if (size === 4 && signed) return ['int32', Int32Array];
    if (size === 8 && signed) return ['int64', BigInt64Array];
  } else if (type === H5T_ENUM && isBoolEnum(md)) {
    return ['bool', Uint8Array];
  }
  const what = type === H5T_INTEGER ? `${signed ? '' : 'u'}int${size * 8}` : `HDF5 type class ${type}, ${size} bytes`;
  throw new WorkerError(
    'unsupported',
    `Expected float16/32/64, int8/16/32/64, uint8, bool or bfloat16 for dataset ${path} but received ${what}`,
  );
}

function readDataset(ds, state) {
  const md = ds.metadata;
  const attrs = readAttrs(ds);
  if (md.shape === null) {
    throw new WorkerError('unsupported', `Expected a simple or scalar dataspace for dataset ${ds.path} but received a null dataspace`);
  }
  const [dtype, Ctor] = datasetKind(md, attrs, ds.path);
  if (dtype === 'bfloat16') delete attrs.dtype;
  let count = 1;
  for (const d of md.shape) count *= d;
  const nbytes = count * md.size;
  if (!Number.isSafeInteger(nbytes)) throw new WorkerError('corrupt', `Expected a dataset size below 2^53 for ${ds.path} but received shape [${md.shape.join(', ')}]`);
  state.total += nbytes;
  if (state.total > state.maxBytes) {
    throw new WorkerError(
      'corrupt',
      `Expected at most ${state.maxBytes} bytes of dataset data (options.maxBytes) but received more at dataset ${ds.path} [${md.shape.join(', ')}]`,
    );
  }
  if (md.chunks === null && nbytes > state.fileBytes) {
    throw new WorkerError(
      'corrupt',
      `Expected an unchunked dataset to fit in the ${state.fileBytes}-byte file for ${ds.path} but received ${nbytes} bytes ([${md.shape.join(', ')}] × ${md.size})`,
    );
  }
  // Chunked datasets may be compressed (or sparse, filled with the fill value): bound the expansion so that a
  // small file cannot make the reader allocate its whole budget.
  if (md.chunks !== null && nbytes > state.fileBytes * MAX_CHUNKED_RATIO + (1 << 20)) {
    throw new WorkerError(
      'corrupt',
      `Expected a chunked dataset of at most ${MAX_CHUNKED_RATIO} × the ${state.fileBytes}-byte file (plus 1 MiB) for ${ds.path} but received ${nbytes} bytes ([${md.shape.join(', ')}] × ${md.size})`,
    );
  }
  const ptr = Module._malloc(Math.max(nbytes, 1));
  if (!ptr) throw new WorkerError('corrupt', `Expected memory for ${nbytes} bytes of dataset ${ds.path} but received an allocation failure`);
  let bytes;
  try {
    if (nbytes > 0) {
      const st = Module.get_dataset_data(ds.file_id, ds.path, null, null, null, BigInt(ptr));
      if (st < 0) throw new WorkerError('corrupt', `Expected readable data for dataset ${ds.path} but received HDF5 status ${st}`);
    }
    bytes = Module.HEAPU8.slice(ptr, ptr + nbytes);
  } finally {
    Module._free(ptr);
  }
  // get_dataset_data converts to the native (little-endian) order already.
  const data = new Ctor(bytes.buffer, 0, count);
  state.transfer.push(bytes.buffer);
  return { kind: 'dataset', dtype, shape: md.shape.slice(), data, attrs };
}

function readGroup(g, depth, state) {
  if (depth > MAX_DEPTH) {
    throw new WorkerError('corrupt', `Expected groups nested at most ${MAX_DEPTH} deep but received deeper nesting at ${g.path} (a link cycle?)`);
  }
  const node = { kind: 'group', attrs: readAttrs(g), children: new Map() };
  for (const name of g.keys()) {
    if (++state.nodes > MAX_NODES) {
      throw new WorkerError('corrupt', `Expected at most ${MAX_NODES} objects but received more (links repeating a subtree?)`);
    }
    const child = g.get(name);
    const path = g.path === '/' ? `/${name}` : `${g.path}/${name}`;
    if (child instanceof h5wasm.Group) node.children.set(name, readGroup(child, depth + 1, state));
    else if (child instanceof h5wasm.Dataset) node.children.set(name, readDataset(child, state));
    else if (child instanceof ExternalLink) {
      throw new WorkerError('unsupported', `Expected no external links but received ${path} -> ${child.filename}:${child.obj_path}`);
    } else if (child instanceof BrokenSoftLink) {
      throw new WorkerError('corrupt', `Expected soft link ${path} to resolve but received a broken link to ${child.target}`);
    } else {
      // committed datatypes and other non-data objects carry no weights
      continue;
    }
  }
  return node;
}

function doRead(msg) {
  const name = msg.tmp;
  FS.writeFile(name, msg.bytes);
  let f;
  try {
    try {
      f = new h5wasm.File(name, 'r');
      if (!(f.file_id > 0n)) throw new Error('H5Fopen failed');
    } catch (err) {
      throw new WorkerError('corrupt', `Expected an HDF5 file that opens but received an error: ${describeError(err)}`, true);
    }
    const state = { total: 0, maxBytes: msg.maxBytes, fileBytes: msg.bytes.length, nodes: 0, transfer: [] };
    let root;
    try {
      root = readGroup(f, 0, state);
    } catch (err) {
      if (err instanceof WorkerError) throw err;
      throw new WorkerError('corrupt', `Expected a readable HDF5 tree but received an error: ${describeError(err)}`, true);
    }
    return { result: { root }, transfer: state.transfer };
  } finally {
    try {
      if (f) f.close();
    } catch {
      // ignore
    }
    try {
      FS.unlink(name);
    } catch {
      // ignore
    }
  }
}

// ------------------------------------------------------------------------------------------------ writing

const WRITE_TYPES = {
  float32: { type: H5T_FLOAT, size: 4, signed: false },
  float64: { type: H5T_FLOAT, size: 8, signed: false },
  int8: { type: H5T_INTEGER, size: 1, signed: true },
  uint8: { type: H5T_INTEGER, size: 1, signed: false },
  int16: { type: H5T_INTEGER, size: 2, signed: true },
  int32: { type: H5T_INTEGER, size: 4, signed: true },
  int64: { type: H5T_INTEGER, size: 8, signed: true },
  // patched after writing (see the header comment)
  bfloat16: { type: H5T_COMPOUND, size: 2, member: { type: H5T_INTEGER, size: 2, signed: false } },
  float16: { type: H5T_COMPOUND, size: 2, member: { type: H5T_INTEGER, size: 2, signed: true } },
  bool: { type: H5T_COMPOUND, size: 1, member: { type: H5T_INTEGER, size: 1, signed: true } },
};

function check(status, what) {
  if (typeof status === 'number' && status < 0) throw new WorkerError('internal', `HDF5 failed to ${what} (status ${status})`);
}

function writeAttrs(obj, attrs) {
  for (const [name, v] of Object.entries(attrs)) {
    try {
      if (typeof v === 'string') obj.create_attribute(name, v, null, 'S');
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) obj.create_attribute(name, v, [v.length], 'S');
      else if (typeof v === 'number') {
        if (Number.isSafeInteger(v)) obj.create_attribute(name, new BigInt64Array([BigInt(v)]), [], '<q');
        else obj.create_attribute(name, new Float64Array([v]), [], '<d');
      } else if (typeof v === 'bigint') obj.create_attribute(name, new BigInt64Array([v]), [], '<q');
      else if (Array.isArray(v) && v.every((x) => typeof x === 'bigint' || Number.isSafeInteger(x))) {
        obj.create_attribute(name, BigInt64Array.from(v, (x) => BigInt(x)), [v.length], '<q');
      } else if (Array.isArray(v) && v.every((x) => typeof x === 'number')) {
        obj.create_attribute(name, Float64Array.from(v), [v.length], '<d');
      } else if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        const t = TYPED_ATTR.get(v.constructor);
        if (!t) throw new WorkerError('invalid', `Expected a supported TypedArray for attribute ${name} but received ${v.constructor.name}`);
        obj.create_attribute(name, v, [v.length], t);
      } else {
        throw new WorkerError('invalid', `Expected a string, number, bigint, TypedArray or array of them for attribute ${name} of ${obj.path} but received ${typeof v}`);
      }
    } catch (err) {
      if (err instanceof WorkerError) throw err;
      throw new WorkerError('internal', `HDF5 failed to write attribute ${name} of ${obj.path}: ${describeError(err)}`);
    }
  }
}

const TYPED_ATTR = new Map([
  [Float32Array, '<f'],
  [Float64Array, '<d'],
  [Int8Array, '<b'],
  [Uint8Array, '<B'],
  [Int16Array, '<h'],
  [Uint16Array, '<H'],
  [Int32Array, '<i'],
  [Uint32Array, '<I'],
  [BigInt64Array, '<q'],
  [BigUint64Array, '<Q'],
]);

function writeDataset(f, path, node, patches) {
  const t = WRITE_TYPES[node.dtype];
  const metadata = {
    type: t.type,
    size: t.size,
    signed: !!t.signed,
    littleEndian: true,
    vlen: false,
    shape: node.shape.map(BigInt),
    maxshape: node.shape.map(BigInt),
    chunks: null,
    compression: 0,
    compression_opts: [],
    track_order: false,
  };
  if (t.member) {
    metadata.compound_type = { nmembers: 1, members: [{ name: 'x', offset: 0, littleEndian: true, vlen: false, ...t.member }] };
  }
  const src = new Uint8Array(node.data.buffer, node.data.byteOffset, node.data.byteLength);
  const ptr = Module._malloc(Math.max(src.length, 1));
  if (!ptr) throw new WorkerError('internal', `Expected memory for ${src.length} bytes of dataset ${path} but received an allocation failure`);
  try {
    Module.HEAPU8.set(src, ptr);
    check(Module.create_dataset(f.file_id, path, BigInt(ptr), metadata), `create dataset ${path}`);
  } finally {
    Module._free(ptr);
  }
  const ds = f.get(path);
  if (!(ds instanceof h5wasm.Dataset)) throw new WorkerError('internal', `HDF5 failed to create dataset ${path}`);
  const attrs = { ...node.attrs };
  if (node.dtype === 'bfloat16') attrs.dtype = 'bfloat16';
  writeAttrs(ds, attrs);
  if (t.member) {
    const ref = Uint8Array.from(Module.create_object_reference(f.file_id, path));
    const addr = Number(new DataView(ref.buffer).getBigUint64(0, true));
    patches.push({ path, addr, dtype: node.dtype });
  }
}

function writeGroup(f, g, path, node, patches) {
  writeAttrs(g, node.attrs);
  for (const [name, child] of node.children) {
    const childPath = path === '/' ? `/${name}` : `${path}/${name}`;
    if (child.kind === 'group') {
        check(Module.create_group(f.file_id, childPath, false), `create group ${childPath}`);
      const cg = f.get(childPath);
      if (!(cg instanceof h5wasm.Group)) throw new WorkerError('internal', `HDF5 failed to create group ${childPath}`);
      writeGroup(f, cg, childPath, child, patches);
    } else {
      writeDataset(f, childPath, child, patches);
    }
  }
}

// Datatype messages (HDF5 format spec, "Datatype Message", version 1), padded to a multiple of 8.
const FLOAT16_DTYPE = Uint8Array.from([
  0x11, 0x20, 0x0f, 0x00, 0x02, 0x00, 0x00, 0x00, // class 1 (float) v1; LE, implied mantissa msb, sign bit 15; 2 bytes
  0x00, 0x00, 0x10, 0x00, 0x0a, 0x05, 0x00, 0x0a, // bit offset 0, precision 16, exponent at 10 (5 bits), mantissa at 0 (10 bits)
  0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exponent bias 15; padding
]);
const BOOL_DTYPE = Uint8Array.from([
  0x18, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // class 8 (enum) v1, 2 members; 1 byte
  0x10, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // base: class 0 (integer) v1, signed, 1 byte
  0x00, 0x00, 0x08, 0x00, // base: bit offset 0, precision 8
  0x46, 0x41, 0x4c, 0x53, 0x45, 0x00, 0x00, 0x00, // "FALSE" padded to 8
  0x54, 0x52, 0x55, 0x45, 0x00, 0x00, 0x00, 0x00, // "TRUE" padded to 8
  0x00, 0x01, // values 0, 1
  0x00, 0x00, // padding to 40
]);

// What h5py writes for an ml_dtypes bfloat16 array (numpy kind 'V'): class 5 (opaque) v1, empty tag, 2 bytes.
// Keras adds the attribute dtype="bfloat16" and reads the raw 16-bit patterns back as bfloat16.
const BFLOAT16_DTYPE = Uint8Array.from([0x15, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);

function patchDatatype(bytes, patch) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (why) => {
    throw new WorkerError('internal', `Expected a version-1 object header for dataset ${patch.path} to set its ${patch.dtype} type but received ${why}`);
  };
  if (bytes[8] !== 0 || bytes[13] !== 8 || bytes[14] !== 8) fail('a superblock other than version 0 with 8-byte offsets');
  const target = { float16: FLOAT16_DTYPE, bool: BOOL_DTYPE, bfloat16: BFLOAT16_DTYPE }[patch.dtype];
  const a = patch.addr;
  if (a + 16 > bytes.length || bytes[a] !== 1) fail(`version ${bytes[a]} at ${a}`);
  const nmsgs = dv.getUint16(a + 2, true);
  let remaining = nmsgs;
  const blocks = [[a + 16, a + 16 + dv.getUint32(a + 8, true)]];
  while (blocks.length > 0) {
    const [start, end] = blocks.shift();
    let p = start;
    while (p + 8 <= end && remaining > 0) {
      const type = dv.getUint16(p, true);
      const size = dv.getUint16(p + 2, true);
      remaining -= 1;
      if (type === 0x10) {
        blocks.push([Number(dv.getBigUint64(p + 8, true)), Number(dv.getBigUint64(p + 8, true) + dv.getBigUint64(p + 16, true))]);
      } else if (type === 0x03) {
        if ((bytes[p + 8] >> 4) !== 1 || (bytes[p + 8] & 0x0f) !== H5T_COMPOUND) fail(`datatype byte ${bytes[p + 8]}`);
        const rest = size - target.length;
        if (rest !== 0 && rest < 8) fail(`a ${size}-byte placeholder`);
        bytes.fill(0, p + 8, p + 8 + size);
        bytes.set(target, p + 8);
        dv.setUint16(p + 2, target.length, true);
        if (rest > 0) {
          const q = p + 8 + target.length;
          dv.setUint16(q, 0x0000, true); // NULL message
          dv.setUint16(q + 2, rest - 8, true);
          bytes[q + 4] = 0;
          dv.setUint16(a + 2, nmsgs + 1, true); // the NULL message counts
        }
        return;
      }
      p += 8 + size;
    }
  }
  fail('no datatype message');
}

function doWrite(msg) {
  const name = msg.tmp;
  let f;
  const patches = [];
  try {
    f = new h5wasm.File(name, 'w', { libver: ['earliest', 'v110'] });
    writeGroup(f, f, '/', msg.root, patches);
    f.close();
    f = undefined;
    const bytes = FS.readFile(name);
    for (const p of patches) patchDatatype(bytes, p);
    const out = bytes.slice();
    return { result: { bytes: out }, transfer: [out.buffer] };
  } finally {
    try {
      if (f) f.close();
    } catch {
      // ignore
    }
    try {
      FS.unlink(name);
    } catch {
      // ignore
    }
  }
}

// ------------------------------------------------------------------------------------------------ dispatch

parentPort.on('message', (msg) => {
  try {
    const { result, transfer } = msg.op === 'read' ? doRead(msg) : doWrite(msg);
    parentPort.postMessage({ id: msg.id, ok: true, ...result }, transfer);
  } catch (err) {
    // An HDF5 exception unwound through h5wasm's glue (see activate_throwing_error_handler above): ask for a fresh
    // worker. Our own checks (WorkerError) leave the library in a clean state.
    const fatal = !(err instanceof WorkerError) || err.fromHdf5 || err.kind === 'internal';
    const kind = err instanceof WorkerError ? err.kind : msg.op === 'read' ? 'corrupt' : 'internal';
    const message = err instanceof WorkerError ? err.message : describeError(err);
    parentPort.postMessage({ id: msg.id, ok: false, kind, message, fatal });
  }
});
parentPort.postMessage({ ready: true });
