/**
 * Element-wise activations (Keras names), applied in place on float32 data.
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';

/** Activation names Dense/EinsumDense accept. */
export type ActivationName = 'linear' | 'relu' | 'gelu' | 'gelu_approximate' | 'silu' | 'swish' | 'tanh' | 'sigmoid' | 'softmax';

const ACTIVATIONS: readonly ActivationName[] = ['linear', 'relu', 'gelu', 'gelu_approximate', 'silu', 'swish', 'tanh', 'sigmoid', 'softmax'];

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for gelu parity; use a series/continued fraction split.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = x;
    let term = x;
    const x2 = x * x;
    for (let n = 1; n < 60; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for |x| >= 2.5
  let f = ax;
  let c = ax;
  let d = 0;
  for (let n = 1; n < 100; n++) {
    const an = n / 2;
    d = ax + an * d;
    d = d === 0 ? 1e-300 : 1 / d;
    c = ax + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return x > 0 ? 1 - erfc : erfc - 1;
}

/**
 * Checks an activation name.
 * @example
 * ```ts
 * checkActivation('relu'); // 'relu'
 * ```
 */
export function checkActivation(name: unknown, argName = 'activation'): ActivationName {
  if (name === undefined || name === null) return 'linear';
  if (typeof name !== 'string' || !ACTIVATIONS.includes(name as ActivationName)) {
    throw new InvalidArgumentError(`Expected one of ${ACTIVATIONS.join(', ')} for ${argName} but received ${JSON.stringify(name)}`);
  }
  return name as ActivationName;
}

/**
 * Applies `name` in place to `data` seen as rows of `lastDim` (softmax is per row).
 * @example
 * ```ts
 * applyActivation('relu', new Float32Array([-1, 2]), 2); // [0, 2]
 * ```
 */
export function applyActivation(name: ActivationName, data: Float32Array, lastDim: number): Float32Array {
  const n = data.length;
  switch (name) {
    case 'linear':
      break;
    case 'relu':
      for (let i = 0; i < n; i++) if (data[i] < 0) data[i] = 0;
      break;
    case 'gelu':
      for (let i = 0; i < n; i++) data[i] = 0.5 * data[i] * (1 + erf(data[i] / Math.SQRT2));
      break;
    case 'gelu_approximate':
      for (let i = 0; i < n; i++) {
        const x = data[i];
        data[i] = 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
      }
      break;
    case 'silu':
    case 'swish':
      for (let i = 0; i < n; i++) data[i] = data[i] / (1 + Math.exp(-data[i]));
      break;
    case 'tanh':
      for (let i = 0; i < n; i++) data[i] = Math.tanh(data[i]);
      break;
    case 'sigmoid':
      for (let i = 0; i < n; i++) data[i] = 1 / (1 + Math.exp(-data[i]));
      break;
    case 'softmax':
      for (let r = 0; r + lastDim <= n && lastDim > 0; r += lastDim) {
        let m = -Infinity;
        for (let j = 0; j < lastDim; j++) m = Math.max(m, data[r + j]);
        let s = 0;
        for (let j = 0; j < lastDim; j++) {
          data[r + j] = Math.exp(data[r + j] - m);
          s += data[r + j];
        }
        for (let j = 0; j < lastDim; j++) data[r + j] /= s;
      }
      break;
  }
  return data;
}
