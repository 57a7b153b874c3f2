#!/usr/bin/env node
// Checks the ptxas resource report of the CUDA build: cuda/cuda.cmake compiles every cuda/*.cu with -Xptxas=-v and
// keeps each object's report in <build>/cuda-ptxas/<object>.ptxas.log. This script parses those logs (one entry
// per kernel and SASS arch: registers, shared memory, stack frame, spill stores/loads), prints a table, and exits
// non-zero when
//   * a GEMM / GEMV kernel (name matches gemm|gemv|wq_|mma) spills registers on any arch (spills in a kernel whose
//     speed is its register tiling are a bug), or
//   * an arch of the build's list (--archs, default: every sm_XX seen) has no entry for some kernel (a kernel
//     silently compiled for fewer archs), or
//   * there are no logs at all (when --require is given: CI builds with QK_CUDA=on).
// Other kernels' spills are reported as warnings.
//
//   node scripts/cuda-ptxas-check.js [--dir build/cuda-ptxas] [--require] [--write docs/cuda-resources.md]
//
// --write regenerates the per-kernel table of docs/cuda-resources.md (registers / shared memory / spills per arch).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const dir = path.resolve(root, opt('--dir', 'build/cuda-ptxas'));
const writeTo = opt('--write', null);
const require_ = args.includes('--require');

const HOT = /gemm|gemv|wq_|mma/i;

/** Parses one ptxas -v log into entries { mangled, arch, regs, smem, stack, spillStores, spillLoads }. */
function parseLog(text, file) {
  const out = [];
  let cur = null;
  for (const line of text.split('\n')) {
    let m = /Compiling entry function '([^']+)' for '(sm_\d+a?)'/.exec(line);
    if (m) {
      cur = { mangled: m[1], arch: m[2], regs: null, smem: 0, stack: 0, spillStores: 0, spillLoads: 0, file };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (m) {
      cur.stack = Number(m[1]);
      cur.spillStores = Number(m[2]);
      cur.spillLoads = Number(m[3]);
      continue;
    }
    m = /Used (\d+) registers/.exec(line);
    if (m) {
      cur.regs = Number(m[1]);
      const s = /(\d+) bytes smem/.exec(line);
      cur.smem = s ? Number(s[1]) : 0;
    }
  }
  return out;
}

function demangle(names) {
  const r = spawnSync('c++filt', [], { input: names.join('\n'), encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout) return names;
  const lines = r.stdout.split('\n');
  return names.map((n, i) => lines[i] || n);
}

// "(anonymous namespace)::wq_mma_kernel<__half>(unsigned short const*, ...)" -> "wq_mma_kernel<__half>"
function shortName(d) {
  let s = d.replace(/\(anonymous namespace\)::/g, '');
  let depth = 0;
  for (let i = 0; i < s.length; ++i) {
    if (s[i] === '<') depth++;
    else if (s[i] === '>') depth--;
    else if (s[i] === '(' && depth === 0) {
      s = s.slice(0, i);
      break;
    }
  }
  return s.replace(/^void /, '').trim();
}

function main() {
  if (!fs.existsSync(dir) || fs.readdirSync(dir).filter((f) => f.endsWith('.ptxas.log')).length === 0) {
    const msg = `cuda-ptxas-check: no ptxas logs in ${path.relative(root, dir)} (CUDA not built?)`;
    if (require_) {
      console.error(msg);
      process.exit(1);
    }
    console.log(`${msg}: nothing to check`);
    return;
  }
  const entries = [];
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.ptxas.log')).sort()) {
    entries.push(...parseLog(fs.readFileSync(path.join(dir, f), 'utf8'), f.replace(/\.o\.ptxas\.log$|\.ptxas\.log$/, '')));
  }
  const names = demangle(entries.map((e) => e.mangled));
  entries.forEach((e, i) => {
    e.name = shortName(names[i]);
  });
  const archs = (opt('--archs', null) || [...new Set(entries.map((e) => e.arch))].join(',')).split(',').filter(Boolean).sort();
  const kernels = new Map();
  for (const e of entries) {
    const k = `${e.file}: ${e.name}`;
    if (!kernels.has(k)) kernels.set(k, new Map());
    kernels.get(k).set(e.arch, e);
  }
  const errors = [];
  const warnings = [];
  for (const [k, byArch] of kernels) {
    for (const a of archs) if (!byArch.has(a)) errors.push(`${k} has no ${a} code`);
    for (const e of byArch.values()) {
      if (e.regs === null) errors.push(`${k} (${e.arch}): no register count in the log`);
      if (e.spillStores > 0 || e.spillLoads > 0) {
        const msg = `${k} (${e.arch}): ${e.spillStores} bytes spill stores, ${e.spillLoads} bytes spill loads`;
        (HOT.test(e.name) ? errors : warnings).push(msg);
      }
    }
  }
  // Table: one row per kernel, registers / smem / spills per arch.
  const header = `| kernel | ${archs.map((a) => `${a} regs`).join(' | ')} | smem bytes | stack bytes | spills |`;
  const sep = `|:--|${archs.map(() => '--:').join('|')}|--:|--:|--:|`;
  const rows = [];
  for (const [k, byArch] of [...kernels].sort((a, b) => a[0].localeCompare(b[0]))) {
    const es = [...byArch.values()];
    const smem = [...new Set(es.map((e) => e.smem))].join(' / ');
    const stack = Math.max(...es.map((e) => e.stack));
    const spills = es.reduce((s, e) => s + e.spillStores + e.spillLoads, 0);
    rows.push(`| \`${k}\` | ${archs.map((a) => (byArch.has(a) ? byArch.get(a).regs : '—')).join(' | ')} | ${smem} | ${stack} | ${spills} |`);
  }
  const table = [header, sep, ...rows].join('\n');
  console.log(table);
  console.log(`\n${kernels.size} kernels x ${archs.length} archs (${archs.join(' ')}): ${entries.length} entries`);
  for (const w of warnings) console.log(`warning: ${w}`);
  if (writeTo) {
    const file = path.resolve(root, writeTo);
    const begin = '<!-- cuda-ptxas-check:begin -->';
    const end = '<!-- cuda-ptxas-check:end -->';
    const block = `${begin}\n${table}\n${end}`;
    let doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : `# CUDA kernel resources\n\n${begin}\n${end}\n`;
    const i = doc.indexOf(begin), j = doc.indexOf(end);
    doc = i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc}\n${block}\n`;
    fs.writeFileSync(file, doc);
    console.log(`wrote ${path.relative(root, file)}`);
  }
  if (errors.length) {
    for (const e of errors) console.error(`error: ${e}`);
    console.error(`cuda-ptxas-check: ${errors.length} problem(s)`);
    process.exit(1);
  }
  console.log('cuda-ptxas-check: ok (no spills in GEMM/GEMV kernels, every kernel on every arch)');
}

if (require.main === module) main();
module.exports = { parseLog, shortName };
