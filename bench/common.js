// Shared helpers of the benchmark harness (bench/run.js and the suite benches it runs): timing (medians), seeded
// fills, machine facts (CPU, ISA, caches, load), the result parts each bench writes for bench/report.js, and the
// loading of quantkit (the built package and its raw binding).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const BUILD = path.join(__dirname, 'build');
const PARTS = path.join(BUILD, 'parts');

/** Command-line flags shared by every bench: --quick, --only a,b (used by run.js), --out <dir>. */
function flags(argv = process.argv.slice(2)) {
  const get = (name) => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
    const eq = argv.find((a) => a.startsWith(`--${name}=`));
    return eq ? eq.slice(name.length + 3) : undefined;
  };
  return { quick: argv.includes('--quick'), get, has: (n) => argv.includes(`--${n}`) };
}

function median(xs) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Median wall time (ms) of `fn` (async): `warmup` untimed calls, then at least `minRuns` timed ones and more while
 * the budget lasts (at most `maxRuns`). Returns { ms, runs, all }.
 */
async function timeit(fn, { warmup = 1, minRuns = 5, maxRuns = 100, budgetMs = 1000 } = {}) {
  for (let i = 0; i < warmup; i++) await fn();
  const all = [];
  const start = performance.now();
  while (all.length < minRuns || (all.length < maxRuns && performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    await fn();
    all.push(performance.now() - t0);
  }
  return { ms: median(all), runs: all.length, all };
}

/**
 * Two calls timed alternately (a, b, a, b, ...) so that both see the same machine state; returns the median of each
 * and the median of the pairwise differences b - a (ms): the cost b adds over a, robust to drifting load.
 */
async function timePaired(a, b, { warmup = 2, minRuns = 30, maxRuns = 400, budgetMs = 400 } = {}) {
  for (let i = 0; i < warmup; i++) {
    await a();
    await b();
  }
  const ta = [];
  const tb = [];
  const start = performance.now();
  while (ta.length < minRuns || (ta.length < maxRuns && performance.now() - start < budgetMs)) {
    let t0 = performance.now();
    await a();
    ta.push(performance.now() - t0);
    t0 = performance.now();
    await b();
    tb.push(performance.now() - t0);
  }
  return { a: median(ta), b: median(tb), diff: median(tb.map((v, i) => v - ta[i])), runs: ta.length };
}

/**
 * Cold timing for decode-sized calls: `fn(i)` for i = 0..copies-1 in turn (each reads its own copy of the weights,
 * together far larger than the last-level cache), so every call streams its weights from DRAM. One sample = the mean
 * over a full rotation; returns the median over `rotations` samples (after one warm-up rotation).
 */
async function timeRotating(fn, copies, { rotations = 5, minCalls = 64 } = {}) {
  const perSample = Math.max(copies, Math.ceil(minCalls / copies) * copies);
  for (let i = 0; i < copies; i++) await fn(i);
  const all = [];
  for (let r = 0; r < rotations; r++) {
    const t0 = performance.now();
    for (let i = 0; i < perSample; i++) await fn(i % copies);
    all.push((performance.now() - t0) / perSample);
  }
  return { ms: median(all), runs: rotations * perSample, all };
}

/** xorshift32 stream in [0, 1). */
function rng(seed) {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Uniform floats in [-scale, scale). */
function randFloat(n, seed, scale = 1) {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Random bytes (fast: crypto), as the requested typed array class. */
function randBytes(n, Cls = Uint8Array) {
  const buf = new Cls(n);
  const u8 = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const { randomFillSync } = require('crypto');
  for (let off = 0; off < u8.length; off += 1 << 30) randomFillSync(u8, off, Math.min(1 << 30, u8.length - off));
  return buf;
}

/** Random integers in [lo, hi] as the requested typed array class. */
function randInts(n, lo, hi, Cls = Uint8Array, seed = 1) {
  const r = rng(seed);
  const out = new Cls(n);
  const span = hi - lo + 1;
  for (let i = 0; i < n; i++) out[i] = lo + Math.floor(r() * span);
  return out;
}

/** Bytes of the last-level cache (from sysfs, else lscpu, else 32 MiB). */
function llcBytes() {
  try {
    let best = 0;
    const dir = '/sys/devices/system/cpu/cpu0/cache';
    for (const idx of fs.readdirSync(dir)) {
      if (!idx.startsWith('index')) continue;
      const level = Number(fs.readFileSync(path.join(dir, idx, 'level'), 'utf8'));
      const size = fs.readFileSync(path.join(dir, idx, 'size'), 'utf8').trim();
      const m = /^(\d+)([KMG]?)/.exec(size);
      if (!m) continue;
      const bytes = Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]];
      if (level >= 2 && bytes > best) best = bytes;
    }
    if (best > 0) return best;
  } catch (_) {}
  try {
    const out = execSync('lscpu -B', { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    const m = /L3 cache:\s+(\d+)/.exec(out);
    if (m) return Number(m[1]);
  } catch (_) {}
  return 32 << 20;
}

/** Working set for cold (DRAM) measurements: 4x the last-level cache, at least 512 MiB. */
function coldWorkingSet() {
  return Math.max(4 * llcBytes(), 512 << 20);
}

function cpuFlags() {
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    return new Set(m ? m[1].split(/\s+/) : []);
  } catch (_) {
    return new Set();
  }
}

function gitSha() {
  try {
    const sha = execSync('git rev-parse --short HEAD', { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    const dirty = execSync('git status --porcelain --untracked-files=no -- csrc lib', { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    return dirty ? `${sha}+dirty(csrc/lib)` : sha;
  } catch (_) {
    return 'unknown';
  }
}

/** CPU time of the whole machine so far (jiffies): busy and total, to tell how loaded it was during a run. */
function cpuTimes() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] || 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total, steal: f[7] || 0 };
  } catch (_) {
    return null;
  }
}

/** CPU time used by this process and its children so far (ms). */
function selfCpuMs() {
  const u = process.resourceUsage();
  return (u.userCPUTime + u.systemCPUTime) / 1000;
}

function hostName() {
  return os.hostname().split('.')[0];
}

function today() {
  return new Date().toISOString().slice(0, 10);
}

/** quantkit's public API (dist/) and its raw binding; a clear error when the package is not built. */
function loadQuantkit() {
  let qk;
  try {
    qk = require(ROOT);
  } catch (e) {
    throw new Error(`quantkit is not built (${e.message.split('\n')[0]}): run \`npm run build\` first`);
  }
  const native = require(path.join(ROOT, 'dist', 'native', 'load.js')).loadNative();
  return { qk, native };
}

/** Writes this bench's result part (read by bench/report.js). */
function writePart(name, data) {
  fs.mkdirSync(PARTS, { recursive: true });
  const file = path.join(PARTS, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ name, date: new Date().toISOString(), ...data }, null, 1));
  return file;
}

function readPart(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(PARTS, `${name}.json`), 'utf8'));
  } catch (_) {
    return null;
  }
}

/** Requires a peer dependency installed under bench/node_modules; returns { mod } or { error }. */
function requirePeer(name) {
  try {
    return { mod: require(require.resolve(name, { paths: [__dirname] })) };
  } catch (e) {
    return { error: `${name} could not be loaded: ${String(e.message || e).split('\n')[0]}` };
  }
}

/** Formats a number with about 3 significant digits. */
function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(digits >= 3 ? 1 : 0);
  return v.toPrecision(digits);
}

/** Machine facts for the result file: CPU, caches, ISA (CPU and quantkit's), threads, memory, Node, git sha, load. */
function machineInfo() {
  let lscpu = '';
  try {
    lscpu = execSync('lscpu', { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C' } }).toString();
  } catch (_) {}
  const field = (name) => (new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(lscpu) || [])[1]?.trim() ?? null;
  const flags = cpuFlags();
  const isaFlags = ['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_int8', 'amx_bf16'];
  let caps = {};
  try {
    caps = require(ROOT).capabilities();
  } catch (_) {}
  return {
    host: hostName(),
    cpu: field('Model name') ?? os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    hypervisor: field('Hypervisor vendor'),
    l2: field('L2 cache'),
    llcBytes: llcBytes(),
    cpuIsa: isaFlags.filter((f) => flags.has(f)),
    isa: caps.isa ?? 'unknown',
    isasAvailable: caps.isasAvailable ?? [],
    threads: caps.threads ?? os.cpus().length,
    builtBy: caps.builtBy ?? null,
    memBytes: os.totalmem(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    gitSha: gitSha(),
    load: { start: os.loadavg(), end: null, othersCpuShare: null },
  };
}

/** CPU time (ms) of the finished children of this process (from /proc/self/stat: cutime + cstime). */
function childrenCpuMs() {
  try {
    const f = fs.readFileSync('/proc/self/stat', 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    const hz = 100;
    return ((Number(rest[13]) + Number(rest[14])) * 1000) / hz;
  } catch (_) {
    return null;
  }
}

function log(...args) {
  console.log(...args);
}

module.exports = {
  ROOT,
  BUILD,
  PARTS,
  flags,
  median,
  timeit,
  timeRotating,
  timePaired,
  rng,
  randFloat,
  randBytes,
  randInts,
  llcBytes,
  coldWorkingSet,
  cpuFlags,
  gitSha,
  cpuTimes,
  selfCpuMs,
  hostName,
  today,
  loadQuantkit,
  writePart,
  readPart,
  requirePeer,
  fmt,
  machineInfo,
  childrenCpuMs,
  log,
};
