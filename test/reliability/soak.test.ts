// Soak (issue 9, part 5), the short CI version: test/reliability/soak.js runs in its own node process (with
// --expose-gc, so that neither jest's module registry nor its heap pollutes the memory figures) for
// QK_SOAK_SECONDS (default 15 s here, and at least 60 cycles; `npm run soak` runs 300 s): repeated loadModel /
// LlamaCausalLM.fromFile -> quantize (int8, int4, GPTQ) -> predict / generate / perplexity / embed -> dispose, then
// the heaviest ops under perf_hooks.monitorEventLoopDelay. The bounds and the measurements behind them are in
// soak.js and docs/serving.md.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';

const ROOT = path.join(__dirname, '..', '..');
const distBuilt = fs.existsSync(path.join(ROOT, 'dist', 'index.js'));
const seconds = Number(process.env.QK_SOAK_SECONDS ?? 15);

(distBuilt ? test : test.skip)(
  `soak: no RSS / external growth after warm-up, event loop responsive under the heaviest ops${distBuilt ? '' : ' (SKIPPED: dist/ not built; run `npm run build:ts`)'}`,
  () => {
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, 'soak.js'), '--seconds', String(seconds), '--json'], {
      encoding: 'utf8',
      timeout: (seconds + 240) * 1000,
    });
    if (r.status === 2 || r.signal || !r.stdout.trim()) throw new Error(`soak.js did not finish (exit ${r.status ?? r.signal}):\n${r.stderr}`);
    const result = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    const m = result.memoryMiB;
    console.log(
      [
        `soak ${result.seconds} s: ${result.counts.cycles} cycles (${JSON.stringify(result.counts)}), dispose() ${result.disposeAvailable ? 'used' : 'not available (references dropped)'}`,
        `RSS MiB start ${m.start.rss}, after warm-up ${m.afterWarmup.rss}, end ${m.end.rss} (growth ${result.growth.rssMiB}, slope ${result.rssSlopeMiBPer100Cycles} MiB/100 cycles); external ${m.afterWarmup.external} -> ${m.end.external}; arrayBuffers ${m.afterWarmup.arrayBuffers} -> ${m.end.arrayBuffers}`,
        ...result.eventLoop.map((e: { op: string; seconds: number; maxDelayMs: number; p99DelayMs: number }) => `event loop during ${e.op}: ${e.seconds} s, max delay ${e.maxDelayMs} ms, p99 ${e.p99DelayMs} ms`),
        `load average ${result.loadAverage.join(' ')}`,
      ].join('\n'),
    );
    expect(result.counts.cycles).toBeGreaterThanOrEqual(60);
    expect(result.failures).toEqual([]);
    expect(result.growth.rssMiB).toBeLessThanOrEqual(result.bounds.rssGrowthMiB);
    expect(result.growth.externalMiB).toBeLessThanOrEqual(result.bounds.externalGrowthMiB);
    expect(result.maxEventLoopDelayMs).toBeLessThanOrEqual(result.bounds.maxEventLoopDelayMs);
  },
  (seconds + 300) * 1000,
);
