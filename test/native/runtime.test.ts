// Runtime: capabilities, the dtype table shared with native code, QK_FORCE_ISA / QK_NUM_THREADS, and the event
// loop staying responsive during a long GEMM.
import { execFileSync } from 'child_process';
import * as path from 'path';
import { capabilities, DTYPES, matmul, Tensor } from '../../lib';
import { loadNative } from '../../lib/native/load';
import { randomF32 } from '../helpers';

const root = path.resolve(__dirname, '..', '..');

function childCaps(env: Record<string, string>): { isa: string; threads: number; warning: string | null } {
  const code = "const c=require('node-gyp-build')(process.cwd()).capabilities();console.log(JSON.stringify(c))";
  const out = execFileSync(process.execPath, ['-e', code], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

describe('capabilities', () => {
  test('reports ISA, variants, threads and CUDA', () => {
    const c = capabilities();
    expect(c.isasAvailable).toContain('ref');
    expect(c.isasAvailable).toContain(c.isa);
    expect(c.isasCompiled).toEqual(expect.arrayContaining(c.isasAvailable));
    expect(c.threads).toBeGreaterThanOrEqual(1);
    expect(typeof c.cuda.compiled).toBe('boolean');
    expect(Array.isArray(c.cuda.devices)).toBe(true);
    if (c.cpuFeatures.avx2 && c.cpuFeatures.fma) expect(c.isasAvailable).toContain('avx2');
  });

  test('the TypeScript dtype table equals the native one', () => {
    const nativeTable = loadNative().dtypeTable();
    expect(nativeTable).toEqual(DTYPES.map((d) => ({ id: d.id, name: d.name, bits: d.bits, container: d.container })));
  });
});

describe('environment overrides (child processes)', () => {
  test('QK_FORCE_ISA=ref and QK_NUM_THREADS=3 are honoured; a bad value warns', () => {
    expect(childCaps({ QK_FORCE_ISA: 'ref', QK_NUM_THREADS: '3' })).toMatchObject({ isa: 'ref', threads: 3 });
    const bad = childCaps({ QK_FORCE_ISA: 'sse9' });
    expect(bad.warning).toMatch(/QK_FORCE_ISA='sse9'/);
  });
});

describe('event loop', () => {
  test('a timer keeps firing while a large GEMM runs (2048^3; 768^3 on the scalar reference)', async () => {
    // the scalar reference (QK_FORCE_ISA=ref) would need over a minute for 2048^3; 768^3 still takes long enough
    const n = capabilities().isa === 'ref' ? 768 : 2048;
    const a = new Tensor('float32', [n, n], randomF32(n * n, 1));
    const b = new Tensor('float32', [n, n], randomF32(n * n, 2));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const t0 = Date.now();
    const p = matmul(a, b);
    let settled = false;
    void p.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    const ticksWhileRunning = ticks;
    const wasRunning = !settled;
    await p;
    clearInterval(timer);
    const ms = Date.now() - t0;
    expect(ticks).toBeGreaterThanOrEqual(Math.min(3, Math.floor(ms / 20)));
    if (wasRunning) expect(ticksWhileRunning).toBeGreaterThanOrEqual(1);
  });
});

describe('QK_ADDON_PATH (the sanitizer build of npm run test:asan)', () => {
  /** loadNative() of a fresh copy of lib/native/load with QK_ADDON_PATH = value: the binding or the error. */
  const load = (value: string): { caps?: { isasAvailable: string[] }; err?: Error & { code?: string } } => {
    const saved = process.env.QK_ADDON_PATH;
    process.env.QK_ADDON_PATH = value;
    try {
      let out: { caps?: { isasAvailable: string[] }; err?: Error } = {};
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const mod = require('../../lib/native/load') as typeof import('../../lib/native/load');
        try {
          out = { caps: mod.loadNative().capabilities() };
        } catch (err) {
          out = { err: err as Error };
        }
      });
      return out;
    } finally {
      if (saved === undefined) delete process.env.QK_ADDON_PATH;
      else process.env.QK_ADDON_PATH = saved;
    }
  };
  test('a missing binary is a NativeLoadError naming the variable and the file', () => {
    const { err } = load('no-such-dir/quantkit.node');
    expect(err?.code).toBe('QK_NATIVE_LOAD');
    expect(err?.message).toMatch(/QK_ADDON_PATH \(.*no-such-dir[\\/]quantkit\.node\)/);
  });
  test('an existing binary loads (the one this run uses)', () => {
    const file = process.env.QK_ADDON_PATH ?? path.join(root, 'build', 'Release', 'quantkit.node');
    expect(load(file).caps?.isasAvailable).toContain('ref');
  });
});
