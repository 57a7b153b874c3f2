/**
 * The decoder blocks of a `LlamaCausalLM` on a CUDA device with the activations and the KV cache on the device:
 * one upload of the embedded tokens, every block's RMSNorm, projections (device-resident weights), RoPE, KV-cache
 * write, attention, SiLU·mul and residual adds enqueued on one {@link DeviceQueue}, and one download of the last
 * hidden states. The final norm and the logits stay on the host.
 *
 * The KV cache lives on the device in a mirror of the host {@link LlamaKVCache}: created (uploading the host
 * arrays) at the first device step of a cache, reused while the cache advances only through device steps, written
 * back to the host arrays before a host step reads them ({@link syncCacheToHost}), and uploaded again at the next
 * device step after that.
 * @internal
 * @packageDocumentation
 */
import { DeviceQueue, QBuf } from '../cuda/queue';
import { cudaEmulated, ResidentProjection } from '../cuda/resident';
import type { RMSNormalization } from '../layers/normalization';
import type { LlamaDecoderBlock, LlamaKVCache } from './llama';

interface KvMirror {
  device: number;
  emulated: boolean;
  queue: DeviceQueue;
  k: QBuf[];
  v: QBuf[];
  /** cache.length the mirror holds (-1: outdated, upload again). */
  len: number;
  /** The device holds positions the host arrays do not. */
  hostStale: boolean;
}

const mirrors = new WeakMap<LlamaKVCache, KvMirror>();
const gains = new WeakMap<Float32Array, { queue: DeviceQueue; buf: QBuf }>();

/** One block's parts as the device step needs them, or null when some projection cannot run on the queue. */
async function blockParts(b: LlamaDecoderBlock): Promise<{ projs: ResidentProjection[]; attnGain: Float32Array; ffnGain: Float32Array } | null> {
  const p = b.sublayers;
  const projs: ResidentProjection[] = [];
  for (const d of [p.query, p.key, p.value, p.output, p.gate, p.up, p.down]) {
    const r = await d._deviceProjection();
    if (!r || !r._queueable()) return null;
    projs.push(r);
  }
  const gain = (n: RMSNormalization) => (n.scale as NonNullable<RMSNormalization['scale']>).value.data;
  return { projs, attnGain: gain(p.attnNorm), ffnGain: gain(p.ffnNorm) };
}

function gainBuf(q: DeviceQueue, g: Float32Array): QBuf {
  const cur = gains.get(g);
  if (cur && cur.queue.device === q.device && cur.queue.emulated === q.emulated) return cur.buf;
  const buf = q.alloc(g.length);
  q.upload(buf, g);
  gains.set(g, { queue: q, buf });
  return buf;
}

const queues = new Map<string, DeviceQueue>();
function queueFor(device: number): DeviceQueue {
  const key = `${device}:${cudaEmulated() ? 'emu' : 'cuda'}`;
  let q = queues.get(key);
  if (!q) {
    q = DeviceQueue.open(device);
    queues.set(key, q);
  }
  return q;
}

/** The device KV cache of `cache` on `q`, uploading the host arrays when there is none or it is outdated. */
function mirrorOf(q: DeviceQueue, cache: LlamaKVCache): KvMirror {
  let m = mirrors.get(cache);
  if (!m || m.device !== q.device || m.emulated !== q.emulated) {
    const n = cache.kvHeads * cache.maxSeq * cache.headDim;
    m = {
      device: q.device,
      emulated: q.emulated,
      queue: q,
      k: cache.layers.map(() => q.alloc(n)),
      v: cache.layers.map(() => q.alloc(n)),
      len: -1,
      hostStale: false,
    };
    mirrors.set(cache, m);
  }
  if (m.len !== cache.length) {
    cache.layers.forEach((l, i) => {
      q.upload(m!.k[i], l.k);
      q.upload(m!.v[i], l.v);
    });
    m.len = cache.length;
  }
  return m;
}

/**
 * Makes the host arrays of `cache` current (downloads what device steps wrote) before a host step reads them; the
 * next device step then uploads the cache again. No-op for a cache that never ran on a device.
 * @example
 * ```ts
 * await syncCacheToHost(cache); // before running blocks on the host with this cache
 * ```
 */
export async function syncCacheToHost(cache: LlamaKVCache): Promise<void> {
  const m = mirrors.get(cache);
  if (!m) return;
  if (m.hostStale) {
    for (let l = 0; l < cache.layers.length; l++) {
      await m.queue.download(m.k[l], cache.layers[l].k);
      await m.queue.download(m.v[l], cache.layers[l].v);
    }
    m.hostStale = false;
  }
  m.len = -1;
}

/**
 * Runs `blocks` on device `device` for one sequence: `x` float32 [T, D] (the embedded new tokens at positions
 * `cache.length ..`), KV in `cache` (which the caller advances by T afterwards). Returns the hidden states [T, D],
 * or null when a block cannot run there (a projection not on the device or needing a host-side step; the caller
 * then runs the host path).
 * @example
 * ```ts
 * const h = await deviceForwardBlocks(model.decoderBlocks, 0, x.data, T, cache);
 * ```
 */
export async function deviceForwardBlocks(blocks: readonly LlamaDecoderBlock[], device: number, x: Float32Array, T: number, cache: LlamaKVCache): Promise<Float32Array | null> {
  if (cache.batch !== 1 || blocks.length !== cache.layers.length || T < 1) return null;
  const parts = [];
  for (const b of blocks) {
    const p = await blockParts(b);
    if (!p) return null;
    parts.push(p);
  }
  const b0 = blocks[0];
  const D = parts[0].projs[0].K;
  const H = b0.numQueryHeads;
  const KV = b0.numKeyValueHeads;
  const hd = D / H;
  const I = b0.intermediateDim;
  const maxSeq = cache.maxSeq;
  const pos0 = cache.length;
  const q = queueFor(device);
  const m = mirrorOf(q, cache);
  const scratch: QBuf[] = [];
  const alloc = (n: number) => {
    const b = q.alloc(n);
    scratch.push(b);
    return b;
  };
  try {
    const xb = alloc(T * D);
    q.upload(xb, x);
    const pos = alloc(T);
    q.upload(pos, Int32Array.from({ length: T }, (_, t) => pos0 + t));
    const h = alloc(T * D);
    const qb = alloc(T * H * hd);
    const kb = alloc(T * KV * hd);
    const vb = alloc(T * KV * hd);
    const att = alloc(T * H * hd);
    const o = alloc(T * D);
    const g = alloc(T * I);
    const u = alloc(T * I);
    const att_scratch = alloc(T * H * (pos0 + T));
    for (let l = 0; l < blocks.length; l++) {
      const blk = blocks[l];
      const [pq, pk, pv, po, pg, pu, pd] = parts[l].projs;
      const eps = blk.layerNormEpsilon;
      const theta = blk.ropeMaxWavelength;
      await q.rmsnorm(xb, gainBuf(q, parts[l].attnGain), T, D, eps, h);
      await pq._enqueue(q, h, T, qb);
      await pk._enqueue(q, h, T, kb);
      await pv._enqueue(q, h, T, vb);
      await q.rope(qb, pos, T, H, hd, theta);
      await q.rope(kb, pos, T, KV, hd, theta);
      await q.kvWrite(kb, vb, pos, T, KV, hd, maxSeq, m.k[l], m.v[l]);
      await q.attention(qb, m.k[l], m.v[l], att, att_scratch, T, H, KV, hd, maxSeq, pos0);
      await po._enqueue(q, att, T, o);
      await q.add(xb, o, T * D);
      await q.rmsnorm(xb, gainBuf(q, parts[l].ffnGain), T, D, eps, h);
      await pg._enqueue(q, h, T, g);
      await pu._enqueue(q, h, T, u);
      await q.siluMul(g, u, g, T * I);
      await pd._enqueue(q, g, T, o);
      await q.add(xb, o, T * D);
    }
    const out = new Float32Array(T * D);
    await q.download(xb, out);
    m.len = pos0 + T;
    m.hostStale = true;
    return out;
  } catch (err) {
    m.len = -1; // what the queue wrote into the cache before failing is unknown: upload again next time
    await q.download(null, null).catch(() => undefined); // nothing queued may still use the scratch below
    throw err;
  } finally {
    for (const b of scratch) q.free(b);
  }
}
