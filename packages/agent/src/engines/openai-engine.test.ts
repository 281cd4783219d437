import type { IncomingMessage, ServerResponse } from 'node:http';
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

/**
 * OpenAI's `POST /v1/embeddings` as OpenAI-compatible servers answer it: `input` a string or an
 * array of strings, `data[]` of `{object: 'embedding', index, embedding}` (here in reverse
 * order, which the index puts right), `usage.prompt_tokens`; an unknown model is 404 with
 * OpenAI's error object. Vectors are [length, words] of the text.
 */
function fakeOpenAiEmbeddings(served: readonly string[]) {
  return (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const json = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    };
    if (req.method !== 'POST' || req.url !== '/v1/embeddings') return json(404, { detail: 'Not Found' });
    const { model, input } = body as { model: string; input: string | string[] };
    if (!served.includes(model)) {
      return json(404, {
        error: { message: `The model \`${model}\` does not exist.`, type: 'invalid_request_error', param: null, code: 'model_not_found' },
      });
    }
    const texts = typeof input === 'string' ? [input] : input;
    const data = texts.map((t, index) => ({ object: 'embedding', index, embedding: [t.length, t.split(' ').length] })).reverse();
    const tokens = texts.reduce((n, t) => n + t.split(' ').length, 0);
    json(200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  };
}

describe('openai engine embeddings', () => {
  const model = 'BAAI/bge-m3';
  const embedRequest = (input: string[], signal = new AbortController().signal) => ({ model, input, signal });

  it('POSTs {model, input} to /v1/embeddings with the API key and returns the vectors in input order with usage.prompt_tokens', async () => {
    server = await startTestHttpServer(fakeOpenAiEmbeddings([model]));
    const engine = createOpenAiEngine({ url: `${server.url}/v1`, apiKey: 'sk-test' });
    const result = await engine.embed(embedRequest(['the sky is blue', 'green']));
    expect(result).toEqual({
      embeddings: [
        [15, 4],
        [5, 1],
      ],
      promptTokens: 5,
    });
    expect(server.requests).toEqual([
      expect.objectContaining({ method: 'POST', path: '/v1/embeddings', body: { model, input: ['the sky is blue', 'green'] } }),
    ]);
    expect(server.requests[0]?.headers.authorization).toBe('Bearer sk-test');
  });

  it('an answer that the model cannot embed (vLLM 400, no such route 404, llama.cpp 501) is invalid_parameters naming the model', async () => {
    const refusals: [number, unknown][] = [
      [400, { object: 'error', message: 'The model does not support Embeddings API', type: 'BadRequestError', param: null, code: 400 }],
      [404, { detail: 'Not Found' }],
      [501, { error: { code: 501, message: 'This server does not support embeddings. Start it with `--embeddings`', type: 'not_supported_error' } }],
    ];
    const queue = [...refusals];
    server = await startTestHttpServer((_req, res) => {
      const [status, body] = queue.shift()!;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    const engine = createOpenAiEngine({ url: server.url });
    for (const [status] of refusals) {
      const err = await engine.embed({ ...embedRequest(['a']), model: 'meta-llama/Llama-3.1-8B' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineError);
      expect(err).toMatchObject({ code: 'invalid_parameters', context: { model: 'meta-llama/Llama-3.1-8B', field: 'model', status } });
      expect((err as Error).message).toMatch(new RegExp(`^model meta-llama/Llama-3.1-8B cannot embed: the OpenAI-compatible server answered HTTP ${status}: `));
    }
  });

  it('an unknown model (404 naming the model) stays model_not_found; other errors are engine_error', async () => {
    server = await startTestHttpServer(fakeOpenAiEmbeddings([model]));
    const missing = await createOpenAiEngine({ url: server.url })
      .embed({ ...embedRequest(['a']), model: 'other' })
      .catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'model_not_found', message: 'engine answered HTTP 404: The model `other` does not exist.' });
    await server.close();
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'CUDA out of memory' } }));
    });
    await expect(createOpenAiEngine({ url: server.url }).embed(embedRequest(['a']))).rejects.toMatchObject({
      code: 'engine_error',
      message: 'engine answered HTTP 500: CUDA out of memory',
    });
  });

  it('an answer without exactly one vector per input is an engine error', async () => {
    const answers: unknown[] = [
      { object: 'list', data: [{ index: 0, embedding: [1] }] },
      {
        object: 'list',
        data: [
          { index: 0, embedding: [1] },
          { index: 0, embedding: [2] },
        ],
      },
      {
        object: 'list',
        data: [
          { index: 0, embedding: [1] },
          { index: 2, embedding: [2] },
        ],
      },
      { object: 'list', data: [{ index: 0, embedding: 'AAAA' }] },
    ];
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers.shift()));
    });
    const engine = createOpenAiEngine({ url: server.url });
    await expect(engine.embed(embedRequest(['a', 'b']))).rejects.toThrow(/sent 1 embeddings \(indexes 0\) for 2 inputs/);
    await expect(engine.embed(embedRequest(['a', 'b']))).rejects.toThrow(/sent 2 embeddings \(indexes 0, 0\) for 2 inputs/);
    await expect(engine.embed(embedRequest(['a', 'b']))).rejects.toThrow(/sent 2 embeddings \(indexes 0, 2\) for 2 inputs/);
    await expect(engine.embed(embedRequest(['a']))).rejects.toMatchObject({
      code: 'engine_error',
      message: expect.stringMatching(/invalid \/v1\/embeddings answer/),
    });
  });

  it('data without indexes is taken in order and a missing usage counts 0 tokens; a silent server ends in a deadline error', async () => {
    server = await startTestHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: [{ embedding: [1, 0] }, { embedding: [0, 1] }] }));
    });
    await expect(createOpenAiEngine({ url: server.url }).embed(embedRequest(['a', 'b']))).resolves.toEqual({
      embeddings: [
        [1, 0],
        [0, 1],
      ],
      promptTokens: 0,
    });
    await server.close();
    server = await startTestHttpServer(() => {
      /* never respond */
    });
    const err = await createOpenAiEngine({ url: server.url, timeouts: { idleTimeoutMs: 200 } })
      .embed(embedRequest(['a']))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'deadline' });
  });
});
