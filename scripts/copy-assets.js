#!/usr/bin/env node
// Copies non-TypeScript runtime files of lib/ into dist/ after tsc (tsc only emits .ts sources):
// lib/io/hdf5-worker.mjs -> dist/io/hdf5-worker.mjs (the HDF5 worker thread, loaded by path at run time).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const assets = [['lib/io/hdf5-worker.mjs', 'dist/io/hdf5-worker.mjs']];
for (const [from, to] of assets) {
  const src = path.join(root, from);
  const dst = path.join(root, to);
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  fs.copyFileSync(src, dst);
  console.log(`copy-assets: ${from} -> ${to}`);
}
