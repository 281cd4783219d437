import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from '@jest/globals';
import { EngineError } from '../errors.js';
import { startTestHttpServer, writeSlowly, type TestHttpServer } from '../test-support/http-server.js';
import type { EngineChunk } from './engine.js';
import { createOllamaEngine } from './ollama-engine.js';
import { runGeneration } from './run-generation.js';

let server: TestHttpServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const request = (signal = new AbortController().signal) => ({
  model: 'llama3.2:1b',
  prompt: 'Why is the sky blue?',
  maxTokens: 5,
  temperature: 0.3,
  parameters: { top_k: '40', top_p: '0.9', seed: '7', stop: '["\\n\\n"]' },
  signal,
});

async function drain(it: AsyncIterable<EngineChunk>): Promise<EngineChunk[]> {
  const out: EngineChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

describe('ollama engine', () => {
  it('lists models from /api/tags and pulls PRELOAD_MODELS it lacks', async () => {
    server = await startTestHttpServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/api/tags') res.end(JSON.stringify({ models: [{ name: 'llama3.2:1b', model: 'llama3.2:1b' }, { name: 'qwen:latest' }] }));
      else if (req.url === '/api/pull') res.end(JSON.stringify({ status: 'success' }));
      else res.writeHead(404).end();
    });
    const engine = createOllamaEngine({ host: server.url, preloadModels: ['llama3.2:1b', 'mistral:7b'] });
    await engine.load();
    expect(engine.models).toEqual(expect.arrayContaining(['llama3.2:1b', 'qwen:latest', 'qwen', 'mistral:7b']));
    const pulls = server.requests.filter((r) => r.path === '/api/pull');
    expect(pulls.map((r) => r.body)).toEqual([{ model: 'mistral:7b', stream: false }]);
  });

  it('streams NDJSON split mid-line and passes max_tokens, temperature and parameters', async () => {
    const lines = [
      { model: 'llama3.2:1b', response: 'The', done: false },
      { model: 'llama3.2:1b', response: ' sky', done: false },
      { model: 'llama3.2:1b', response: ' is', done: false },
      { model: 'llama3.2:1b', response: '', done: true, done_reason: 'stop', prompt_eval_count: 9, eval_count: 3 },
    ]
      .map((l) => `${JSON.stringify(l)}\n`)
      .join('');
    server = await startTestHttpServer(async (_req, res) => {
      res.setHeader('content-type', 'application/x-ndjson');
      const parts: string[] = [];
      for (let i = 0; i < lines.length; i += 7) parts.push(lines.slice(i, i + 7));
      await writeSlowly(res, parts, 1);
      res.end();
    });
    const engine = createOllamaEngine({ host: server.url });
    const gen = runGeneration(engine, request());
    const texts: string[] = [];
    let r = await gen.next();
    while (!r.done) {
      texts.push(r.value.text);
      r = await gen.next();
    }
    expect(texts.join('')).toBe('The sky is');
    expect(r.value).toMatchObject({ tokensGenerated: 3, finishReason: 'stop', promptTokens: 9 });
    expect(r.value.timeToFirstTokenMs).toBeGreaterThan(0);
    expect(server.requests[0]?.body).toEqual({
      model: 'llama3.2:1b',
      prompt: 'Why is the sky blue?',
      stream: true,
      options: { num_predict: 5, temperature: 0.3, top_k: 40, top_p: 0.9, seed: 7, stop: ['\n\n'] },
    });
  });

  it('sends chat messages to /api/chat and streams its NDJSON message contents', async () => {
    const messages = [
      { role: 'system' as const, content: 'Answer in one word.' },
      { role: 'user' as const, content: 'Colour of the sky?' },
      { role: 'assistant' as const, content: 'Blue.' },
      { role: 'user' as const, content: 'And grass?' },
    ];
    server = await startTestHttpServer(async (req, res) => {
      if (req.url !== '/api/chat') return void res.writeHead(404).end(JSON.stringify({ error: `no route ${req.url}` }));
      res.setHeader('content-type', 'application/x-ndjson');
      const lines = [
        { model: 'llama3.2:1b', message: { role: 'assistant', content: 'Gr' }, done: false },
        { model: 'llama3.2:1b', message: { role: 'assistant', content: 'een.' }, done: false },
        { model: 'llama3.2:1b', message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop', prompt_eval_count: 31, eval_count: 2 },
      ].map((l) => `${JSON.stringify(l)}\n`);
      await writeSlowly(res, lines, 1);
      res.end();
    });
    const gen = runGeneration(createOllamaEngine({ host: server.url }), { ...request(), prompt: '', messages });
    const texts: string[] = [];
    let r = await gen.next();
    while (!r.done) {
      texts.push(r.value.text);
      r = await gen.next();
    }
    expect(texts.join('')).toBe('Green.');
    expect(r.value).toMatchObject({ tokensGenerated: 2, finishReason: 'stop', promptTokens: 31 });
    expect(server.requests[0]).toMatchObject({ path: '/api/chat' });
    expect(server.requests[0]?.body).toEqual({
      model: 'llama3.2:1b',
      messages,
      stream: true,
      options: { num_predict: 5, temperature: 0.3, top_k: 40, top_p: 0.9, seed: 7, stop: ['\n\n'] },
    });
  });

  it('turns an error line mid-stream into an engine error', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.write(`${JSON.stringify({ response: 'a', done: false })}\n`);
      res.end(`${JSON.stringify({ error: 'model crashed: out of memory' })}\n`);
    });
    const engine = createOllamaEngine({ host: server.url });
    await expect(drain(engine.generate(request()))).rejects.toThrow(/out of memory/);
  });

  it('reports an unknown model (HTTP 404) as model_not_found', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: "model 'x' not found" }));
    });
    const err = await drain(createOllamaEngine({ host: server.url }).generate(request())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('model_not_found');
  });

  it('a hanging server ends in a deadline error', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.write(`${JSON.stringify({ response: 'a', done: false })}\n`);
      // then nothing, forever
    });
    const engine = createOllamaEngine({ host: server.url, timeouts: { idleTimeoutMs: 200 } });
    const err = await drain(engine.generate(request())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('deadline');
  });

  it('an unreachable server is an unavailable error', async () => {
    const err = await drain(createOllamaEngine({ host: 'http://127.0.0.1:1' }).generate(request())).catch((e: unknown) => e);
    expect((err as EngineError).code).toBe('unavailable');
  });

  it('stops reading when the caller cancels', async () => {
    let closed = false;
    server = await startTestHttpServer((req, res) => {
      res.write(`${JSON.stringify({ response: 'a', done: false })}\n`);
      req.socket.on('close', () => (closed = true));
    });
    const ac = new AbortController();
    const gen = runGeneration(createOllamaEngine({ host: server.url }), { ...request(ac.signal), maxTokens: 100 });
    await gen.next();
    ac.abort();
    const end = await gen.next();
    expect(end).toMatchObject({ done: true, value: { finishReason: 'cancelled', tokensGenerated: 1 } });
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(true);
  });
});

/**
 * Ollama's `POST /api/embed` as Ollama answers it: `input` a string or an array of strings, one
 * (unit-length) vector per input in `embeddings`, the tokens of all inputs in
 * `prompt_eval_count`; an unknown model is 404 `{"error": "model 'x' not found"}` and other
 * failures 400 `{"error": "..."}`. Vectors here are [length, vowels] of the text, normalised.
 */
function fakeOllamaEmbed(served: readonly string[]) {
  return (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const json = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    };
    if (req.method !== 'POST' || req.url !== '/api/embed') return json(404, { error: `no route ${req.method} ${req.url}` });
    const { model, input } = body as { model: string; input: string | string[] };
    if (!served.includes(model)) return json(404, { error: `model '${model}' not found` });
    const texts = typeof input === 'string' ? [input] : input;
    const embeddings = texts.map((t) => {
      const v = [t.length, (t.match(/[aeiou]/g) ?? []).length + 1];
      const norm = Math.hypot(...v);
      return v.map((x) => x / norm);
    });
    const tokens = texts.reduce((n, t) => n + t.split(/\s+/).length + 1, 0);
    json(200, { model, embeddings, total_duration: 14143917, load_duration: 1019500, prompt_eval_count: tokens });
  };
}

describe('ollama engine embeddings', () => {
  const embedRequest = (input: string[], signal = new AbortController().signal) => ({ model: 'all-minilm', input, signal });

  it('POSTs every input to /api/embed in one call and returns the vectors in order with prompt_eval_count', async () => {
    server = await startTestHttpServer(fakeOllamaEmbed(['all-minilm']));
    const engine = createOllamaEngine({ host: server.url });
    const result = await engine.embed(embedRequest(['Why is the sky blue?', 'Why is the grass green?']));
    expect(server.requests).toEqual([expect.objectContaining({ method: 'POST', path: '/api/embed' })]);
    expect(server.requests[0]?.body).toEqual({ model: 'all-minilm', input: ['Why is the sky blue?', 'Why is the grass green?'] });
    expect(result.embeddings).toHaveLength(2);
    expect(result.embeddings[0]).toHaveLength(2);
    expect(result.embeddings[0]).not.toEqual(result.embeddings[1]);
    // 5 words + 1 and 5 words + 1
    expect(result.promptTokens).toBe(12);
  });

  it("an unknown model (HTTP 404) is model_not_found; another HTTP error is engine_error with Ollama's message", async () => {
    server = await startTestHttpServer(fakeOllamaEmbed(['all-minilm']));
    const engine = createOllamaEngine({ host: server.url });
    const missing = await engine.embed({ ...embedRequest(['a']), model: 'nomic-embed-text' }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(EngineError);
    expect(missing).toMatchObject({ code: 'model_not_found', message: "engine answered HTTP 404: model 'nomic-embed-text' not found" });
    await server.close();
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'the input length exceeds the context length' }));
    });
    const failed = await createOllamaEngine({ host: server.url })
      .embed(embedRequest(['a']))
      .catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: 'engine_error', message: 'engine answered HTTP 400: the input length exceeds the context length' });
  });

  it('an answer without one vector per input is an engine error', async () => {
    const answers: unknown[] = [{ embeddings: [[0.1, 0.2]] }, { embeddings: [[0.1], ['x']] }, { model: 'all-minilm' }];
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers.shift()));
    });
    const engine = createOllamaEngine({ host: server.url });
    await expect(engine.embed(embedRequest(['a', 'b']))).rejects.toThrow(/ollama sent 1 embeddings for 2 inputs/);
    await expect(engine.embed(embedRequest(['a', 'b']))).rejects.toThrow(/invalid \/api\/embed answer: .*embeddings/);
    await expect(engine.embed(embedRequest(['a', 'b']))).rejects.toMatchObject({ code: 'engine_error' });
  });

  it('a prompt_eval_count left out counts as 0 tokens', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ model: 'all-minilm', embeddings: [[0.6, 0.8]] }));
    });
    await expect(createOllamaEngine({ host: server.url }).embed(embedRequest(['a']))).resolves.toEqual({ embeddings: [[0.6, 0.8]], promptTokens: 0 });
  });

  it('cancelling stops the request; a silent server ends in a deadline error', async () => {
    let closed = false;
    server = await startTestHttpServer((req) => {
      req.socket.on('close', () => (closed = true));
      // never answers
    });
    const ac = new AbortController();
    const pending = createOllamaEngine({ host: server.url }).embed(embedRequest(['a'], ac.signal));
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    const err = await pending.catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(EngineError);
    expect((err as Error).name).toBe('AbortError');
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(true);
    const late = await createOllamaEngine({ host: server.url, timeouts: { idleTimeoutMs: 200 } })
      .embed(embedRequest(['a']))
      .catch((e: unknown) => e);
    expect(late).toMatchObject({ code: 'deadline' });
  });
});
