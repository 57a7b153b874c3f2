// Quantizer, AbsMaxQuantizer construction and config (spec §1.1), Keras-style serialization (spec §5), getQuantizer,
// and a user-defined PercentileQuantizer registered and round-tripped through serializeObject/deserializeObject and an
// Int8QuantizationConfig. Pure TypeScript (the native quantize path is covered in test/native/grouped.test.ts).
import { Tensor } from '../../lib/tensor';
import { InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import {
  AbsMaxQuantizer,
  Int4QuantizationConfig,
  Int8QuantizationConfig,
  Quantizer,
  QuantizerAxis,
  QuantizerResult,
  deserializeObject,
  getQuantizer,
  registerSerializable,
  serializeObject,
} from '../../lib/quantizers';
import { rng } from '../helpers';

/** Round half to even, written independently of lib/. */
function rne(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return Math.round(x);
  return f % 2 === 0 ? f : f + 1;
}

/**
 * A custom quantizer: the scale comes from the `percentile`-th percentile of |x| along the axis (NumPy's linear
 * interpolation) instead of the maximum, and values beyond it are clipped.
 */
class PercentileQuantizer extends Quantizer {
  readonly percentile: number;
  readonly valueRange: readonly [number, number];
  readonly axis: number;

  constructor(options: { percentile?: number; valueRange?: readonly [number, number]; axis?: number; outputDtype?: 'int8' } = {}) {
    super({ outputDtype: options.outputDtype });
    this.percentile = options.percentile ?? 99.9;
    this.valueRange = options.valueRange ?? [-127, 127];
    this.axis = options.axis ?? -1;
  }

  async quantize(x: Tensor, options: { axis?: QuantizerAxis } = {}): Promise<QuantizerResult> {
    const axisArg = options.axis ?? this.axis;
    const ax = typeof axisArg === 'number' ? axisArg : (axisArg as readonly number[])[0];
    const rank = x.shape.length;
    const a = ax < 0 ? ax + rank : ax;
    const len = x.shape[a];
    const inner = x.shape.slice(a + 1).reduce((p, d) => p * d, 1);
    const outer = x.size / (len * inner);
    const data = x.toFloat32().data;
    const [lo, hi] = this.valueRange;
    const q = new Int8Array(x.size);
    const scale = new Float32Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const abs: number[] = [];
        for (let l = 0; l < len; l++) abs.push(Math.abs(data[(o * len + l) * inner + i]));
        abs.sort((u, v) => u - v);
        const pos = (this.percentile / 100) * (len - 1);
        const k = Math.floor(pos);
        const p = k + 1 < len ? abs[k] + (pos - k) * (abs[k + 1] - abs[k]) : abs[k];
        const s = Math.fround(hi / Math.fround(p + Math.fround(1e-7)));
        scale[o * inner + i] = s;
        for (let l = 0; l < len; l++) {
          const idx = (o * len + l) * inner + i;
          q[idx] = Math.min(hi, Math.max(lo, rne(Math.fround(data[idx] * s))));
        }
      }
    }
    return {
      quantized: new Tensor('int8', x.shape, q),
      scale: new Tensor('float32', x.shape.map((d, i) => (i === a ? 1 : d)), scale),
    };
  }

  override getConfig(): Record<string, unknown> {
    return { percentile: this.percentile, value_range: [...this.valueRange], axis: this.axis, output_dtype: this.outputDtype };
  }
}
registerSerializable(PercentileQuantizer, { package: 'quantkit_test' });

class Unregistered extends Quantizer {
  async quantize(): Promise<QuantizerResult> {
    throw new Error('unused');
  }
  override getConfig(): Record<string, unknown> {
    return { output_dtype: 'int8' };
  }
}

const ABSMAX_KERAS = {
  module: 'keras.quantizers',
  class_name: 'AbsMaxQuantizer',
  config: { value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8' },
  registered_name: null,
};

describe('Quantizer base (spec §1.1)', () => {
  test('getConfig is not implemented by the base class', () => {
    class Bare extends Quantizer {
      async quantize(): Promise<QuantizerResult> {
        throw new Error('unused');
      }
    }
    expect(() => new Bare().getConfig()).toThrow(UnsupportedError);
    expect(() => new Bare().getConfig()).toThrow(/Bare does not implement get_config\(\)/);
  });

  test('outputDtype is int8; anything else is rejected', () => {
    expect(new Unregistered().outputDtype).toBe('int8');
    expect(() => new AbsMaxQuantizer({ outputDtype: 'uint8' as 'int8' })).toThrow(/Expected 'int8' for outputDtype but received "uint8"/);
  });

  test('fromConfig builds the subclass from its snake_case config', () => {
    const q = AbsMaxQuantizer.fromConfig({ value_range: [-8, 7], epsilon: 1e-6, output_dtype: 'int8', axis: [0] }) as AbsMaxQuantizer;
    expect(q).toBeInstanceOf(AbsMaxQuantizer);
    expect(q.valueRange).toEqual([-8, 7]);
    expect(q.epsilon).toBe(1e-6);
    expect(q.axis).toEqual([0]);
    expect(() => Quantizer.fromConfig({})).toThrow(UnsupportedError);
  });
});

describe('AbsMaxQuantizer construction and config (spec §1.1)', () => {
  test('defaults: axis null, range [-127, 127], epsilon 1e-7; config without axis', () => {
    const q = new AbsMaxQuantizer();
    expect(q.axis).toBeNull();
    expect(q.valueRange).toEqual([-127, 127]);
    expect(q.epsilon).toBe(1e-7);
    expect(q.getConfig()).toEqual(ABSMAX_KERAS.config);
    expect(Object.keys(q.getConfig())).toEqual(['value_range', 'epsilon', 'output_dtype']);
  });

  test('an integer axis becomes a one-element array and is serialized', () => {
    const q = new AbsMaxQuantizer({ axis: -1 });
    expect(q.axis).toEqual([-1]);
    expect(q.getConfig()).toEqual({ value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8', axis: [-1] });
    expect(new AbsMaxQuantizer({ axis: [1, 2] }).axis).toEqual([1, 2]);
  });

  test('value_range outside [-128, 127] is rejected with the Keras message', () => {
    expect(() => new AbsMaxQuantizer({ valueRange: [-200, 127] })).toThrow(InvalidArgumentError);
    expect(() => new AbsMaxQuantizer({ valueRange: [-200, 127] })).toThrow(
      "Quantizer with output_dtype='int8' requires value_range to be within the interval [-128, 127]. Received: value_range=(-200, 127)",
    );
    expect(() => new AbsMaxQuantizer({ valueRange: [-127, 128] })).toThrow(/within the interval \[-128, 127\]/);
    expect(() => new AbsMaxQuantizer({ valueRange: [-128, 127] })).not.toThrow();
    expect(() => new AbsMaxQuantizer({ valueRange: [5, 1] })).toThrow(/for valueRange but received/);
    expect(() => new AbsMaxQuantizer({ epsilon: -1 })).toThrow(/for epsilon but received -1/);
    expect(() => new AbsMaxQuantizer({ axis: 1.5 })).toThrow(/Expected an integer for axis but received 1.5/);
  });
});

describe('serializeObject / deserializeObject (spec §5)', () => {
  test('a built-in quantizer serializes exactly as Keras writes it', () => {
    expect(serializeObject(new AbsMaxQuantizer())).toEqual(ABSMAX_KERAS);
    expect(serializeObject(null)).toBeNull();
  });

  test('Keras dicts deserialize; bookkeeping keys are ignored; a tuple becomes an array', () => {
    const q = deserializeObject({ ...ABSMAX_KERAS, shared_object_id: 139750830127952 }) as AbsMaxQuantizer;
    expect(q).toBeInstanceOf(AbsMaxQuantizer);
    expect(q.getConfig()).toEqual(ABSMAX_KERAS.config);
    expect(deserializeObject({ class_name: '__tuple__', config: { value: [-8, 7] } })).toEqual([-8, 7]);
    expect(deserializeObject(null)).toBeNull();
    expect(deserializeObject(3)).toBe(3);
  });

  test('an unknown class is an InvalidArgumentError that names it and says how to register it', () => {
    const dict = serializeObject(new Unregistered());
    expect(dict).toEqual({ module: null, class_name: 'Unregistered', config: { output_dtype: 'int8' }, registered_name: null });
    expect(() => deserializeObject(dict)).toThrow(InvalidArgumentError);
    expect(() => deserializeObject(dict)).toThrow(/Could not locate class 'Unregistered'/);
    expect(() => deserializeObject(dict)).toThrow(/registerSerializable\(Unregistered/);
    expect(() =>
      deserializeObject({ module: null, class_name: 'Foo', config: {}, registered_name: 'acme>Foo' }, 'weight_quantizer'),
    ).toThrow(/for weight_quantizer but received class_name 'Foo' \(registered_name 'acme>Foo'\).*registerSerializable\(Foo, \{ package: 'acme' \}\)/);
  });

  test('registerSerializable rejects classes without getConfig and taken names; re-registering is a no-op', () => {
    class NoConfig {}
    expect(() => registerSerializable(NoConfig as never)).toThrow(/Cannot register a class that does not have a get_config\(\) method/);
    expect(() => registerSerializable(PercentileQuantizer, { package: 'quantkit_test' })).not.toThrow();
    class Other extends Unregistered {}
    expect(() => registerSerializable(Other, { package: 'quantkit_test', name: 'PercentileQuantizer' })).toThrow(
      /'quantkit_test>PercentileQuantizer', already registered to PercentileQuantizer/,
    );
    expect(() => registerSerializable(Other, { package: 'a>b' })).toThrow(/options.package/);
  });
});

describe('getQuantizer (keras.quantizers.get)', () => {
  test('null, instances, names, snake-case names with options, dicts, registered names', () => {
    expect(getQuantizer(null)).toBeNull();
    expect(getQuantizer(undefined)).toBeNull();
    const q = new AbsMaxQuantizer();
    expect(getQuantizer(q)).toBe(q);
    expect(getQuantizer('AbsMaxQuantizer')).toBeInstanceOf(AbsMaxQuantizer);
    const withAxis = getQuantizer('abs_max_quantizer', { axis: 0 }) as AbsMaxQuantizer;
    expect(withAxis.axis).toEqual([0]); // options are constructor options (Keras #23470 fixed the positional bug)
    expect(getQuantizer(ABSMAX_KERAS)).toBeInstanceOf(AbsMaxQuantizer);
    expect(getQuantizer('quantkit_test>PercentileQuantizer')).toBeInstanceOf(PercentileQuantizer);
    expect(getQuantizer('percentile_quantizer')).toBeInstanceOf(PercentileQuantizer);
  });

  test('anything else: "Could not interpret quantizer identifier"', () => {
    expect(() => getQuantizer('NoSuchQuantizer')).toThrow(/Could not interpret quantizer identifier: NoSuchQuantizer/);
    expect(() => getQuantizer(42 as never)).toThrow(InvalidArgumentError);
    expect(() => getQuantizer('Int8QuantizationConfig')).toThrow(/Could not interpret quantizer identifier/);
    expect(() => getQuantizer('Quantizer')).toThrow(/Quantizer is abstract/);
    expect(() => getQuantizer(serializeObject(new Int4QuantizationConfig()) as never)).toThrow(/Could not interpret quantizer identifier/);
  });
});

describe('a custom PercentileQuantizer', () => {
  // Row 0: |x| = 0.001, 0.002, ..., 1.000 with alternating signs; row 1: the same plus one outlier of 50.
  const len = 1000;
  const data = new Float32Array(2 * len);
  for (let i = 0; i < len; i++) {
    data[i] = ((i % 2 === 0 ? 1 : -1) * (i + 1)) / 1000;
    data[len + i] = data[i];
  }
  data[len + 500] = 50;
  const x = new Tensor('float32', [2, len], data);

  test('scales by the 99.9th percentile of |x| and clips the outlier', async () => {
    const { quantized, scale } = await new PercentileQuantizer().quantize(x);
    expect(scale.shape).toEqual([2, 1]);
    // NumPy: percentile(|x|, 99.9) of 0.001..1.000 = 0.999 + 0.001 * 0.001 = 0.999001
    expect(scale.data[0]).toBeCloseTo(127 / 0.999001, 2);
    expect(quantized.data[len + 500]).toBe(127);
    expect(quantized.data[999]).toBe(-127);
    // Without the outlier dominating, the other values of row 1 reconstruct ~48x better than with abs-max
    // (abs-max would give a step of 50/127 ≈ 0.39, i.e. an RMSE near 0.39/sqrt(12) ≈ 0.11).
    let se = 0;
    for (let i = 0; i < len; i++) if (i !== 500) se += (quantized.data[len + i] / scale.data[1] - data[len + i]) ** 2;
    expect(Math.sqrt(se / (len - 1))).toBeLessThan(0.004);
  });

  test('round trip through serializeObject / JSON / deserializeObject', async () => {
    const original = new PercentileQuantizer({ percentile: 99, axis: 0 });
    const dict = serializeObject(original);
    expect(dict).toEqual({
      module: null,
      class_name: 'PercentileQuantizer',
      config: { percentile: 99, value_range: [-127, 127], axis: 0, output_dtype: 'int8' },
      registered_name: 'quantkit_test>PercentileQuantizer',
    });
    const back = deserializeObject(JSON.parse(JSON.stringify(dict))) as PercentileQuantizer;
    expect(back).toBeInstanceOf(PercentileQuantizer);
    expect(back.getConfig()).toEqual(original.getConfig());
    const r = rng(3);
    const t = new Tensor('float32', [64, 8], Float32Array.from({ length: 512 }, () => r() * 2 - 1));
    const a = await original.quantize(t);
    const b = await back.quantize(t);
    expect(Array.from(b.quantized.data)).toEqual(Array.from(a.quantized.data));
    expect(Array.from(b.scale.data)).toEqual(Array.from(a.scale.data));
  });

  test('round trip inside an Int8QuantizationConfig', () => {
    const config = new Int8QuantizationConfig({ weightQuantizer: new PercentileQuantizer({ percentile: 99.5 }), activationQuantizer: null });
    const json = JSON.parse(JSON.stringify(config.getConfig()));
    expect(json.weight_quantizer.registered_name).toBe('quantkit_test>PercentileQuantizer');
    expect(json.activation_quantizer).toBeNull();
    const back = Int8QuantizationConfig.fromConfig(json);
    expect(back.weightQuantizer).toBeInstanceOf(PercentileQuantizer);
    expect((back.weightQuantizer as PercentileQuantizer).percentile).toBe(99.5);
    expect(back.activationQuantizer).toBeNull();
    expect(back.getConfig()).toEqual(config.getConfig());
    // The whole config as a Keras object, too.
    const whole = deserializeObject(JSON.parse(JSON.stringify(serializeObject(config)))) as Int8QuantizationConfig;
    expect(whole).toBeInstanceOf(Int8QuantizationConfig);
    expect(whole.weightQuantizer).toBeInstanceOf(PercentileQuantizer);
  });

  test('per-channel int4 accepts it with value range [-8, 7] only', () => {
    const ok = new Int4QuantizationConfig({ blockSize: null, weightQuantizer: new PercentileQuantizer({ valueRange: [-8, 7] }) });
    expect(Int4QuantizationConfig.fromConfig(JSON.parse(JSON.stringify(ok.getConfig()))).weightQuantizer).toBeInstanceOf(PercentileQuantizer);
    expect(() => new Int4QuantizationConfig({ blockSize: -1, weightQuantizer: new PercentileQuantizer() })).toThrow(
      'Int4QuantizationConfig requires a weight_quantizer with value_range=(-8, 7). Received: value_range=(-127, 127)',
    );
  });
});
