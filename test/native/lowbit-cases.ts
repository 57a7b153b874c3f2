// Random low-bit weights shared by the int8-compute path tests (lowbit-a8, lowbit-pack): levels in the GPTQ runtime
// layout (for bits 4 also the Keras int4 layout), float32 group scales, zero points (int8 in [-8, 7] for Keras int4,
// else uint8 levels), an optional bias.
import { randomF32, rng } from '../helpers';

export interface LowbitCase {
  M: number;
  N: number;
  K: number;
  bits: 2 | 3 | 4 | 8;
  keras: boolean;
  group: number;
  bias: boolean;
  seed: number;
}

export function makeLowbitCase(c: LowbitCase) {
  const r = rng(c.seed);
  const x = randomF32(c.M * c.K, c.seed + 1, 3);
  const rb = Math.ceil((c.bits * c.N) / 8);
  const w = new Uint8Array(c.K * rb);
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(r() * 256);
  // padding bits of the last byte are 0 in both layouts
  const used = c.bits * c.N - 8 * (rb - 1);
  if (rb > 0 && used < 8) for (let k = 0; k < c.K; k++) w[k * rb + rb - 1] &= (1 << used) - 1;
  const G = c.K === 0 ? 0 : Math.ceil(c.K / c.group);
  const scale = new Float32Array(G * c.N);
  for (let i = 0; i < scale.length; i++) scale[i] = Math.fround((0.01 + r()) * (r() < 0.5 ? -1 : 1));
  const zero = c.keras ? new Int8Array(G * c.N) : new Uint8Array(G * c.N);
  for (let i = 0; i < zero.length; i++) zero[i] = c.keras ? Math.floor(r() * 16) - 8 : Math.floor(r() * (1 << c.bits));
  const bias = c.bias ? randomF32(c.N, c.seed + 2) : null;
  return { x, w, scale, zero, bias, rb, G };
}
