/**
 * The concurrency gate of a model: a readers–writer lease that makes `quantize()`, `loadWeights()` and
 * `dispose()` atomic with respect to `predict()` / `apply()` / `generate()` / `perplexity()` / `save()`.
 *
 * - Reading calls (inference, saving) hold a shared lease for their whole duration; any number run at once.
 * - Changing calls (quantize, loadWeights, dispose) take the lease exclusively: they wait until the reading calls
 *   in flight have finished, and reading calls that start meanwhile wait until the change has finished (writers
 *   are preferred, so a steady stream of inference cannot starve a quantize). Every call therefore sees the
 *   model entirely before or entirely after the change, never a mix.
 * - Calls nested inside a call that already holds the model's lease (predict → apply, perplexity → predict,
 *   quantize → GPTQ calibration forward passes) pass straight through; this is tracked with `AsyncLocalStorage`,
 *   so it follows the async call chain and never deadlocks on re-entry.
 * - After `dispose()` has begun, new calls reject at once with `QK_DISPOSED`; calls already waiting for the lease
 *   (a predict queued behind a quantize, or a quantize waiting for calls in flight) reject with `QK_DISPOSED` too;
 *   calls holding the lease (in flight) complete normally.
 *
 * @example
 * ```ts
 * const gate = new ModelGate('mlp');
 * const y = await gate.read(() => model.call(x));      // shared
 * await gate.write(() => quantizeAllLayers(model));    // exclusive
 * ```
 * @packageDocumentation
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { DisposedError } from '../errors';

/** A lease taken by one call; callbacks that outlive the call (timers it started) see it ended. */
interface Lease {
  active: boolean;
}

/** The leases the current async call chain took, by gate. */
const held = new AsyncLocalStorage<ReadonlyMap<ModelGate, Lease>>();

/**
 * A readers–writer lease with writer preference and re-entrancy along the async call chain (see the module
 * description).
 * @example
 * ```ts
 * const gate = new ModelGate('my_model');
 * await Promise.all([gate.read(a), gate.read(b), gate.write(c)]); // a and b overlap; c runs alone
 * ```
 */
export class ModelGate {
  private readers = 0;
  private writing = false;
  private writersWaiting = 0;
  private waiters: Array<() => void> = [];
  private _disposed = false;
  private _version = 0;

  /** @param owner - the model's name, used in error messages */
  constructor(readonly owner: string) {}

  /** True once {@link ModelGate.markDisposed} was called. */
  get disposed(): boolean {
    return this._disposed;
  }

  /** Counts completed exclusive calls (a change of the model's weights or state). */
  get version(): number {
    return this._version;
  }

  /** Reading calls in flight (not counting nested ones). */
  get activeReaders(): number {
    return this.readers;
  }

  /** True while this async call chain holds the lease (shared or exclusive) and that call has not ended. */
  holds(): boolean {
    return held.getStore()?.get(this)?.active ?? false;
  }

  /** Rejects new calls from now on (with `QK_DISPOSED`) and wakes the waiting ones so that they reject too. */
  markDisposed(): void {
    this._disposed = true;
    this.wake();
  }

  /** The error for a call on a disposed model. */
  disposedError(what: string): DisposedError {
    return new DisposedError(`Expected a live model for ${what} of model '${this.owner}' but it was disposed (dispose() was called)`);
  }

  /**
   * Runs `fn` holding a shared lease.
   * @param what - the call's name for error messages (e.g. 'predict()')
   * @throws DisposedError when the model is (or becomes, while waiting) disposed
   */
  async read<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.holds()) return fn();
    if (this._disposed) throw this.disposedError(what);
    while (this.writing || this.writersWaiting > 0) {
      await this.waitTurn();
      if (this._disposed) throw this.disposedError(what);
    }
    this.readers++;
    try {
      return await this.runHolding(fn);
    } finally {
      this.readers--;
      if (this.readers === 0) this.wake();
    }
  }

  /**
   * Runs `fn` holding the lease exclusively (after the calls in flight have finished).
   * @param what - the call's name for error messages
   * @param options - `evenIfDisposed`: run even on a disposed model (dispose itself)
   * @throws DisposedError when the model is (or becomes, while waiting) disposed
   */
  async write<T>(what: string, fn: () => Promise<T>, options: { evenIfDisposed?: boolean } = {}): Promise<T> {
    if (this.holds()) return fn();
    const check = () => {
      if (this._disposed && !options.evenIfDisposed) throw this.disposedError(what);
    };
    check();
    this.writersWaiting++;
    try {
      while (this.writing || this.readers > 0) {
        await this.waitTurn();
        check();
      }
    } finally {
      this.writersWaiting--;
      // readers held back by this waiting writer re-check (they stay back if another writer is waiting)
      this.wake();
    }
    this.writing = true;
    try {
      return await this.runHolding(fn);
    } finally {
      this.writing = false;
      this._version++;
      this.wake();
    }
  }

  private async runHolding<T>(fn: () => Promise<T>): Promise<T> {
    const lease: Lease = { active: true };
    const next = new Map(held.getStore() ?? []);
    next.set(this, lease);
    try {
      return await held.run(next, fn);
    } finally {
      lease.active = false;
    }
  }

  private waitTurn(): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
