// DType policies (spec §1.4): names, dtypes, validation messages, the '_from_' grammar of getDTypePolicy, equality,
// serialization exactly as Keras writes config.json (spec §5.2 examples and the keras-quantized fixtures), and the
// DTypePolicyMap lookup rules (exact key, full-match regex, ambiguity, no prefix match, duplicate keys).
import { InvalidArgumentError, UnsupportedError } from '../../lib/errors';
import {
  DTypePolicy,
  DTypePolicyMap,
  GPTQDTypePolicy,
  Int4DTypePolicy,
  QuantizedDTypePolicy,
  QuantizedFloat8DTypePolicy,
  deserializeDTypePolicy,
  getDTypePolicy,
  serializeDTypePolicy,
} from '../../lib/dtype-policies';
import { QuantizationMode } from '../../lib/quantizers';

// Spec §5.2 (and the fixtures' config.json).
const SERIALIZED = {
  float32: { module: 'keras', class_name: 'DTypePolicy', config: { name: 'float32' }, registered_name: null },
  int8: { module: 'keras.dtype_policies', class_name: 'QuantizedDTypePolicy', config: { mode: 'int8', source_name: 'float32' }, registered_name: null },
  int4: { module: 'keras.dtype_policies', class_name: 'Int4DTypePolicy', config: { mode: 'int4/128', source_name: 'float32' }, registered_name: null },
  gptq: { module: 'keras.dtype_policies', class_name: 'GPTQDTypePolicy', config: { mode: 'gptq/4/128', source_name: 'float32' }, registered_name: null },
  float8: {
    module: 'keras.dtype_policies',
    class_name: 'QuantizedFloat8DTypePolicy',
    config: { mode: 'float8', source_name: 'float32', amax_history_length: 1024 },
    registered_name: null,
  },
};

// mha_int8_policymap.keras, layers[1].config.dtype
const KERAS_MAP = {
  module: 'keras.dtype_policies',
  class_name: 'DTypePolicyMap',
  config: {
    default_policy: 'float32',
    policy_map: {
      'mha/attention_output': SERIALIZED.int8,
      'mha/value': SERIALIZED.int8,
      'mha/key': SERIALIZED.int8,
      'mha/query': SERIALIZED.int8,
    },
  },
  registered_name: null,
};

describe('DTypePolicy', () => {
  test.each([
    ['float32', 'float32', 'float32'],
    ['float16', 'float16', 'float16'],
    ['bfloat16', 'bfloat16', 'bfloat16'],
    ['mixed_float16', 'float16', 'float32'],
    ['mixed_bfloat16', 'bfloat16', 'float32'],
  ])('%s computes in %s and stores %s', (name, compute, variable) => {
    const p = new DTypePolicy(name);
    expect([p.name, p.computeDtype, p.variableDtype, p.quantizationMode, p.isQuantized]).toEqual([name, compute, variable, null, false]);
  });

  test('default float32; getConfig/fromConfig; repr; equality', () => {
    const p = new DTypePolicy();
    expect(p.name).toBe('float32');
    expect(p.getConfig()).toEqual({ name: 'float32' });
    expect(DTypePolicy.fromConfig({ name: 'mixed_bfloat16' }).equals(new DTypePolicy('mixed_bfloat16'))).toBe(true);
    expect(String(p)).toBe('<DTypePolicy "float32">');
    expect(p.equals(new DTypePolicy('float32'))).toBe(true);
    expect(p.equals(new DTypePolicy('bfloat16'))).toBe(false);
    expect(p.equals(new QuantizedDTypePolicy('int8'))).toBe(false);
    expect(p.equals('float32')).toBe(false);
  });

  test('unknown names and non-strings are rejected with the Keras messages', () => {
    expect(() => new DTypePolicy('float64')).toThrow(InvalidArgumentError);
    expect(() => new DTypePolicy('float64')).toThrow(
      "Cannot convert 'float64' to a mixed precision DTypePolicy. Valid policies include 'mixed_float16', 'mixed_bfloat16', and the name of any float dtype such as 'float32'.",
    );
    expect(() => new DTypePolicy(42 as never)).toThrow(/'name' must be a string, such as 'mixed_float16'\. Received: name=42/);
  });
});

describe('QuantizedDTypePolicy', () => {
  test('name, dtypes from the source, mode', () => {
    const p = new QuantizedDTypePolicy('int8', 'mixed_bfloat16');
    expect([p.name, p.computeDtype, p.variableDtype, p.quantizationMode, p.sourceName, p.isQuantized]).toEqual([
      'int8_from_mixed_bfloat16',
      'bfloat16',
      'float32',
      'int8',
      'mixed_bfloat16',
      true,
    ]);
    expect(new QuantizedDTypePolicy('int8').name).toBe('int8_from_float32');
    expect(new QuantizedDTypePolicy('int4').name).toBe('int4_from_float32');
    expect(String(new QuantizedDTypePolicy('int8'))).toBe('<QuantizedDTypePolicy "int8_from_float32">');
  });

  test('int8 with a float16 compute dtype is rejected; other modes are allowed', () => {
    for (const src of ['float16', 'mixed_float16']) {
      expect(() => new QuantizedDTypePolicy('int8', src)).toThrow(InvalidArgumentError);
      expect(() => new QuantizedDTypePolicy('int8', src)).toThrow("Quantization mode='int8' doesn't work well with compute_dtype='float16'.");
    }
    expect(new QuantizedDTypePolicy('int4', 'float16').computeDtype).toBe('float16');
    expect(new QuantizedFloat8DTypePolicy('float8', 'mixed_float16').computeDtype).toBe('float16');
    expect(new Int4DTypePolicy('int4/128', 'mixed_float16').name).toBe('int4/128_from_mixed_float16');
  });

  test('invalid modes and sources', () => {
    expect(() => new QuantizedDTypePolicy('int7' as QuantizationMode)).toThrow(
      "Invalid quantization mode. Expected one of ('int8', 'float8', 'int4', 'gptq'). Received: mode=int7",
    );
    expect(() => new QuantizedDTypePolicy('awq' as QuantizationMode)).toThrow(UnsupportedError);
    expect(() => new QuantizedDTypePolicy('int8', 'int32')).toThrow(/Cannot convert 'int32' to a mixed precision DTypePolicy/);
  });

  test('config and equality', () => {
    const p = new QuantizedDTypePolicy('int8', 'bfloat16');
    expect(p.getConfig()).toEqual({ mode: 'int8', source_name: 'bfloat16' });
    expect(QuantizedDTypePolicy.fromConfig(p.getConfig()).equals(p)).toBe(true);
    expect(p.equals(new QuantizedDTypePolicy('int8', 'float32'))).toBe(false);
    expect(new QuantizedDTypePolicy('int8').equals(new QuantizedDTypePolicy('int8', null))).toBe(true);
  });
});

describe('QuantizedFloat8DTypePolicy', () => {
  test('name without the history length; default 1024; non-integers rejected', () => {
    const p = new QuantizedFloat8DTypePolicy('float8', 'float32', 16);
    expect(p.name).toBe('float8_from_float32');
    expect(p.amaxHistoryLength).toBe(16);
    expect(p.quantizationMode).toBe('float8');
    expect(new QuantizedFloat8DTypePolicy().amaxHistoryLength).toBe(1024);
    expect(() => new QuantizedFloat8DTypePolicy('float8', 'float32', 1.5)).toThrow(
      '`amax_history_length` must be an integer. Received: amax_history_length=1.5',
    );
    expect(() => new QuantizedFloat8DTypePolicy('int8' as 'float8')).toThrow(/Expected 'float8' for mode/);
  });

  test('config, round trip and equality', () => {
    const p = new QuantizedFloat8DTypePolicy('float8', 'mixed_bfloat16', 8);
    expect(p.getConfig()).toEqual({ mode: 'float8', source_name: 'mixed_bfloat16', amax_history_length: 8 });
    expect(QuantizedFloat8DTypePolicy.fromConfig(p.getConfig()).equals(p)).toBe(true);
    expect(p.equals(new QuantizedFloat8DTypePolicy('float8', 'mixed_bfloat16', 16))).toBe(false);
    expect(p.equals(new QuantizedDTypePolicy('float8', 'mixed_bfloat16'))).toBe(false);
  });
});

describe('Int4DTypePolicy', () => {
  test.each([
    ['int4/128', 128, 'int4/128_from_float32'],
    ['int4/-1', -1, 'int4/-1_from_float32'],
    ['int4/None', -1, 'int4/-1_from_float32'],
    ['int4/7', 7, 'int4/7_from_float32'],
  ])('%s -> block %p, name %s', (mode, block, name) => {
    const p = new Int4DTypePolicy(mode);
    expect([p.blockSize, p.name, p.quantizationMode]).toEqual([block, name, 'int4']);
    expect(p.getConfig()).toEqual({ mode: `int4/${block}`, source_name: 'float32' });
    expect(Int4DTypePolicy.fromConfig(p.getConfig()).equals(p)).toBe(true);
  });

  test('malformed modes', () => {
    expect(() => new Int4DTypePolicy('int4')).toThrow("Invalid mode for Int4DTypePolicy. Expected format 'int4/<block_size>', but got 'int4'.");
    expect(() => new Int4DTypePolicy('int8/128')).toThrow(/Expected format 'int4\/<block_size>', but got 'int8\/128'/);
    expect(() => new Int4DTypePolicy('int4/1/2')).toThrow(/Expected format/);
    expect(() => new Int4DTypePolicy('int4/abc')).toThrow(
      "Invalid mode for Int4DTypePolicy. <block_size> must be an integer. Expected format 'int4/<block_size>', but got 'int4/abc'.",
    );
    expect(() => new Int4DTypePolicy('int4/0')).toThrow(
      "Invalid block_size in mode. Supported values are -1 (per-channel) or a positive integer (sub-channel), but got 0 from 'int4/0'.",
    );
    expect(() => new Int4DTypePolicy('int4/-2')).toThrow(/but got -2 from 'int4\/-2'/);
  });

  test('equality compares the block size', () => {
    expect(new Int4DTypePolicy('int4/128').equals(new Int4DTypePolicy('int4/64'))).toBe(false);
    expect(new Int4DTypePolicy('int4/-1').equals(new Int4DTypePolicy('int4/None'))).toBe(true);
    expect(new Int4DTypePolicy('int4/128').equals(new QuantizedDTypePolicy('int4'))).toBe(false);
  });
});

describe('GPTQDTypePolicy', () => {
  test('name, bits, group', () => {
    const p = new GPTQDTypePolicy('gptq/4/128', 'mixed_bfloat16');
    expect([p.name, p.weightBits, p.groupSize, p.quantizationMode, p.computeDtype]).toEqual([
      'gptq/4/128_from_mixed_bfloat16',
      4,
      128,
      'gptq',
      'bfloat16',
    ]);
    expect(new GPTQDTypePolicy('gptq/2/-1').getConfig()).toEqual({ mode: 'gptq/2/-1', source_name: 'float32' });
    expect(GPTQDTypePolicy.fromConfig(p.getConfig()).equals(p)).toBe(true);
    expect(p.equals(new GPTQDTypePolicy('gptq/4/64', 'mixed_bfloat16'))).toBe(false);
    expect(p.equals(new GPTQDTypePolicy('gptq/8/128', 'mixed_bfloat16'))).toBe(false);
  });

  test('malformed modes', () => {
    expect(() => new GPTQDTypePolicy('gptq/4')).toThrow(
      "Invalid mode for GPTQDTypePolicy. Expected format 'gptq/<weight_bits>/<group_size>', but got 'gptq/4'.",
    );
    expect(() => new GPTQDTypePolicy('gptq/x/128')).toThrow(/<weight_bits> and <group_size> must be integers/);
    expect(() => new GPTQDTypePolicy('gptq/5/128')).toThrow(
      "Invalid weight_bits in mode. Supported values are 2, 3, 4, and 8, but got 5 from 'gptq/5/128'.",
    );
    expect(() => new GPTQDTypePolicy('gptq/4/0')).toThrow(
      "Invalid group_size in mode. Supported values are -1 (whole-tensor) or a positive integer, but got 0 from 'gptq/4/0'.",
    );
  });
});

describe('getDTypePolicy: the policy string grammar (spec §1.4)', () => {
  test.each([
    ['float32', DTypePolicy, 'float32', null],
    ['mixed_bfloat16', DTypePolicy, 'mixed_bfloat16', null],
    ['int8_from_float32', QuantizedDTypePolicy, 'int8_from_float32', 'int8'],
    ['int8_from_mixed_bfloat16', QuantizedDTypePolicy, 'int8_from_mixed_bfloat16', 'int8'],
    ['int4_from_float32', QuantizedDTypePolicy, 'int4_from_float32', 'int4'],
    ['int4/128_from_float32', Int4DTypePolicy, 'int4/128_from_float32', 'int4'],
    ['int4/None_from_float32', Int4DTypePolicy, 'int4/-1_from_float32', 'int4'],
    ['gptq/4/128_from_float32', GPTQDTypePolicy, 'gptq/4/128_from_float32', 'gptq'],
    ['float8_from_float32', QuantizedFloat8DTypePolicy, 'float8_from_float32', 'float8'],
  ])('%s', (name, cls, resolvedName, mode) => {
    const p = getDTypePolicy(name);
    expect(p.constructor).toBe(cls);
    expect(p.name).toBe(resolvedName);
    expect(p.quantizationMode).toBe(mode);
  });

  test('a quantized name needs exactly one "_from_"', () => {
    for (const bad of ['int8', 'int4/128', 'int8_from_float32_from_float32', 'gptq/4/128']) {
      expect(() => getDTypePolicy(bad)).toThrow(InvalidArgumentError);
      expect(() => getDTypePolicy(bad)).toThrow(
        `Cannot convert \`policy\` into a valid pair (\`mode\`, \`source_name\`) to instantiate \`QuantizedDTypePolicy\`. Received: policy=${bad}`,
      );
    }
  });

  test('bad modes and sources inside a valid pair', () => {
    expect(() => getDTypePolicy('int8x_from_float32')).toThrow(/Invalid quantization mode\. .*Received: mode=int8x/);
    expect(() => getDTypePolicy('int8_from_float16')).toThrow(/doesn't work well with compute_dtype='float16'/);
    expect(() => getDTypePolicy('int7_from_float32')).toThrow(/Cannot convert 'int7_from_float32' to a mixed precision DTypePolicy/);
    expect(() => getDTypePolicy('float7')).toThrow(/Cannot convert 'float7'/);
    expect(() => getDTypePolicy('awq/4/128_from_float32')).toThrow(UnsupportedError);
    expect(() => getDTypePolicy('ternary_from_float32')).toThrow(UnsupportedError);
  });

  test('null, instances, dicts, and anything else', () => {
    expect(getDTypePolicy(null).name).toBe('float32');
    expect(getDTypePolicy(undefined).name).toBe('float32');
    const p = new Int4DTypePolicy('int4/32');
    expect(getDTypePolicy(p)).toBe(p);
    expect(getDTypePolicy(SERIALIZED.gptq).name).toBe('gptq/4/128_from_float32');
    expect(() => getDTypePolicy(42 as never)).toThrow(
      'Cannot interpret `dtype` argument. Expected a string or an instance of DTypePolicy. Received: dtype=42',
    );
  });
});

describe('serialization as Keras writes config.json (spec §5.2)', () => {
  test('each class', () => {
    expect(serializeDTypePolicy(new DTypePolicy())).toEqual(SERIALIZED.float32);
    expect(serializeDTypePolicy(getDTypePolicy('int8_from_float32'))).toEqual(SERIALIZED.int8);
    expect(serializeDTypePolicy(getDTypePolicy('int4/128_from_float32'))).toEqual(SERIALIZED.int4);
    expect(serializeDTypePolicy(getDTypePolicy('gptq/4/128_from_float32'))).toEqual(SERIALIZED.gptq);
    expect(serializeDTypePolicy(getDTypePolicy('float8_from_float32'))).toEqual(SERIALIZED.float8);
  });

  test('and back (with Keras bookkeeping keys, the FloatDTypePolicy alias and null sources)', () => {
    for (const [key, dict] of Object.entries(SERIALIZED)) {
      const p = deserializeDTypePolicy({ ...dict, shared_object_id: 140661721337232 });
      expect([key, serializeDTypePolicy(p)]).toEqual([key, dict]);
      expect(p.equals(deserializeDTypePolicy(JSON.parse(JSON.stringify(dict))))).toBe(true);
    }
    const alias = deserializeDTypePolicy({ module: 'keras', class_name: 'FloatDTypePolicy', config: { name: 'bfloat16' }, registered_name: null });
    expect(alias.constructor).toBe(DTypePolicy);
    expect(alias.name).toBe('bfloat16');
    expect(deserializeDTypePolicy({ ...SERIALIZED.int8, config: { mode: 'int8', source_name: null } }).name).toBe('int8_from_float32');
    expect(deserializeDTypePolicy({ ...SERIALIZED.float32, config: { name: null } }).name).toBe('float32');
    expect(() => deserializeDTypePolicy({ module: 'keras.quantizers', class_name: 'Float8QuantizationConfig', config: {}, registered_name: null })).toThrow(
      /Expected a serialized DTypePolicy for config but received a serialized Float8QuantizationConfig/,
    );
    expect(() => deserializeDTypePolicy({ class_name: 'NoSuchPolicy', config: {} })).toThrow(/Could not locate class 'NoSuchPolicy'/);
  });
});

describe('DTypePolicyMap (spec §1.4)', () => {
  const int8 = 'int8_from_float32';

  test('a map is a policy: name and dtypes from its default', () => {
    const m = new DTypePolicyMap('mixed_bfloat16');
    expect(m).toBeInstanceOf(DTypePolicy);
    expect([m.name, m.computeDtype, m.variableDtype, m.quantizationMode]).toEqual(['map_mixed_bfloat16', 'bfloat16', 'float32', null]);
    expect(new DTypePolicyMap().name).toBe('map_float32');
    expect(new DTypePolicyMap(new QuantizedDTypePolicy('int8')).quantizationMode).toBe('int8');
    expect(new DTypePolicyMap(new DTypePolicyMap('bfloat16')).defaultPolicy.name).toBe('bfloat16');
  });

  test('exact key first, then keys as full-match regexes, else the default', () => {
    const m = new DTypePolicyMap('float32', { 'decoder/dense': int8, 'encoder/layer_\\d+/ffn': 'int4/128_from_float32' });
    expect(m.get('decoder/dense').name).toBe(int8);
    expect(m.get('encoder/layer_12/ffn').name).toBe('int4/128_from_float32');
    expect(m.get('encoder/layer_12/ffn/extra').name).toBe('float32'); // full match, not search
    expect(m.get('xencoder/layer_1/ffn').name).toBe('float32');
    expect(m.get('decoder/dense_1').name).toBe('float32');
  });

  test('no implicit prefix match', () => {
    const m = new DTypePolicyMap(null, { decoder: int8 });
    expect(m.get('decoder/attention').name).toBe('float32');
    expect(m.get('decoder').name).toBe(int8);
    const m2 = new DTypePolicyMap(null, { 'decoder/.*': int8 });
    expect(m2.get('decoder/attention').name).toBe(int8);
  });

  test('a path matching several keys is an error naming them; an exact key wins over regexes', () => {
    const m = new DTypePolicyMap('float32', { 'mha/.*': int8, 'mha/q.*': 'int4/64_from_float32' });
    expect(() => m.get('mha/query')).toThrow(InvalidArgumentError);
    expect(() => m.get('mha/query')).toThrow(
      "Path 'mha/query' matches multiple dtype policy specification keys: ['mha/.*', 'mha/q.*']. Please make sure each path only matches at most one dtype policy specification key in the DTypePolicyMap.",
    );
    expect(m.get('mha/key').name).toBe(int8);
    m.set('mha/query', 'bfloat16');
    expect(m.get('mha/query').name).toBe('bfloat16');
  });

  test('keys that are not valid regexes still match exactly', () => {
    const m = new DTypePolicyMap(null, { 'dense(1': int8 });
    expect(m.get('dense(1').name).toBe(int8);
    expect(m.get('dense').name).toBe('float32');
  });

  test('duplicate keys, bad values and bad maps are rejected', () => {
    const m = new DTypePolicyMap();
    m.set('a', int8);
    expect(() => m.set('a', 'float32')).toThrow(InvalidArgumentError);
    expect(() => m.set('a', 'float32')).toThrow(
      'a already exist in the DTypePolicyMap with value <QuantizedDTypePolicy "int8_from_float32">. Please make sure to not use duplicated keys.',
    );
    expect(() => m.set('b', 'int8')).toThrow(/Cannot interpret the assigned value by `keras\.dtype_policies\.get`\. Received: "int8" of type <class 'str'>/);
    expect(() => m.set('c', new DTypePolicyMap())).toThrow(/not a DTypePolicyMap/);
    expect(() => new DTypePolicyMap(null, [] as never)).toThrow(/If specified, `policy_map` must be a dict/);
    expect(() => new DTypePolicyMap(null, 'x' as never)).toThrow(/`policy_map` must be a dict/);
  });

  test('mapping operations and withEntry', () => {
    const m = new DTypePolicyMap('float32', new Map([['x', int8], ['y', 'bfloat16']]));
    expect(m.size).toBe(2);
    expect([...m]).toEqual(['x', 'y']);
    expect([...m.keys()]).toEqual(['x', 'y']);
    expect(m.has('x')).toBe(true);
    expect(m.has('x.*')).toBe(false);
    const n = m.withEntry('x', 'int4/32_from_float32').withEntry('z', int8);
    expect([...n.entries()].map(([k, v]) => [k, v.name])).toEqual([
      ['x', 'int4/32_from_float32'],
      ['y', 'bfloat16'],
      ['z', int8],
    ]);
    expect(m.get('x').name).toBe(int8); // unchanged
    expect(n.delete('z')).toBe(true);
    expect(n.size).toBe(2);
    expect(String(m)).toBe("<DTypePolicyMap default_policy=float32, mapping=[('x', 'int8_from_float32'), ('y', 'bfloat16')]>");
  });

  test('getConfig / fromConfig round trip and equality', () => {
    const m = new DTypePolicyMap('mixed_bfloat16', {
      'a/.*': 'int8_from_mixed_bfloat16',
      b: 'int4/128_from_float32',
      c: 'gptq/3/-1_from_float32',
      d: new QuantizedFloat8DTypePolicy('float8', 'float32', 4),
    });
    const cfg = m.getConfig();
    expect(cfg.default_policy).toBe('mixed_bfloat16');
    const back = DTypePolicyMap.fromConfig(JSON.parse(JSON.stringify(cfg)));
    expect(back.equals(m)).toBe(true);
    expect(back.getConfig()).toEqual(cfg);
    expect(back.get('a/x').name).toBe('int8_from_mixed_bfloat16');
    expect((back.get('d') as QuantizedFloat8DTypePolicy).amaxHistoryLength).toBe(4);
    expect(back.equals(m.withEntry('b', 'int4/64_from_float32'))).toBe(false);
    const withPolicyDefault = new DTypePolicyMap(new DTypePolicy('bfloat16'), { q: int8 });
    expect(withPolicyDefault.getConfig().default_policy).toEqual({ module: 'keras', class_name: 'DTypePolicy', config: { name: 'bfloat16' }, registered_name: null });
    expect(DTypePolicyMap.fromConfig(withPolicyDefault.getConfig()).equals(withPolicyDefault)).toBe(true);
    expect(new DTypePolicyMap().getConfig()).toEqual({ default_policy: null, policy_map: {} });
  });

  test('reads the policy map Keras wrote for a quantized MultiHeadAttention (mha_int8_policymap.keras)', () => {
    const m = getDTypePolicy(KERAS_MAP) as DTypePolicyMap;
    expect(m).toBeInstanceOf(DTypePolicyMap);
    expect(m.name).toBe('map_float32');
    expect([...m.keys()]).toEqual(['mha/attention_output', 'mha/value', 'mha/key', 'mha/query']);
    expect(m.get('mha/query').name).toBe('int8_from_float32');
    expect(m.get('mha/softmax').name).toBe('float32');
    expect(serializeDTypePolicy(m)).toEqual(KERAS_MAP);
  });
});
