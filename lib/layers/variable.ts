/**
 * `Variable`: a named tensor owned by a layer (Keras `keras.Variable`). Names follow Keras (`kernel`, `bias`,
 * `kernel_scale`, …) so checkpoints map one to one; `path` is `<layer path>/<name>`.
 * @packageDocumentation
 */
import type { DType } from '../dtype';
import { DisposedError, ShapeMismatchError } from '../errors';
import { Tensor } from '../tensor';

/**
 * A layer weight.
 * @example
 * ```ts
 * const v = new Variable('kernel', new Tensor('float32', [2, 3]), { trainable: true });
 * v.shape; // [2, 3]
 * ```
 */
export class Variable<D extends DType = DType> {
  /** Keras variable name, e.g. `kernel`. */
  readonly name: string;
  /** Whether an optimizer would update it (quantized integer kernels are not trainable, as in Keras). */
  readonly trainable: boolean;
  /** Owning layer's path + `/` + name (set when the layer tracks it). */
  path: string;
  private _value: Tensor<D>;
  private _disposed = false;

  constructor(name: string, value: Tensor<D>, options: { trainable?: boolean; path?: string } = {}) {
    this.name = name;
    this._value = value;
    this.trainable = options.trainable ?? true;
    this.path = options.path ?? name;
  }

  /**
   * The current value.
   * @throws DisposedError after {@link Variable.dispose}
   */
  get value(): Tensor<D> {
    if (this._disposed) throw new DisposedError(`Expected a live variable for '${this.path}' but it was disposed (its layer's dispose() was called)`);
    return this._value;
  }

  /** dtype of the value (still known after dispose). */
  get dtype(): D {
    return this._value.dtype;
  }

  /** Shape of the value (still known after dispose). */
  get shape(): readonly number[] {
    return this._value.shape;
  }

  /** True after {@link Variable.dispose}. */
  get disposed(): boolean {
    return this._disposed;
  }

  /**
   * Drops the value's memory (the data is replaced by an empty container; dtype and shape stay for messages).
   * Later reads of {@link Variable.value} throw `QK_DISPOSED`. Calls already running keep the data they hold.
   * @example
   * ```ts
   * v.dispose();
   * v.value; // throws DisposedError
   * ```
   */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    const Ctor = this._value.data.constructor as new (n: number) => Tensor<D>['data'];
    this._value = { dtype: this._value.dtype, shape: this._value.shape, data: new Ctor(0) } as unknown as Tensor<D>;
  }

  /**
   * Replaces the value with a tensor of the same dtype and shape.
   * @example
   * ```ts
   * v.assign(new Tensor('float32', [2, 3], data));
   * ```
   */
  assign(value: Tensor<D>): void {
    if (this._disposed) throw new DisposedError(`Expected a live variable for '${this.path}' but it was disposed`);
    if (value.dtype !== this._value.dtype || value.shape.length !== this._value.shape.length || value.shape.some((d, i) => d !== this._value.shape[i])) {
      throw new ShapeMismatchError(
        `Expected a ${this._value.dtype} tensor of shape [${this._value.shape.join(', ')}] for variable '${this.path}' but received a ${value.dtype} tensor of shape [${value.shape.join(', ')}]`,
      );
    }
    this._value = value;
  }
}
