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
