#!/usr/bin/env node
// `npm run bench`: the benchmark harness (issue 7). Runs the suite benches in turn, each in its own process, then
// bench/report.js, which writes bench/results/<date>-<host>.json / .md / -roofline.svg / -modes.svg and updates the
// README's Performance section (full runs only).
//
//   npm run bench                         the suite: limits, kernels (+ onnxruntime), llm (+ node-llama-cpp), models
//   npm run bench -- --quick              a fast subset of each (results get a -quick suffix; README untouched)
//   npm run bench -- --only kernels,llm   some benches (also the older stand-alone ones below, by name)
//   npm run bench -- --legacy             the suite, then the older stand-alone benches
//   npm run bench -- --list               what there is
//
// The peers (onnxruntime-node, node-llama-cpp) are bench/package.json's dependencies, installed on first use with
// `npm --prefix bench install`; a peer that cannot be installed or loaded is reported as unavailable, with the
// reason, and the rest runs.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const C = require('./common');

/** The suite (issue 7): each writes bench/build/parts/<name>.json for the report. */
const SUITE = [
  { name: 'limits', file: 'limits.js', about: 'machine limits: DRAM bandwidth, fp32 FMA / int8 VNNI / bf16 peaks' },
  { name: 'kernels', file: 'kernels.js', node: ['--expose-gc'], peers: true, about: 'quantkit kernels at LLM shapes (raw op + layer API) vs onnxruntime-node' },
  { name: 'llm', file: 'llm.js', peers: true, about: 'stories260K.gguf end to end: quantkit vs node-llama-cpp' },
  { name: 'models', file: 'models.js', node: ['--expose-gc'], about: 'model tables: stories260K and synthetic TinyLlama-1.1B, every mode' },
];
/** Stand-alone benches (each prints its table and writes its own bench/results/<date>-<host>-<name>.json). */
const LEGACY = [
  { name: 'gemm', file: 'gemm.js', about: 'fp32 / int8 GEMM throughput per ISA' },
  { name: 'dense', file: 'dense.js', about: 'a 4096 x 4096 Dense through the public API in every mode' },
  { name: 'dense-gptq', file: 'dense-gptq.js', about: 'dense_gptq 2/3/4/8-bit vs dense_w4g and fp32' },
  { name: 'gptq', file: 'gptq.js', about: 'GPTQ quantization time of one layer, Hessian throughput' },
  { name: 'llama-ops', file: 'llama-ops.js', about: 'Llama float-path kernels (attention, rmsnorm, rope, ...)' },
  { name: 'load', file: 'load.js', about: 'examples/server.js under autocannon: req/s, p50/p99 at 1/8/32 clients, float32 vs int8 vs int4 (= npm run bench:load)' },
  { name: 'cuda', file: 'cuda.js', about: 'CUDA GEMM/GEMV shapes on the device (int8, fp8, GPTQ 4-bit simt/mma); "no device" without one' },
  { name: 'overhead', file: 'overhead.js', about: 'where a Dense.apply call spends its time over the raw op (JS only, paired)' },
];

function ensurePeers() {
  const nm = path.join(__dirname, 'node_modules');
  if (fs.existsSync(nm)) return;
  console.log('bench/node_modules is missing: installing the harness dependencies (onnxruntime-node, node-llama-cpp) with `npm --prefix bench install` ...');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['--prefix', __dirname, 'install', '--no-audit', '--no-fund'], {
    stdio: 'inherit',
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
  });
  if (r.status !== 0) console.log('the harness dependencies could not be installed: the peers will be reported as unavailable');
}

function checkBuilt() {
  try {
    require(C.ROOT).capabilities();
    return true;
  } catch (e) {
    console.error(`quantkit is not built (${String(e.message).split('\n')[0]}): run \`npm run build\` first`);
    return false;
  }
}

/** Share of the machine's CPU time used by other processes between two samples (machine busy time minus ours). */
function othersShare(cpu0, cpu1, child0, child1) {
  if (!cpu0 || !cpu1 || child0 === null || child1 === null) return null;
  const hz = 100; // jiffies per second in /proc/stat
  const totalMs = ((cpu1.total - cpu0.total) * 1000) / hz;
  const busyMs = ((cpu1.busy - cpu0.busy) * 1000) / hz;
  return totalMs > 0 ? Math.min(1, Math.max(0, (busyMs - (child1 - child0)) / totalMs)) : null;
}

function main() {
  const F = C.flags();
  const all = [...SUITE, ...LEGACY];
  if (F.has('list') || F.has('help')) {
    console.log('suite (npm run bench):');
    for (const b of SUITE) console.log(`  ${b.name.padEnd(11)} ${b.about}`);
    console.log('stand-alone (--only <name> or --legacy):');
    for (const b of LEGACY) console.log(`  ${b.name.padEnd(11)} ${b.about}`);
    console.log('flags: --quick  --only a,b  --legacy  --no-readme  --list');
    return 0;
  }
  const only = F.get('only');
  let selected;
  if (only) {
    const names = only.split(',').map((s) => s.trim().replace(/\.js$/, ''));
    for (const n of names) {
      if (!all.some((b) => b.name === n)) {
        console.error(`unknown bench '${n}': expected some of ${all.map((b) => b.name).join(', ')}`);
        return 2;
      }
    }
    selected = all.filter((b) => names.includes(b.name));
  } else selected = F.has('legacy') ? all : SUITE;
  if (!checkBuilt()) return 1;
  if (selected.some((b) => b.peers)) ensurePeers();

  const quick = F.quick;
  const passArgs = quick ? ['--quick'] : [];
  const suite = selected.filter((b) => SUITE.includes(b));
  fs.rmSync(C.PARTS, { recursive: true, force: true });
  const machine = C.machineInfo();
  const cpu0 = C.cpuTimes();
  const child0 = C.childrenCpuMs();
  const t0 = Date.now();
  const date = new Date().toISOString();
  const benches = [];
  let failed = 0;
  console.log(`quantkit bench: ${machine.cpu}, ${machine.threads} threads (${machine.isa}); load average ${machine.load.start.map((x) => x.toFixed(2)).join(' ')}; git ${machine.gitSha}${quick ? '; --quick' : ''}`);
  for (const b of selected) {
    console.log(`\n== bench/${b.file} ==`);
    const tb = Date.now();
    const c0 = C.cpuTimes();
    const k0 = C.childrenCpuMs();
    const r = spawnSync(process.execPath, [...(b.node ?? []), path.join(__dirname, b.file), ...passArgs], { stdio: 'inherit' });
    const seconds = (Date.now() - tb) / 1000;
    benches.push({ name: b.name, seconds, status: r.status, othersCpuShare: othersShare(c0, C.cpuTimes(), k0, C.childrenCpuMs()), loadEnd: os.loadavg()[0] });
    if (r.status !== 0) {
      failed++;
      console.log(`bench/${b.file} failed (exit ${r.status ?? r.signal})`);
    }
  }
  if (suite.length) {
    const cpu1 = C.cpuTimes();
    const child1 = C.childrenCpuMs();
    const durationSeconds = (Date.now() - t0) / 1000;
    const othersCpuShare = othersShare(cpu0, cpu1, child0, child1);
    machine.load.end = os.loadavg();
    machine.load.othersCpuShare = othersCpuShare;
    const info = { date, durationSeconds, machine, benches };
    fs.mkdirSync(C.BUILD, { recursive: true });
    const infoFile = path.join(C.BUILD, 'run-info.json');
    fs.writeFileSync(infoFile, JSON.stringify(info, null, 1));
    const fullSuite = SUITE.every((b) => selected.includes(b));
    // a partial run gets its own file name, so that it never replaces the full report of the day
    const suffix = fullSuite ? '' : `-only-${suite.map((b) => b.name).join('-')}`;
    const args = ['--run-info', infoFile, ...passArgs, ...(suffix ? ['--suffix', suffix] : []), ...(fullSuite && !F.has('no-readme') ? [] : ['--no-readme'])];
    console.log('\n== bench/report.js ==');
    const r = spawnSync(process.execPath, [path.join(__dirname, 'report.js'), ...args], { stdio: 'inherit' });
    if (r.status !== 0) failed++;
    console.log(`\nbench finished in ${(durationSeconds / 60).toFixed(1)} min; load average ${machine.load.end.map((x) => x.toFixed(2)).join(' ')}` + (othersCpuShare !== null ? `; other processes used ${(othersCpuShare * 100).toFixed(0)}% of the CPU time` : ''));
  }
  return failed ? 1 : 0;
}

process.exitCode = main();
