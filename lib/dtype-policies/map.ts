/**
 * `DTypePolicyMap` (Keras `keras.dtype_policies.DTypePolicyMap`): per-sub-layer policies for composite layers,
 * keyed by layer path; and the policy entry points {@link getDTypePolicy} (Keras `dtype_policies.get`),
 * {@link serializeDTypePolicy} and {@link deserializeDTypePolicy}.
 *
 * @example
 * ```ts
 * import { DTypePolicyMap } from 'quantkit';
 * const map = new DTypePolicyMap('float32', { 'mha/query': 'int8_from_float32', 'mha/(key|value)': 'int8_from_float32' });
 * map.get('mha/query').name;  // 'int8_from_float32' (exact key)
 * map.get('mha/key').name;    // 'int8_from_float32' (regex key, full match)
 * map.get('mha/output').name; // 'float32' (the default)
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import { describe } from '../tensor';
import type { QuantizationMode } from '../quantizers/config';
import { _isKind, _registerBuiltin, deserializeObject, SerializedObject, serializeObject } from '../quantizers/registry';
import { DTypePolicy, PolicyDType, _looksQuantized, _quantizedPolicyFromString } from './policy';

/** Anything {@link getDTypePolicy} accepts. */
export type DTypePolicyLike = string | DTypePolicy | Record<string, unknown> | null | undefined;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return "<class 'NoneType'>";
  if (typeof v === 'object' || typeof v === 'function') return `<class '${(v as object).constructor?.name ?? 'object'}'>`;
  return `<class '${({ string: 'str', number: 'float', boolean: 'bool' } as Record<string, string>)[typeof v] ?? typeof v}'>`;
}

/**
 * A dtype policy per layer path, with a default (Keras `DTypePolicyMap`). It is itself a {@link DTypePolicy}:
 * its name is `map_<default name>` and its dtypes and quantization mode are the default's. Lookup
 * ({@link DTypePolicyMap.get}): an exact key first; else every key is tried as a regular expression that must
 * match the **whole** path; more than one match is an error; no match gives the default. There is no prefix
 * matching (`'decoder'` does not match `'decoder/attention'`).
 *
 * @example
 * ```ts
 * const map = new DTypePolicyMap();
 * map.set('block_0/dense', new QuantizedDTypePolicy('int8'));
 * map.set('block_\\d+/ffn', 'int4/128_from_float32');
 * map.get('block_3/ffn').name;  // 'int4/128_from_float32'
 * map.set('block_0/dense', 'float32'); // throws: block_0/dense already exist in the DTypePolicyMap ...
 * ```
 */
export class DTypePolicyMap extends DTypePolicy implements Iterable<string> {
  private readonly _defaultPolicyArg: DTypePolicy | string | null;
  private readonly _default: DTypePolicy;
  private readonly _map = new Map<string, DTypePolicy>();

  /**
   * @param defaultPolicy - the policy for paths without an entry (a policy, a name or a serialized policy);
   *   default `'float32'` (Keras: the global policy). A map given here contributes its default.
   * @param policyMap - initial entries `{ path or regex: policy }` (an object or a `Map`); values go through
   *   {@link getDTypePolicy}
   * @throws InvalidArgumentError for a `policyMap` that is not an object, or an entry that is not a policy.
   */
  constructor(
    defaultPolicy?: DTypePolicyLike,
    policyMap?: Record<string, DTypePolicyLike> | ReadonlyMap<string, DTypePolicyLike> | null,
  ) {
    super();
    if (policyMap !== null && policyMap !== undefined && !isPlainObject(policyMap) && !(policyMap instanceof Map)) {
      throw new InvalidArgumentError(
        `Expected an object mapping paths to policies for policyMap but received ${describe(policyMap)}: ` +
          `If specified, \`policy_map\` must be a dict. Received: policy_map=${describe(policyMap)} of type ${pyTypeName(policyMap)}`,
      );
    }
    let arg: unknown = defaultPolicy ?? null;
    if (arg instanceof DTypePolicyMap) arg = arg.defaultPolicy;
    let resolved = getDTypePolicy(arg as DTypePolicyLike);
    if (resolved instanceof DTypePolicyMap) resolved = resolved.defaultPolicy;
    this._defaultPolicyArg = arg === null ? null : typeof arg === 'string' ? arg : resolved;
    this._default = resolved;
    if (policyMap) {
      const entries = policyMap instanceof Map ? [...policyMap.entries()] : Object.entries(policyMap);
      for (const [k, v] of entries) this.set(k, v);
    }
  }

  /** The policy used for paths with no entry. */
  get defaultPolicy(): DTypePolicy {
    return this._default;
  }

  /** `map_<default policy name>`. */
  override get name(): string {
    return `map_${this._default.name}`;
  }

  /** The default policy's compute dtype. */
  override get computeDtype(): PolicyDType {
    return this._default.computeDtype;
  }

  /** The default policy's variable dtype. */
  override get variableDtype(): PolicyDType {
    return this._default.variableDtype;
  }

  /** The default policy's quantization mode. */
  override get quantizationMode(): QuantizationMode | null {
    return this._default.quantizationMode;
  }

  /**
   * The policy for a layer path: exact key, else the one key whose regex matches the whole path, else the
   * default.
   * @throws InvalidArgumentError when several keys match.
   * @example
   * ```ts
   * map.get('encoder/layer_0/attention/query');
   * ```
   */
  get(path: string): DTypePolicy {
    if (typeof path !== 'string') throw new InvalidArgumentError(`Expected a string for path but received ${describe(path)}`);
    const exact = this._map.get(path);
    if (exact) return exact;
    const matching: string[] = [];
    for (const key of this._map.keys()) {
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${key})$`, 'u');
      } catch {
        continue; // not a valid regular expression: it can only match exactly
      }
      if (re.test(path)) matching.push(key);
    }
    if (matching.length > 1) {
      const keys = `[${matching.map((k) => `'${k}'`).join(', ')}]`;
      throw new InvalidArgumentError(
        `Expected at most one matching key for path '${path}' but received ${matching.length}: ${keys}: ` +
          `Path '${path}' matches multiple dtype policy specification keys: ${keys}. Please make sure each path only ` +
          'matches at most one dtype policy specification key in the DTypePolicyMap.',
      );
    }
    return matching.length === 1 ? (this._map.get(matching[0]) as DTypePolicy) : this._default;
  }

  /**
   * Adds an entry; the value goes through {@link getDTypePolicy}. Keys are never overwritten.
   * @throws InvalidArgumentError for an existing key, a value that is not a policy, or a nested map.
   * @example
   * ```ts
   * map.set('dense_1', 'int8_from_float32');
   * ```
   */
  set(key: string, policy: DTypePolicyLike): this {
    if (typeof key !== 'string') throw new InvalidArgumentError(`Expected a string for key but received ${describe(key)}`);
    const existing = this._map.get(key);
    if (existing) {
      throw new InvalidArgumentError(
        `Expected a key not yet in the map for key but received '${key}': ` +
          `${key} already exist in the DTypePolicyMap with value ${String(existing)}. Please make sure to not use duplicated keys.`,
      );
    }
    let p: DTypePolicy;
    try {
      p = getDTypePolicy(policy);
    } catch (err) {
      throw new InvalidArgumentError(
        `Expected a dtype policy, a policy name or a serialized policy for policy but received ${describe(policy)}: ` +
          `Cannot interpret the assigned value by \`keras.dtype_policies.get\`. Received: ${describe(policy)} of type ${pyTypeName(policy)}`,
        { cause: err },
      );
    }
    if (p instanceof DTypePolicyMap) {
      throw new InvalidArgumentError(`Expected a DTypePolicy that is not a DTypePolicyMap for policy of key '${key}' but received ${String(p)}`);
    }
    this._map.set(key, p);
    return this;
  }

  /**
   * A copy of this map (same default) in which `key` maps to `policy`, replacing an existing entry — what a
   * layer does to its own path after quantizing (Keras's `dtype_policy` setter on a map). This map is unchanged.
   * @throws InvalidArgumentError when `policy` is not a policy.
   * @example
   * ```ts
   * const next = map.withEntry('mha/query', 'int8_from_float32');
   * ```
   */
  withEntry(key: string, policy: DTypePolicyLike): DTypePolicyMap {
    const out = new DTypePolicyMap(this._defaultPolicyArg);
    let placed = false;
    for (const [k, v] of this._map) {
      if (k === key) {
        out.set(k, policy);
        placed = true;
      } else out._map.set(k, v);
    }
    if (!placed) out.set(key, policy);
    return out;
  }

  /**
   * Removes an entry; returns whether it existed.
   * @example
   * ```ts
   * map.delete('dense_1');
   * ```
   */
  delete(key: string): boolean {
    return this._map.delete(key);
  }

  /**
   * Whether `key` is an entry (exact key, no regex matching).
   * @example
   * ```ts
   * map.has('dense_1');
   * ```
   */
  has(key: string): boolean {
    return this._map.has(key);
  }

  /** Number of entries. */
  get size(): number {
    return this._map.size;
  }

  /**
   * The keys in insertion order.
   * @example
   * ```ts
   * [...map.keys()];
   * ```
   */
  keys(): IterableIterator<string> {
    return this._map.keys();
  }

  /**
   * The `[key, policy]` pairs in insertion order.
   * @example
   * ```ts
   * for (const [path, policy] of map.entries()) console.log(path, policy.name);
   * ```
   */
  entries(): IterableIterator<[string, DTypePolicy]> {
    return this._map.entries();
  }

  /** Iterates over the keys (like a Python mapping). */
  [Symbol.iterator](): IterableIterator<string> {
    return this._map.keys();
  }

  /**
   * `{ default_policy, policy_map }`: the default as it was given (`null`, a name, or a serialized policy) and
   * each entry serialized. Unlike Keras, entries are not mutated when the default was not given.
   * @example
   * ```ts
   * new DTypePolicyMap('float32', { q: 'int8_from_float32' }).getConfig();
   * // { default_policy: 'float32', policy_map: { q: { module: 'keras.dtype_policies', class_name: 'QuantizedDTypePolicy', ... } } }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    const policyMap: Record<string, SerializedObject> = {};
    for (const [k, v] of this._map) policyMap[k] = serializeObject(v);
    const d = this._defaultPolicyArg;
    return { default_policy: d === null || typeof d === 'string' ? d : serializeObject(d), policy_map: policyMap };
  }

  /**
   * Rebuilds a map from {@link DTypePolicyMap.getConfig} output or a Keras `config.json` entry.
   * @example
   * ```ts
   * const again = DTypePolicyMap.fromConfig(map.getConfig());
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): DTypePolicyMap {
    if (!isPlainObject(config)) {
      throw new InvalidArgumentError(`Expected a plain object for config but received ${describe(config)}`);
    }
    const pm = config.policy_map ?? null;
    if (pm !== null && !isPlainObject(pm)) {
      throw new InvalidArgumentError(`Expected an object for config.policy_map but received ${describe(pm)}`);
    }
    return new DTypePolicyMap(config.default_policy as DTypePolicyLike, pm as Record<string, DTypePolicyLike> | null);
  }

  /**
   * Same default policy and the same entries (Keras compares only the name `map_<default>`).
   * @example
   * ```ts
   * DTypePolicyMap.fromConfig(map.getConfig()).equals(map); // true
   * ```
   */
  override equals(other: unknown): boolean {
    if (!(other instanceof DTypePolicyMap) || other.constructor !== this.constructor) return false;
    if (!other._default.equals(this._default) || other._map.size !== this._map.size) return false;
    for (const [k, v] of this._map) {
      const o = other._map.get(k);
      if (!o || !o.equals(v)) return false;
    }
    return true;
  }

  /**
   * `<DTypePolicyMap default_policy=…, mapping=[…]>`.
   * @example
   * ```ts
   * String(new DTypePolicyMap()); // "<DTypePolicyMap default_policy=float32, mapping=[]>"
   * ```
   */
  override toString(): string {
    const mapping = [...this._map].map(([k, v]) => `('${k}', '${v.name}')`).join(', ');
    return `<DTypePolicyMap default_policy=${this._default.name}, mapping=[${mapping}]>`;
  }
}

/**
 * Keras `dtype_policies.get`: `null`/`undefined` → `new DTypePolicy()` (float32); a policy → itself; a
 * serialized dict → {@link deserializeDTypePolicy}; a string → a quantized policy when it starts with a
 * quantization mode (`'<mode>_from_<source>'`, see {@link QuantizedDTypePolicy}), else a float policy.
 *
 * @throws InvalidArgumentError with Keras's messages for malformed names (UnsupportedError for Keras modes
 *   quantkit lacks, such as `'awq/4/128_from_float32'`).
 * @example
 * ```ts
 * getDTypePolicy('int8_from_float32');          // QuantizedDTypePolicy
 * getDTypePolicy('int4/128_from_float32');      // Int4DTypePolicy (block 128)
 * getDTypePolicy('int4_from_float32');          // legacy QuantizedDTypePolicy('int4'): per-channel
 * getDTypePolicy('gptq/4/128_from_float32');    // GPTQDTypePolicy
 * getDTypePolicy('int8');                       // throws: Cannot convert `policy` into a valid pair (`mode`, `source_name`) ...
 * ```
 */
export function getDTypePolicy(identifier: DTypePolicyLike): DTypePolicy | DTypePolicyMap {
  if (identifier === null || identifier === undefined) return new DTypePolicy();
  if (identifier instanceof DTypePolicy) return identifier;
  if (isPlainObject(identifier)) return deserializeDTypePolicy(identifier);
  if (typeof identifier === 'string') {
    return _looksQuantized(identifier) ? _quantizedPolicyFromString(identifier) : new DTypePolicy(identifier);
  }
  throw new InvalidArgumentError(
    `Expected a string, a DTypePolicy or a serialized policy for dtype but received ${describe(identifier)}: ` +
      `Cannot interpret \`dtype\` argument. Expected a string or an instance of DTypePolicy. Received: dtype=${describe(identifier)}`,
  );
}

/**
 * A policy as Keras writes it in `config.json`:
 * `{ module: 'keras.dtype_policies', class_name: 'Int4DTypePolicy', config: { mode: 'int4/128', source_name: 'float32' }, registered_name: null }`
 * (float policies: `module: 'keras'`, `class_name: 'DTypePolicy'`).
 * @example
 * ```ts
 * serializeDTypePolicy(new QuantizedDTypePolicy('int8')).config; // { mode: 'int8', source_name: 'float32' }
 * ```
 */
export function serializeDTypePolicy(policy: DTypePolicy): SerializedObject {
  if (!(policy instanceof DTypePolicy)) {
    throw new InvalidArgumentError(`Expected a DTypePolicy for policy but received ${describe(policy)}`);
  }
  return serializeObject(policy);
}

/**
 * Inverse of {@link serializeDTypePolicy}; also reads Keras files (`FloatDTypePolicy` is an alias of
 * `DTypePolicy`; `source_name: null`, written by Keras for maps without a default, reads as `'float32'`).
 * @throws InvalidArgumentError when the dict is not a serialized policy.
 * @example
 * ```ts
 * deserializeDTypePolicy({ module: 'keras.dtype_policies', class_name: 'GPTQDTypePolicy',
 *   config: { mode: 'gptq/4/8', source_name: 'float32' }, registered_name: null }).name; // 'gptq/4/8_from_float32'
 * ```
 */
export function deserializeDTypePolicy(config: Record<string, unknown>): DTypePolicy | DTypePolicyMap {
  if (!isPlainObject(config) || typeof config.class_name !== 'string') {
    throw new InvalidArgumentError(`Expected a serialized dtype policy { class_name, config } for config but received ${describe(config)}`);
  }
  const obj = deserializeObject(config, 'config');
  if (!_isKind(obj, 'dtype_policy')) {
    throw new InvalidArgumentError(
      `Expected a serialized DTypePolicy for config but received a serialized ${String(config.class_name)}`,
    );
  }
  return obj as DTypePolicy;
}

_registerBuiltin(DTypePolicyMap, { module: 'keras.dtype_policies' });
