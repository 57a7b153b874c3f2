// Reads every fixture .keras (zip -> config.json, metadata.json, model.weights.h5) and checks the HDF5 trees
// against facts written independently: the fixture READMEs (layouts Keras produced) and inventory.json (h5dump
// statistics of every dataset of the real-world files).
import * as fs from 'fs';
import * as path from 'path';
import { readZip } from '../../lib/io/zip';
import { readHdf5, h5Get, terminateHdf5Worker } from '../../lib/io/hdf5';
import type { H5Dataset, H5Group } from '../../lib/io/hdf5';
import { readNpy } from './npy';

const QDIR = path.join(__dirname, '..', 'fixtures', 'keras-quantized');
const KDIR = path.join(__dirname, '..', 'fixtures', 'keras');
const dec = new TextDecoder();

afterAll(() => terminateHdf5Worker());

async function loadKeras(file: string) {
  const zip = readZip(new Uint8Array(fs.readFileSync(file)), { source: path.basename(file) });
  const config = JSON.parse(dec.decode(zip.get('config.json')!));
  const metadata = JSON.parse(dec.decode(zip.get('metadata.json')!));
  const weights = await readHdf5(zip.get('model.weights.h5')!, { source: `${path.basename(file)}/model.weights.h5` });
  return { zip, config, metadata, weights };
}

function ds(root: H5Group, p: string): H5Dataset {
  const n = h5Get(root, p);
  if (!n || n.kind !== 'dataset') throw new Error(`no dataset ${p}`);
  return n;
}

function grp(root: H5Group, p: string): H5Group {
  const n = h5Get(root, p);
  if (!n || n.kind !== 'group') throw new Error(`no group ${p}`);
  return n;
}

function expectLayout(root: H5Group, rows: Array<[string, H5Dataset['dtype'], number[]]>) {
  for (const [p, dtype, shape] of rows) {
    const d = ds(root, p);
    expect({ p, dtype: d.dtype, shape: d.shape }).toEqual({ p, dtype, shape });
    expect(d.data.length).toBe(shape.reduce((a, b) => a * b, 1));
  }
}

const quantized = fs.readdirSync(QDIR).filter((f) => f.endsWith('.keras')).sort();

describe('keras-quantized fixtures', () => {
  test('the folder has the 15 archives with inputs and outputs', () => {
    expect(quantized).toHaveLength(15);
    for (const f of quantized) {
      const base = f.replace(/\.keras$/, '');
      expect(fs.existsSync(path.join(QDIR, `${base}.input.npy`))).toBe(true);
      expect(fs.existsSync(path.join(QDIR, `${base}.output.npy`))).toBe(true);
    }
  });

  test.each(quantized)('%s: members, metadata, config and a readable weights tree', async (f) => {
    const { zip, config, metadata, weights } = await loadKeras(path.join(QDIR, f));
    expect([...zip.keys()]).toEqual(['metadata.json', 'config.json', 'model.weights.h5']);
    expect(metadata.keras_version).toBe('3.16.0');
    expect(metadata.date_saved).toMatch(/^2026-11-23@\d\d:\d\d:\d\d$/);
    expect(typeof config.class_name).toBe('string');
    expect(weights.kind).toBe('group');
    expect(grp(weights, 'vars').attrs.name).toBe(config.config.name);
  });

  test('seq_int8: Dense int8 layout', async () => {
    const { weights } = await loadKeras(path.join(QDIR, 'seq_int8.keras'));
    expectLayout(weights, [
      ['layers/dense/vars/0', 'int8', [10, 32]],
      ['layers/dense/vars/1', 'float32', [32]],
      ['layers/dense/vars/2', 'float32', [32]],
      ['layers/dense_1/vars/0', 'int8', [32, 1]],
      ['layers/dense_1/vars/1', 'float32', [1]],
      ['layers/dense_1/vars/2', 'float32', [1]],
    ]);
    expect([...grp(weights, 'layers/dense/vars').children.keys()]).toEqual(['0', '1', '2']);
    expect(grp(weights, 'layers/dense/vars').attrs).toEqual({ name: 'dense' });
    expect(grp(weights, 'layers/dense_1/vars').attrs).toEqual({ name: 'dense_1' });
    // int8 kernels use the symmetric range; scales are positive multipliers
    const k = ds(weights, 'layers/dense/vars/0').data as Int8Array;
    expect(Math.min(...k)).toBeGreaterThanOrEqual(-127);
    expect(Math.max(...k)).toBeLessThanOrEqual(127);
    expect([...(ds(weights, 'layers/dense/vars/2').data as Float32Array)].every((s) => s > 0)).toBe(true);
  });

  test('seq_int4_block8: grouped int4 layout and g_idx = floor(i / 8)', async () => {
    const { weights } = await loadKeras(path.join(QDIR, 'seq_int4_block8.keras'));
    expectLayout(weights, [
      ['layers/dense/vars/0', 'int8', [10, 16]],
      ['layers/dense/vars/1', 'float32', [32]],
      ['layers/dense/vars/2', 'float32', [2, 32]],
      ['layers/dense/vars/3', 'int8', [2, 32]],
      ['layers/dense/vars/4', 'float32', [10]],
      ['layers/dense_1/vars/0', 'int8', [32, 1]],
      ['layers/dense_1/vars/2', 'float32', [4, 1]],
      ['layers/dense_1/vars/3', 'int8', [4, 1]],
      ['layers/dense_1/vars/4', 'float32', [32]],
    ]);
    expect([...(ds(weights, 'layers/dense/vars/4').data as Float32Array)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    expect([...(ds(weights, 'layers/dense_1/vars/4').data as Float32Array)]).toEqual(
      Array.from({ length: 32 }, (_, i) => Math.floor(i / 8)),
    );
    const zero = ds(weights, 'layers/dense/vars/3').data as Int8Array;
    expect(zero.every((z) => z >= -8 && z <= 7)).toBe(true);
  });

  test('mha_int8_policymap: EinsumDense int8 sublayers of MultiHeadAttention', async () => {
    const { weights, config } = await loadKeras(path.join(QDIR, 'mha_int8_policymap.keras'));
    const base = 'layers/multi_head_attention';
    for (const [sub, name] of [['key_dense', 'key'], ['query_dense', 'query'], ['value_dense', 'value']]) {
      expectLayout(weights, [
        [`${base}/${sub}/vars/0`, 'int8', [32, 2, 16]],
        [`${base}/${sub}/vars/1`, 'float32', [2, 16]],
        [`${base}/${sub}/vars/2`, 'float32', [1, 1, 2, 16]],
      ]);
      expect(grp(weights, `${base}/${sub}/vars`).attrs).toEqual({ name });
    }
    expectLayout(weights, [
      [`${base}/output_dense/vars/0`, 'int8', [2, 16, 32]],
      [`${base}/output_dense/vars/1`, 'float32', [32]],
      [`${base}/output_dense/vars/2`, 'float32', [1, 1, 32]],
    ]);
    expect(grp(weights, `${base}/output_dense/vars`).attrs.name).toBe('attention_output');
    expect(grp(weights, `${base}/vars`).attrs.name).toBe('mha');
    expect(grp(weights, `${base}/_dropout_layer/vars`).attrs.name).toBe('dropout');
    expect(grp(weights, `${base}/_softmax/vars`).attrs.name).toBe('softmax');
    const mha = config.config.layers.find((l: { class_name: string }) => l.class_name === 'MultiHeadAttention');
    expect(mha.config.dtype.class_name).toBe('DTypePolicyMap');
  });

  test('gptq_tiny: GPTQ layout inside a nested functional block (bias first, uint8 kernel)', async () => {
    const { weights } = await loadKeras(path.join(QDIR, 'gptq_tiny.keras'));
    expectLayout(weights, [
      ['layers/dense/vars/0', 'float32', [32, 50]],
      ['layers/embedding/vars/0', 'float32', [50, 32]],
      ['layers/functional/layers/dense/vars/0', 'float32', [64]],
      ['layers/functional/layers/dense/vars/1', 'uint8', [32, 32]],
      ['layers/functional/layers/dense/vars/2', 'float32', [64, 4]],
      ['layers/functional/layers/dense/vars/3', 'uint8', [64, 4]],
      ['layers/functional/layers/dense/vars/4', 'float32', [32]],
      ['layers/functional/layers/dense_1/vars/1', 'uint8', [16, 64]],
      ['layers/functional/layers/layer_normalization/vars/0', 'float32', [32]],
    ]);
    expect(grp(weights, 'layers/functional/layers/dense/vars').attrs.name).toBe('ffn_up');
    expect(grp(weights, 'layers/functional/layers/dense_1/vars').attrs.name).toBe('ffn_down');
    expect(grp(weights, 'layers/functional/vars').attrs.name).toBe('block');
    // 4-bit levels: zero points within [0, 15]
    expect((ds(weights, 'layers/functional/layers/dense/vars/3').data as Uint8Array).every((z) => z <= 15)).toBe(true);
  });

  test('seq_float8: float32 kernel and 1024-long amax histories', async () => {
    const { weights } = await loadKeras(path.join(QDIR, 'seq_float8.keras'));
    const vars = grp(weights, 'layers/dense/vars');
    expect([...vars.children.keys()]).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    expectLayout(weights, [
      ['layers/dense/vars/0', 'float32', [10, 32]],
      ['layers/dense/vars/2', 'float32', []],
      ['layers/dense/vars/3', 'float32', [1024]],
    ]);
    // never trained: scales 1, histories 0
    expect([...(ds(weights, 'layers/dense/vars/2').data as Float32Array)]).toEqual([1]);
    expect((ds(weights, 'layers/dense/vars/3').data as Float32Array).every((v) => v === 0)).toBe(true);
  });

  test('inputs and outputs parse as .npy with the documented shapes', () => {
    const shapes: Record<string, [string, number[], number[]]> = {
      seq_int8: ['<f4', [4, 10], [4, 1]],
      fn_int8: ['<i4', [2, 16], [2, 16, 9]],
      mha_int8_policymap: ['<f4', [2, 8, 32], [2, 8, 32]],
      gptq_tiny: ['<i4', [2, 16], [2, 16, 50]],
    };
    for (const [name, [descr, inShape, outShape]] of Object.entries(shapes)) {
      const x = readNpy(new Uint8Array(fs.readFileSync(path.join(QDIR, `${name}.input.npy`))));
      const y = readNpy(new Uint8Array(fs.readFileSync(path.join(QDIR, `${name}.output.npy`))));
      expect([name, x.descr, x.shape]).toEqual([name, descr, inShape]);
      expect([name, y.descr, y.shape.slice(0, outShape.length - 1)]).toEqual([name, '<f4', outShape.slice(0, -1)]);
      expect(y.data.length).toBe(y.shape.reduce((a, b) => a * b, 1));
    }
    // mha_int8 and mha_int8_policymap computed the same numbers (README)
    const a = readNpy(new Uint8Array(fs.readFileSync(path.join(QDIR, 'mha_int8.output.npy'))));
    const b = readNpy(new Uint8Array(fs.readFileSync(path.join(QDIR, 'mha_int8_policymap.output.npy'))));
    expect(Buffer.from((a.data as Float32Array).buffer).equals(Buffer.from((b.data as Float32Array).buffer))).toBe(true);
  });
});

interface InvDataset { path: string; dtype: string; shape: number[]; count: number; sum: number; min: number; max: number; first: number[] }
interface InvEntry { file: string; members: Array<{ name: string; size: number; compress: string }>; metadata: Record<string, string>; h5_attributes: Array<{ path: string; value: string }>; h5_datasets: InvDataset[] }
const inventory: InvEntry[] = JSON.parse(fs.readFileSync(path.join(KDIR, 'inventory.json'), 'utf8'));

describe('real-world keras fixtures against inventory.json (h5dump facts)', () => {
  test('every archive is listed', () => {
    const files = fs.readdirSync(KDIR).filter((f) => f.endsWith('.keras')).sort();
    expect(inventory.map((e) => e.file).sort()).toEqual(files);
  });

  test.each(inventory.map((e) => [e.file, e] as const))('%s', async (_file, inv) => {
    const { zip, metadata, weights } = await loadKeras(path.join(KDIR, inv.file));
    expect([...zip.entries()].map(([n, b]) => [n, b.length])).toEqual(inv.members.map((m) => [m.name, m.size]));
    expect(metadata).toEqual(inv.metadata);
    for (const a of inv.h5_attributes) {
      const slash = a.path.lastIndexOf('/');
      const node = slash === 0 ? weights : h5Get(weights, a.path.slice(0, slash));
      expect([a.path, node?.attrs[a.path.slice(slash + 1)]]).toEqual([a.path, a.value]);
    }
    let seen = 0;
    const walk = (g: H5Group, p: string) => {
      for (const [k, c] of g.children) {
        if (c.kind === 'group') walk(c, `${p}/${k}`);
        else seen++;
      }
    };
    walk(weights, '');
    expect(seen).toBe(inv.h5_datasets.length);
    for (const d of inv.h5_datasets) {
      const got = ds(weights, d.path);
      const dtype = { H5T_IEEE_F32LE: 'float32', H5T_STD_I64LE: 'int64' }[d.dtype];
      expect([d.path, got.dtype, got.shape]).toEqual([d.path, dtype, d.shape]);
      const vals = Array.from(got.data as ArrayLike<number | bigint>, Number);
      expect(vals.length).toBe(d.count);
      if (d.count === 0) continue;
      expect(vals.slice(0, d.first.length)).toEqual(d.first);
      expect(vals.reduce((m, v) => Math.min(m, v), Infinity)).toBe(d.min);
      expect(vals.reduce((m, v) => Math.max(m, v), -Infinity)).toBe(d.max);
      const sum = vals.reduce((s, v) => s + v, 0);
      expect(Math.abs(sum - d.sum)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(d.sum), vals.reduce((s, v) => s + Math.abs(v), 0)));
    }
  });

  test('pre_pr22362_nested_container holds the values Keras documents', async () => {
    const { weights } = await loadKeras(path.join(KDIR, 'keras-team__pre_pr22362_nested_container.keras'));
    ['dense', 'dense_1', 'dense_2'].forEach((g, i) => {
      const d = ds(weights, `layers/${g}/vars/0`);
      expect(d.shape).toEqual([4, 4]);
      expect([...(d.data as Float32Array)]).toEqual(new Array(16).fill(Math.fround(0.1 * (i + 1))));
    });
    expect([...(ds(weights, 'layers/dense_3/vars/0').data as Float32Array)]).toEqual(new Array(8).fill(0.5));
    expect([...(ds(weights, 'layers/dense_3/vars/1').data as Float32Array)]).toEqual([0, 0]);
  });

  test('pr22359_bugged_model: optimizer state but no layer weights', async () => {
    const { weights } = await loadKeras(path.join(KDIR, 'keras-team__pr22359_bugged_model.keras'));
    expect(h5Get(weights, 'layers/custom_layer/_custom_layers/dense/vars/0')).toBeUndefined();
    expect(ds(weights, 'optimizer/vars/0').dtype).toBe('int64');
  });
});
