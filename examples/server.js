#!/usr/bin/env node
// An HTTP inference service over quantkit (issue 9, part 6): Node's `http` only. It loads stories260K once,
// quantizes it at start, and serves
//
//   POST /generate    {prompt, maxNewTokens?, temperature?, topK?, topP?, seed?, stop?, ignoreEos?, stream?}
//                     stream: true -> tokens as they come, NDJSON (one JSON object a line, chunked), or Server-Sent
//                     Events when the request has `Accept: text/event-stream`; the last object has `done: true`.
//   POST /perplexity  {text}                       -> {perplexity, nll, tokens}
//   POST /embed       {text | [texts], pooling?, normalize?} -> {embeddings: [[...]], dim}
//   GET  /health                                   -> {status, mode, ...}
//
//   node examples/server.js [--mode float32|int8|int4|gptq] [--port 8080] [--host 127.0.0.1] [--model file]
//   (or QK_SERVE_MODE, PORT, HOST, QK_SERVE_MODEL)
//
// Errors are JSON `{error: {code, message}}`: 400 for bad input (quantkit's QkError code and message when the model
// refused an argument), 404/405, 413 over the body limit, 503 while shutting down. SIGINT/SIGTERM stop accepting
// connections, let requests in flight finish (streams included, up to --grace-ms), then exit.
//
// Batching: perplexity and embed requests that arrive while the model is busy (or within --batch-window-ms) run as
// ONE forward pass (model.perplexityBatch / model.embed with a list), grouped by length so that padding stays
// small; measured on stories260K, 16 short texts batched take ~1/3 of the time of 16 separate calls. Generation is
// batched continuously: every request keeps its own KV cache, position, sampler and stop rules, and at each step
// the next tokens of all the requests in flight run as one forward pass (LlamaDecodeBatcher / decodeStep: the
// projections batched, RoPE and attention per row at its own position), so requests join and leave at any token;
// 8 concurrent 32-token generations take ~1/3 of the time of running them one after the other.
'use strict';
const http = require('http');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const qk = require(ROOT);

const MODES = ['float32', 'int8', 'int4', 'gptq'];

/** Client errors with an HTTP status. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function readJson(req, limit) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new HttpError(413, 'QK_BODY_TOO_LARGE', `Expected a request body of at most ${limit} bytes but received ${declared}`));
      req.resume();
      return;
    }
    const chunks = [];
    let size = 0;
    let failed = false;
    req.on('data', (c) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        reject(new HttpError(413, 'QK_BODY_TOO_LARGE', `Expected a request body of at most ${limit} bytes but received more`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        const body = JSON.parse(text);
        if (!isPlainObject(body)) throw new Error('not an object');
        resolve(body);
      } catch {
        reject(new HttpError(400, 'QK_INVALID_JSON', `Expected a JSON object as the request body but received ${JSON.stringify(text.slice(0, 80))}`));
      }
    });
    req.on('error', reject);
  });
}

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res, err) {
  let status = 500;
  let code = 'QK_INTERNAL';
  if (err instanceof HttpError) ({ status, code } = err);
  else if (err instanceof qk.QkError) {
    code = err.code;
    status = code === 'QK_INTERNAL' || code === 'QK_OUT_OF_MEMORY' || code === 'QK_DEVICE' ? 500 : 400;
  }
  const message = status === 500 && !(err instanceof qk.QkError) ? 'Internal error' : err.message;
  if (status === 500) console.error(err);
  if (res.headersSent) {
    res.end();
    return;
  }
  send(res, status, { error: { code, message } });
}

function requireString(body, key) {
  const v = body[key];
  if (typeof v !== 'string') throw new HttpError(400, 'QK_INVALID_ARGUMENT', `Expected a string for ${key} but received ${v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 60)}`);
  return v;
}

/**
 * Collects perplexity / embed jobs and runs them in batches: a job waits at most `windowMs` (or until the model is
 * free), then the queue is sorted by token count and cut into groups of at most `maxBatch` rows whose padded size
 * (rows x longest) stays within `maxPadding` x their real tokens.
 */
class MicroBatcher {
  constructor(run, { windowMs = 2, maxBatch = 32, maxPadding = 1.25 } = {}) {
    this.run = run; // async (jobs) => results, one per job
    this.windowMs = windowMs;
    this.maxBatch = maxBatch;
    this.maxPadding = maxPadding;
    this.queue = [];
    this.busy = false;
    this.timer = null;
    this.batches = 0;
    this.rows = 0;
  }

  submit(ids, payload) {
    return new Promise((resolve, reject) => {
      this.queue.push({ ids, payload, resolve, reject });
      if (!this.busy && !this.timer) this.timer = setTimeout(() => this.drain(), this.windowMs);
    });
  }

  groups(jobs) {
    jobs.sort((a, b) => a.ids.length - b.ids.length);
    const out = [];
    let cur = [];
    let real = 0;
    for (const j of jobs) {
      const n = j.ids.length;
      if (cur.length && (cur.length >= this.maxBatch || (cur.length + 1) * n > this.maxPadding * (real + n))) {
        out.push(cur);
        cur = [];
        real = 0;
      }
      cur.push(j);
      real += n;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  async drain() {
    this.timer = null;
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length) {
        const jobs = this.queue.splice(0);
        for (const g of this.groups(jobs)) {
          this.batches++;
          this.rows += g.length;
          try {
            const results = await this.run(g);
            g.forEach((j, i) => j.resolve(results[i]));
          } catch (err) {
            // one bad row must not fail the others: retry one by one so each job gets its own result or error
            if (g.length === 1) g[0].reject(err);
            else {
              for (const j of g) {
                try {
                  j.resolve((await this.run([j]))[0]);
                } catch (e) {
                  j.reject(e);
                }
              }
            }
          }
        }
      }
    } finally {
      this.busy = false;
    }
  }
}

/** Loads and quantizes the model (`mode`), as the server does at start. */
async function loadServingModel({ mode = 'int8', model: file = path.join(ROOT, 'models', 'stories260K', 'stories260K.bin') } = {}) {
  if (!MODES.includes(mode)) throw new qk.InvalidArgumentError(`Expected one of ${MODES.join(', ')} for mode but received ${JSON.stringify(mode)}`);
  const lm = await qk.LlamaCausalLM.fromFile(file);
  if (mode === 'int8') await lm.quantize('int8', { verbose: false });
  else if (mode === 'int4') await lm.quantize('int4', { config: new qk.Int4QuantizationConfig({ blockSize: 32 }), verbose: false });
  else if (mode === 'gptq') {
    const fs = require('fs');
    const text = fs.readFileSync(path.join(ROOT, 'models', 'stories260K', 'tinystories_valid_head.txt'), 'utf8');
    const dataset = text.split(/\n\s*\n/).filter((b) => b.trim()).slice(0, 200);
    await lm.quantize('gptq', { config: new qk.GPTQConfig({ dataset, tokenizer: lm.tokenizer, weightBits: 4, groupSize: 32, numSamples: 32, sequenceLength: 256 }), verbose: false });
  }
  return lm;
}

/**
 * Creates the service around a loaded model. Returns `{ server, close }`; call `server.listen(port)`.
 * `close()` stops accepting connections, waits for the requests in flight (at most `graceMs`), then resolves.
 */
function createService(model, { mode = 'unknown', bodyLimit = 1 << 20, batchWindowMs = 2, maxBatch = 32, graceMs = 10000, maxNewTokensLimit = 1024, batchGenerate = true } = {}) {
  const tok = model.tokenizer;
  const maxSeq = model.arch.maxSequenceLength;
  const encode = (text) => Array.from(tok.encode(text, { bos: true, eos: false }));
  const stats = { requests: 0, errors: 0, inFlight: 0, started: Date.now() };
  let closing = false;

  const decodeBatcher = batchGenerate ? new qk.LlamaDecodeBatcher({ maxBatch }) : null;
  const pplBatcher = new MicroBatcher((jobs) => model.perplexityBatch(jobs.map((j) => j.ids), { addBos: false }), { windowMs: batchWindowMs, maxBatch });
  const embedBatcher = new MicroBatcher(
    async (jobs) => {
      // jobs with the same options run together (they always do with the defaults)
      const { pooling, normalize } = jobs[0].payload;
      if (jobs.some((j) => j.payload.pooling !== pooling || j.payload.normalize !== normalize)) {
        const out = [];
        for (const j of jobs) out.push((await model.embed([j.ids], { ...j.payload, addBos: false })).data);
        return out;
      }
      const e = await model.embed(jobs.map((j) => j.ids), { pooling, normalize, addBos: false });
      const D = e.shape[1];
      return jobs.map((_, i) => e.data.slice(i * D, (i + 1) * D));
    },
    { windowMs: batchWindowMs, maxBatch },
  );

  async function generate(req, res, body) {
    const prompt = requireString(body, 'prompt');
    const maxNewTokens = body.maxNewTokens ?? 64;
    if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > maxNewTokensLimit) {
      throw new HttpError(400, 'QK_INVALID_ARGUMENT', `Expected an integer in [1, ${maxNewTokensLimit}] for maxNewTokens but received ${JSON.stringify(body.maxNewTokens)}`);
    }
    if (body.stream !== undefined && typeof body.stream !== 'boolean') {
      throw new HttpError(400, 'QK_INVALID_ARGUMENT', `Expected a boolean for stream but received ${JSON.stringify(body.stream)}`);
    }
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('client disconnected'));
    });
    const options = { maxNewTokens, signal: abort.signal, batcher: decodeBatcher };
    for (const k of ['temperature', 'topK', 'topP', 'seed', 'stop', 'ignoreEos']) if (body[k] !== undefined) options[k] = body[k];
    if (!body.stream) {
      const r = await model.generate(prompt, options);
      send(res, 200, { text: r.text, tokens: r.tokens, promptTokens: r.promptTokens.length, stopReason: r.stopReason, firstTokenMs: r.firstTokenMs, tokensPerSecond: r.tokensPerSecond });
      return;
    }
    const sse = /text\/event-stream/.test(req.headers.accept ?? '');
    const it = model.stream(prompt, options);
    // the first step validates the options: a bad argument is still a 400, before any byte of the stream is sent
    let step = await it.next();
    res.writeHead(200, sse ? { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } : { 'content-type': 'application/x-ndjson' });
    const write = (obj, event) => res.write(sse ? `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(obj)}\n\n` : `${JSON.stringify(obj)}\n`);
    try {
      while (!step.done) {
        write({ token: step.value.token, text: step.value.text });
        step = await it.next();
      }
      const r = step.value;
      write({ done: true, text: r.text, tokens: r.tokens.length, stopReason: r.stopReason, firstTokenMs: r.firstTokenMs, tokensPerSecond: r.tokensPerSecond }, 'done');
      res.end();
    } catch (err) {
      if (abort.signal.aborted) return; // the client left
      write({ error: { code: err.code ?? 'QK_INTERNAL', message: err instanceof qk.QkError ? err.message : 'Internal error' } }, 'error');
      res.end();
    }
  }

  async function perplexity(res, body) {
    const text = requireString(body, 'text');
    const ids = encode(text);
    if (ids.length < 2) throw new qk.InvalidArgumentError('Expected a text of at least one token for text but received an empty text');
    // texts that fit the context are batched; longer ones are scored alone in context-sized windows
    const r = ids.length <= maxSeq ? await pplBatcher.submit(ids) : await model.perplexity(ids, { addBos: false });
    send(res, 200, { perplexity: r.perplexity, nll: r.nll, tokens: r.tokens });
  }

  async function embed(res, body) {
    const texts = typeof body.text === 'string' ? [body.text] : body.text;
    if (!Array.isArray(texts) || texts.length === 0 || texts.length > maxBatch || !texts.every((t) => typeof t === 'string')) {
      throw new HttpError(400, 'QK_INVALID_ARGUMENT', `Expected a string or an array of 1 to ${maxBatch} strings for text but received ${JSON.stringify(body.text)?.slice(0, 60) ?? 'nothing'}`);
    }
    const pooling = body.pooling ?? 'mean';
    if (pooling !== 'mean' && pooling !== 'last') throw new HttpError(400, 'QK_INVALID_ARGUMENT', `Expected 'mean' or 'last' for pooling but received ${JSON.stringify(pooling)}`);
    const normalize = body.normalize === true;
    const rows = texts.map((t, i) => {
      const ids = encode(t);
      if (ids.length > maxSeq) throw new qk.InvalidArgumentError(`Expected at most ${maxSeq} tokens (the context) for text[${i}] but received ${ids.length}`);
      return ids;
    });
    const out = await Promise.all(rows.map((ids) => embedBatcher.submit(ids, { pooling, normalize })));
    send(res, 200, { embeddings: out.map((e) => Array.from(e)), dim: model.arch.hiddenDim });
  }

  function health(res) {
    const m = process.memoryUsage();
    send(res, closing ? 503 : 200, {
      status: closing ? 'shutting down' : 'ok',
      mode,
      model: { vocabularySize: model.arch.vocabularySize, numLayers: model.arch.numLayers, hiddenDim: model.arch.hiddenDim, maxSequenceLength: maxSeq },
      uptimeSeconds: (Date.now() - stats.started) / 1000,
      requests: stats.requests,
      errors: stats.errors,
      inFlight: stats.inFlight,
      batches: {
        perplexity: { batches: pplBatcher.batches, rows: pplBatcher.rows },
        embed: { batches: embedBatcher.batches, rows: embedBatcher.rows },
        generate: decodeBatcher ? { batches: decodeBatcher.steps, rows: decodeBatcher.rows } : null,
      },
      memoryMiB: { rss: m.rss / 2 ** 20, external: m.external / 2 ** 20, heapUsed: m.heapUsed / 2 ** 20 },
    });
  }

  const routes = { '/generate': generate, '/perplexity': (req, res, body) => perplexity(res, body), '/embed': (req, res, body) => embed(res, body) };

  const server = http.createServer(async (req, res) => {
    stats.requests++;
    stats.inFlight++;
    res.on('close', () => {
      stats.inFlight--;
      if (closing) setImmediate(() => server.closeIdleConnections()); // its keep-alive socket would hold close() up
    });
    try {
      const url = (req.url ?? '/').split('?')[0];
      if (url === '/health') {
        if (req.method !== 'GET') throw new HttpError(405, 'QK_METHOD_NOT_ALLOWED', `Expected GET for /health but received ${req.method}`);
        health(res);
        return;
      }
      const route = routes[url];
      if (!route) throw new HttpError(404, 'QK_NOT_FOUND', `Expected one of GET /health, POST ${Object.keys(routes).join(', POST ')} but received ${req.method} ${url}`);
      if (req.method !== 'POST') throw new HttpError(405, 'QK_METHOD_NOT_ALLOWED', `Expected POST for ${url} but received ${req.method}`);
      if (closing) throw new HttpError(503, 'QK_SHUTTING_DOWN', 'The server is shutting down');
      const body = await readJson(req, bodyLimit);
      await route(req, res, body);
    } catch (err) {
      stats.errors++;
      if (err instanceof HttpError && err.status === 413) res.setHeader('connection', 'close');
      sendError(res, err);
    }
  });
  server.requestTimeout = 120000;

  function close() {
    closing = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        server.closeAllConnections();
      }, graceMs);
      timer.unref();
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      server.closeIdleConnections();
    });
  }
  return { server, close, stats };
}

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

async function main() {
  if (process.argv.includes('--help')) {
    console.log('usage: node examples/server.js [--mode float32|int8|int4|gptq] [--port 8080] [--host 127.0.0.1] [--model file] [--batch-window-ms 2] [--grace-ms 10000] [--no-batch-generate]');
    return;
  }
  const mode = arg('mode', process.env.QK_SERVE_MODE ?? 'int8');
  process.removeAllListeners('warning'); // quantize() notes the layers it skips (the norms): expected here
  const t0 = performance.now();
  const model = await loadServingModel({ mode, model: arg('model', process.env.QK_SERVE_MODEL) ?? undefined });
  const { server, close } = createService(model, {
    mode,
    batchWindowMs: Number(arg('batch-window-ms', '2')),
    graceMs: Number(arg('grace-ms', '10000')),
    batchGenerate: !process.argv.includes('--no-batch-generate'),
  });
  const port = Number(arg('port', process.env.PORT ?? '8080'));
  const host = arg('host', process.env.HOST ?? '127.0.0.1');
  server.listen(port, host, () => {
    const a = server.address();
    // the first line is machine-readable: tests and bench/load.js read the port from it
    console.log(JSON.stringify({ listening: `http://${a.address}:${a.port}`, port: a.port, mode, loadSeconds: (performance.now() - t0) / 1000 }));
  });
  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.error(`${signal}: finishing the requests in flight, then exiting`);
    await close();
    await qk.terminateHdf5Worker().catch(() => {});
    process.exit(0);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

module.exports = { createService, loadServingModel, MicroBatcher };

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof qk.QkError ? `${err.code}: ${err.message}` : err);
    process.exit(1);
  });
}
