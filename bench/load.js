#!/usr/bin/env node
// Load test of the example HTTP service (issue 9, part 6): examples/server.js serving stories260K in float32, int8
// and int4, driven by autocannon over loopback. For each mode, workload (generate with a fixed maxNewTokens, greedy;
// perplexity of a ~60-token text) and number of concurrent clients (1, 8, 32): requests/s, p50/p99 latency, failed
// requests (non-2xx, errors, timeouts: must be 0) and the server's RSS at the start and end of the point (from
// GET /health). Writes bench/results/<date>-<host>-load.json / .md and prints the table.
//
//   npm run bench:load                    (= npm run bench -- --only load)
//   node bench/load.js [--seconds 10] [--quick] [--modes float32,int8,int4] [--clients 1,8,32] [--tokens 16] [--no-compare]
//   (--no-compare skips the extra int8 generate points with decode batching turned off)
//
// Exit code 1 when a request failed or the server's RSS grew by more than RSS_GROWTH_BOUND_MIB between the end of
// the heaviest point (generate at 32 clients) and the end of the same point repeated after all the others (no
// memory growth under load; RSS does rise with concurrency — one KV cache per request in flight — which is why
// the comparison is between two runs of the same point).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const C = require('./common');

const RSS_GROWTH_BOUND_MIB = 16;
const PROMPT = 'Once upon a time';
const PPL_TEXT = 'Lily and her mom went to the park. They saw a big dog. The dog was happy and ran to Lily. She gave it a stick.';

function autocannonModule() {
  let r = C.requirePeer('autocannon');
  if (r.mod) return r.mod;
  console.log('autocannon is missing: installing the harness dependencies with `npm --prefix bench install` ...');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  spawnSync(npm, ['--prefix', __dirname, 'install', '--no-audit', '--no-fund'], {
    stdio: 'inherit',
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
  });
  r = C.requirePeer('autocannon');
  if (!r.mod) throw new Error(r.error);
  return r.mod;
}

/** Starts examples/server.js in `mode` on a free port; resolves { child, url, loadSeconds } once it listens. */
function startServer(mode, extraArgs = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(C.ROOT, 'examples', 'server.js'), '--mode', mode, '--port', '0', ...extraArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    const onData = (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      child.stdout.off('data', onData);
      try {
        const info = JSON.parse(buf.slice(0, nl));
        resolve({ child, url: info.listening, loadSeconds: info.loadSeconds });
      } catch (e) {
        reject(new Error(`unexpected first line from the server: ${buf.slice(0, nl)}`));
      }
    };
    child.stdout.on('data', onData);
    child.on('exit', (code) => reject(new Error(`the ${mode} server exited (code ${code}) before listening`)));
  });
}

async function health(url) {
  const r = await fetch(`${url}/health`);
  return r.json();
}

function run(autocannon, opts) {
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function point(autocannon, url, workload, connections, seconds, tokens) {
  const body = workload === 'generate' ? { prompt: PROMPT, maxNewTokens: tokens, ignoreEos: true } : { text: PPL_TEXT };
  const h0 = await health(url);
  const load0 = os.loadavg()[0];
  const r = await run(autocannon, {
    url: `${url}/${workload}`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    connections,
    pipelining: 1,
    duration: seconds,
    timeout: 30,
  });
  const h1 = await health(url);
  return {
    workload,
    connections,
    seconds,
    requests: r.requests.total,
    requestsPerSecond: r.requests.total / r.duration,
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max, mean: r.latency.mean },
    ok2xx: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    rssMiB: { start: h0.memoryMiB.rss, end: h1.memoryMiB.rss },
    batches: workload === 'perplexity' ? { batches: h1.batches.perplexity.batches - h0.batches.perplexity.batches, rows: h1.batches.perplexity.rows - h0.batches.perplexity.rows } : null,
    loadAverage: [load0, os.loadavg()[0]],
  };
}

function markdown(result) {
  const lines = [];
  const m = result.machine;
  lines.push(`# quantkit serving load test — ${result.date.slice(0, 10)}`, '');
  lines.push(`examples/server.js (stories260K, ${m.isa}, ${m.threads} threads, ${m.cpu}) under autocannon over loopback, ${result.seconds} s per point; generate = ${result.tokens} new tokens (greedy, "${PROMPT}"), perplexity = a ${result.pplTokens}-token text. Load average at start ${m.load.start.map((x) => x.toFixed(2)).join(' ')}, end ${m.load.end.map((x) => x.toFixed(2)).join(' ')} (shared 2-core machine). git ${m.gitSha}.`, '');
  lines.push('| workload | clients | mode | req/s | p50 ms | p99 ms | failed | RSS start → end MiB | load avg |');
  lines.push('|:--|--:|:--|--:|--:|--:|--:|--:|--:|');
  for (const workload of ['generate', 'perplexity']) {
    for (const c of result.clients) {
      for (const s of [...result.servers, ...(result.unbatched ? [result.unbatched] : [])]) {
        const p = s.points.find((x) => x.workload === workload && x.connections === c);
        if (!p) continue;
        lines.push(`| ${workload} | ${c} | ${s.label ?? s.mode} | ${C.fmt(p.requestsPerSecond)} | ${C.fmt(p.latencyMs.p50)} | ${C.fmt(p.latencyMs.p99)} | ${p.non2xx + p.errors + p.timeouts} | ${p.rssMiB.start.toFixed(0)} → ${p.rssMiB.end.toFixed(0)} | ${p.loadAverage[1].toFixed(1)} |`);
      }
    }
  }
  lines.push('');
  for (const s of result.servers) {
    lines.push(`- ${s.mode}: loaded + quantized in ${s.loadSeconds.toFixed(2)} s; RSS after generate at ${s.repeat.connections} clients ${s.rssAfterHeavyMiB.toFixed(1)} MiB, after the same point repeated at the end ${s.rssAfterRepeatMiB.toFixed(1)} MiB (${C.fmt(s.repeat.requestsPerSecond)} req/s; bound on growth: ${RSS_GROWTH_BOUND_MIB} MiB); perplexity requests ran in ${s.points.filter((p) => p.batches).map((p) => `${p.batches.rows}/${p.batches.batches}`).join(', ')} rows/batches at ${result.clients.join('/')} clients.`);
  }
  if (result.unbatched) lines.push(`- ${result.unbatched.label}: the same server with --no-batch-generate (each request decodes on its own), for comparison.`);
  lines.push('', result.failures.length ? `FAILED: ${result.failures.join('; ')}` : 'Zero failed requests; no RSS growth beyond the bound.');
  return `${lines.join('\n')}\n`;
}

async function main() {
  const F = C.flags();
  const seconds = Number(F.get('seconds') ?? (F.quick ? 3 : 10));
  const modes = (F.get('modes') ?? 'float32,int8,int4').split(',');
  const clients = (F.get('clients') ?? '1,8,32').split(',').map(Number);
  const tokens = Number(F.get('tokens') ?? 16);
  const autocannon = autocannonModule();
  const machine = C.machineInfo();
  const qk = require(C.ROOT);
  const tok = await qk.Llama2cTokenizer.fromFile(path.join(C.ROOT, 'models', 'stories260K', 'tok512.bin'));
  const pplTokens = tok.encode(PPL_TEXT, { bos: true }).length;
  console.log(`serving load test: ${modes.join(', ')} x generate (${tokens} tokens) / perplexity (${pplTokens} tokens) x ${clients.join('/')} clients, ${seconds} s per point; load average ${machine.load.start.map((x) => x.toFixed(2)).join(' ')}`);
  const servers = [];
  const failures = [];
  for (const mode of modes) {
    const { child, url, loadSeconds } = await startServer(mode);
    try {
      // warm-up (not recorded): both routes, a few clients, 1 s each
      for (const w of ['generate', 'perplexity']) await point(autocannon, url, w, 4, 1, tokens);
      const points = [];
      for (const workload of ['generate', 'perplexity']) {
        for (const c of clients) {
          const p = await point(autocannon, url, workload, c, seconds, tokens);
          points.push(p);
          const failed = p.non2xx + p.errors + p.timeouts;
          if (failed) failures.push(`${mode} ${workload} at ${c} clients: ${p.non2xx} non-2xx, ${p.errors} errors, ${p.timeouts} timeouts`);
          console.log(`  ${mode.padEnd(7)} ${workload.padEnd(10)} ${String(c).padStart(2)} clients: ${C.fmt(p.requestsPerSecond).padStart(6)} req/s, p50 ${C.fmt(p.latencyMs.p50)} ms, p99 ${C.fmt(p.latencyMs.p99)} ms, ${failed} failed, RSS ${p.rssMiB.start.toFixed(1)} -> ${p.rssMiB.end.toFixed(1)} MiB, load ${p.loadAverage[1].toFixed(2)}`);
        }
      }
      // memory growth: the heaviest point (generate at the most clients: one KV cache per request in flight) again,
      // after everything else; its RSS at the end must match the first run's (the working set of a given
      // concurrency is reached in its first run; what keeps growing after that is a leak)
      const heavy = points.find((p) => p.workload === 'generate' && p.connections === Math.max(...clients));
      const again = await point(autocannon, url, 'generate', heavy.connections, seconds, tokens);
      const failedAgain = again.non2xx + again.errors + again.timeouts;
      if (failedAgain) failures.push(`${mode} generate (repeat) at ${heavy.connections} clients: ${failedAgain} failed`);
      const rssAfterHeavyMiB = heavy.rssMiB.end;
      const rssAfterRepeatMiB = again.rssMiB.end;
      console.log(`  ${mode.padEnd(7)} generate (repeat) ${heavy.connections} clients: ${C.fmt(again.requestsPerSecond)} req/s, ${failedAgain} failed, RSS after the first run ${rssAfterHeavyMiB.toFixed(1)} MiB, after the repeat ${rssAfterRepeatMiB.toFixed(1)} MiB`);
      if (rssAfterRepeatMiB - rssAfterHeavyMiB > RSS_GROWTH_BOUND_MIB) failures.push(`${mode}: RSS grew from ${rssAfterHeavyMiB.toFixed(1)} to ${rssAfterRepeatMiB.toFixed(1)} MiB between two runs of the same point`);
      servers.push({ mode, loadSeconds, points, repeat: again, rssAfterHeavyMiB, rssAfterRepeatMiB });
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
  // the generate points once more without decode batching, for comparison (int8 unless --modes excludes it)
  let unbatched = null;
  if (!F.has('no-compare')) {
    const mode = modes.includes('int8') ? 'int8' : modes[0];
    const { child, url } = await startServer(mode, ['--no-batch-generate']);
    try {
      await point(autocannon, url, 'generate', 4, 1, tokens);
      const points = [];
      for (const c of clients) {
        const p = await point(autocannon, url, 'generate', c, seconds, tokens);
        points.push(p);
        const failed = p.non2xx + p.errors + p.timeouts;
        if (failed) failures.push(`${mode} unbatched generate at ${c} clients: ${failed} failed`);
        console.log(`  ${mode} unbatched generate ${String(c).padStart(2)} clients: ${C.fmt(p.requestsPerSecond).padStart(6)} req/s, p50 ${C.fmt(p.latencyMs.p50)} ms, p99 ${C.fmt(p.latencyMs.p99)} ms, ${failed} failed, load ${p.loadAverage[1].toFixed(2)}`);
      }
      unbatched = { mode, label: `${mode} (unbatched)`, points };
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
  machine.load.end = os.loadavg();
  const result = { date: new Date().toISOString(), seconds, tokens, pplTokens, clients, machine, servers, unbatched, failures, rssGrowthBoundMiB: RSS_GROWTH_BOUND_MIB };
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const stem = path.join(dir, `${C.today()}-${C.hostName()}-load${F.quick ? '-quick' : ''}`);
  fs.writeFileSync(`${stem}.json`, JSON.stringify(result, null, 1));
  fs.writeFileSync(`${stem}.md`, markdown(result));
  console.log(`\n${markdown(result)}\nwrote ${path.relative(C.ROOT, stem)}.json / .md`);
  return failures.length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exitCode = 2;
  },
);
