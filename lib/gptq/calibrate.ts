/**
 * The GPTQ calibration driver behind `model.quantize('gptq', { config })` (spec §3.4, with the Keras bugs of
 * §3.12 fixed): calibration windows go through the pre-block layers; then, block after block, every target
 * `Dense` / `EinsumDense` is calibrated on the inputs it really receives when the block runs (hooks inside the
 * layers' float forward, after any reshaping, so the Hessian is the Hessian of what the projection multiplies),
 * sub-layers in execution order so that later ones see earlier ones already quantized (`trueSequential`), and
 * the next block's inputs are produced by the quantized block.
 * @packageDocumentation
 */
import { AbortedError, InvalidArgumentError } from '../errors';
import { denseForward } from '../ops/dense';
import type { GPTQConfig } from '../quantizers';
import { Tensor } from '../tensor';
import { Dense } from '../layers/dense';
import { EinsumDense } from '../layers/einsum';
import { gptqStateFromResult, GptqBits } from '../layers/gptq-core';
import type { Layer } from '../layers/layer';
import type { GptqLayerEntry } from '../models/report';
import { calibrationWindows } from './data';
import { checkGptqDevice, GptqDevice, GptqHessian, gptqQuantizeMatrix } from './matrix';

/** A progress event of GPTQ calibration. */
export interface GptqProgress {
  /** `'block'` when a block starts, `'layer'` after a layer was quantized, `'done'` at the end. */
  phase: 'block' | 'layer' | 'done';
  /** 0-based index of the current block. */
  block: number;
  /** Number of blocks. */
  blocks: number;
  /** Path of the layer just quantized (`phase: 'layer'`). */
  layer?: string;
  /** Layers quantized so far / in total. */
  layersDone: number;
  layersTotal: number;
  /** Seconds since calibration started. */
  seconds: number;
}

/** Options of the calibration run (from `model.quantize('gptq', { config, onProgress, signal })`). */
export interface GptqRunOptions {
  /** Called on every block start and after every layer. */
  onProgress?: ((p: GptqProgress) => void) | null;
  /** Aborting stops calibration at the next step and leaves the model unchanged (the call rejects with AbortedError). */
  signal?: AbortSignal | null;
  /**
   * Calibrate a block's sub-layers one group at a time in execution order (layers fed the very same tensor,
   * e.g. query/key/value, form one group), each after the previous groups were quantized; default true.
   * `false` = all sub-layers of a block from one pass of the float block (Keras's behaviour).
   */
  trueSequential?: boolean;
  /** Seed of the calibration windows (default 42). */
  seed?: number;
  /**
   * Where the Hessians are accumulated and GPTQ runs: 'cpu' (default) or a CUDA device ('cuda', 'cuda:N'),
   * bit-identical results (cuda/gptq.cu). Rejects with `QK_UNSUPPORTED` without a device or for `perChannel: false`.
   */
  device?: GptqDevice;
}

/** What the driver needs from the model. */
export interface GptqRunInput {
  config: GPTQConfig;
  preBlockLayers: Layer[];
  sequentialBlocks: Layer[];
  /** The Dense / EinsumDense layers to quantize (already filtered). */
  targets: Layer[];
  /** Sub-layers of a layer (for finding the targets inside a block). */
  descendants: (layer: Layer) => Layer[];
}

/** The outcome: calibrated layers (in order) and layers that were never called by their block. */
export interface GptqRunResult {
  entries: GptqLayerEntry[];
  notCalled: Layer[];
}

type Projection = Dense | EinsumDense;

/** Thrown inside a hook to cut a block's forward short once every layer of the group has its inputs. */
class StopForward extends Error {}

const ERROR_ROWS = 512;

function concatRows(parts: Tensor[]): Tensor {
  if (parts.length === 1) return parts[0];
  const first = parts[0];
  const rest = first.shape.slice(1);
  const rows = parts.reduce((a, p) => a + p.shape[0], 0);
  const out = new Tensor(first.dtype, [rows, ...rest]);
  let offset = 0;
  for (const p of parts) {
    if (p.dtype !== first.dtype || p.shape.slice(1).some((d, i) => d !== rest[i])) {
      throw new InvalidArgumentError(
        `Expected every calibration sample to give the same dtype and trailing shape [${rest.join(', ')}] but received a ${p.dtype} tensor of shape [${p.shape.join(', ')}]`,
      );
    }
    (out.data as unknown as { set(a: ArrayLike<number>, o: number): void }).set(p.data as unknown as ArrayLike<number>, offset);
    offset += p.data.length;
  }
  return out;
}

function firstOutput(y: unknown, what: string): Tensor {
  const t = Array.isArray(y) ? y[0] : y;
  if (!(t instanceof Tensor)) throw new InvalidArgumentError(`Expected ${what} to return a Tensor (or a list whose first item is one) during GPTQ calibration`);
  return t;
}

function floatKernel(layer: Projection): Tensor<'float32'> {
  if (layer instanceof Dense) {
    if (!layer.kernel) throw new InvalidArgumentError(`Layer '${layer.path}' has no float kernel to quantize`);
    return layer.kernel.value;
  }
  return layer._gptqFloatKernel();
}

function inFeatures(layer: Projection): number {
  return floatKernel(layer).shape[0];
}

/**
 * Runs GPTQ calibration. On any error or abort every layer quantized so far is put back as it was.
 * @internal
 */
export async function runGptqCalibration(input: GptqRunInput, options: GptqRunOptions = {}): Promise<GptqRunResult> {
  const { config } = input;
  const signal = options.signal ?? null;
  const onProgress = options.onProgress ?? null;
  const trueSequential = options.trueSequential ?? true;
  if (onProgress !== null && typeof onProgress !== 'function') {
    throw new InvalidArgumentError(`Expected a function for onProgress but received ${typeof onProgress}`);
  }
  if (signal !== null && (typeof signal !== 'object' || typeof (signal as AbortSignal).aborted !== 'boolean')) {
    throw new InvalidArgumentError('Expected an AbortSignal for signal');
  }
  checkGptqDevice(options.device);
  if (config.dataset === null || config.dataset === undefined) {
    throw new InvalidArgumentError(
      'GPTQ quantization requires a dataset (and a tokenizer for text samples): pass them in the GPTQConfig ({ dataset, tokenizer })',
    );
  }
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  const checkAbort = () => {
    if (signal?.aborted) throw new AbortedError('GPTQ calibration was aborted; the model is unchanged', { cause: signal.reason });
  };
  const targetSet = new Set<Layer>(input.targets);
  const restore: Array<() => void> = [];
  const entries: GptqLayerEntry[] = [];
  const notCalled: Layer[] = [];
  const hooked = new Set<Projection>();
  const layersTotal = input.targets.length;
  try {
    checkAbort();
    const windows = await calibrationWindows(config.dataset, config.tokenizer, {
      numSamples: config.numSamples,
      sequenceLength: config.sequenceLength,
      seed: options.seed ?? 42,
    });
    const bs = config.calibrationBatchSize;
    let chunks: Tensor[] = [];
    for (let i = 0; i < windows.length; i += bs) {
      const part = windows.slice(i, i + bs);
      const ids = new Int32Array(part.length * config.sequenceLength);
      part.forEach((w, j) => ids.set(w, j * config.sequenceLength));
      chunks.push(new Tensor('int32', [part.length, config.sequenceLength], ids));
    }
    for (const layer of input.preBlockLayers) {
      const next: Tensor[] = [];
      for (const c of chunks) next.push(firstOutput(await layer.apply(c), `pre-block layer '${layer.path}'`));
      chunks = next;
      checkAbort();
    }

    const blocks = input.sequentialBlocks;
    for (let b = 0; b < blocks.length; b++) {
      checkAbort();
      const block = blocks[b];
      onProgress?.({ phase: 'block', block: b, blocks: blocks.length, layersDone: entries.length, layersTotal, seconds: seconds() });
      const inBlock = [block, ...input.descendants(block)].filter(
        (l): l is Projection => targetSet.has(l) && (l instanceof Dense || l instanceof EinsumDense),
      );
      const runBlock = async (x: Tensor) => firstOutput(await block.apply(x), `block '${block.path}'`);

      if (inBlock.length > 0) {
        // Discovery: which targets run, in which order, on which tensor, how often per forward.
        const order: Projection[] = [];
        const seenInput = new Map<Projection, Tensor>();
        const callsPerForward = new Map<Projection, number>();
        for (const l of inBlock) {
          hooked.add(l);
          l._gptqCapture = async (x) => {
            if (!seenInput.has(l)) {
              order.push(l);
              seenInput.set(l, x);
            }
            callsPerForward.set(l, (callsPerForward.get(l) ?? 0) + 1);
          };
        }
        await runBlock(chunks[0]);
        for (const l of inBlock) {
          l._gptqCapture = null;
          if (!seenInput.has(l)) notCalled.push(l);
        }
        // Groups: consecutive layers fed the same inputs (e.g. query/key/value), or everything at once without
        // trueSequential.
        const groups: Projection[][] = [];
        for (const l of order) {
          const last = groups[groups.length - 1];
          if (last && (!trueSequential || sameValues(seenInput.get(last[0])!, seenInput.get(l)!))) last.push(l);
          else groups.push([l]);
        }

        for (const group of groups) {
          checkAbort();
          // With trueSequential a group's layers receive the same inputs, so they share one Hessian.
          type Acc = { h: GptqHessian; sample: Float32Array[]; sampleRows: number; owner: Projection };
          const acc = new Map<Projection, Acc>();
          for (const l of group) {
            const shared = trueSequential ? acc.get(group[0]) : undefined;
            acc.set(l, shared ?? { h: new GptqHessian(inFeatures(l), { device: options.device }), sample: [], sampleRows: 0, owner: l });
          }
          let pending = 0;
          const expected = group.reduce((a, l) => a + (callsPerForward.get(l) ?? 1), 0);
          for (const l of group) {
            l._gptqCapture = async (x) => {
              const a = acc.get(l)!;
              if (a.owner === l) await a.h.update(x);
              if (a.owner === l && a.sampleRows < ERROR_ROWS) {
                const K = x.shape[1];
                const take = Math.min(ERROR_ROWS - a.sampleRows, x.shape[0]);
                a.sample.push(Float32Array.from((x.data as Float32Array).subarray(0, take * K)));
                a.sampleRows += take;
              }
              pending++;
              // The rest of the block is not needed for this group (the next block's inputs are computed after).
              if (pending >= expected) throw new StopForward();
            };
          }
          for (const c of chunks) {
            pending = 0;
            try {
              await runBlock(c);
            } catch (err) {
              if (!(err instanceof StopForward)) throw err;
            }
            checkAbort();
          }
          for (const l of group) l._gptqCapture = null;

          for (let gi = 0; gi < group.length; gi++) {
            const l = group[gi];
            const start = performance.now();
            const a = acc.get(l)!;
            const rows = a.h.rows;
            const finalH = await a.h.finalize();
            // the last user of a shared Hessian may consume it; the others work on a copy
            const lastUser = group.slice(gi + 1).every((o) => acc.get(o) !== a);
            const H = lastUser ? finalH : Float64Array.from(finalH);
            const W = floatKernel(l);
            const r = await gptqQuantizeMatrix(W, H, {
              weightBits: config.weightBits,
              groupSize: config.groupSize,
              symmetric: config.symmetric,
              activationOrder: config.activationOrder,
              hessianDamping: config.hessianDamping,
              perChannel: config.perChannel,
              consumeHessian: true,
              device: options.device,
            });
            acc.delete(l);
            const relErr = await relativeOutputError(a.sample, a.sampleRows, W, r.dequantized as Tensor<'float32'>);
            const state = await gptqStateFromResult(config.weightBits as GptqBits, config.groupSize, r.levels, r.scale, r.zero, r.gIdx);
            restore.push(l._gptqRestorePoint());
            l._installGptq(state, config);
            entries.push({
              path: l.path,
              bits: config.weightBits,
              groupSize: config.groupSize,
              damping: r.dampingUsed,
              dampingTries: r.dampingTries,
              deadInputs: r.deadInputs,
              loss: r.loss,
              relativeOutputError: relErr,
              rows,
              seconds: (performance.now() - start) / 1000,
            });
            onProgress?.({ phase: 'layer', block: b, blocks: blocks.length, layer: l.path, layersDone: entries.length, layersTotal, seconds: seconds() });
          }
        }
      }
      if (b < blocks.length - 1) {
        const next: Tensor[] = [];
        for (const c of chunks) next.push(await runBlock(c));
        chunks = next;
      }
    }
    onProgress?.({ phase: 'done', block: blocks.length - 1, blocks: blocks.length, layersDone: entries.length, layersTotal, seconds: seconds() });
    return { entries, notCalled };
  } catch (err) {
    for (let i = restore.length - 1; i >= 0; i--) restore[i]();
    throw err;
  } finally {
    for (const l of hooked) l._gptqCapture = null;
  }
}

function sameValues(a: Tensor, b: Tensor): boolean {
  if (a === b) return true;
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false;
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i] && !(x[i] !== x[i] && y[i] !== y[i])) return false;
  return true;
}

/** `‖XW − XŴ‖² / ‖XW‖²` on the sampled rows (0 when there are none or XW is 0). */
async function relativeOutputError(sample: Float32Array[], rows: number, W: Tensor<'float32'>, Wq: Tensor<'float32'>): Promise<number> {
  if (rows === 0) return 0;
  const [K, N] = W.shape;
  const x = new Float32Array(rows * K);
  let off = 0;
  for (const s of sample) {
    x.set(s, off);
    off += s.length;
  }
  const X = new Tensor('float32', [rows, K], x);
  const y = (await denseForward(X, { format: 'float32', kernel: W.data }, N, null)).data;
  const yq = (await denseForward(X, { format: 'float32', kernel: Wq.data }, N, null)).data;
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    const d = y[i] - yq[i];
    num += d * d;
    den += y[i] * y[i];
  }
  return den > 0 ? num / den : 0;
}
