/**
 * The only place that loads a `.node` file. The addon is found by node-gyp-build: a prebuilt binary in
 * `prebuilds/<platform>-<arch>/` or a local build in `build/Release` (cmake-js or node-gyp).
 * Loading is lazy, so `import 'quantkit'` never fails; the first native call throws {@link NativeLoadError}
 * (with every path tried and how to fix it) if no binary can be loaded.
 * `QK_ADDON_PATH=<file.node>` loads that binary instead (used by `npm run test:asan` for the sanitizer build in
 * `build-asan/`, which must never replace `build/Release`).
 * @packageDocumentation
 */
import * as fs from 'fs';
import * as path from 'path';

import { NativeLoadError } from '../errors';
import type { NativeBinding } from './binding';

let cached: NativeBinding | undefined;
let cachedError: NativeLoadError | undefined;

/** Package root (works from `lib/` under ts-jest and from `dist/` when installed). */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..');
}

/**
 * Loads (once) and returns the native addon.
 * @throws NativeLoadError when no compatible binary exists.
 * @example
 * ```ts
 * const native = loadNative();
 * native.capabilities().isa; // 'avx512'
 * ```
 */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const root = packageRoot();
  const override = process.env.QK_ADDON_PATH;
  if (override) {
    const file = path.resolve(root, override);
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(file) as NativeBinding;
      return cached;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      cachedError = new NativeLoadError(
        `Could not load the quantkit native addon named by QK_ADDON_PATH (${file}). Reason: ${reason}\n` +
          'To fix: build it (QK_SANITIZE=1 node scripts/build-native.js writes build-asan/Debug/quantkit.node) or unset QK_ADDON_PATH.',
        [file],
        { cause: err },
      );
      throw cachedError;
    }
  }
  const tried = [
    `${path.join(root, 'prebuilds', `${process.platform}-${process.arch}`)} (prebuilt, via node-gyp-build)`,
    `${path.join(root, 'build', 'Release', 'quantkit.node')} (local build)`,
    `${path.join(root, 'build', 'Debug', 'quantkit.node')} (local debug build)`,
  ];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    cached = nodeGypBuild(root) as NativeBinding;
    return cached;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    cachedError = new NativeLoadError(
      `Could not load the quantkit native addon for ${process.platform}-${process.arch}, Node ${process.version} ` +
        `(N-API 8). Tried:\n  - ${tried.join('\n  - ')}\nReason: ${reason}\n` +
        'To fix: run `npm rebuild quantkit` (needs a C++17 compiler and cmake >= 3.19, or python3 for the node-gyp ' +
        'fallback), or reinstall on a platform with prebuilt binaries.',
      tried,
      { cause: err },
    );
    throw cachedError;
  }
}
