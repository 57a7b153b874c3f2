#!/usr/bin/env node
// Adapter so prebuildify (which drives node-gyp) builds with cmake-js instead: prebuildify runs
// `<this script> rebuild --target=… --devdir=… --arch=… --release`; N-API builds do not depend on the Node
// version, so the flags are ignored and the normal CMake build (CUDA included when nvcc exists) runs.
//   npm run prebuild   ->   prebuilds/<platform>-<arch>/quantkit.node
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const args = process.argv.slice(2);
if (args[0] !== 'rebuild') {
  process.stderr.write(`prebuild-cmake: expected 'rebuild', received ${JSON.stringify(args)}\n`);
  process.exit(2);
}
const r = spawnSync(process.execPath, [path.join(__dirname, 'build-native.js')], {
  stdio: 'inherit',
  env: { ...process.env, QK_BUILD_BACKEND: 'cmake', QK_BUILD_FROM_SOURCE: '1' },
});
process.exit(r.status ?? 1);
