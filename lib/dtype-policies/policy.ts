/**
 * DType policies (Keras `keras.dtype_policies`): a layer's compute dtype, variable dtype and quantization mode,
 * named the way Keras names them in `config.json` (`'float32'`, `'mixed_bfloat16'`, `'int8_from_float32'`,
 * `'int4/128_from_float32'`, `'gptq/4/128_from_float32'`, `'float8_from_float32'`).
 *
 * quantkit has no global dtype policy: where Keras falls back to `keras.config.dtype_policy()`, quantkit uses
 * `'float32'` (Keras's default).
 *
 * @example
 * ```ts
 * import { getDTypePolicy } from 'quantkit';
 * const p = getDTypePolicy('int4/128_from_mixed_bfloat16');
 * p.computeDtype;      // 'bfloat16'
 * p.variableDtype;     // 'float32'
 * p.quantizationMode;  // 'int4'
 * ```
 * @packageDocumentation
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { describe } from '../tensor';
import { QUANTIZATION_MODES, QuantizationMode, _modesRepr, _validateMode } from '../quantizers/config';
import { _pyRepr, _registerBuiltin } from '../quantizers/registry';

/** Policy names quantkit accepts for float (source) policies. */
export type FloatPolicyName = 'float32' | 'float16' | 'bfloat16' | 'mixed_float16' | 'mixed_bfloat16';

/** Dtypes a policy can compute in or store variables in. */
export type PolicyDType = 'float32' | 'float16' | 'bfloat16' | 'int32';

/**
 * The policy name used where Keras would use its global policy (Keras's default `floatx()`).
 * @example
 * ```ts
 * new QuantizedDTypePolicy('int8').sourceName === DEFAULT_DTYPE_POLICY_NAME; // true ('float32')
 * ```
 */
export const DEFAULT_DTYPE_POLICY_NAME = 'float32';

const FLOAT_NAMES: Readonly<Record<string, readonly [PolicyDType, PolicyDType]>> = Object.freeze({
  float32: ['float32', 'float32'],
  float16: ['float16', 'float16'],
  bfloat16: ['bfloat16', 'bfloat16'],
  mixed_float16: ['float16', 'float32'],
  mixed_bfloat16: ['bfloat16', 'float32'],
});

/**
 * `(compute, variable)` dtypes of a policy name. `allowInt` admits `'int32'` (Keras input layers of token ids
 * carry a plain `'int32'` policy).
 */
function parseName(name: unknown, argName: string, allowInt: boolean): readonly [PolicyDType, PolicyDType] {
  if (typeof name !== 'string') {
    throw new InvalidArgumentError(
      `Expected a string for ${argName} but received ${describe(name)}: ` +
        `'name' must be a string, such as 'mixed_float16'. Received: name=${_pyRepr(name)}`,
    );
  }
  const d = FLOAT_NAMES[name];
  if (d) return d;
  if (allowInt && name === 'int32') return ['int32', 'int32'];
  throw new InvalidArgumentError(
    `Expected one of ${Object.keys(FLOAT_NAMES).join(', ')} for ${argName} but received ${describe(name)}: ` +
      `Cannot convert '${name}' to a mixed precision DTypePolicy. Valid policies include 'mixed_float16', ` +
      "'mixed_bfloat16', and the name of any float dtype such as 'float32'.",
  );
}

/**
 * A float dtype policy (Keras `keras.DTypePolicy`, alias `FloatDTypePolicy`): `'float32'`, `'float16'`,
 * `'bfloat16'`, or mixed precision `'mixed_float16'` / `'mixed_bfloat16'` (compute in 16 bits, variables in
 * float32).
 *
 * @example
 * ```ts
 * const p = new DTypePolicy('mixed_bfloat16');
 * p.computeDtype;   // 'bfloat16'
 * p.variableDtype;  // 'float32'
 * String(p);        // '<DTypePolicy "mixed_bfloat16">'
 * ```
 */
export class DTypePolicy {
  /** @internal */ protected _name: string;
  /** @internal */ protected _computeDtype: PolicyDType;
  /** @internal */ protected _variableDtype: PolicyDType;

  /**
   * @param name - the policy name; default `'float32'` (Keras: the global policy)
   * @throws InvalidArgumentError for a non-string or unknown name.
   */
  constructor(name?: string | null) {
    const n = name ?? DEFAULT_DTYPE_POLICY_NAME;
    const [c, v] = parseName(n, 'name', true);
    this._name = n;
    this._computeDtype = c;
    this._variableDtype = v;
  }

  /** The policy name (`'float32'`, `'int8_from_float32'`, …). */
  get name(): string {
    return this._name;
  }

  /** The dtype layers compute in. */
  get computeDtype(): PolicyDType {
    return this._computeDtype;
  }

  /** The dtype layers create float variables in. */
  get variableDtype(): PolicyDType {
    return this._variableDtype;
  }

  /**
   * `null` for float policies; the base mode (`'int8'`, `'int4'`, `'float8'`, `'gptq'`) for quantized ones.
   * @example
   * ```ts
   * new DTypePolicy().quantizationMode; // null
   * ```
   */
  get quantizationMode(): QuantizationMode | null {
    return null;
  }

  /**
   * True when the policy is quantized.
   * @example
   * ```ts
   * new QuantizedDTypePolicy('int8').isQuantized; // true
   * ```
   */
  get isQuantized(): boolean {
    return this.quantizationMode !== null;
  }

  /**
   * `{ name }` (Keras's key).
   * @example
   * ```ts
   * new DTypePolicy('bfloat16').getConfig(); // { name: 'bfloat16' }
   * ```
   */
  getConfig(): Record<string, unknown> {
    return { name: this._name };
  }

  /**
   * `new DTypePolicy(config.name)`.
   * @example
   * ```ts
   * DTypePolicy.fromConfig({ name: 'mixed_float16' }).computeDtype; // 'float16'
   * ```
   */
  static fromConfig(config: Record<string, unknown>): DTypePolicy {
    const c = checkDict(config);
    return new DTypePolicy(c.name as string | null | undefined);
  }

  /**
   * Keras equality: the same class and the same name (quantized policies also compare mode, source, and their
   * block size, bits, group size or history length).
   * @example
   * ```ts
   * new DTypePolicy('float32').equals(new DTypePolicy()); // true
   * ```
   */
  equals(other: unknown): boolean {
    if (!(other instanceof DTypePolicy) || other.constructor !== this.constructor) return false;
    return other._name === this._name;
  }

  /**
   * `<ClassName "name">`, as Keras's `repr`.
   * @example
   * ```ts
   * String(new DTypePolicy()); // '<DTypePolicy "float32">'
   * ```
   */
  toString(): string {
    return `<${this.constructor.name} "${this._name}">`;
  }
}

function checkDict(config: unknown): Record<string, unknown> {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new InvalidArgumentError(`Expected a plain object for config but received ${describe(config)}`);
  }
  return config as Record<string, unknown>;
}

/**
 * A quantized dtype policy (Keras `QuantizedDTypePolicy`), named `<mode>_from_<sourceName>`; compute and
 * variable dtypes come from the source policy. Used for int8 and legacy (per-channel) int4; grouped int4, GPTQ
 * and float8 have the subclasses {@link Int4DTypePolicy}, {@link GPTQDTypePolicy} and
 * {@link QuantizedFloat8DTypePolicy}.
 *
 * @example
 * ```ts
 * const p = new QuantizedDTypePolicy('int8', 'mixed_bfloat16');
 * p.name;             // 'int8_from_mixed_bfloat16'
 * p.computeDtype;     // 'bfloat16'
 * new QuantizedDTypePolicy('int8', 'float16'); // throws: Quantization mode='int8' doesn't work well with compute_dtype='float16'.
 * ```
 */
export class QuantizedDTypePolicy extends DTypePolicy {
  /** @internal */ protected _mode: QuantizationMode;
  /** @internal */ protected _sourceName: string;

  /**
   * @param mode - a quantization mode
   * @param sourceName - the float policy the layer had before quantization; default `'float32'`
   * @throws InvalidArgumentError for an invalid mode, an unknown source, or int8 with a float16 compute dtype.
   */
  constructor(mode: QuantizationMode, sourceName?: string | null) {
    const source = sourceName ?? DEFAULT_DTYPE_POLICY_NAME;
    super(DEFAULT_DTYPE_POLICY_NAME);
    const [c, v] = parseName(source, 'sourceName', false);
    _validateMode(mode, 'mode');
    if (mode === null || mode === undefined) {
      throw new InvalidArgumentError(
        `Expected one of ${_modesRepr()} for mode but received ${describe(mode)}: ` +
          `Invalid quantization mode. Expected one of ${_modesRepr()}. Received: mode=None`,
      );
    }
    if (c === 'float16' && mode === 'int8') {
      throw new InvalidArgumentError(
        `Expected a source policy whose compute dtype is not float16 for sourceName but received '${source}': ` +
          `Quantization mode='${mode}' doesn't work well with compute_dtype='float16'.`,
      );
    }
    this._computeDtype = c;
    this._variableDtype = v;
    this._mode = mode;
    this._sourceName = source;
    this._name = `${mode}_from_${source}`;
  }

  /** The base quantization mode. */
  override get quantizationMode(): QuantizationMode {
    return this._mode;
  }

  /** The source policy name (`'float32'`, `'mixed_bfloat16'`, …). */
  get sourceName(): string {
    return this._sourceName;
  }

  /**
   * `{ mode, source_name }`.
   * @example
   * ```ts
   * new QuantizedDTypePolicy('int8').getConfig(); // { mode: 'int8', source_name: 'float32' }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return { mode: this._mode, source_name: this._sourceName };
  }

  /**
   * `new QuantizedDTypePolicy(config.mode, config.source_name)`.
   * @example
   * ```ts
   * QuantizedDTypePolicy.fromConfig({ mode: 'int8', source_name: 'float32' }).name; // 'int8_from_float32'
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): QuantizedDTypePolicy {
    const c = checkDict(config);
    return new QuantizedDTypePolicy(c.mode as QuantizationMode, c.source_name as string | null | undefined);
  }

  /**
   * Same class, name, mode and source.
   * @example
   * ```ts
   * new QuantizedDTypePolicy('int8').equals(new QuantizedDTypePolicy('int8', 'float32')); // true
   * ```
   */
  override equals(other: unknown): boolean {
    if (!super.equals(other)) return false;
    const o = other as QuantizedDTypePolicy;
    return o._mode === this._mode && o._sourceName === this._sourceName;
  }
}

/**
 * The float8 policy (Keras `QuantizedFloat8DTypePolicy`): `float8_from_<source>`, plus the amax history length
 * of delayed scaling (not part of the name).
 *
 * @example
 * ```ts
 * const p = new QuantizedFloat8DTypePolicy('float8', 'float32', 16);
 * p.name;               // 'float8_from_float32'
 * p.amaxHistoryLength;  // 16
 * ```
 */
export class QuantizedFloat8DTypePolicy extends QuantizedDTypePolicy {
  /** Keras's default history length. */
  static readonly defaultAmaxHistoryLength = 1024;
  /** @internal */ protected _amaxHistoryLength: number;

  /**
   * @throws InvalidArgumentError for a mode other than `'float8'` or a non-integer history length.
   */
  constructor(mode: 'float8' = 'float8', sourceName?: string | null, amaxHistoryLength = 1024) {
    if (mode !== 'float8') {
      throw new InvalidArgumentError(`Expected 'float8' for mode but received ${describe(mode)}`);
    }
    super(mode, sourceName);
    if (typeof amaxHistoryLength !== 'number' || !Number.isSafeInteger(amaxHistoryLength) || amaxHistoryLength <= 0) {
      throw new InvalidArgumentError(
        `Expected a positive integer for amaxHistoryLength but received ${describe(amaxHistoryLength)}: ` +
          `\`amax_history_length\` must be an integer. Received: amax_history_length=${_pyRepr(amaxHistoryLength)}`,
      );
    }
    this._amaxHistoryLength = amaxHistoryLength;
  }

  /** Length of the amax history window of delayed scaling. */
  get amaxHistoryLength(): number {
    return this._amaxHistoryLength;
  }

  /**
   * `{ mode, source_name, amax_history_length }`.
   * @example
   * ```ts
   * new QuantizedFloat8DTypePolicy().getConfig(); // { mode: 'float8', source_name: 'float32', amax_history_length: 1024 }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return { ...super.getConfig(), amax_history_length: this._amaxHistoryLength };
  }

  /**
   * Rebuilds the policy (a missing history length takes the default).
   * @example
   * ```ts
   * QuantizedFloat8DTypePolicy.fromConfig({ mode: 'float8', source_name: 'float32', amax_history_length: 8 });
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): QuantizedFloat8DTypePolicy {
    const c = checkDict(config);
    return new QuantizedFloat8DTypePolicy(
      (c.mode ?? 'float8') as 'float8',
      c.source_name as string | null | undefined,
      (c.amax_history_length ?? 1024) as number,
    );
  }

  /**
   * Also compares the history length.
   * @example
   * ```ts
   * new QuantizedFloat8DTypePolicy('float8', 'float32', 8).equals(new QuantizedFloat8DTypePolicy()); // false
   * ```
   */
  override equals(other: unknown): boolean {
    return super.equals(other) && (other as QuantizedFloat8DTypePolicy)._amaxHistoryLength === this._amaxHistoryLength;
  }
}

/** Parses `'int4/<block>'`; `'None'` is accepted and normalised to -1 (checkpoints from before Keras #23467). */
function parseInt4Mode(mode: unknown): number {
  const fmt = "'int4/<block_size>'";
  const parts = typeof mode === 'string' ? mode.split('/') : [];
  if (parts.length !== 2 || parts[0] !== 'int4') {
    throw new InvalidArgumentError(
      `Expected a mode of the form 'int4/<block_size>' for mode but received ${describe(mode)}: ` +
        `Invalid mode for Int4DTypePolicy. Expected format ${fmt}, but got '${String(mode)}'.`,
    );
  }
  let block: number;
  if (parts[1] === 'None') block = -1;
  else if (/^[+-]?\d+$/.test(parts[1].trim())) block = parseInt(parts[1], 10);
  else {
    throw new InvalidArgumentError(
      `Expected an integer block size in mode for mode but received ${describe(mode)}: ` +
        `Invalid mode for Int4DTypePolicy. <block_size> must be an integer. Expected format ${fmt}, but got '${String(mode)}'.`,
    );
  }
  if (block < -1 || block === 0) {
    throw new InvalidArgumentError(
      `Expected -1 or a positive block size in mode for mode but received ${describe(mode)}: ` +
        'Invalid block_size in mode. Supported values are -1 (per-channel) or a positive integer (sub-channel), ' +
        `but got ${block} from '${String(mode)}'.`,
    );
  }
  return block;
}

/**
 * The int4 policy (Keras `Int4DTypePolicy`): mode `'int4/<blockSize>'`, name `int4/<blockSize>_from_<source>`;
 * `blockSize` `-1` is per-channel (`'int4/None'` from old checkpoints reads as -1).
 *
 * @example
 * ```ts
 * const p = new Int4DTypePolicy('int4/128');
 * p.name;              // 'int4/128_from_float32'
 * p.quantizationMode;  // 'int4'
 * p.blockSize;         // 128
 * new Int4DTypePolicy('int4/None').name; // 'int4/-1_from_float32'
 * ```
 */
export class Int4DTypePolicy extends QuantizedDTypePolicy {
  /** Rows per group; -1 = per-channel. */
  readonly blockSize: number;

  /**
   * @throws InvalidArgumentError for a malformed mode or a block size of 0 or below -1.
   */
  constructor(mode: string, sourceName?: string | null) {
    const block = parseInt4Mode(mode);
    super('int4', sourceName);
    this.blockSize = block;
    this._name = `int4/${block}_from_${this._sourceName}`;
  }

  /**
   * `{ mode: 'int4/<blockSize>', source_name }`.
   * @example
   * ```ts
   * new Int4DTypePolicy('int4/64').getConfig(); // { mode: 'int4/64', source_name: 'float32' }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return { mode: `int4/${this.blockSize}`, source_name: this._sourceName };
  }

  /**
   * `new Int4DTypePolicy(config.mode, config.source_name)`.
   * @example
   * ```ts
   * Int4DTypePolicy.fromConfig({ mode: 'int4/16', source_name: 'float32' }).blockSize; // 16
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): Int4DTypePolicy {
    const c = checkDict(config);
    return new Int4DTypePolicy(c.mode as string, c.source_name as string | null | undefined);
  }

  /**
   * Also compares the block size.
   * @example
   * ```ts
   * new Int4DTypePolicy('int4/-1').equals(new Int4DTypePolicy('int4/None')); // true
   * ```
   */
  override equals(other: unknown): boolean {
    return super.equals(other) && (other as Int4DTypePolicy).blockSize === this.blockSize;
  }
}

function parseGPTQMode(mode: unknown): { weightBits: 2 | 3 | 4 | 8; groupSize: number } {
  const fmt = "'gptq/<weight_bits>/<group_size>'";
  const parts = typeof mode === 'string' ? mode.split('/') : [];
  if (parts.length !== 3 || parts[0] !== 'gptq') {
    throw new InvalidArgumentError(
      `Expected a mode of the form 'gptq/<weight_bits>/<group_size>' for mode but received ${describe(mode)}: ` +
        `Invalid mode for GPTQDTypePolicy. Expected format ${fmt}, but got '${String(mode)}'.`,
    );
  }
  const isInt = (s: string) => /^[+-]?\d+$/.test(s.trim());
  if (!isInt(parts[1]) || !isInt(parts[2])) {
    throw new InvalidArgumentError(
      `Expected integer bits and group size in mode for mode but received ${describe(mode)}: ` +
        `Invalid mode for GPTQDTypePolicy. <weight_bits> and <group_size> must be integers. Expected format ${fmt}, but got '${String(mode)}'.`,
    );
  }
  const weightBits = parseInt(parts[1], 10);
  const groupSize = parseInt(parts[2], 10);
  if (![2, 3, 4, 8].includes(weightBits)) {
    throw new InvalidArgumentError(
      `Expected 2, 3, 4 or 8 bits in mode for mode but received ${describe(mode)}: ` +
        `Invalid weight_bits in mode. Supported values are 2, 3, 4, and 8, but got ${weightBits} from '${String(mode)}'.`,
    );
  }
  if (groupSize < -1 || groupSize === 0) {
    throw new InvalidArgumentError(
      `Expected -1 or a positive group size in mode for mode but received ${describe(mode)}: ` +
        `Invalid group_size in mode. Supported values are -1 (whole-tensor) or a positive integer, but got ${groupSize} from '${String(mode)}'.`,
    );
  }
  return { weightBits: weightBits as 2 | 3 | 4 | 8, groupSize };
}

/**
 * The GPTQ policy (Keras `GPTQDTypePolicy`): mode `'gptq/<bits>/<groupSize>'`, name
 * `gptq/<bits>/<groupSize>_from_<source>`.
 *
 * @example
 * ```ts
 * const p = new GPTQDTypePolicy('gptq/4/128');
 * p.name;        // 'gptq/4/128_from_float32'
 * p.weightBits;  // 4
 * p.groupSize;   // 128
 * ```
 */
export class GPTQDTypePolicy extends QuantizedDTypePolicy {
  readonly weightBits: 2 | 3 | 4 | 8;
  /** Columns per group; -1 = one group per output channel. */
  readonly groupSize: number;

  /**
   * @throws InvalidArgumentError for a malformed mode, bits not in {2, 3, 4, 8}, or a group size of 0 or below -1.
   */
  constructor(mode: string, sourceName?: string | null) {
    const { weightBits, groupSize } = parseGPTQMode(mode);
    super('gptq', sourceName);
    this.weightBits = weightBits;
    this.groupSize = groupSize;
    this._name = `gptq/${weightBits}/${groupSize}_from_${this._sourceName}`;
  }

  /**
   * `{ mode: 'gptq/<bits>/<group>', source_name }`.
   * @example
   * ```ts
   * new GPTQDTypePolicy('gptq/8/-1').getConfig(); // { mode: 'gptq/8/-1', source_name: 'float32' }
   * ```
   */
  override getConfig(): Record<string, unknown> {
    return { mode: `gptq/${this.weightBits}/${this.groupSize}`, source_name: this._sourceName };
  }

  /**
   * `new GPTQDTypePolicy(config.mode, config.source_name)`.
   * @example
   * ```ts
   * GPTQDTypePolicy.fromConfig({ mode: 'gptq/4/8', source_name: 'float32' }).groupSize; // 8
   * ```
   */
  static override fromConfig(config: Record<string, unknown>): GPTQDTypePolicy {
    const c = checkDict(config);
    return new GPTQDTypePolicy(c.mode as string, c.source_name as string | null | undefined);
  }

  /**
   * Also compares bits and group size.
   * @example
   * ```ts
   * new GPTQDTypePolicy('gptq/4/128').equals(new GPTQDTypePolicy('gptq/4/64')); // false
   * ```
   */
  override equals(other: unknown): boolean {
    if (!super.equals(other)) return false;
    const o = other as GPTQDTypePolicy;
    return o.weightBits === this.weightBits && o.groupSize === this.groupSize;
  }
}

/**
 * Builds a quantized policy from a name such as `'int8_from_float32'`, `'int4/128_from_mixed_bfloat16'`,
 * `'int4_from_float32'` (legacy, per-channel), `'gptq/4/128_from_float32'` or `'float8_from_float32'` (the
 * Keras `_get_quantized_dtype_policy_by_str` grammar).
 * @internal
 */
export function _quantizedPolicyFromString(policy: string): QuantizedDTypePolicy {
  const parts = policy.split('_from_');
  if (parts.length !== 2) {
    throw new InvalidArgumentError(
      `Expected a name of the form '<mode>_from_<source>' for policy but received ${describe(policy)}: ` +
        'Cannot convert `policy` into a valid pair (`mode`, `source_name`) to instantiate `QuantizedDTypePolicy`. ' +
        `Received: policy=${policy}`,
    );
  }
  const [mode, source] = parts;
  if (policy.startsWith('int4')) return mode.includes('/') ? new Int4DTypePolicy(mode, source) : new QuantizedDTypePolicy(mode as QuantizationMode, source);
  if (policy.startsWith('gptq')) return new GPTQDTypePolicy(mode, source);
  if (policy.startsWith('float8')) return new QuantizedFloat8DTypePolicy(mode as 'float8', source);
  if (policy.startsWith('int8')) return new QuantizedDTypePolicy(mode as QuantizationMode, source);
  const base = mode.split('/')[0];
  throw new UnsupportedError(
    `Expected one of ${_modesRepr()} for the mode of policy but received '${base}': Keras's '${base}' mode is not implemented by quantkit`,
  );
}

/**
 * True when `name` starts like a quantized policy name (one of Keras's modes, including those quantkit lacks).
 * @internal
 */
export function _looksQuantized(name: string): boolean {
  return [...QUANTIZATION_MODES, 'ternary', 'awq'].some((m) => name.startsWith(m));
}

_registerBuiltin(DTypePolicy, { module: 'keras', kind: 'dtype_policy' });
_registerBuiltin(DTypePolicy, { module: 'keras', className: 'FloatDTypePolicy', alias: true });
_registerBuiltin(QuantizedDTypePolicy, { module: 'keras.dtype_policies' });
_registerBuiltin(QuantizedFloat8DTypePolicy, { module: 'keras.dtype_policies' });
_registerBuiltin(Int4DTypePolicy, { module: 'keras.dtype_policies' });
_registerBuiltin(GPTQDTypePolicy, { module: 'keras.dtype_policies' });
