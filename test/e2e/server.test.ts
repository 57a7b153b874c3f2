// examples/server.js (issue 9, part 6): every endpoint of the HTTP service, in-process on port 0, over real
// loopback sockets: generate (plain, NDJSON stream, SSE stream), perplexity and embed (micro-batched; the results
// must equal the model's own unbatched calls), health, the 4xx errors (bad JSON, bad arguments as QkError codes,
// body size limit, unknown route, wrong method) and graceful shutdown (a stream in flight completes).
import * as http from 'http';
import * as path from 'path';
import type { AddressInfo } from 'net';
import { LlamaCausalLM } from '../../lib';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createService, loadServingModel } = require('../../examples/server.js');

let model: LlamaCausalLM;
let service: { server: http.Server; close: () => Promise<void>; stats: Record<string, number> };
let base: string;

beforeAll(async () => {
  model = await loadServingModel({ mode: 'int8' });
  service = createService(model, { mode: 'int8', bodyLimit: 4096, batchWindowMs: 5 });
  await new Promise<void>((r) => service.server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(service.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  if (service.server.listening) await service.close();
});

async function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${route}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

test('GET /health', async () => {
  const res = await fetch(`${base}/health`);
  expect(res.status).toBe(200);
  const h = await res.json();
  expect(h).toMatchObject({ status: 'ok', mode: 'int8', model: { vocabularySize: 512, maxSequenceLength: model.arch.maxSequenceLength } });
});

test('POST /generate: the same tokens as model.generate, greedy and seeded sampling', async () => {
  const greedy = await model.generate('Once upon a time', { maxNewTokens: 12 });
  const r = await post('/generate', { prompt: 'Once upon a time', maxNewTokens: 12 });
  expect(r.status).toBe(200);
  const g = JSON.parse(r.text);
  expect(g.tokens).toEqual(greedy.tokens);
  expect(g.text).toBe(greedy.text);
  const sampled = await model.generate('The cat', { maxNewTokens: 12, temperature: 0.9, topK: 40, topP: 0.9, seed: 5 });
  const s = JSON.parse((await post('/generate', { prompt: 'The cat', maxNewTokens: 12, temperature: 0.9, topK: 40, topP: 0.9, seed: 5 })).text);
  expect(s.tokens).toEqual(sampled.tokens);
});

test('POST /generate: concurrent requests decode in shared batches and return the unbatched tokens', async () => {
  const prompts = ['Once upon a time', 'The cat', 'Lily was', 'One day, a little', 'Tom and his mom went to', 'Sue'];
  const want: number[][] = [];
  for (const p of prompts) want.push((await model.generate(p, { maxNewTokens: 16, ignoreEos: true })).tokens);
  const before = JSON.parse(await (await fetch(`${base}/health`)).text()).batches.generate;
  const got = await Promise.all(prompts.map((prompt) => post('/generate', { prompt, maxNewTokens: 16, ignoreEos: true })));
  const after = JSON.parse(await (await fetch(`${base}/health`)).text()).batches.generate;
  got.forEach((r, i) => expect(JSON.parse(r.text).tokens).toEqual(want[i]));
  expect(after.rows - before.rows).toBe(prompts.length * 15); // the first token of each comes from its prompt pass
  expect(after.batches - before.batches).toBeLessThan(prompts.length * 15);
});

test('POST /generate stream: NDJSON chunks, then SSE events, concatenate to the full text', async () => {
  const want = await model.generate('One day', { maxNewTokens: 10, ignoreEos: true });
  const nd = await post('/generate', { prompt: 'One day', maxNewTokens: 10, stream: true });
  expect(nd.status).toBe(200);
  expect(nd.type).toContain('application/x-ndjson');
  const lines = nd.text.trim().split('\n').map((l) => JSON.parse(l));
  const done = lines.pop();
  expect(done).toMatchObject({ done: true, text: want.text, tokens: want.tokens.length });
  expect(lines.map((l) => l.token)).toEqual(want.tokens);
  expect(lines.map((l) => l.text).join('')).toBe(want.text);

  const sse = await post('/generate', { prompt: 'One day', maxNewTokens: 10, stream: true }, { accept: 'text/event-stream' });
  expect(sse.type).toContain('text/event-stream');
  const events = sse.text.trim().split('\n\n');
  expect(events[events.length - 1].startsWith('event: done\ndata: ')).toBe(true);
  const tokens = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')).token);
  expect(tokens).toEqual(want.tokens);
});

test('POST /perplexity and /embed: concurrent requests are batched and equal the unbatched results', async () => {
  const texts = ['Lily went to the park.', 'The dog ran home.', 'Once upon a time, there was a girl.', 'Tom had a red ball. He liked to play.', 'The sun was hot.', 'Mom made a cake.'];
  const before = JSON.parse(await (await fetch(`${base}/health`)).text()).batches;
  const [ppl, emb] = await Promise.all([
    Promise.all(texts.map((text) => post('/perplexity', { text }))),
    Promise.all(texts.map((text) => post('/embed', { text }))),
  ]);
  const after = JSON.parse(await (await fetch(`${base}/health`)).text()).batches;
  for (let i = 0; i < texts.length; i++) {
    expect(ppl[i].status).toBe(200);
    const p = JSON.parse(ppl[i].text);
    const want = await model.perplexity(texts[i]);
    expect(p.tokens).toBe(want.tokens);
    expect(p.nll).toBeCloseTo(want.nll, 10);
    const e = JSON.parse(emb[i].text);
    expect(e.dim).toBe(model.arch.hiddenDim);
    const wantE = (await model.embed(texts[i])).data;
    e.embeddings[0].forEach((v: number, j: number) => expect(v).toBeCloseTo(wantE[j], 6));
  }
  // 6 requests of each kind in fewer forward passes than requests
  expect(after.perplexity.rows - before.perplexity.rows).toBe(texts.length);
  expect(after.perplexity.batches - before.perplexity.batches).toBeLessThan(texts.length);
  expect(after.embed.batches - before.embed.batches).toBeLessThan(texts.length);
  // a list of texts in one request
  const two = JSON.parse((await post('/embed', { text: texts.slice(0, 2), normalize: true })).text);
  expect(two.embeddings).toHaveLength(2);
  expect(Math.hypot(...two.embeddings[1])).toBeCloseTo(1, 5);
});

test('errors: 400 with QkError codes and messages naming the argument, 404, 405, 413', async () => {
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['/generate', '{"prompt": ', 400, 'QK_INVALID_JSON', /JSON object/],
    ['/generate', [1, 2], 400, 'QK_INVALID_JSON', /JSON object/],
    ['/generate', { maxNewTokens: 3 }, 400, 'QK_INVALID_ARGUMENT', /string for prompt/],
    ['/generate', { prompt: 'x', maxNewTokens: 0 }, 400, 'QK_INVALID_ARGUMENT', /maxNewTokens/],
    ['/generate', { prompt: 'x', temperature: -1 }, 400, 'QK_INVALID_ARGUMENT', /temperature/],
    ['/generate', { prompt: 'x', topP: 2, stream: true }, 400, 'QK_INVALID_ARGUMENT', /topP/],
    ['/generate', { prompt: 'x', stream: 'yes' }, 400, 'QK_INVALID_ARGUMENT', /stream/],
    ['/perplexity', { text: 42 }, 400, 'QK_INVALID_ARGUMENT', /string for text/],
    ['/perplexity', { text: '' }, 400, 'QK_INVALID_ARGUMENT', /text/],
    ['/embed', { text: [] }, 400, 'QK_INVALID_ARGUMENT', /text/],
    ['/embed', { text: 'a', pooling: 'max' }, 400, 'QK_INVALID_ARGUMENT', /pooling/],
    ['/embed', { text: 'word '.repeat(1000) }, 413, 'QK_BODY_TOO_LARGE', /at most 4096 bytes/],
    ['/nope', {}, 404, 'QK_NOT_FOUND', /POST \/generate/],
  ];
  for (const [route, body, status, code, msg] of cases) {
    const r = await post(route, body);
    expect({ route, body, status: r.status }).toEqual({ route, body, status });
    const e = JSON.parse(r.text).error;
    expect(e.code).toBe(code);
    expect(e.message).toMatch(msg);
  }
  const wrong = await fetch(`${base}/generate`);
  expect(wrong.status).toBe(405);
  const health = await fetch(`${base}/health`, { method: 'POST', body: '{}' });
  expect(health.status).toBe(405);
  // a text over the context with a body under the limit: the model's own QkError
  const big = createService(model, { mode: 'int8' });
  await new Promise<void>((r) => big.server.listen(0, '127.0.0.1', r));
  const res = await fetch(`http://127.0.0.1:${(big.server.address() as AddressInfo).port}/embed`, { method: 'POST', body: JSON.stringify({ text: 'word '.repeat(700) }) });
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/at most 512 tokens/);
  await big.close();
  // the server still works after all that
  expect((await post('/perplexity', { text: 'The end.' })).status).toBe(200);
});

test('graceful shutdown: a stream in flight completes, new requests are refused', async () => {
  // the response headers arrive with the first token: the request is in flight when close() starts
  const res = await fetch(`${base}/generate`, { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time', maxNewTokens: 40, ignoreEos: true, stream: true }) });
  expect(res.status).toBe(200);
  const closed = service.close();
  const refused = await fetch(`${base}/health`).then((r) => r.status, () => 'refused');
  expect([503, 'refused']).toContain(refused);
  const text = await res.text();
  const last = JSON.parse(text.trim().split('\n').pop()!);
  expect(last.tokens).toBe(40);
  expect(last.done).toBe(true);
  await closed;
  expect(service.server.listening).toBe(false);
  await expect(fetch(`${base}/health`)).rejects.toThrow();
});
