// Layout parity with Keras: a .keras file written by Keras 3 (test/fixtures/keras-quantized) is loaded, saved
// again with modelToKerasBytes, and OUR archive is compared with KERAS's entry by entry:
//  - model.weights.h5: every group path, every dataset's dtype and shape, every attribute (the vars groups'
//    `name`), and every dataset's bytes (a load/save round trip changes nothing);
//  - config.json: every layer's class_name, module, registered_name, name, serialized dtype policy and
//    quantization_config, and then the whole config, minus the keys quantkit does not write
//    (`shared_object_id`, Keras's object-sharing ids) and the documented differences listed in KNOWN_DIFFS.
// The reference is always Keras's own file; nothing is compared with values produced by the code under test.
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, modelToKerasBytes, terminateHdf5Worker } from '../../lib';
import { readHdf5, readZip } from '../../lib/io';
import type { H5Dataset, H5Group } from '../../lib/io';

const QDIR = path.join(__dirname, '..', 'fixtures', 'keras-quantized');
const dec = new TextDecoder();

afterAll(() => terminateHdf5Worker());

/** Keys Keras writes that quantkit does not (compared configs drop them). */
const KERAS_ONLY_KEYS = ['shared_object_id'];

interface Pair {
  keras: Map<string, Uint8Array>;
  ours: Map<string, Uint8Array>;
  kerasTree: H5Group;
  oursTree: H5Group;
  kerasConfig: Record<string, unknown>;
  oursConfig: Record<string, unknown>;
}

const cache = new Map<string, Promise<Pair>>();
function pair(name: string): Promise<Pair> {
  let p = cache.get(name);
  if (!p) {
    p = (async () => {
      const bytes = new Uint8Array(fs.readFileSync(path.join(QDIR, `${name}.keras`)));
      const keras = readZip(bytes, { source: `${name}.keras` });
      const model = await loadModel(bytes);
      const ours = readZip(await modelToKerasBytes(model), { source: `ours/${name}.keras` });
      return {
        keras,
        ours,
        kerasTree: await readHdf5(keras.get('model.weights.h5')!),
        oursTree: await readHdf5(ours.get('model.weights.h5')!),
        kerasConfig: JSON.parse(dec.decode(keras.get('config.json')!)),
        oursConfig: JSON.parse(dec.decode(ours.get('config.json')!)),
      };
    })();
    cache.set(name, p);
  }
  return p;
}

/** Every node of a tree by path: groups with their attributes, datasets with dtype, shape, attributes and bytes. */
function flatten(g: H5Group, p = '', out = new Map<string, { kind: string; attrs: Record<string, unknown>; dtype?: string; shape?: number[]; bytes?: Buffer }>()) {
  out.set(p === '' ? '/' : p, { kind: 'group', attrs: g.attrs });
  for (const [k, c] of g.children) {
    const cp = `${p}/${k}`;
    if (c.kind === 'group') flatten(c, cp, out);
    else {
      const d = c as H5Dataset;
      out.set(cp, { kind: 'dataset', attrs: d.attrs, dtype: d.dtype, shape: d.shape, bytes: Buffer.from(d.data.buffer, d.data.byteOffset, d.data.byteLength) });
    }
  }
  return out;
}

function strip(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(strip);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([k]) => !KERAS_ONLY_KEYS.includes(k)).map(([k, x]) => [k, strip(x)]));
  }
  return v;
}

interface LayerEntry { class_name: string; module: unknown; registered_name: unknown; config: Record<string, unknown>; build_config?: unknown }
function layerEntries(config: Record<string, unknown>): LayerEntry[] {
  return ((config.config as { layers: LayerEntry[] }).layers ?? []) as LayerEntry[];
}

/** Datasets quantkit intentionally rewrites: float8 kernels (held as e4m3fn codes). */
const FLOAT8_KERNELS: Record<string, string[]> = { seq_float8: ['/layers/dense/vars/0', '/layers/dense_1/vars/0'] };

/** Round to the nearest float8_e4m3fn value (ties to even); |x| <= 448 assumed. Written from the format's definition:
 *  1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits, subnormal step 2^-9, largest finite 448. */
function roundE4M3(x: number): number {
  if (x === 0 || Number.isNaN(x)) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const step = e < -6 ? 2 ** -9 : 2 ** (e - 3);
  const q = a / step;
  const f = Math.floor(q);
  const r = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * r * step;
}

const FIXTURES = ['seq_int8', 'seq_int4_block8', 'seq_float8', 'fn_int8', 'fn_int4', 'mha_int8_policymap'];

describe.each(FIXTURES)('%s: load with quantkit, save with modelToKerasBytes, compare with Keras', (name) => {
  test('the archive has the same members (metadata.json, config.json, model.weights.h5) in the same order', async () => {
    const { keras, ours } = await pair(name);
    expect([...ours.keys()]).toEqual([...keras.keys()]);
    const km = JSON.parse(dec.decode(keras.get('metadata.json')!));
    const om = JSON.parse(dec.decode(ours.get('metadata.json')!));
    expect(om.keras_version).toBe(km.keras_version);
    expect(om.date_saved).toMatch(/^\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d$/);
  });

  test('HDF5 tree: identical group paths, dataset dtypes and shapes, and vars `name` attributes', async () => {
    const { kerasTree, oursTree } = await pair(name);
    const k = flatten(kerasTree);
    const o = flatten(oursTree);
    expect([...o.keys()].sort()).toEqual([...k.keys()].sort());
    for (const [p, kn] of k) {
      const on = o.get(p)!;
      expect([p, on.kind, on.dtype, on.shape, on.attrs]).toEqual([p, kn.kind, kn.dtype, kn.shape, kn.attrs]);
    }
    // every vars group is named (what Keras uses to report which layer a group belongs to)
    const named = [...k.entries()].filter(([p]) => p.endsWith('/vars'));
    expect(named.length).toBeGreaterThan(0);
    for (const [p, kn] of named) expect([p, typeof kn.attrs.name]).toEqual([p, 'string']);
  });

  test('HDF5 values: every dataset is byte-identical after the round trip (float8 kernels: Keras\'s kernel on the e4m3fn grid)', async () => {
    const { kerasTree, oursTree } = await pair(name);
    const k = flatten(kerasTree);
    const o = flatten(oursTree);
    const float8Kernels = FLOAT8_KERNELS[name] ?? [];
    const differing: string[] = [];
    for (const [p, kn] of k) {
      if (kn.kind !== 'dataset') continue;
      if (float8Kernels.includes(p)) continue;
      if (!o.get(p)!.bytes!.equals(kn.bytes!)) differing.push(p);
    }
    expect(differing).toEqual([]);
    // Intentional difference: quantkit holds a float8 layer's kernel as e4m3fn codes (Keras keeps float32 and
    // fake-quantizes it at every call), so the saved kernel is fround(e4m3fn(clip(w / kernel_scale)) * kernel_scale).
    for (const p of float8Kernels) {
      const scalePath = p.replace(/\/0$/, '/4'); // Dense float8 order: kernel, bias, inputs_scale, inputs_amax_history, kernel_scale, ...
      const ks = (k.get(scalePath)!.bytes!.readFloatLE(0));
      const w = new Float32Array(new Uint8Array(k.get(p)!.bytes!).buffer);
      const got = new Float32Array(new Uint8Array(o.get(p)!.bytes!).buffer);
      const want = Float32Array.from(w, (v) => Math.fround(roundE4M3(Math.max(-448, Math.min(448, Math.fround(v / ks)))) * ks));
      expect([p, Array.from(got)]).toEqual([p, Array.from(want)]);
      // and the rounding is real: the float kernel itself is not on the grid
      expect([p, Array.from(got).some((v, i) => v !== w[i])]).toEqual([p, true]);
    }
  });

  test('config.json: every layer has the same class_name, module, registered_name, name, dtype and quantization_config', async () => {
    const { kerasConfig, oursConfig } = await pair(name);
    expect([oursConfig.class_name, oursConfig.module, oursConfig.registered_name]).toEqual([kerasConfig.class_name, kerasConfig.module, kerasConfig.registered_name]);
    expect(strip((oursConfig.config as Record<string, unknown>).dtype)).toEqual(strip((kerasConfig.config as Record<string, unknown>).dtype));
    const kl = layerEntries(kerasConfig);
    const ol = layerEntries(oursConfig);
    expect(ol.map((l) => [l.class_name, l.config.name])).toEqual(kl.map((l) => [l.class_name, l.config.name]));
    kl.forEach((kLayer, i) => {
      const oLayer = ol[i];
      const who = `${kLayer.class_name} '${String(kLayer.config.name)}'`;
      expect([who, oLayer.module, oLayer.registered_name]).toEqual([who, kLayer.module, kLayer.registered_name]);
      expect([who, 'dtype', strip(oLayer.config.dtype)]).toEqual([who, 'dtype', strip(kLayer.config.dtype)]);
      expect([who, 'quantization_config', strip(oLayer.config.quantization_config)]).toEqual([who, 'quantization_config', strip(kLayer.config.quantization_config)]);
      // the other layer settings too (units, activation, equation, initializers, ...)
      expect([who, Object.keys(oLayer.config).sort()]).toEqual([who, Object.keys(kLayer.config).sort()]);
      expect([who, strip(oLayer.config)]).toEqual([who, strip(kLayer.config)]);
    });
  });
});

test('the quantized policies the layout fixtures exercise are the ones Keras wrote (the comparison is not vacuous)', async () => {
  const policies = new Set<string>();
  for (const name of FIXTURES) {
    const { kerasConfig } = await pair(name);
    for (const l of layerEntries(kerasConfig)) {
      const d = l.config.dtype as { class_name?: string; config?: { mode?: string; name?: string } } | string | undefined;
      if (d && typeof d === 'object') policies.add(`${d.class_name}:${d.config?.mode ?? d.config?.name}`);
    }
  }
  expect([...policies].sort()).toEqual(
    expect.arrayContaining([
      'QuantizedDTypePolicy:int8',
      'Int4DTypePolicy:int4/8',
      'Int4DTypePolicy:int4/128',
      'QuantizedFloat8DTypePolicy:float8',
      'DTypePolicyMap:undefined',
    ]),
  );
});

// Where the rest of config.json differs from Keras's (found by diffing the whole configs; listed in the report):
//  1. `compile_config`: Keras writes {} for these never-compiled models, quantkit writes null.
//  2. fn_int8 / fn_int4: after an EinsumDense whose output_shape has a None (sequence) axis, Keras records that
//     axis as null in the next layers' build_config and inbound shapes; quantkit infers the concrete 16.
//  3. mha_int8_policymap: MultiHeadAttention's build_config is {shapes_dict: {query_shape, value_shape}} in Keras
//     and {input_shape: [[...], [...]]} in quantkit (see the failing test below).
describe('whole config.json against Keras (known differences isolated)', () => {
  const normalize = (c: Record<string, unknown>): unknown => {
    const copy = strip(c) as Record<string, unknown>;
    delete copy.compile_config; // difference 1 (intentional: quantkit does not compile)
    const layers = layerEntries(copy);
    for (const l of layers) {
      delete l.build_config; // differences 2 and 3 are checked separately
      for (const n of ((l as { inbound_nodes?: Array<{ args: unknown[] }> }).inbound_nodes ?? [])) {
        const refs = (Array.isArray(n.args[0]) ? n.args[0] : n.args) as Array<{ config: { shape: unknown } }>;
        for (const r of refs) delete (r.config as Record<string, unknown>).shape; // difference 2
      }
    }
    return copy;
  };
  test.each(FIXTURES)('%s: identical after removing the listed differences', async (name) => {
    const { kerasConfig, oursConfig } = await pair(name);
    expect(normalize(oursConfig)).toEqual(normalize(kerasConfig));
  });

  test('build_config input shapes agree wherever Keras knows the dimension', async () => {
    for (const name of FIXTURES) {
      const { kerasConfig, oursConfig } = await pair(name);
      const ol = layerEntries(oursConfig);
      layerEntries(kerasConfig).forEach((kl, i) => {
        const kb = kl.build_config as { input_shape?: Array<number | null> } | undefined;
        const ob = ol[i].build_config as { input_shape?: Array<number | null> } | undefined;
        if (!kb?.input_shape || !Array.isArray(kb.input_shape) || Array.isArray(kb.input_shape[0])) return;
        expect([name, kl.config.name, ob?.input_shape?.length]).toEqual([name, kl.config.name, kb.input_shape.length]);
        kb.input_shape.forEach((d, j) => {
          if (d !== null) expect([name, kl.config.name, j, ob!.input_shape![j]]).toEqual([name, kl.config.name, j, d]);
        });
      });
    }
  });

  // Regression: MultiHeadAttention writes Keras's build_config form { shapes_dict: { query_shape, value_shape } }
  // (an input_shape list would make Keras call build() without value_shape).
  test('mha_int8_policymap: MultiHeadAttention build_config uses Keras shapes_dict form', async () => {
    const { kerasConfig, oursConfig } = await pair('mha_int8_policymap');
    const km = layerEntries(kerasConfig).find((l) => l.class_name === 'MultiHeadAttention')!;
    const om = layerEntries(oursConfig).find((l) => l.class_name === 'MultiHeadAttention')!;
    expect(om.build_config).toEqual(km.build_config);
  });
});
