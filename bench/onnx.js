// A tiny ONNX writer for the peer benchmarks: just enough protobuf (varints and length-delimited fields) to build
// ModelProto graphs in process, so that onnxruntime-node runs the same shapes and inputs as quantkit without a
// protobuf library. Field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
// TensorProto, ValueInfoProto, TypeProto, TensorShapeProto).
'use strict';

// ---- protobuf wire format ----
// A message is built as a rope { len, parts: Buffer[] } and flattened once at the end (model()), so that a graph
// with a gigabyte of initializers is copied once, not once per nesting level.

/** Bytes of a varint (integers; negative int64 as two's complement). */
function varint(v) {
  const out = [];
  let n = BigInt(v);
  if (n < 0n) n = (1n << 64n) + n;
  do {
    let b = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) b |= 0x80;
    out.push(b);
  } while (n > 0n);
  return Buffer.from(out);
}

function rope(...items) {
  const parts = [];
  let len = 0;
  for (const it of items) {
    if (Buffer.isBuffer(it)) {
      parts.push(it);
      len += it.length;
    } else {
      parts.push(...it.parts);
      len += it.len;
    }
  }
  return { len, parts };
}

const key = (field, wire) => varint((field << 3) | wire);
/** varint field */
const fInt = (field, v) => rope(key(field, 0), varint(v));
/** length-delimited field: a string, a typed array / Buffer (not copied), or a sub-message rope */
function fBytes(field, data) {
  let body;
  if (typeof data === 'string') body = Buffer.from(data, 'utf8');
  else if (Buffer.isBuffer(data) || data.parts) body = data;
  else body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const len = body.parts ? body.len : body.length;
  return rope(key(field, 2), varint(len), body);
}
/** 32-bit float field */
function fFloat(field, v) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return rope(key(field, 5), b);
}
const cat = (...items) => rope(...items);

// ---- ONNX messages ----

const DT = { float: 1, uint8: 2, int8: 3, int32: 6, int64: 7 };
const AT = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 };

/** TensorProto with raw_data (an initializer). `data` is a typed array. */
function tensor(name, dtype, dims, data) {
  return cat(...dims.map((d) => fInt(1, d)), fInt(2, DT[dtype]), fBytes(8, name), fBytes(9, data));
}

/** ValueInfoProto for a tensor with dims (numbers, or strings for symbolic dims). */
function valueInfo(name, dtype, dims) {
  const dimMsgs = dims.map((d) => fBytes(1, typeof d === 'string' ? fBytes(2, d) : fInt(1, d)));
  const shape = cat(...dimMsgs);
  const tensorType = cat(fInt(1, DT[dtype]), fBytes(2, shape));
  return cat(fBytes(1, name), fBytes(2, fBytes(1, tensorType)));
}

/** AttributeProto from a JS value: integer -> INT, float (non-integer) -> FLOAT, string -> STRING, int[] -> INTS. */
function attribute(name, v) {
  if (Array.isArray(v)) return cat(fBytes(1, name), ...v.map((x) => fInt(8, x)), fInt(20, AT.INTS));
  if (typeof v === 'string') return cat(fBytes(1, name), fBytes(4, v), fInt(20, AT.STRING));
  if (Number.isInteger(v)) return cat(fBytes(1, name), fInt(3, v), fInt(20, AT.INT));
  return cat(fBytes(1, name), fFloat(2, v), fInt(20, AT.FLOAT));
}

/** NodeProto. inputs: names ('' for an omitted optional input). */
function node(opType, inputs, outputs, attrs = {}, domain = '', name = '') {
  return cat(...[
    ...inputs.map((i) => fBytes(1, i)),
    ...outputs.map((o) => fBytes(2, o)),
    ...(name ? [fBytes(3, name)] : []),
    fBytes(4, opType),
    ...Object.entries(attrs).map(([k, v]) => fBytes(5, attribute(k, v))),
    ...(domain ? [fBytes(7, domain)] : []),
  ]);
}

/**
 * ModelProto: { nodes: Buffer[], initializers: Buffer[], inputs: Buffer[], outputs: Buffer[] } -> Uint8Array.
 * Opsets: ai.onnx 17 and com.microsoft 1; IR version 8.
 */
function model({ nodes, initializers, inputs, outputs, name = 'bench' }) {
  const graph = cat(...[
    ...nodes.map((n) => fBytes(1, n)),
    fBytes(2, name),
    ...initializers.map((t) => fBytes(5, t)),
    ...inputs.map((v) => fBytes(11, v)),
    ...outputs.map((v) => fBytes(12, v)),
  ]);
  const opset = (domain, version) => fBytes(8, cat(...[...(domain ? [fBytes(1, domain)] : []), fInt(2, version)]));
  const r = cat(fInt(1, 8), fBytes(2, 'quantkit-bench'), opset('', 17), opset('com.microsoft', 1), fBytes(7, graph));
  const bytes = Buffer.concat(r.parts, r.len);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---- the benchmark graphs: R independent projections of one input A [M, K] (R > 1 streams R weight copies) ----

/** fp32 MatMul: weights[r] float32 [K, N]. */
function matmulModel(K, N, weights) {
  return model({
    nodes: weights.map((_, r) => node('MatMul', ['A', `W${r}`], [`Y${r}`])),
    initializers: weights.map((w, r) => tensor(`W${r}`, 'float', [K, N], w)),
    inputs: [valueInfo('A', 'float', ['M', K])],
    outputs: weights.map((_, r) => valueInfo(`Y${r}`, 'float', ['M', N])),
  });
}

/** com.microsoft DynamicQuantizeMatMul: weights[r] = { q: int8 [K, N], scale: float [N] } (symmetric). */
function dynamicQuantizeMatMulModel(K, N, weights) {
  return model({
    nodes: weights.map((_, r) => node('DynamicQuantizeMatMul', ['A', `B${r}`, `S${r}`], [`Y${r}`], {}, 'com.microsoft')),
    initializers: weights.flatMap((w, r) => [tensor(`B${r}`, 'int8', [K, N], w.q), tensor(`S${r}`, 'float', [N], w.scale)]),
    inputs: [valueInfo('A', 'float', ['M', K])],
    outputs: weights.map((_, r) => valueInfo(`Y${r}`, 'float', ['M', N])),
  });
}

/** The standard-ops dynamic int8 path: DynamicQuantizeLinear + MatMulInteger + Cast + scale (Mul). */
function matMulIntegerModel(K, N, weights) {
  const nodes = [node('DynamicQuantizeLinear', ['A'], ['Aq', 'As', 'Az'])];
  weights.forEach((_, r) => {
    nodes.push(
      node('MatMulInteger', ['Aq', `B${r}`, 'Az'], [`I${r}`]),
      node('Cast', [`I${r}`], [`F${r}`], { to: DT.float }),
      node('Mul', ['As', `S${r}`], [`T${r}`]),
      node('Mul', [`F${r}`, `T${r}`], [`Y${r}`]),
    );
  });
  return model({
    nodes,
    initializers: weights.flatMap((w, r) => [tensor(`B${r}`, 'int8', [K, N], w.q), tensor(`S${r}`, 'float', [N], w.scale)]),
    inputs: [valueInfo('A', 'float', ['M', K])],
    outputs: weights.map((_, r) => valueInfo(`Y${r}`, 'float', ['M', N])),
  });
}

/**
 * com.microsoft MatMulNBits, 4 bits: weights[r] = { q: uint8 [N, K/block, block/2], scale: float [N * K/block],
 * zero: uint8 [N * ceil(K/block / 2)] (two 4-bit zero points per byte) or null }.
 */
function matMulNBitsModel(K, N, block, accuracyLevel, weights) {
  const nb = Math.ceil(K / block);
  return model({
    nodes: weights.map((w, r) =>
      node('MatMulNBits', ['A', `B${r}`, `S${r}`, ...(w.zero ? [`Z${r}`] : [])], [`Y${r}`], { K, N, bits: 4, block_size: block, accuracy_level: accuracyLevel }, 'com.microsoft'),
    ),
    initializers: weights.flatMap((w, r) => [
      tensor(`B${r}`, 'uint8', [N, nb, block / 2], w.q),
      tensor(`S${r}`, 'float', [N * nb], w.scale),
      ...(w.zero ? [tensor(`Z${r}`, 'uint8', [N * Math.ceil(nb / 2)], w.zero)] : []),
    ]),
    inputs: [valueInfo('A', 'float', ['M', K])],
    outputs: weights.map((_, r) => valueInfo(`Y${r}`, 'float', ['M', N])),
  });
}

module.exports = { varint, tensor, valueInfo, node, model, matmulModel, dynamicQuantizeMatMulModel, matMulIntegerModel, matMulNBitsModel };
