// The `quantkit` command line (bin/quantkit.js, running the built dist/): info, quantize, eval, generate, help and
// errors (one-line reason, non-zero exit status).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'quantkit.js');
const MODEL = path.join(ROOT, 'models', 'stories260K', 'stories260K.bin');
const TOK = path.join(ROOT, 'models', 'stories260K', 'tok512.bin');
const TEXT = path.join(ROOT, 'models', 'stories260K', 'tinystories_valid_head.txt');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qk-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const haveDist = fs.existsSync(path.join(ROOT, 'dist', 'index.js'));
const maybe = haveDist ? test : test.skip;
if (!haveDist) console.warn('dist/ is not built (npm run build): skipping the CLI tests');

maybe('--help for the program and for each command', () => {
  const r = run('--help');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/usage: quantkit <command>/);
  for (const c of ['info', 'quantize', 'eval', 'generate', 'bench', 'demo']) {
    const h = run(c, '--help');
    expect([c, h.status]).toEqual([c, 0]);
    expect(h.stdout).toMatch(new RegExp(`usage: quantkit ${c}`));
  }
});

maybe('info --json describes the model (tokenizer found next to the checkpoint)', () => {
  const r = run('info', MODEL, '--json');
  expect(r.status).toBe(0);
  const j = JSON.parse(r.stdout);
  expect(j.architecture).toMatchObject({ vocabularySize: 512, numLayers: 5, hiddenDim: 64, numQueryHeads: 8, numKeyValueHeads: 4 });
  expect(j.parameters).toBe(260032);
  expect(j.tokenizer).toEqual({ class: 'Llama2cTokenizer', vocabSize: 512 });
  expect(j.quantizedLayers).toEqual([]);
});

maybe('generate: greedy continuation (the golden) and JSON output', () => {
  const r = run('generate', MODEL, '--prompt', 'Once upon a time', '--max-tokens', '32', '--json');
  expect(r.status).toBe(0);
  const j = JSON.parse(r.stdout);
  expect(j.tokens.slice(0, 8)).toEqual([432, 383, 286, 261, 376, 298, 315, 421]);
  expect(j.text.startsWith(', there was a little girl named Lily.')).toBe(true);
  const plain = run('generate', MODEL, '--prompt', 'Once upon a time', '--max-tokens', '12');
  expect(plain.status).toBe(0);
  expect(plain.stdout.startsWith('Once upon a time, there was a little girl named Lily.')).toBe(true);
  expect(plain.stderr).toMatch(/tokens\/s/);
});

maybe('quantize -> .keras, then info, eval (with an in-memory int4 copy) and generate on the saved file', () => {
  const out = path.join(tmp, 's8.keras');
  const q = run('quantize', MODEL, '--mode', 'int8', '-o', out, '--json');
  expect(q.status).toBe(0);
  const qj = JSON.parse(q.stdout);
  expect(qj.quantizedLayers).toBe(36);
  expect(qj.weightBytes.ratio).toBeGreaterThan(3.7);
  const info = JSON.parse(run('info', out, '--tokenizer', TOK, '--json').stdout);
  expect(info.quantizedLayers.every((l: { policy: string }) => l.policy === 'int8_from_float32')).toBe(true);
  const ev = run('eval', out, '--tokenizer', TOK, '--text', TEXT, '--max-blocks', '10', '--mode', 'int4', '--group-size', '32', '--json');
  expect(ev.status).toBe(0);
  const ej = JSON.parse(ev.stdout);
  expect(ej.blocks).toBe(10);
  expect(ej.perplexity).toBeGreaterThan(1);
  expect(ej.perplexity).toBeLessThan(20);
  expect(ej.quantized.mode).toBe('int4');
  expect(Number.isFinite(ej.quantized.perplexity)).toBe(true);
  const g = run('generate', out, '--tokenizer', TOK, '--prompt', 'Once upon a time', '--max-tokens', '16', '--json');
  expect(JSON.parse(g.stdout).tokens).toEqual([432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337]);
});

maybe('quantize --mode gptq calibrates on --calib text and writes a preset folder', () => {
  const calib = path.join(tmp, 'calib.txt');
  fs.writeFileSync(calib, fs.readFileSync(TEXT, 'utf8').split(/\n\s*\n/).slice(0, 60).join('\n\n'));
  const dir = path.join(tmp, 'preset-gptq');
  const r = run('quantize', MODEL, '--mode', 'gptq', '--bits', '4', '--group-size', '32', '--calib', calib, '--samples', '8', '--seq-len', '128', '-o', dir, '--json');
  expect(r.status).toBe(0);
  expect(JSON.parse(r.stdout).quantizedLayers).toBe(35);
  const info = JSON.parse(run('info', dir, '--json').stdout);
  expect(info.quantizedLayers.length).toBe(35);
  expect(info.quantizedLayers[0].policy).toBe('gptq/4/32_from_float32');
});

maybe('errors: one line, non-zero status', () => {
  const unknown = run('frobnicate');
  expect(unknown.status).toBe(2);
  expect(unknown.stderr.trim().split('\n').length).toBe(1);
  expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
  const missing = run('info', path.join(tmp, 'nope.bin'));
  expect(missing.status).toBe(1);
  expect(missing.stderr).toMatch(/does not exist/);
  const noMode = run('quantize', MODEL, '-o', path.join(tmp, 'x.keras'));
  expect(noMode.status).toBe(2);
  expect(noMode.stderr).toMatch(/missing --mode/);
  const badMode = run('quantize', MODEL, '--mode', 'int7', '-o', path.join(tmp, 'x.keras'));
  expect(badMode.status).toBe(2);
  const badFile = path.join(tmp, 'bad.bin');
  fs.writeFileSync(badFile, Buffer.from([1, 2, 3]));
  const corrupt = run('info', badFile, '--tokenizer', TOK);
  expect(corrupt.status).toBe(1);
  expect(corrupt.stderr).toMatch(/QK_CORRUPT_FILE|corrupt|truncated|short/i);
});
