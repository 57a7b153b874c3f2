/**
 * The layer class registry used to rebuild layers from Keras configs (`class_name` -> class). Built-in layers
 * register themselves; custom layers call {@link registerLayer} so `loadModel` can rebuild them by name.
 * @packageDocumentation
 */
import { InvalidArgumentError } from '../errors';
import type { Layer } from './layer';

/** A layer class with the static `fromConfig` every layer implements. */
export interface LayerClass {
  new (...args: never[]): Layer;
  fromConfig(config: Record<string, unknown>): Layer;
  name: string;
}

const registry = new Map<string, LayerClass>();

/**
 * Registers a layer class under `name` (default: the class name, which is what Keras writes as `class_name`).
 * @example
 * ```ts
 * class MyLayer extends Layer { static fromConfig(c) { return new MyLayer(c); } … }
 * registerLayer(MyLayer);
 * ```
 */
export function registerLayer(ctor: LayerClass, name: string = ctor.name): void {
  if (typeof ctor !== 'function' || typeof (ctor as { fromConfig?: unknown }).fromConfig !== 'function') {
    throw new InvalidArgumentError(`Expected a layer class with a static fromConfig(config) for ctor but received ${String(ctor)}`);
  }
  registry.set(name, ctor);
}

/**
 * The class registered under `name`, or undefined.
 * @example
 * ```ts
 * getLayerClass('Dense'); // Dense
 * ```
 */
export function getLayerClass(name: string): LayerClass | undefined {
  return registry.get(name);
}

/**
 * Names of all registered layer classes.
 * @example
 * ```ts
 * registeredLayerNames().includes('EinsumDense'); // true
 * ```
 */
export function registeredLayerNames(): string[] {
  return [...registry.keys()].sort();
}
