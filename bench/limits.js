#!/usr/bin/env node
// The machine's limits, measured in the same run as the kernels (issue 7, item 1): DRAM read bandwidth (1 thread and
// all threads, working set = 4x the last-level cache), fp32 FMA peak, int8 dot-product peak (VNNI) and bf16
// dot-product peak, each with 1 thread and all threads. The loops are a small C++ program (bench/native/limits.cpp)
// compiled here with g++ into bench/build/ (separate from quantkit's addon). The limit is the best of several passes
// (a peak is what the hardware can do; the median is recorded too, and on a shared machine the two differ).
//   node bench/limits.js [--quick]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
const C = require('./common');

const SRC = path.join(__dirname, 'native', 'limits.cpp');
const BIN = path.join(C.BUILD, 'limits');

function compile() {
  if (fs.existsSync(BIN) && fs.statSync(BIN).mtimeMs >= fs.statSync(SRC).mtimeMs) return null;
  fs.mkdirSync(C.BUILD, { recursive: true });
  const cxx = process.env.CXX || 'g++';
  try {
    execFileSync(cxx, ['-O2', '-std=c++17', '-pthread', '-o', BIN, SRC], { stdio: ['ignore', 'pipe', 'pipe'] });
    return null;
  } catch (e) {
    return `${cxx} failed to compile bench/native/limits.cpp: ${String(e.stderr || e.message).split('\n').slice(0, 3).join(' ')}`;
  }
}

function runOne(args) {
  const r = spawnSync(BIN, args.map(String), { encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0) return { error: `limits ${args.join(' ')}: ${r.signal ? `killed by ${r.signal}` : `exit ${r.status}`} ${r.stderr || r.stdout}`.trim() };
  try {
    const j = JSON.parse(r.stdout.trim().split('\n').pop());
    if (j.error) return { error: j.error };
    return { ...j, best: Math.max(...j.passes), median: C.median(j.passes) };
  } catch (e) {
    return { error: `limits ${args.join(' ')}: unreadable output ${r.stdout}` };
  }
}

async function main() {
  const { quick } = C.flags();
  const { qk } = C.loadQuantkit();
  const caps = qk.capabilities();
  const threads = caps.threads || os.cpus().length;
  const flags = C.cpuFlags();
  const isa512 = flags.has('avx512f');
  const out = { threads, isa: caps.isa, llcBytes: C.llcBytes(), coldWorkingSetBytes: C.coldWorkingSet(), results: {}, errors: [] };
  const err = compile();
  if (err) {
    out.errors.push(err);
    C.writePart('limits', out);
    console.log(`limits unavailable: ${err}`);
    return;
  }
  const mib = Math.round(C.coldWorkingSet() / 2 ** 20);
  const ms = quick ? 400 : 1200;
  const plan = [
    ['dramRead1', ['bw', 1, mib, quick ? 3 : 7, ...(isa512 ? [] : ['avx2'])]],
    ['dramReadAll', ['bw', threads, mib, quick ? 3 : 7, ...(isa512 ? [] : ['avx2'])]],
  ];
  if (isa512 || flags.has('fma')) {
    plan.push(['fp32Fma1', ['fma', 1, ms, ...(isa512 ? [] : ['avx2'])]], ['fp32FmaAll', ['fma', threads, ms, ...(isa512 ? [] : ['avx2'])]]);
  }
  if (flags.has('avx512_vnni') || flags.has('avx_vnni')) {
    const v = flags.has('avx512_vnni') && isa512 ? [] : ['avx2'];
    plan.push(['int8Dot1', ['vnni', 1, ms, ...v]], ['int8DotAll', ['vnni', threads, ms, ...v]]);
  } else out.errors.push('no VNNI on this CPU: no int8 dot-product peak');
  if (flags.has('avx512_bf16')) plan.push(['bf16Dot1', ['bf16', 1, ms]], ['bf16DotAll', ['bf16', threads, ms]]);
  else out.errors.push('no AVX512_BF16 on this CPU: no bf16 dot-product peak');
  console.log(`machine limits (${threads} threads, LLC ${(out.llcBytes / 2 ** 20).toFixed(0)} MiB, DRAM working set ${mib} MiB)`);
  for (const [key, args] of plan) {
    const r = runOne(args);
    if (r.error) {
      out.errors.push(r.error);
      console.log(`  ${key.padEnd(12)} error: ${r.error}`);
      continue;
    }
    out.results[key] = { value: r.best, median: r.median, unit: r.unit, isa: r.isa, threads: r.threads, passes: r.passes };
    console.log(`  ${key.padEnd(12)} ${C.fmt(r.best).padStart(8)} ${r.unit} (median ${C.fmt(r.median)}; ${r.isa}, ${r.threads} thread${r.threads > 1 ? 's' : ''})`);
  }
  C.writePart('limits', out);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
