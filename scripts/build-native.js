#!/usr/bin/env node
// Builds the native addon. Used by `npm install` (with --if-needed) and `npm run build:native`.
//
//  1. --if-needed: if a prebuilt binary for this platform loads (prebuilds/, via node-gyp-build), stop there.
//  2. Otherwise build with cmake-js (Release; CMake >= 3.19). CUDA follows QK_CUDA=auto|on|off (default auto).
//  3. If cmake is not installed (or QK_BUILD_BACKEND=gyp), build the CPU-only fallback with node-gyp.
//
// Environment: QK_CUDA, QK_CUDA_ARCHITECTURES (CMake list, ';' or ',' separated, e.g. 89-real; default: the list
// in cuda/cuda.cmake), QK_BUILD_BACKEND=cmake|gyp, QK_SANITIZE=1 (ASan+UBSan build into build-asan/), QK_BUILD_JOBS.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');
const os = require('os');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);

function log(msg) {
  process.stderr.write(`quantkit: ${msg}\n`);
}

if (args.includes('--if-needed') && !process.env.QK_BUILD_FROM_SOURCE) {
  try {
    const found = require('node-gyp-build').path(root);
    require(found);
    log(`using prebuilt addon ${path.relative(root, found)}`);
    process.exit(0);
  } catch (_) {
    /* no usable binary yet: build it */
  }
}

function has(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

function run(cmd, cmdArgs) {
  log(`${cmd} ${cmdArgs.join(' ')}`);
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env: process.env });
  if (r.error) throw r.error;
  return r.status === 0;
}

const backend = process.env.QK_BUILD_BACKEND || (has('cmake') ? 'cmake' : 'gyp');
const jobs = process.env.QK_BUILD_JOBS || String(Math.max(1, os.cpus().length));
let ok;
if (backend === 'cmake') {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const cuda = (process.env.QK_CUDA || 'auto').toLowerCase();
  const cmakeArgs = [cmakeJs, 'compile', '--parallel', jobs, `--CDQK_CUDA=${cuda}`];
  // The sanitizer build goes to its own directory (build-asan/Debug/quantkit.node) so it never replaces the
  // normal build/Release binary; lib/native/load.ts loads it when QK_ADDON_PATH points at it (npm run test:asan).
  const sanitize = process.env.QK_SANITIZE === '1';
  const outDir = sanitize ? 'build-asan' : 'build';
  // The arch list is a CMake cache variable: set it every time (empty = back to the default list), so a
  // developer shortcut (89-real) never silently sticks in a build directory that CI or npm ci reuses.
  const archs = (process.env.QK_CUDA_ARCHITECTURES || '').trim().split(/[;,\s]+/).filter(Boolean).join(';');
  if (archs && !/^[A-Za-z0-9_;-]+$/.test(archs)) {
    log(`QK_CUDA_ARCHITECTURES '${archs}' is not a CMake architecture list (e.g. 89-real or 80-real;90-virtual)`);
    process.exit(2);
  }
  if (archs) cmakeArgs.push(`--CDQK_CUDA_ARCHITECTURES=${archs}`);
  // cmake-js passes --CD options only when it configures a fresh build directory (and drops empty values), so an
  // existing cache gets the list (or the empty default) set here first.
  const fs = require('fs');
  if (fs.existsSync(path.join(root, outDir, 'CMakeCache.txt')) && has('cmake')) {
    if (!run('cmake', [`-DQK_CUDA_ARCHITECTURES=${archs}`, `-DQK_CUDA=${cuda}`, path.join(root, outDir)])) {
      log(`reconfiguring the existing build directory failed; remove ${outDir}/ and retry`);
    }
  }
  if (sanitize) cmakeArgs.push('--CDQK_SANITIZE=ON', '--debug', '--out', 'build-asan');
  ok = run(process.execPath, cmakeArgs);
} else if (backend === 'gyp') {
  if (process.env.QK_CUDA === 'on') {
    log('QK_CUDA=on needs the CMake build (the node-gyp fallback is CPU-only). Install cmake >= 3.19.');
    process.exit(1);
  }
  let gyp;
  try {
    gyp = require.resolve('node-gyp/bin/node-gyp.js');
  } catch (_) {
    gyp = null;
  }
  // Build against the headers of the running Node when they are installed (no download needed, works offline).
  const fs = require('fs');
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const nodedir =
    process.env.npm_config_nodedir ||
    (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null);
  const gypArgs = ['rebuild', '-j', jobs, ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  ok = gyp ? run(process.execPath, [gyp, ...gypArgs]) : run('node-gyp', gypArgs);
} else {
  log(`unknown QK_BUILD_BACKEND '${backend}' (expected cmake or gyp)`);
  process.exit(2);
}
if (!ok) {
  log('native build failed. Needs a C++17 compiler (g++ >= 9 or clang >= 10), and cmake >= 3.19 or python3 for node-gyp.');
  process.exit(1);
}
