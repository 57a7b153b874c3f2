// Quantization configs (spec §1.2, §3.1), validateAndResolveConfig (spec §1.2 rules 1-6) and their error catalogue
// (§1.8), and round trips through the dicts Keras 3.16 actually wrote into the config.json of the fixtures in
// /work/shared/fixtures/keras-quantized (copied literally below).
import { InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import {
  AbsMaxQuantizer,
  Float8QuantizationConfig,
  GPTQConfig,
  Int4QuantizationConfig,
  Int8QuantizationConfig,
  QUANTIZATION_MODES,
  QuantizationConfig,
  QuantizationMode,
  deserializeObject,
  serializeObject,
  validateAndResolveConfig,
} from '../../lib/quantizers';

// fn_int8.keras, layers[1].config.quantization_config
const KERAS_INT8 = {
  module: 'keras.quantizers',
  class_name: 'Int8QuantizationConfig',
  config: {
    weight_quantizer: null,
    activation_quantizer: {
      module: 'keras.quantizers',
      class_name: 'AbsMaxQuantizer',
      config: { value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8' },
      registered_name: null,
      shared_object_id: 139750830127952,
    },
  },
  registered_name: null,
  shared_object_id: 139750830644368,
};
// fn_int4_block16.keras
const KERAS_INT4 = {
  module: 'keras.quantizers',
  class_name: 'Int4QuantizationConfig',
  config: { weight_quantizer: null, activation_quantizer: null, block_size: 16 },
  registered_name: null,
};
// seq_float8.keras
const KERAS_FLOAT8 = { module: 'keras.quantizers', class_name: 'Float8QuantizationConfig', config: {}, registered_name: null };
// gptq_tiny.keras
const KERAS_GPTQ = {
  module: 'keras.quantizers',
  class_name: 'GPTQConfig',
  config: {
    dataset: null,
    tokenizer: null,
    quantization_layer_structure: null,
    weight_bits: 4,
    num_samples: 8,
    calibration_batch_size: 8,
    per_channel: true,
    sequence_length: 16,
    hessian_damping: 0.01,
    group_size: 8,
    symmetric: false,
    activation_order: false,
  },
  registered_name: null,
};

function withoutIds(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutIds);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (k !== 'shared_object_id') out[k] = withoutIds(x);
    return out;
  }
  return v;
}

describe('QUANTIZATION_MODES', () => {
  test("Keras's order without the modes quantkit lacks", () => {
    expect(QUANTIZATION_MODES).toEqual(['int8', 'float8', 'int4', 'gptq']);
  });
});

describe('QuantizationConfig base (spec §1.2)', () => {
  test('cannot be instantiated directly', () => {
    const Ctor = QuantizationConfig as unknown as new () => QuantizationConfig;
    expect(() => new Ctor()).toThrow(UnsupportedError);
    expect(() => new Ctor()).toThrow('Subclasses must implement this property. Do not instantiate QuantizationConfig directly.');
  });

  test('weightQuantizerOrDefault: the config quantizer when there is one, else the default', () => {
    const def = new AbsMaxQuantizer({ axis: 0 });
    const custom = new AbsMaxQuantizer({ axis: 0, valueRange: [-100, 100] });
    expect(QuantizationConfig.weightQuantizerOrDefault(null, def)).toBe(def);
    expect(QuantizationConfig.weightQuantizerOrDefault(undefined, def)).toBe(def);
    expect(QuantizationConfig.weightQuantizerOrDefault(new Int8QuantizationConfig(), def)).toBe(def);
    expect(QuantizationConfig.weightQuantizerOrDefault(new Int8QuantizationConfig({ weightQuantizer: custom }), def)).toBe(custom);
  });

  test("activationQuantizerOrDefault: a config's null wins; the default is used only without a config", () => {
    const def = new AbsMaxQuantizer();
    expect(QuantizationConfig.activationQuantizerOrDefault(new Int8QuantizationConfig({ activationQuantizer: null }), def)).toBeNull();
    expect(QuantizationConfig.activationQuantizerOrDefault(new Int4QuantizationConfig(), def)).toBeNull();
    expect(QuantizationConfig.activationQuantizerOrDefault(null, def)).toBe(def);
    expect(QuantizationConfig.activationQuantizerOrDefault(undefined, null)).toBeNull();
    const cfg = new Int8QuantizationConfig();
    expect(QuantizationConfig.activationQuantizerOrDefault(cfg, def)).toBe(cfg.activationQuantizer);
    expect(QuantizationConfig.activationQuantizerOrDefault(cfg, def)).not.toBe(def);
  });
});

describe('Int8QuantizationConfig', () => {
  test("'default' activation quantizer is AbsMaxQuantizer() (axis resolved at call time); null is weight-only", () => {
    const cfg = new Int8QuantizationConfig();
    expect(cfg.mode).toBe('int8');
    expect(cfg.weightQuantizer).toBeNull();
    expect(cfg.activationQuantizer).toBeInstanceOf(AbsMaxQuantizer);
    expect((cfg.activationQuantizer as AbsMaxQuantizer).axis).toBeNull();
    expect((cfg.activationQuantizer as AbsMaxQuantizer).valueRange).toEqual([-127, 127]);
    expect(new Int8QuantizationConfig({ activationQuantizer: 'default' }).activationQuantizer).toBeInstanceOf(AbsMaxQuantizer);
    expect(new Int8QuantizationConfig({ activationQuantizer: null }).activationQuantizer).toBeNull();
  });

  test('a weight quantizer whose output dtype is not int8 is rejected', () => {
    const q = new AbsMaxQuantizer();
    Object.defineProperty(q, 'outputDtype', { value: 'uint8' });
    expect(() => new Int8QuantizationConfig({ weightQuantizer: q })).toThrow(InvalidArgumentError);
    expect(() => new Int8QuantizationConfig({ weightQuantizer: q })).toThrow(
      "Int8QuantizationConfig requires a weight_quantizer with output_dtype='int8'. Received: output_dtype=uint8",
    );
    expect(() => new Int8QuantizationConfig({ weightQuantizer: {} as never })).toThrow(/Expected a Quantizer, null or 'default' for weightQuantizer/);
  });

  test('serializes exactly as Keras (fn_int8.keras) and reads the Keras dict back', () => {
    expect(serializeObject(new Int8QuantizationConfig())).toEqual(withoutIds(KERAS_INT8));
    const back = deserializeObject(KERAS_INT8) as Int8QuantizationConfig;
    expect(back).toBeInstanceOf(Int8QuantizationConfig);
    expect(back.activationQuantizer).toBeInstanceOf(AbsMaxQuantizer);
    expect(back.weightQuantizer).toBeNull();
    const wo = new Int8QuantizationConfig({ activationQuantizer: null, weightQuantizer: new AbsMaxQuantizer({ axis: 0 }) });
    const again = Int8QuantizationConfig.fromConfig(JSON.parse(JSON.stringify(wo.getConfig())));
    expect(again.getConfig()).toEqual(wo.getConfig());
    expect(again.activationQuantizer).toBeNull();
    expect((again.weightQuantizer as AbsMaxQuantizer).axis).toEqual([0]);
  });
});

describe('Int4QuantizationConfig', () => {
  test('default block size 128, weight-only', () => {
    const cfg = new Int4QuantizationConfig();
    expect(cfg.mode).toBe('int4');
    expect(cfg.blockSize).toBe(128);
    expect(cfg.perChannel).toBe(false);
    expect(cfg.weightQuantizer).toBeNull();
    expect(cfg.activationQuantizer).toBeNull();
  });

  test('null and -1 are per-channel (-1 normalised to null)', () => {
    expect(new Int4QuantizationConfig({ blockSize: null }).blockSize).toBeNull();
    expect(new Int4QuantizationConfig({ blockSize: -1 }).blockSize).toBeNull();
    expect(new Int4QuantizationConfig({ blockSize: -1 }).perChannel).toBe(true);
    expect(new Int4QuantizationConfig({ blockSize: 1 }).blockSize).toBe(1);
    expect(new Int4QuantizationConfig({ blockSize: 100 }).blockSize).toBe(100);
  });

  test.each([0, -2, 1.5, '128', NaN])('block size %p is rejected', (b) => {
    expect(() => new Int4QuantizationConfig({ blockSize: b as number })).toThrow(InvalidArgumentError);
    expect(() => new Int4QuantizationConfig({ blockSize: b as number })).toThrow(/block_size must be None, -1, or a positive integer\. Received: block_size=/);
  });

  test('the exact Keras message for 0', () => {
    expect(() => new Int4QuantizationConfig({ blockSize: 0 })).toThrow('block_size must be None, -1, or a positive integer. Received: block_size=0');
  });

  test('grouped mode refuses custom quantizers', () => {
    const q = new AbsMaxQuantizer({ valueRange: [-8, 7] });
    expect(() => new Int4QuantizationConfig({ weightQuantizer: q })).toThrow(
      /Int4 sub-channel quantization \(block_size > 0\) does not support custom quantizers\..*Received: block_size=128/,
    );
    expect(() => new Int4QuantizationConfig({ activationQuantizer: new AbsMaxQuantizer() })).toThrow(/does not support custom quantizers/);
    expect(new Int4QuantizationConfig({ blockSize: null, weightQuantizer: q, activationQuantizer: new AbsMaxQuantizer() }).weightQuantizer).toBe(q);
  });

  test('a per-channel weight quantizer needs value range [-8, 7]', () => {
    expect(() => new Int4QuantizationConfig({ blockSize: null, weightQuantizer: new AbsMaxQuantizer() })).toThrow(
      'Int4QuantizationConfig requires a weight_quantizer with value_range=(-8, 7). Received: value_range=(-127, 127)',
    );
  });

  test('serialization: Keras dict (fn_int4_block16.keras), round trips, legacy configs without block_size', () => {
    const back = deserializeObject(KERAS_INT4) as Int4QuantizationConfig;
    expect(back).toBeInstanceOf(Int4QuantizationConfig);
    expect(back.blockSize).toBe(16);
    expect(serializeObject(back)).toEqual(KERAS_INT4);
    for (const cfg of [new Int4QuantizationConfig(), new Int4QuantizationConfig({ blockSize: -1 }), new Int4QuantizationConfig({ blockSize: 7 })]) {
      const again = Int4QuantizationConfig.fromConfig(JSON.parse(JSON.stringify(cfg.getConfig())));
      expect(again.blockSize).toBe(cfg.blockSize);
      expect(again.getConfig()).toEqual(cfg.getConfig());
    }
    expect(new Int4QuantizationConfig({ blockSize: -1 }).getConfig()).toEqual({ weight_quantizer: null, activation_quantizer: null, block_size: null });
    expect(Int4QuantizationConfig.fromConfig({ weight_quantizer: null, activation_quantizer: null }).blockSize).toBeNull();
  });
});

describe('Float8QuantizationConfig', () => {
  test('no quantizers, config {}', () => {
    const cfg = new Float8QuantizationConfig();
    expect(cfg.mode).toBe('float8');
    expect(cfg.weightQuantizer).toBeNull();
    expect(cfg.activationQuantizer).toBeNull();
    expect(cfg.getConfig()).toEqual({});
    expect(serializeObject(cfg)).toEqual(KERAS_FLOAT8);
    expect(deserializeObject({ ...KERAS_FLOAT8, shared_object_id: 1 })).toBeInstanceOf(Float8QuantizationConfig);
  });
});

describe('GPTQConfig (spec §3.1)', () => {
  test('defaults', () => {
    const c = new GPTQConfig({ dataset: ['a b c'], tokenizer: { tokenize: (s: string) => s.split(' ').length } });
    expect(c.mode).toBe('gptq');
    expect([c.weightBits, c.numSamples, c.calibrationBatchSize, c.perChannel, c.sequenceLength]).toEqual([4, 128, 8, true, 512]);
    expect([c.hessianDamping, c.groupSize, c.symmetric, c.activationOrder, c.quantizationLayerStructure]).toEqual([0.01, 128, false, false, null]);
    expect(c.weightQuantizer).toBeNull();
    expect(c.activationQuantizer).toBeNull();
    expect(c.dtypePolicyString()).toBe('gptq/4/128');
    expect(new GPTQConfig({ weightBits: 3, groupSize: -1 }).dtypePolicyString()).toBe('gptq/3/-1');
  });

  test.each([2, 3, 4, 8])('weight bits %p are accepted', (b) => {
    expect(new GPTQConfig({ weightBits: b }).weightBits).toBe(b);
  });

  test('validation with the Keras messages', () => {
    expect(() => new GPTQConfig({ weightBits: 5 })).toThrow('Unsupported weight_bits 5. Supported values are 2, 3, 4, and 8.');
    expect(() => new GPTQConfig({ weightBits: 16 })).toThrow(InvalidArgumentError);
    expect(() => new GPTQConfig({ numSamples: 0 })).toThrow('num_samples must be a positive integer.');
    expect(() => new GPTQConfig({ calibrationBatchSize: 0 })).toThrow('calibration_batch_size must be a positive integer.');
    expect(() => new GPTQConfig({ sequenceLength: -1 })).toThrow('sequence_length must be a positive integer.');
    expect(() => new GPTQConfig({ numSamples: 2.5 })).toThrow(/Expected a positive integer for numSamples but received 2.5/);
    expect(() => new GPTQConfig({ hessianDamping: 1.5 })).toThrow('hessian_damping must be between 0 and 1.');
    expect(() => new GPTQConfig({ hessianDamping: -0.1 })).toThrow('hessian_damping must be between 0 and 1.');
    expect(new GPTQConfig({ hessianDamping: 0 }).hessianDamping).toBe(0);
    expect(new GPTQConfig({ hessianDamping: 1 }).hessianDamping).toBe(1);
    expect(() => new GPTQConfig({ groupSize: 0 })).toThrow(
      'Invalid group_size. Supported values are -1 (whole-tensor) or a positive integer, but got 0.',
    );
    expect(() => new GPTQConfig({ groupSize: -2 })).toThrow(/but got -2\./);
    expect(new GPTQConfig({ groupSize: -1 }).groupSize).toBe(-1);
    expect(() => new GPTQConfig({ symmetric: 'yes' as never })).toThrow(/Expected a boolean for symmetric/);
    expect(() => new GPTQConfig({ dataset: 'some text' })).toThrow(/The `dataset` argument must be an iterable.*Got type: str/);
    expect(() => new GPTQConfig({ dataset: 42 })).toThrow(/for dataset but received 42/);
    expect(() => new GPTQConfig({ quantizationLayerStructure: [] as never })).toThrow(/quantizationLayerStructure/);
  });

  test('serializes as Keras (gptq_tiny.keras): dataset, tokenizer and structure are written as null', () => {
    const c = new GPTQConfig({
      dataset: [[1, 2, 3]],
      tokenizer: {},
      numSamples: 8,
      sequenceLength: 16,
      groupSize: 8,
      quantizationLayerStructure: { preBlockLayers: [], sequentialBlocks: [] },
    });
    expect(serializeObject(c)).toEqual(KERAS_GPTQ);
    expect(Object.keys(c.getConfig())).toEqual(Object.keys(KERAS_GPTQ.config));
    const back = deserializeObject(KERAS_GPTQ) as GPTQConfig;
    expect(back).toBeInstanceOf(GPTQConfig);
    expect(back.dataset).toBeNull();
    expect(back.tokenizer).toBeNull();
    expect(back.getConfig()).toEqual(c.getConfig());
    expect(back.dtypePolicyString()).toBe('gptq/4/8');
    const odd = new GPTQConfig({ weightBits: 2, perChannel: false, symmetric: true, activationOrder: true, hessianDamping: 0.1, calibrationBatchSize: 3 });
    expect(GPTQConfig.fromConfig(JSON.parse(JSON.stringify(odd.getConfig()))).getConfig()).toEqual(odd.getConfig());
    // Keras 3.12/3.13 configs lack calibration_batch_size.
    const { calibration_batch_size: _omit, ...old } = KERAS_GPTQ.config;
    expect(GPTQConfig.fromConfig(old).calibrationBatchSize).toBe(8);
  });
});

describe('validateAndResolveConfig (spec §1.2)', () => {
  test('a mode gives the default config', () => {
    expect(validateAndResolveConfig('int8')).toBeInstanceOf(Int8QuantizationConfig);
    const int4 = validateAndResolveConfig('int4') as Int4QuantizationConfig;
    expect(int4).toBeInstanceOf(Int4QuantizationConfig);
    expect(int4.blockSize).toBe(128); // quantize('int4') == quantize(config=Int4QuantizationConfig())
    expect(int4.activationQuantizer).toBeNull();
    expect(validateAndResolveConfig('float8', null)).toBeInstanceOf(Float8QuantizationConfig);
  });

  test('rule 1: a string config is the mode', () => {
    expect(validateAndResolveConfig(undefined, 'int4')).toBeInstanceOf(Int4QuantizationConfig);
    expect(validateAndResolveConfig('int8', 'float8')).toBeInstanceOf(Float8QuantizationConfig);
  });

  test('rule 2: invalid modes', () => {
    expect(() => validateAndResolveConfig('int7')).toThrow(InvalidArgumentError);
    expect(() => validateAndResolveConfig('int7')).toThrow(
      "Invalid quantization mode. Expected one of ('int8', 'float8', 'int4', 'gptq'). Received: mode=int7",
    );
    expect(() => validateAndResolveConfig('float7', new Float8QuantizationConfig())).toThrow(/Received: mode=float7/);
    expect(() => validateAndResolveConfig(8)).toThrow(/Invalid quantization mode/);
    expect(() => validateAndResolveConfig('awq')).toThrow(UnsupportedError);
    expect(() => validateAndResolveConfig('ternary')).toThrow(/'ternary' mode is not implemented by quantkit/);
  });

  test('rule 3: gptq needs a GPTQConfig; nothing at all is an error', () => {
    expect(() => validateAndResolveConfig('gptq')).toThrow('For GPTQ, you must pass a `GPTQConfig` object in the `config` argument.');
    expect(() => validateAndResolveConfig(null, null)).toThrow('You must provide either `mode` or `config` to `quantize`.');
    expect(() => validateAndResolveConfig(undefined)).toThrow(InvalidArgumentError);
  });

  test('rule 4: a config must be a QuantizationConfig', () => {
    expect(() => validateAndResolveConfig('int8', { mode: 'int8' })).toThrow(
      /Argument `config` must be an instance of `QuantizationConfig`\. Received: config=.* \(of type <class 'Object'>\)/,
    );
    expect(() => validateAndResolveConfig(null, 42)).toThrow(/\(of type <class 'float'>\)/);
  });

  test('rule 5: contradictory mode and config', () => {
    expect(() => validateAndResolveConfig('int8', new Int4QuantizationConfig())).toThrow(InvalidArgumentError);
    expect(() => validateAndResolveConfig('int8', new Int4QuantizationConfig())).toThrow("Contradictory arguments: mode='int8' but config.mode='int4'");
    expect(() => validateAndResolveConfig('int4', new GPTQConfig())).toThrow("Contradictory arguments: mode='int4' but config.mode='gptq'");
  });

  test('rule 6: the mode comes from the config; gptq needs a GPTQConfig', () => {
    const cfg = new Int4QuantizationConfig({ blockSize: 32 });
    expect(validateAndResolveConfig(null, cfg)).toBe(cfg);
    expect(validateAndResolveConfig('int4', cfg)).toBe(cfg);
    const g = new GPTQConfig();
    expect(validateAndResolveConfig('gptq', g)).toBe(g);
    class FakeGPTQ extends QuantizationConfig {
      get mode(): QuantizationMode {
        return 'gptq';
      }
    }
    expect(() => validateAndResolveConfig('gptq', new FakeGPTQ())).toThrow(
      "Mode 'gptq' requires a valid `config` argument of type `GPTQConfig`. Received: <class 'FakeGPTQ'>",
    );
    class BadMode extends QuantizationConfig {
      get mode(): QuantizationMode {
        return 'int7' as QuantizationMode;
      }
    }
    expect(() => validateAndResolveConfig(null, new BadMode())).toThrow(/Invalid quantization mode\. .*Received: mode=int7/);
  });
});
