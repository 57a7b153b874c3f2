/**
 * What this installation of quantkit can do: CPU ISA in use, variants available, threads, CUDA.
 * @packageDocumentation
 */
import type { IsaName, NativeCapabilities } from './native/binding';
import { loadNative } from './native/load';

/** Result of {@link capabilities}. */
export interface Capabilities {
  /** The ISA whose kernels run by default (the best available, or `QK_FORCE_ISA`). */
  isa: IsaName;
  /** The best ISA this CPU supports in this build. */
  bestIsa: IsaName;
  /** Every ISA variant that can run here. */
  isasAvailable: IsaName[];
  /** Every ISA variant compiled into the binary. */
  isasCompiled: IsaName[];
  /** Threads used by parallel kernels (`QK_NUM_THREADS`, default: the number of cores). */
  threads: number;
  /** CPU features detected (CPUID + OS support). */
  cpuFeatures: Record<string, boolean>;
  /** Set when `QK_FORCE_ISA` could not be honoured. */
  warning: string | null;
  /** Which build system produced the binary (`cmake-js` or `node-gyp`). */
  builtBy: string;
  /** CUDA: compiled in? devices present? */
  cuda: NativeCapabilities['cuda'];
}

let warned = false;

/**
 * Reports the kernels and devices in use.
 * @example
 * ```ts
 * import { capabilities } from 'quantkit';
 * const caps = capabilities();
 * console.log(caps.isa, caps.threads, caps.cuda.devices.length);
 * ```
 */
export function capabilities(): Capabilities {
  const c = loadNative().capabilities();
  if (c.warning && !warned) {
    warned = true;
    process.emitWarning(c.warning, { code: 'QK_FORCE_ISA' });
  }
  return {
    isa: c.isa,
    bestIsa: c.bestIsa,
    isasAvailable: c.isasAvailable,
    isasCompiled: c.isasCompiled,
    threads: c.threads,
    cpuFeatures: c.cpuFeatures,
    warning: c.warning,
    builtBy: c.builtBy,
    cuda: c.cuda,
  };
}

/**
 * Testing hook: the ISA variants of native op `op` that can run on this machine (each op takes `{ isa }`).
 * @example
 * ```ts
 * for (const isa of _kernelImpls('sgemm')) await matmul(a, b, { isa });
 * ```
 */
export function _kernelImpls(op: string): IsaName[] {
  return loadNative().kernelImpls(op);
}
