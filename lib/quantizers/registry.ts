/**
 * Keras-style object serialization for quantizers, quantization configs and dtype policies.
 *
 * An object serializes to the dict Keras 3 writes into `config.json`:
 * `{ module, class_name, config, registered_name }`. quantkit's own classes use Keras's public module and class
 * names (`keras.quantizers` / `AbsMaxQuantizer`, `keras.dtype_policies` / `Int4DTypePolicy`, …) so files move
 * between the two. Your own classes (a custom {@link Quantizer}, say) must be registered with
 * {@link registerSerializable} before anything holding them is deserialized; they serialize with
 * `registered_name = "<package>><name>"` as Keras's `register_keras_serializable` does.
 *
 * @example
 * ```ts
 * import { registerSerializable, serializeObject, deserializeObject, Quantizer } from 'quantkit';
 * class MyQuantizer extends Quantizer { ... getConfig() { return { output_dtype: 'int8' }; } }
 * registerSerializable(MyQuantizer, { package: 'my_pkg' });
 * const dict = serializeObject(new MyQuantizer());   // { class_name: 'MyQuantizer', registered_name: 'my_pkg>MyQuantizer', ... }
 * const back = deserializeObject(dict);              // a MyQuantizer
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import { describe } from '../tensor';
import type { Quantizer } from './quantizer';

/** The Keras serialized form of an object. */
export interface SerializedObject {
  /** Keras's public module of the class (`'keras.quantizers'`), or `null` for classes registered by users. */
  module: string | null;
  /** The class name. */
  class_name: string;
  /** The object's `getConfig()`, with nested serializable objects serialized too. */
  config: Record<string, unknown>;
  /** `"<package>><name>"` for registered user classes; `null` for quantkit's (Keras's) own classes. */
  registered_name: string | null;
}

/** A class that can be serialized: it has `getConfig()` on its instances, and optionally a static `fromConfig`. */
export interface SerializableClass {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  new (...args: any[]): { getConfig(): Record<string, unknown> };
  /** Builds an instance from `getConfig()` output; when absent, `new Class(camelCasedConfig)` is used. */
  fromConfig?(config: Record<string, unknown>): unknown;
  readonly name: string;
}

interface Entry {
  ctor: SerializableClass;
  module: string | null;
  className: string;
  registeredName: string | null;
  kind: string | null;
}

const builtinByClassName = new Map<string, Entry>();
const customByRegisteredName = new Map<string, Entry>();
const entryByCtor = new Map<unknown, Entry>();
const kindBase = new Map<string, abstract new (...args: never[]) => unknown>();

/**
 * Registers a user class so that {@link serializeObject} writes it with a `registered_name` and
 * {@link deserializeObject} (and so `QuantizationConfig.fromConfig`, `getQuantizer`, …) can rebuild it. The
 * equivalent of Keras's `@keras.saving.register_keras_serializable(package, name)`; call it once, after the
 * class definition. Registering the same class again under the same name is a no-op; another class under a
 * taken name is an error.
 *
 * @param ctor - the class; instances must have `getConfig()`
 * @param options - `package` (default `'Custom'`, as Keras) and `name` (default the class name)
 * @throws InvalidArgumentError when the class has no `getConfig()` or the name is taken by another class.
 * @example
 * ```ts
 * class PercentileQuantizer extends Quantizer { ... }
 * registerSerializable(PercentileQuantizer, { package: 'my_pkg' }); // registered_name 'my_pkg>PercentileQuantizer'
 * ```
 */
export function registerSerializable(ctor: SerializableClass, options: { package?: string; name?: string } = {}): void {
  if (typeof ctor !== 'function' || typeof ctor.prototype?.getConfig !== 'function') {
    throw new InvalidArgumentError(
      `Expected a class whose instances have a getConfig() method for ctor but received ${describe(ctor)}: ` +
        'Cannot register a class that does not have a get_config() method.',
    );
  }
  const pkg = options.package ?? 'Custom';
  const name = options.name ?? ctor.name;
  if (typeof pkg !== 'string' || pkg.includes('>')) {
    throw new InvalidArgumentError(`Expected a string without '>' for options.package but received ${describe(pkg)}`);
  }
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(`Expected a non-empty string for options.name but received ${describe(name)}`);
  }
  const registeredName = `${pkg}>${name}`;
  const existing = customByRegisteredName.get(registeredName);
  if (existing) {
    if (existing.ctor === ctor) return;
    throw new InvalidArgumentError(
      `Expected a registered name that is not taken for ${ctor.name} but received '${registeredName}', ` +
        `already registered to ${existing.ctor.name}`,
    );
  }
  const entry: Entry = { ctor, module: null, className: ctor.name, registeredName, kind: null };
  customByRegisteredName.set(registeredName, entry);
  entryByCtor.set(ctor, entry);
}

/**
 * Registers one of quantkit's own classes under its Keras module and class name. `kind` marks a base class
 * (e.g. `'quantizer'`) that {@link getQuantizer} checks results against. `alias: true` adds a class-name alias
 * used only when deserializing (Keras's `FloatDTypePolicy` → `DTypePolicy`).
 * @internal
 */
export function _registerBuiltin(
  ctor: SerializableClass | (abstract new (...args: never[]) => unknown),
  options: { module: string; className?: string; alias?: boolean; kind?: string },
): void {
  const entry: Entry = {
    ctor: ctor as SerializableClass,
    module: options.module,
    className: options.className ?? ctor.name,
    registeredName: null,
    kind: options.kind ?? null,
  };
  builtinByClassName.set(entry.className, entry);
  if (!options.alias) entryByCtor.set(ctor, entry);
  if (options.kind) kindBase.set(options.kind, ctor);
}

/** True for a plain `{}` object (not an array, not a class instance). */
function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Serializes a value the way Keras's `serialize_keras_object` does: `null` stays `null`; numbers, strings and
 * booleans stay; arrays and plain objects are serialized element by element; an object with `getConfig()` becomes
 * `{ module, class_name, config, registered_name }` (its config serialized recursively).
 * @internal
 */
export function _serializeValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') return value;
  if (Array.isArray(value)) return value.map((v) => _serializeValue(v));
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>);
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) out[String(k)] = _serializeValue(v);
    return out;
  }
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = _serializeValue(v);
    return out;
  }
  if (typeof (value as { getConfig?: unknown }).getConfig === 'function') return serializeObject(value as object);
  throw new InvalidArgumentError(
    `Expected null, a number, a string, a boolean, an array, a plain object or an object with getConfig() for value but received ${describe(value)}`,
  );
}

/**
 * Serializes an object with `getConfig()` into the Keras dict `{ module, class_name, config, registered_name }`
 * (`null` gives `null`). quantkit's own classes get Keras's module and class names; registered user classes get
 * `module: null` and their `registered_name`; an unregistered class is written with its class name and will
 * need {@link registerSerializable} before it can be read back.
 *
 * @throws InvalidArgumentError when `obj` has no `getConfig()` or `getConfig()` does not return an object.
 * @example
 * ```ts
 * serializeObject(new AbsMaxQuantizer());
 * // { module: 'keras.quantizers', class_name: 'AbsMaxQuantizer',
 * //   config: { value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8' }, registered_name: null }
 * ```
 */
export function serializeObject(obj: null | undefined): null;
export function serializeObject(obj: object): SerializedObject;
export function serializeObject(obj: object | null | undefined): SerializedObject | null;
export function serializeObject(obj: object | null | undefined): SerializedObject | null {
  if (obj === null || obj === undefined) return null;
  const getConfig = (obj as { getConfig?: unknown }).getConfig;
  if (typeof getConfig !== 'function') {
    throw new InvalidArgumentError(`Expected an object with a getConfig() method for obj but received ${describe(obj)}`);
  }
  const raw = getConfig.call(obj) as unknown;
  if (!isPlainObject(raw)) {
    throw new InvalidArgumentError(
      `Expected getConfig() to return a plain object for ${obj.constructor?.name ?? 'obj'} but received ${describe(raw)}`,
    );
  }
  const config = _serializeValue(raw) as Record<string, unknown>;
  const entry = entryByCtor.get(obj.constructor);
  if (entry) {
    return { module: entry.module, class_name: entry.className, config, registered_name: entry.registeredName };
  }
  return { module: null, class_name: obj.constructor?.name ?? 'Object', config, registered_name: null };
}

/** `value_range` → `valueRange` (top-level keys only). @internal */
export function _camelCaseKeys(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) out[k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())] = v;
  return out;
}

function lookup(dict: Record<string, unknown>): Entry | undefined {
  const registered = dict.registered_name;
  const className = dict.class_name as string;
  if (typeof registered === 'string' && registered !== className) {
    const e = customByRegisteredName.get(registered);
    if (e) return e;
  }
  const builtin = builtinByClassName.get(className);
  if (builtin) return builtin;
  // A registered user class referred to by its bare class name (e.g. a hand-written config).
  const byName = [...customByRegisteredName.values()].filter((e) => e.className === className);
  return byName.length === 1 ? byName[0] : undefined;
}

/**
 * Rebuilds an object from its Keras serialized dict (the inverse of {@link serializeObject}); `null` gives
 * `null`. Lookup: a `registered_name` among classes registered with {@link registerSerializable}, then the
 * `class_name` among quantkit's (Keras's) own classes. The object is built with the class's static `fromConfig`
 * when it has one, else with `new Class(camelCasedConfig)`. Keys Keras adds for its own bookkeeping
 * (`shared_object_id`, `build_config`) are ignored; `{ class_name: '__tuple__' }` gives its array.
 *
 * @param argName - the argument name used in error messages (default `'config'`)
 * @throws InvalidArgumentError naming the unknown class and how to register it.
 * @example
 * ```ts
 * const q = deserializeObject({ module: 'keras.quantizers', class_name: 'AbsMaxQuantizer',
 *   config: { value_range: [-127, 127], epsilon: 1e-7, output_dtype: 'int8' }, registered_name: null });
 * // q instanceof AbsMaxQuantizer
 * ```
 */
export function deserializeObject(dict: unknown, argName = 'config'): unknown {
  if (dict === null || dict === undefined) return null;
  if (typeof dict === 'number' || typeof dict === 'string' || typeof dict === 'boolean') return dict;
  if (Array.isArray(dict)) return dict.map((v, i) => deserializeObject(v, `${argName}[${i}]`));
  if (!isPlainObject(dict)) return dict;
  if (typeof dict.class_name !== 'string') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(dict)) out[k] = deserializeObject(v, `${argName}.${k}`);
    return out;
  }
  const className = dict.class_name;
  const inner = dict.config ?? {};
  if (className === '__tuple__' && isPlainObject(inner) && Array.isArray(inner.value)) {
    return inner.value.map((v, i) => deserializeObject(v, `${argName}[${i}]`));
  }
  if (!isPlainObject(inner)) {
    throw new InvalidArgumentError(`Expected a plain object for ${argName}.config but received ${describe(inner)}`);
  }
  const entry = lookup(dict);
  if (!entry) {
    const reg = typeof dict.registered_name === 'string' ? dict.registered_name : null;
    const [pkg, name] = reg && reg.includes('>') ? reg.split('>', 2) : ['Custom', className];
    throw new InvalidArgumentError(
      `Expected a known or registered class for ${argName} but received class_name '${className}'` +
        (reg ? ` (registered_name '${reg}')` : '') +
        `: Could not locate class '${className}'. Make sure custom classes are registered with ` +
        `registerSerializable(${className}, { package: '${pkg}'${name !== className ? `, name: '${name}'` : ''} }) ` +
        'before deserializing (the equivalent of @keras.saving.register_keras_serializable()).',
    );
  }
  const ctor = entry.ctor;
  if (typeof ctor.fromConfig === 'function') return ctor.fromConfig(inner);
  return new ctor(_camelCaseKeys(inner));
}

/**
 * Whether `value` is an instance of the base class registered under `kind` (e.g. `'quantizer'`).
 * @internal
 */
export function _isKind(value: unknown, kind: string): boolean {
  const base = kindBase.get(kind);
  return base !== undefined && value instanceof base;
}

function snakeCase(name: string): string {
  return name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/**
 * `keras.quantizers.get`: `null` → `null`; a {@link Quantizer} → itself; a serialized dict → deserialized; a
 * string → the quantizer class of that name (`'AbsMaxQuantizer'`, its snake case `'abs_max_quantizer'`, or the
 * `registered_name` of a registered class) built with `options` as its constructor options.
 *
 * @throws InvalidArgumentError "Could not interpret quantizer identifier: …" for anything else.
 * @example
 * ```ts
 * getQuantizer('abs_max_quantizer', { axis: 0 }); // AbsMaxQuantizer with axis [0]
 * getQuantizer(null);                              // null
 * ```
 */
export function getQuantizer(
  identifier: null | undefined | string | Quantizer | Record<string, unknown>,
  options?: Record<string, unknown>,
): Quantizer | null {
  if (identifier === null || identifier === undefined) return null;
  let obj: unknown;
  if (typeof identifier === 'string') {
    let entry: Entry | undefined = builtinByClassName.get(identifier) ?? customByRegisteredName.get(identifier);
    if (!entry) {
      entry = [...builtinByClassName.values(), ...customByRegisteredName.values()].find(
        (e) => snakeCase(e.className) === identifier,
      );
    }
    const base = kindBase.get('quantizer');
    if (entry && base && (entry.ctor.prototype instanceof base || (entry.ctor as unknown) === base)) {
      if ((entry.ctor as unknown) === base) {
        throw new InvalidArgumentError(
          `Expected a concrete quantizer class for identifier but received ${describe(identifier)}: Quantizer is abstract`,
        );
      }
      obj = new entry.ctor(options ?? {});
    }
  } else if (isPlainObject(identifier)) {
    obj = deserializeObject(identifier, 'identifier');
  } else {
    obj = identifier;
  }
  if (_isKind(obj, 'quantizer')) return obj as Quantizer;
  throw new InvalidArgumentError(
    `Expected null, a Quantizer, a quantizer class name or a serialized quantizer for identifier but received ${describe(identifier)}: ` +
      `Could not interpret quantizer identifier: ${typeof identifier === 'string' ? identifier : describe(identifier)}`,
  );
}

/**
 * A Python-like `repr` for Keras-worded messages: strings quoted with `'`, arrays as tuples `(a, b)` when
 * `tuple` is set, `null` as `None`, booleans as `True`/`False`.
 * @internal
 */
export function _pyRepr(v: unknown, tuple = false): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return Number.isNaN(v) ? 'nan' : String(v);
  if (Array.isArray(v)) {
    const inner = v.map((x) => _pyRepr(x, tuple)).join(', ');
    return tuple ? `(${inner}${v.length === 1 ? ',' : ''})` : `[${inner}]`;
  }
  if (typeof v === 'object' && typeof (v as { toString?: unknown }).toString === 'function' && (v as object).toString !== Object.prototype.toString) {
    return String(v);
  }
  return describe(v);
}
