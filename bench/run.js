#!/usr/bin/env node
// `npm run bench`: runs every benchmark in bench/ in turn (each prints its table and writes bench/results/).
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const benches = ['gemm.js', 'dense.js', 'gptq.js', 'llama-ops.js'];
const extra = process.argv.slice(2);
let failed = 0;
for (const b of benches) {
  console.log(`\n== bench/${b} ==`);
  const r = spawnSync(process.execPath, [path.join(__dirname, b), ...extra], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
