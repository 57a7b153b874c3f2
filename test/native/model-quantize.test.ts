// Model.quantize() (spec §1.6, §6 "Model level"), QuantizationReport (§1.7) and quantizationSummary().
import { Dense } from '../../lib/layers/dense';
import { Embedding } from '../../lib/layers/embedding';
import { Layer } from '../../lib/layers/layer';
import { applySymbolic, Input, Model, QuantizationReport, Sequential } from '../../lib/models';
import { GPTQConfig, Int4QuantizationConfig } from '../../lib/quantizers';
import { InvalidArgumentError, NotBuiltError, UnsupportedError } from '../../lib/errors';
import { Tensor } from '../../lib/tensor';
import { rng } from '../helpers';

// ---- helpers ---------------------------------------------------------------------------------------------

function uniform01(rows: number, cols: number, seed: number): Tensor<'float32'> {
  const r = rng(seed);
  return new Tensor('float32', [rows, cols], Float32Array.from({ length: rows * cols }, () => r()));
}

/** Float reference of a Dense stack from float weights captured before quantization (float64 maths). */
function mlpRef(x: Float32Array, rows: number, layers: Array<{ w: Float32Array; b: Float32Array; inDim: number; units: number; relu: boolean }>): Float64Array {
  let h = Float64Array.from(x);
  for (const l of layers) {
    const y = new Float64Array(rows * l.units);
    for (let r = 0; r < rows; r++) {
      for (let u = 0; u < l.units; u++) {
        let s = l.b[u];
        for (let k = 0; k < l.inDim; k++) s += h[r * l.inDim + k] * l.w[k * l.units + u];
        y[r * l.units + u] = l.relu ? Math.max(0, s) : s;
      }
    }
    h = y;
  }
  return h;
}

function capture(d: Dense, relu: boolean) {
  return { w: Float32Array.from(d.kernel!.value.data as Float32Array), b: Float32Array.from(d.bias!.value.data as Float32Array), inDim: d.inputDim, units: d.units, relu };
}

function mse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s / a.length;
}

async function mlp(names = ['dense_a', 'dense_b']): Promise<Sequential> {
  const m = new Sequential({
    layers: [Input({ shape: [10] }), new Dense({ units: 32, activation: 'relu', name: names[0] }), new Dense({ units: 1, name: names[1] })],
  });
  await m.build();
  return m;
}

/** A layer with a weight and no quantize support. */
class Norm extends Layer {
  build(shape: readonly (number | null)[]): void {
    this.addWeight('gamma', new Tensor('float32', [shape[shape.length - 1] as number], new Float32Array(shape[shape.length - 1] as number).fill(1)));
    this.built = true;
  }
  async call(x: Tensor | Tensor[]): Promise<Tensor> {
    return x as Tensor;
  }
}

/** A layer whose quantize fails with a real error. */
class Broken extends Dense {
  protected override async quantizeLayer(): Promise<void> {
    throw new InvalidArgumentError('Expected a working layer for broken but received a broken one');
  }
}

/** A composite layer exposing one Dense child. */
class Block extends Layer {
  inner = new Dense({ units: 4, name: 'inner' });
  build(shape: readonly (number | null)[]): void {
    this.inner.build(shape);
    this.built = true;
  }
  async call(x: Tensor | Tensor[]): Promise<Tensor> {
    return this.inner.apply(x as Tensor);
  }
  override savableChildren(): Array<[string, Layer]> {
    return [['inner', this.inner]];
  }
}

let warnSpy: jest.SpyInstance;
let logSpy: jest.SpyInstance;
beforeEach(() => {
  warnSpy = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  logSpy = jest.spyOn(console, 'log').mockImplementation(() => undefined);
});
afterEach(() => {
  warnSpy.mockRestore();
  logSpy.mockRestore();
});

// ---- quantize: numerics, variables, policies -------------------------------------------------------------

describe('Model.quantize numerics', () => {
  test.each([
    ['int8', 6, 'int8_from_float32', 1e-3],
    ['int4', 10, 'int4/128_from_float32', 5e-3],
    ['float8', 16, 'float8_from_float32', 5e-3],
  ] as const)('Sequential 10→32→1 %s: close to float, %i variables, policy %s', async (mode, nVars, policy, tol) => {
    const m = await mlp();
    const [d1, d2] = m.layers as Dense[];
    const ref = [capture(d1, true), capture(d2, false)];
    const x = uniform01(64, 10, 7);
    const expected = mlpRef(x.data, 64, ref);
    const report = await m.quantize(mode, { verbose: false });
    expect(m.variables.length).toBe(nVars);
    expect(d1.dtypePolicy.name).toBe(policy);
    expect(d2.dtypePolicy.name).toBe(policy);
    expect(report.quantized).toEqual([
      { path: 'dense_a', mode, scheme: policy },
      { path: 'dense_b', mode, scheme: policy },
    ]);
    expect(report.numSkipped).toBe(0);
    expect(m.quantizationReport).toBe(report);
    const y = await m.predict(x, { batchSize: 16 });
    const err = mse(y.data as Float32Array, expected);
    expect(err).toBeLessThan(tol);
    expect(err).toBeGreaterThan(0);
    expect(warnSpy).not.toHaveBeenCalled();
  });

  test('a config object is equivalent to the mode string; a contradiction is an error', async () => {
    const m = await mlp();
    await m.quantize({ config: new Int4QuantizationConfig({ blockSize: -1 }), verbose: false });
    expect(m.layers[0].dtypePolicy.name).toBe('int4/-1_from_float32');
    const n = await mlp();
    await expect(n.quantize('int8', { config: new Int4QuantizationConfig(), verbose: false })).rejects.toThrow(/Contradictory arguments/);
    expect(n.layers[0].isQuantized).toBe(false);
  });
});

// ---- filters -----------------------------------------------------------------------------------------------

describe('filters', () => {
  async function three(): Promise<Sequential> {
    const m = new Sequential({
      layers: [Input({ shape: [6] }), new Dense({ units: 6, name: 'enc_a' }), new Dense({ units: 6, name: 'enc_b' }), new Dense({ units: 2, name: 'head' })],
    });
    await m.build();
    return m;
  }
  const cases: Array<[string, unknown, string[]]> = [
    ['regex string', '^enc', ['enc_a', 'enc_b']],
    ['substring search', 'c_b', ['enc_b']],
    ['RegExp', /head/g, ['head']],
    ['list', ['_a$', 'head'], ['enc_a', 'head']],
    ['predicate', (l: Layer) => l.name !== 'head', ['enc_a', 'enc_b']],
    ['empty list', [], []],
  ];
  test.each(cases)('%s', async (_label, filters, expected) => {
    const m = await three();
    const report = await m.quantize('int8', { filters: filters as never, verbose: false });
    expect(report.quantized.map((q) => q.path)).toEqual(expected);
    const all = ['enc_a', 'enc_b', 'head'];
    expect(report.skippedByReason(QuantizationReport.SKIP_FILTERED)).toEqual(all.filter((n) => !expected.includes(n)));
    for (const l of m.layers) expect(l.isQuantized).toBe(expected.includes(l.name));
  });

  test.each([5, { a: 1 }, [1, 2], true])('anything else is refused (%p)', async (filters) => {
    const m = await three();
    await expect(m.quantize('int8', { filters: filters as never, verbose: false })).rejects.toThrow(
      /The `filters` argument must be a regex string, a list of regex strings, or a callable. Received: <class/,
    );
    expect(m.layers.some((l) => l.isQuantized)).toBe(false);
  });

  test('an invalid regex is an InvalidArgumentError', async () => {
    const m = await three();
    await expect(m.quantize('int8', { filters: '(', verbose: false })).rejects.toThrow(InvalidArgumentError);
  });
});

// ---- nesting, composites, skip reasons -------------------------------------------------------------------

class Outer extends Model {
  body = new Sequential({ layers: [new Dense({ units: 8, name: 'l1' }), new Dense({ units: 8, name: 'l2' }), new Dense({ units: 2, name: 'l3' })], name: 'body' });
  override async call(x: Tensor): Promise<Tensor> {
    return this.body.apply(x);
  }
}

describe('nested and composite layers', () => {
  test('a subclassed model holding a Sequential of 3 Dense: float8 gives 3×8 variables, paths are nested', async () => {
    const m = new Outer({ name: 'outer' });
    await expect(m.quantize('float8', { verbose: false })).rejects.toThrow(NotBuiltError);
    await expect(m.quantize('float8', { verbose: false })).rejects.toThrow(
      "Cannot quantize a layer that isn't yet built. Layer 'outer' (of type 'Outer') is not built yet.",
    );
    await m.apply(uniform01(2, 4, 1));
    const report = await m.quantize('float8', { verbose: false });
    expect(m.variables.length).toBe(24);
    expect(report.quantized.map((q) => q.path)).toEqual(['body/l1', 'body/l2', 'body/l3']);
    expect(report.numSkipped).toBe(0);
    // a second call skips everything as already quantized
    const again = await m.quantize('int8', { verbose: false });
    expect(again.skippedByReason(QuantizationReport.SKIP_ALREADY_QUANTIZED)).toEqual(['body/l1', 'body/l2', 'body/l3']);
    expect(again.numQuantized).toBe(0);
  });

  test('composite layers are not quantized themselves; their children are; unsupported layers warn once', async () => {
    const x = Input({ shape: [4] });
    const blk = new Block({ name: 'blk' });
    let h = await applySymbolic(blk, x);
    const norms = Array.from({ length: 6 }, (_, i) => new Norm({ name: `norm${i}` }));
    for (const n of norms) h = await applySymbolic(n, h);
    const y = await applySymbolic(new Dense({ units: 3, name: 'out' }), h);
    const model = new Model({ inputs: x, outputs: y, name: 'comp' });
    const report = await model.quantize('int8');
    expect(report.quantized.map((q) => q.path)).toEqual(['blk/inner', 'out']);
    expect(blk.inner.dtypePolicy.name).toBe('int8_from_float32');
    expect(report.skippedByReason(QuantizationReport.SKIP_NO_SUPPORT)).toEqual(['blk', ...norms.map((n) => n.name)]);
    expect(warnSpy).toHaveBeenCalledTimes(1);
    const text = warnSpy.mock.calls[0][0] as string;
    expect(text.startsWith('`model.quantize()`: ')).toBe(true);
    expect(text).toContain("7 layer(s) were skipped because they do not support quantization (e.g. 'blk', 'norm0', 'norm1', 'norm2', 'norm3', ...).");
    expect(text).not.toContain('norm4');
    expect(text).toContain("Quantized 2 layer(s) in mode 'int8'.");
    // verbose (the default) printed the report
    expect(logSpy).toHaveBeenCalledWith(report.render());
  });

  test('an Embedding asked for float8 is skipped as unsupported', async () => {
    const ids = Input({ shape: [3], dtype: 'int32' });
    const emb = new Embedding({ inputDim: 10, outputDim: 4, name: 'emb' });
    const out = await applySymbolic(new Dense({ units: 2, name: 'proj' }), await applySymbolic(emb, ids));
    const model = new Model({ inputs: ids, outputs: out });
    const report = await model.quantize('float8', { verbose: false });
    expect(report.skipped).toEqual([{ path: 'emb', reason: 'no quantize support' }]);
    expect(report.quantized.map((q) => q.path)).toEqual(['proj']);
    expect(warnSpy).toHaveBeenCalledTimes(1);
  });
});

// ---- errors -----------------------------------------------------------------------------------------------

describe('errors', () => {
  test('unknown options are refused with Keras wording', async () => {
    const m = await mlp();
    await expect(m.quantize('int8', { verbose: false, foo: 1 } as never)).rejects.toThrow(
      "Unrecognized keyword arguments passed to Sequential: {'foo': 1}",
    );
  });

  test('real errors propagate; an unbuilt sub-layer raises the layer error', async () => {
    const m = new Sequential({ layers: [Input({ shape: [3] }), new Dense({ units: 3, name: 'ok' }), new Broken({ units: 2, name: 'bad' })] });
    await m.build();
    await expect(m.quantize('int8', { verbose: false })).rejects.toThrow('Expected a working layer for broken but received a broken one');

    const sub = new (class extends Model {
      a = new Dense({ units: 2, name: 'used' });
      b = new Dense({ units: 2, name: 'unused' });
      override async call(x: Tensor) {
        return this.a.apply(x);
      }
    })();
    await sub.apply(uniform01(1, 2, 3));
    await expect(sub.quantize('int8', { verbose: false })).rejects.toThrow(/isn't yet built. Layer 'unused'/);
  });

  test('subclass type check: refused unless typeCheck is false', async () => {
    class MyDense extends Dense {}
    const m = new Sequential({ layers: [Input({ shape: [3] }), new MyDense({ units: 2, name: 'mine' })] });
    await m.build();
    const r1 = await m.quantize('int8', { verbose: false });
    expect(r1.skipped).toEqual([{ path: 'mine', reason: 'no quantize support' }]);
    const r2 = await m.quantize('int8', { verbose: false, typeCheck: false });
    expect(r2.quantized.map((q) => q.path)).toEqual(['mine']);
  });

  test('gptq: a missing structure is refused before any change; a calibration error changes nothing', async () => {
    const m = await mlp();
    const config = new GPTQConfig({ dataset: [[1, 2, 3]], tokenizer: (s: unknown) => s });
    await expect(m.quantize('gptq', { config, verbose: false })).rejects.toThrow(/For mode='gptq', a valid quantization structure must be provided/);
    expect(m.layers.every((l) => !l.isQuantized && l.dtypePolicy.name === 'float32')).toBe(true);
    const structured = new GPTQConfig({
      dataset: [[1, 2, 3]],
      tokenizer: (s: unknown) => s,
      quantizationLayerStructure: { preBlockLayers: [], sequentialBlocks: [m.layers[0]] },
    });
    // the structure is valid; calibration then fails on the data (3 tokens < sequenceLength 512), changing nothing
    await expect(m.quantize({ config: structured, verbose: false })).rejects.toThrow('Not enough tokens to form one sample of length 512 (have 3).');
    expect(m.quantizationReport!.skippedByReason(QuantizationReport.SKIP_OUTSIDE_STRUCTURE)).toEqual(['dense_b']);
    expect(m.layers.every((l) => !l.isQuantized)).toBe(true);
    const empty = new GPTQConfig({ dataset: [[1]], tokenizer: (s: unknown) => s, quantizationLayerStructure: { sequentialBlocks: [] } });
    await expect(m.quantize('gptq', { config: empty, verbose: false })).rejects.toThrow('No sequential blocks found in the provided structure to quantize.');
  });
});

// ---- QuantizationReport and quantizationSummary ------------------------------------------------------------

describe('QuantizationReport', () => {
  test('render() text', () => {
    const r = new QuantizationReport('int8');
    r.addQuantized('dense', 'int8', 'int8_from_float32');
    r.addSkipped('act', QuantizationReport.SKIP_NO_SUPPORT);
    expect(r.render()).toBe(
      [
        "Quantization report (mode='int8')",
        '=================================================================',
        'Quantized 1 layer(s):',
        '  - dense (int8): int8_from_float32',
        'Skipped 1 layer(s):',
        '  - act: no quantize support',
      ].join('\n'),
    );
    const empty = new QuantizationReport('int4');
    expect(empty.render()).toBe(["Quantization report (mode='int4')", '='.repeat(65), 'Quantized 0 layer(s):', '  (none)', 'Skipped 0 layer(s):', '  (none)'].join('\n'));
    expect(String(r)).toBe("QuantizationReport(mode='int8', quantized=1, skipped=1, errors=0)");
  });

  test('summaryWarning: none for filtered/already quantized; examples capped at 5; errors counted', () => {
    const r = new QuantizationReport('int8');
    r.addSkipped('bn', QuantizationReport.SKIP_FILTERED);
    r.addSkipped('d2', QuantizationReport.SKIP_ALREADY_QUANTIZED);
    expect(r.summaryWarning()).toBeNull();
    for (let i = 0; i < 8; i++) r.addSkipped(`layer_${i}`, QuantizationReport.SKIP_NO_SUPPORT);
    const w = r.summaryWarning()!;
    expect(w).toContain("8 layer(s) were skipped because they do not support quantization (e.g. 'layer_0', 'layer_1', 'layer_2', 'layer_3', 'layer_4', ...).");
    expect(w).not.toContain("'bn'");
    expect(r.summaryWarning(2)).toContain("(e.g. 'layer_0', 'layer_1', ...)");
    r.addError('x', new Error('boom'));
    expect(r.numErrors).toBe(1);
    expect(r.summaryWarning()).toContain("1 layer(s) reported errors (e.g. 'x').");
    expect(r.render()).toContain('Errors on 1 layer(s):\n  - x: boom');
    expect(QuantizationReport.SKIP_OUTSIDE_STRUCTURE).toBe('outside quantization structure');
  });
});

describe('quantizationSummary', () => {
  test('int8 Dense 256→128: weight store, counts and ratio', async () => {
    const x = Input({ shape: [256], name: 'in' });
    const model = new Model({ inputs: x, outputs: await applySymbolic(new Dense({ units: 128, name: 'd1' }), x) });
    await model.quantize('int8', { verbose: false });
    const s = model.quantizationSummary({ verbose: false });
    expect(s).toContain('d1');
    expect(s).toContain('int8_from_float32');
    expect(s).toContain('weight store : int8 (32768 bytes)');
    expect(s).toContain('Quantized layers : 1');
    expect(s).toContain('Quantized params : 32768');
    expect(s).toContain('131072 bytes float32');
    expect(s).toContain('4.00x smaller');
    expect(logSpy).not.toHaveBeenCalled();
  });

  test('int4 counts two logical values per stored byte', async () => {
    const x = Input({ shape: [8] });
    const model = new Model({ inputs: x, outputs: await applySymbolic(new Dense({ units: 6, name: 'd' }), x) });
    await model.quantize('int4', { config: new Int4QuantizationConfig({ blockSize: 4 }), verbose: false });
    const s = model.quantizationSummary({ verbose: false });
    // packed kernel: 8 x 3 bytes
    expect(s).toContain('weight store : int8 (24 bytes)');
    expect(s).toContain('Quantized params : 48');
    expect(s).toContain('192 bytes float32');
    expect(s).toContain('8.00x smaller');
  });
});
