/**
 * Weight initializers (Keras names). Deterministic when a `seed` is given.
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import { Tensor } from '../tensor';
import { chargeAllocation } from '../alloc-budget';

/** An initializer name or a function `(shape) => Float32Array`. */
export type Initializer = 'glorot_uniform' | 'zeros' | 'ones' | 'uniform' | 'random_normal' | ((shape: readonly number[]) => Float32Array);

let globalSeed = 1337;

/**
 * A seeded uniform generator in [0, 1) (mulberry32).
 * @example
 * ```ts
 * const r = seededRandom(42); r(); // deterministic value in [0, 1)
 * ```
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Creates a float32 tensor of `shape` with initializer `init` (Keras fan-in/fan-out conventions for 2-D+ shapes:
 * fan_in = prod(shape[:-1]), fan_out = shape[-1]).
 * @example
 * ```ts
 * const k = initialize('glorot_uniform', [16, 8], 42);
 * ```
 */
export function initialize(init: Initializer, shape: readonly number[], seed?: number): Tensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  if (typeof init === 'function') {
    const data = init(shape);
    if (!(data instanceof Float32Array) || data.length !== n) {
      throw new InvalidArgumentError(`Expected the initializer to return a Float32Array of length ${n} but received ${data?.length}`);
    }
    return new Tensor('float32', shape, data);
  }
  chargeAllocation(n * 4, `float32 weights of shape [${shape.join(', ')}]`);
  const data = new Float32Array(n);
  const rand = seededRandom(seed ?? globalSeed++);
  switch (init) {
    case 'zeros':
      break;
    case 'ones':
      data.fill(1);
      break;
    case 'uniform':
      for (let i = 0; i < n; i++) data[i] = rand() * 0.1 - 0.05;
      break;
    case 'random_normal':
      for (let i = 0; i < n; i++) data[i] = 0.05 * Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
      break;
    case 'glorot_uniform': {
      const fanOut = shape.length ? shape[shape.length - 1] : 1;
      const fanIn = shape.length > 1 ? n / fanOut : 1;
      const limit = Math.sqrt(6 / Math.max(1, fanIn + fanOut));
      for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * limit;
      break;
    }
    default:
      throw new InvalidArgumentError(`Expected one of glorot_uniform, zeros, ones, uniform, random_normal or a function for initializer but received ${String(init)}`);
  }
  return new Tensor('float32', shape, data);
}
