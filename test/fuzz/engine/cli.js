#!/usr/bin/env node
// npm run fuzz -- --reader gguf --seconds 60 [--seed 1] [--save dir] [--corpus dir] [--hang 10] [--mem 512]
// npm run fuzz -- --reader all --seconds 120      (every reader in turn)
// node test/fuzz/engine/cli.js --make-corpus        (rewrites test/fuzz/corpus from the tiny models)
// Findings are written to fuzz-findings/<reader>/<kind>-<sha1>.bin with a .txt describing them; exit code 1 if any.
'use strict';
const fs = require('fs');
const path = require('path');
const { runFuzz, ROOT } = require('./index');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  if (process.argv.includes('--make-corpus')) {
    require('./ts-register').register(() => false);
    await require(path.join(ROOT, 'test', 'fuzz', 'make-corpus.ts')).makeCorpus();
    return 0;
  }
  const reader = arg('reader', 'all');
  const names = reader === 'all' ? fs.readdirSync(path.join(ROOT, 'test', 'fuzz', 'corpus')).sort() : reader.split(',');
  const seconds = Number(arg('seconds', '60'));
  let bad = 0;
  for (const name of names) {
    const t0 = Date.now();
    const save = arg('save');
    const r = await runFuzz({
      target: name,
      seconds,
      seed: Number(arg('seed', '1')),
      hangSeconds: Number(arg('hang', '10')),
      memBudgetMb: Number(arg('mem', '512')),
      extraCorpus: arg('corpus'),
      saveDir: save ? path.join(save, name) : undefined,
      onProgress: (m) => process.stderr.write(`  ${name}: ${m.execs} execs, corpus ${m.corpus}, ${m.covered} sites\r`),
    });
    const rate = r.ms ? Math.round((r.execs / r.ms) * 1000) : NaN;
    console.log(`${name}: ${r.execs} execs in ${((Date.now() - t0) / 1000).toFixed(1)} s (${rate}/s), corpus ${r.seeds} -> ${r.corpus}, ${r.covered} sites covered, outcomes ${JSON.stringify(r.outcomes ?? {})}, findings ${r.findings.length}${r.aborted ? ` (stopped: ${r.aborted})` : ''}`);
    for (const f of r.findings) {
      bad++;
      const dir = path.join(ROOT, 'fuzz-findings', name);
      fs.mkdirSync(dir, { recursive: true });
      const base = path.join(dir, `${f.kind}-${f.sha1}`);
      fs.writeFileSync(`${base}.bin`, f.input);
      fs.writeFileSync(`${base}.txt`, `${f.kind} (${f.from})\n${f.error.name}: ${f.error.message}\n${f.error.stack}\n`);
      console.log(`  FINDING ${f.kind} ${f.error.name}: ${f.error.message.slice(0, 200)}\n    -> ${path.relative(ROOT, base)}.bin`);
    }
  }
  return bad ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  console.error(err);
  process.exit(2);
});
