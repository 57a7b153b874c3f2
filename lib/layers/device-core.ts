/**
 * Device placement shared by `Dense` and `EinsumDense` (`Layer.to('cuda')`): what a projection uploads
 * ({@link residentSourceOf}) and the layer's device copies, re-uploaded when the weights they were made from change
 * ({@link ResidentSlot}).
 * @internal
 * @packageDocumentation
 */
import { ResidentProjection, ResidentSource } from '../cuda/resident';
import { InvalidArgumentError, UnsupportedError } from '../errors';
import type { Quantizer } from '../quantizers';
import { activationQuantOf, QuantState } from './dense-core';
import { GptqState, gptqRuntime } from './gptq-core';

/** The weights of one 2-D projection of a layer, in whichever form the layer holds them. */
export interface ProjectionWeights {
  floatKernel: Float32Array | null;
  qstate: QuantState | null;
  gptq: GptqState | null;
  inputsQuantizer: Quantizer | null;
  float8InputScale: number | null;
  layerName: string;
}

/**
 * The host form a projection uploads in (its storage format as is; GPTQ in its runtime layout).
 * @throws UnsupportedError for a custom activation quantizer (no CUDA implementation)
 * @example
 * ```ts
 * const src = await residentSourceOf({ floatKernel: w, qstate: null, gptq: null, inputsQuantizer: null, float8InputScale: null, layerName: 'd' });
 * ```
 */
export async function residentSourceOf(p: ProjectionWeights): Promise<ResidentSource> {
  if (p.floatKernel) return { format: 'float32', kernel: p.floatKernel };
  if (p.gptq) {
    const rt = await gptqRuntime(p.gptq);
    return { format: 'gptq', bits: p.gptq.bits, kernel: rt.wq, scale: rt.scale, zero: rt.zero, groupSize: rt.group, perm: rt.perm };
  }
  const st = p.qstate;
  if (!st) throw new InvalidArgumentError(`Layer '${p.layerName}' has no weights to move to a device`);
  const act = activationQuantOf(st, p.inputsQuantizer);
  if (act === 'custom') {
    throw new UnsupportedError(
      `Layer '${p.layerName}' quantizes its activations with a custom quantizer (${p.inputsQuantizer?.constructor.name}), which has no CUDA implementation; use an AbsMaxQuantizer or keep the layer on 'cpu'`,
    );
  }
  switch (st.mode) {
    case 'int8':
      return { format: 'int8', kernel: st.kernel.data, scale: st.scale.data, activation: act };
    case 'int4':
      return st.blockSize === null
        ? { format: 'int4', kernel: st.kernel.data, scale: st.scale.data, activation: act }
        : { format: 'int4-grouped', kernel: st.kernel.data, scale: st.scale.data, zero: st.zero.data, groupSize: st.blockSize };
    case 'float8':
      return { format: 'float8', kernel: st.kernel.data as Uint8Array, scale: st.kernelScale, inputScale: p.float8InputScale };
  }
}

/**
 * A layer's device copies of its projections, keyed by what they were made from: {@link ResidentSlot.get} returns
 * the current copies while the key (device, kernel tensors, states, bias, quantizer, ...) is unchanged by identity,
 * else drops them and uploads again (quantize, loadWeights or Variable.assign on a layer on the device).
 * @example
 * ```ts
 * const slot = new ResidentSlot();
 * const [proj] = await slot.get([0, kernel], async () => [await ResidentProjection.upload(src, K, N, null, 0)]);
 * slot.drop(); // frees them
 * ```
 */
export class ResidentSlot {
  private entry: { key: readonly unknown[]; projs: Promise<ResidentProjection[]>; done: ResidentProjection[] | null } | null = null;

  get(key: readonly unknown[], make: () => Promise<ResidentProjection[]>): Promise<ResidentProjection[]> {
    const cur = this.entry;
    if (cur && cur.key.length === key.length && cur.key.every((v, i) => v === key[i])) return cur.projs;
    this.drop();
    const projs = make();
    const entry: { key: readonly unknown[]; projs: Promise<ResidentProjection[]>; done: ResidentProjection[] | null } = { key, projs, done: null };
    this.entry = entry;
    projs.then(
      (ps) => {
        entry.done = ps;
      },
      () => {
        if (this.entry === entry) this.entry = null;
      },
    );
    return projs;
  }

  /** Frees the copies now (or when their uploads settle, if they are still running). */
  drop(): void {
    const e = this.entry;
    this.entry = null;
    if (!e) return;
    if (e.done) e.done.forEach((p) => p.dispose());
    else e.projs.then((ps) => ps.forEach((p) => p.dispose()), () => undefined);
  }
}

/**
 * Uploads several projections; if one fails, the ones already uploaded are freed.
 * @example
 * ```ts
 * const projs = await uploadAll([() => ResidentProjection.upload(a, K, N, null, 0), () => ResidentProjection.upload(b, K, N, null, 0)]);
 * ```
 */
export async function uploadAll(makers: Array<() => Promise<ResidentProjection>>): Promise<ResidentProjection[]> {
  const out: ResidentProjection[] = [];
  try {
    for (const m of makers) out.push(await m());
    return out;
  } catch (err) {
    for (const p of out) p.dispose();
    throw err;
  }
}
