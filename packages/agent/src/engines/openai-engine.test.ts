import { afterEach, describe, expect, it } from '@jest/globals';
import { EngineError } from '../errors.js';
import { startTestHttpServer, writeSlowly, type TestHttpServer } from '../test-support/http-server.js';
import type { EngineChunk } from './engine.js';
import { createOpenAiEngine } from './openai-engine.js';
import { runGeneration } from './run-generation.js';

let server: TestHttpServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const request = (parameters: Record<string, string> = {}, signal = new AbortController().signal) => ({
  model: 'meta-llama/Llama-3.1-8B',
  prompt: 'Hello',
  maxTokens: 8,
  temperature: 0,
  parameters,
  signal,
});

async function drain(it: AsyncIterable<EngineChunk>): Promise<EngineChunk[]> {
  const out: EngineChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

const sse = (obj: unknown) => `data: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`;

describe('openai engine', () => {
  it('lists models from /v1/models and sends the API key', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'meta-llama/Llama-3.1-8B', object: 'model' }] }));
    });
    const engine = createOpenAiEngine({ url: `${server.url}/v1/`, apiKey: 'sk-test' });
    await engine.load();
    expect(engine.models).toEqual(['meta-llama/Llama-3.1-8B']);
    expect(server.requests[0]).toMatchObject({ path: '/v1/models', headers: { authorization: 'Bearer sk-test' } });
  });

  it('streams /v1/completions SSE split mid-line up to [DONE]', async () => {
    const body =
      sse({ choices: [{ text: 'Hi', finish_reason: null }] }) +
      ': keep-alive comment\n\n' +
      sse({ choices: [{ text: ' there', finish_reason: null }] }) +
      sse({ choices: [{ text: '!', finish_reason: 'length' }] }) +
      sse('[DONE]');
    server = await startTestHttpServer(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const parts: string[] = [];
      for (let i = 0; i < body.length; i += 11) parts.push(body.slice(i, i + 11));
      await writeSlowly(res, parts, 1);
      res.end();
    });
    const gen = runGeneration(createOpenAiEngine({ url: server.url }), request({ top_p: '0.5', seed: '3', stop: 'END' }));
    let text = '';
    let r = await gen.next();
    while (!r.done) {
      text += r.value.text;
      r = await gen.next();
    }
    expect(text).toBe('Hi there!');
    expect(r.value).toMatchObject({ tokensGenerated: 3, finishReason: 'length' });
    expect(server.requests[0]).toMatchObject({
      path: '/v1/completions',
      body: { model: 'meta-llama/Llama-3.1-8B', prompt: 'Hello', max_tokens: 8, temperature: 0, stream: true, top_p: 0.5, seed: 3, stop: ['END'] },
    });
  });

  it('sends chat messages as they are to /v1/chat/completions, whatever the default api; api=completions with messages is refused', async () => {
    const messages = [
      { role: 'system' as const, content: 'Be terse.' },
      { role: 'user' as const, content: 'Hi' },
    ];
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sse({ choices: [{ delta: { role: 'assistant' } }] }));
      res.write(sse({ choices: [{ delta: { content: 'Hey' } }] }));
      res.write(sse({ choices: [{ delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 21 } }));
      res.end(sse('[DONE]'));
    });
    const engine = createOpenAiEngine({ url: server.url, api: 'completions' });
    const chunks = await drain(engine.generate({ ...request({ top_p: '0.5' }), prompt: '', messages }));
    expect(chunks.map((c) => c.text).join('')).toBe('Hey');
    expect(chunks.at(-1)).toMatchObject({ finishReason: 'stop', promptTokens: 21 });
    expect(server.requests[0]).toMatchObject({ path: '/v1/chat/completions' });
    expect(server.requests[0]?.body).toEqual({ model: 'meta-llama/Llama-3.1-8B', messages, max_tokens: 8, temperature: 0, stream: true, top_p: 0.5 });
    const refused = await drain(engine.generate({ ...request({ api: 'completions' }), prompt: '', messages })).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(EngineError);
    expect(refused).toMatchObject({ code: 'invalid_parameters', context: { field: 'options.api' } });
    expect(server.requests).toHaveLength(1);
  });

  it('uses /v1/chat/completions when the api parameter says chat', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sse({ choices: [{ delta: { role: 'assistant' } }] }));
      res.write(sse({ choices: [{ delta: { content: 'Yo' } }] }));
      res.write(sse({ choices: [{ delta: {}, finish_reason: 'stop' }] }));
      res.end(sse('[DONE]'));
    });
    const chunks = await drain(createOpenAiEngine({ url: server.url }).generate(request({ api: 'chat' })));
    expect(chunks.map((c) => c.text).join('')).toBe('Yo');
    expect(chunks.at(-1)?.finishReason).toBe('stop');
    expect(server.requests[0]).toMatchObject({ path: '/v1/chat/completions', body: { messages: [{ role: 'user', content: 'Hello' }] } });
  });

  it('turns an error event mid-stream into an engine error', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sse({ choices: [{ text: 'a' }] }));
      res.end(sse({ error: { message: 'CUDA out of memory', type: 'internal_error' } }));
    });
    const err = await drain(createOpenAiEngine({ url: server.url }).generate(request())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).message).toMatch(/CUDA out of memory/);
  });

  it('a stream cut before [DONE] is an engine error', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(sse({ choices: [{ text: 'a' }] }));
    });
    await expect(drain(createOpenAiEngine({ url: server.url }).generate(request()))).rejects.toThrow(/without \[DONE\]/);
  });

  it('an HTTP error status carries the server message', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'max_tokens is too large' } }));
    });
    await expect(drain(createOpenAiEngine({ url: server.url }).generate(request()))).rejects.toThrow(/HTTP 400: max_tokens is too large/);
  });

  it('a server that never answers ends in a deadline error', async () => {
    server = await startTestHttpServer(() => {
      /* never respond */
    });
    const err = await drain(createOpenAiEngine({ url: server.url, timeouts: { idleTimeoutMs: 200 } }).generate(request())).catch((e: unknown) => e);
    expect((err as EngineError).code).toBe('deadline');
  });

  it('rejects an unknown api parameter', async () => {
    await expect(drain(createOpenAiEngine({ url: 'http://127.0.0.1:1' }).generate(request({ api: 'embeddings' })))).rejects.toThrow(/options.api/);
  });
});
