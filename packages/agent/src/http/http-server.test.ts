/**
 * The agent's OpenAI-compatible HTTP routes on a real fastify server (127.0.0.1:0) over the real
 * job runner, token verifier, slots and tracker, with the fake engine and the test signer.
 */
import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { createLogger } from '@titancompute/server-kit';
import { createJobSlots, type JobSlots } from '../capacity/job-slots.js';
import { createJobRunner, type AgentState, type JobRunner } from '../service/job-runner.js';
import { createJobTracker, type JobTracker } from '../service/job-tracker.js';
import { createFakeEngine, type FakeEngine, type FakeEngineOptions } from '../test-support/fake-engine.js';
import { createTestSigner, type TestClaims, type TestSigner } from '../test-support/token-signer.js';
import { createTokenVerifier, messagesSha256, promptSha256 } from '../tokens/token-verifier.js';
import { closeHttpServer } from '@titancompute/server-kit';
import { createAgentHttpServer } from './http-server.js';

const AGENT_ID = 'http-agent';
const MODEL = 'fake-model';

let signer: TestSigner;
beforeAll(async () => {
  signer = await createTestSigner({ aud: AGENT_ID, model: MODEL, temperature: 1, max_tokens: 16 });
});

/** One agent's HTTP side: the server, its parts, and a way to change its state. */
interface Harness {
  url: string;
  engine: FakeEngine;
  slots: JobSlots;
  tracker: JobTracker;
  runner: JobRunner;
  setState(state: AgentState): void;
}

const harnesses: FastifyInstance[] = [];
afterEach(async () => {
  while (harnesses.length) await closeHttpServer(harnesses.pop()!, 0);
});

async function start(engineOptions: FakeEngineOptions = {}, capacity = { maxConcurrent: 2, maxQueue: 2 }): Promise<Harness> {
  const engine = createFakeEngine({ models: [MODEL], promptTokens: 3, ...engineOptions });
  const slots = createJobSlots(capacity);
  const tracker = createJobTracker();
  let state: AgentState = 'healthy';
  const logger = createLogger({ service: 'test', level: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent' });
  const verifier = createTokenVerifier({
    agentId: AGENT_ID,
    fetchKeys: async () => ({ publicKeyPem: signer.publicKeyPem, algorithm: 'EdDSA', issuer: '', keyId: signer.kid, keys: [signer.publicKey()] }),
  });
  const limits = { maxPromptBytes: 32 * 1024, maxTokensLimit: 4096 };
  const runner = createJobRunner({ engine, verifier, slots, tracker, limits, state: () => state, logger });
  const app = createAgentHttpServer({ runner, engine, agentId: () => AGENT_ID, state: () => state, limits, logger });
  harnesses.push(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, engine, slots, tracker, runner, setState: (s) => (state = s) };
}

const MESSAGES = [
  { role: 'system' as const, content: 'be brief' },
  { role: 'user' as const, content: 'hi' },
];
/** A token for a chat of `messages`, as the coordinator signs one (the empty prompt's hash too). */
const chatToken = (claims: TestClaims = {}, messages = MESSAGES) =>
  signer.sign({ prompt_sha256: promptSha256(''), messages_sha256: messagesSha256(messages), ...claims });
/** A token for a completion of `prompt`. */
const promptToken = (prompt: string, claims: TestClaims = {}) => signer.sign({ prompt_sha256: promptSha256(prompt), ...claims });

/** POSTs JSON with the token in the query (a redirect) or as a bearer (a relay). */
function post(h: Harness, path: string, body: unknown, auth: { query?: string; bearer?: string } = {}, init: RequestInit = {}): Promise<Response> {
  const url = new URL(path, h.url);
  if (auth.query !== undefined) url.searchParams.set('session_token', auth.query);
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth.bearer !== undefined ? { authorization: `Bearer ${auth.bearer}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}

/** The `data:` payloads of an event stream, JSON-parsed except `[DONE]`. */
async function events(res: Response): Promise<unknown[]> {
  const text = await res.text();
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .split('\n\n')
    .filter((e) => e !== '')
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      const data = e.slice('data: '.length);
      return data === '[DONE]' ? data : JSON.parse(data);
    });
}

type Chunk = {
  id: string;
  object: string;
  model: string;
  choices: { delta?: Record<string, unknown>; text?: string; finish_reason: string | null }[];
  usage?: unknown;
};

async function expectOpenAiError(res: Response, status: number, match: { message?: RegExp; param?: string | null; code?: string | null; type?: string }) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  if (match.message) expect(body.error.message).toMatch(match.message);
  if (match.param !== undefined) expect(body.error.param).toBe(match.param);
  if (match.code !== undefined) expect(body.error.code).toBe(match.code);
  if (match.type !== undefined) expect(body.error.type).toBe(match.type);
  return body.error;
}

/** Waits until `predicate` holds, polling every 10 ms. */
async function until(predicate: () => boolean, timeoutMs = 1000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('chat and completions', () => {
  it('a chat without stream answers one chat.completion with usage; the job is reported with its prompt tokens', async () => {
    const h = await start();
    const token = await chatToken({ job_id: 'job-chat-1' });
    const res = await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, max_tokens: 4 }, { query: token });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      id: 'chatcmpl-job-chat-1',
      object: 'chat.completion',
      created: expect.any(Number),
      model: MODEL,
      system_fingerprint: null,
      choices: [{ index: 0, message: { role: 'assistant', content: 'tok0 tok1 tok2 tok3 ', refusal: null }, logprobs: null, finish_reason: 'length' }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
    expect(h.engine.calls[0]).toMatchObject({ model: MODEL, prompt: '', messages: MESSAGES, maxTokens: 4, temperature: 1 });
    expect(h.tracker.takeCompleted()).toEqual([
      { jobId: 'job-chat-1', tokensGenerated: 4, timeToFirstTokenMs: expect.any(Number), tokensPerSecond: expect.any(Number), error: '', promptTokens: 3 },
    ]);
    expect(h.slots.running).toBe(0);
  });

  it('a completion without max_tokens runs up to the granted max tokens, with the granted parameters (finish_reason stop when the engine stops)', async () => {
    const h = await start({ stopAfter: 2 });
    const token = await promptToken('Once upon a time', { job_id: 'job-cmpl-1', max_tokens: 9, parameters: { stop: '["\\n"]', seed: '7' } });
    const res = await post(h, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', stop: '\n', seed: 7 }, { bearer: token });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      id: 'cmpl-job-cmpl-1',
      object: 'text_completion',
      created: expect.any(Number),
      model: MODEL,
      system_fingerprint: null,
      choices: [{ index: 0, text: 'tok0 tok1 ', logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    expect(h.engine.calls[0]).toMatchObject({ prompt: 'Once upon a time', maxTokens: 9, parameters: { stop: '["\\n"]', seed: '7' } });
  });

  it('a streamed chat is SSE: a role chunk, content chunks, a last chunk with an empty delta and finish_reason, then [DONE]', async () => {
    const h = await start();
    const res = await post(
      h,
      '/v1/chat/completions',
      { model: MODEL, messages: MESSAGES, max_tokens: 3, stream: true },
      { query: await chatToken({ job_id: 'job-s1' }) },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const all = await events(res);
    expect(all.at(-1)).toBe('[DONE]');
    const chunks = all.slice(0, -1) as Chunk[];
    for (const c of chunks) {
      expect(c).toMatchObject({ id: 'chatcmpl-job-s1', object: 'chat.completion.chunk', model: MODEL });
      expect(c).not.toHaveProperty('usage');
    }
    expect(chunks[0]!.choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
    const content = chunks.slice(1, -1).map((c) => {
      expect(c.choices[0]!.finish_reason).toBeNull();
      return c.choices[0]!.delta!.content;
    });
    expect(content.join('')).toBe('tok0 tok1 tok2 ');
    expect(chunks.at(-1)!.choices[0]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: 'length' });
  });

  it('a streamed completion with include_usage has usage: null on every chunk and ends with a usage chunk without choices', async () => {
    const h = await start({ stopAfter: 2 });
    const res = await post(
      h,
      '/v1/completions',
      { model: MODEL, prompt: 'Hi', stream: true, stream_options: { include_usage: true } },
      { query: await promptToken('Hi', { job_id: 'job-s2' }) },
    );
    const all = await events(res);
    expect(all.at(-1)).toBe('[DONE]');
    const chunks = all.slice(0, -1) as Chunk[];
    const usage = chunks.at(-1)!;
    expect(usage).toEqual({
      id: 'cmpl-job-s2',
      object: 'text_completion',
      created: expect.any(Number),
      model: MODEL,
      system_fingerprint: null,
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    const rest = chunks.slice(0, -1);
    for (const c of rest) expect(c.usage).toBeNull();
    expect(rest.map((c) => c.choices[0]!.text).join('')).toBe('tok0 tok1 ');
    expect(rest.at(-1)!.choices[0]).toMatchObject({ text: '', finish_reason: 'stop' });
  });

  it('a job cut by the drain deadline ends its stream with finish_reason length (the client is still there)', async () => {
    const h = await start({ tokenDelayMs: 20 });
    const res = await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, stream: true }, { query: await chatToken({ max_tokens: 500 }) });
    const reader = res.body!.getReader();
    await reader.read();
    h.runner.abortAll('agent drain deadline reached');
    let text = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += Buffer.from(r.value).toString();
    const last = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as Chunk)
      .at(-1)!;
    expect(last.choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(h.tracker.takeCompleted()[0]?.error).toBe('deadline');
  });

  it('the official openai client streams a chat through the agent (token as its API key: the relay)', async () => {
    const h = await start();
    const client = new OpenAI({ baseURL: `${h.url}/v1`, apiKey: await chatToken(), maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: MESSAGES,
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe('tok0 tok1 tok2 ');
    expect(finish).toBe('length');
    expect(usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
  });

  it('the official openai client sends the token in the query (the redirect) and reads a whole completion', async () => {
    const h = await start();
    const client = new OpenAI({
      baseURL: `${h.url}/v1`,
      apiKey: 'sk-cluster-api-key',
      defaultQuery: { session_token: await promptToken('Hi') },
      maxRetries: 0,
    });
    const done = await client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 2 });
    expect(done.choices[0]).toMatchObject({ text: 'tok0 tok1 ', finish_reason: 'length' });
    expect(done.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
  });

  it('a stream starts (headers, role chunk) as soon as the job has its slot, before the first token', async () => {
    const h = await start({ tokenDelayMs: 2000 });
    const t0 = Date.now();
    const res = await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, max_tokens: 1, stream: true }, { query: await chatToken() });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = Buffer.from((await reader.read()).value!).toString();
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(JSON.parse(first.slice('data: '.length)).choices[0].delta).toEqual({ role: 'assistant', content: '' });
    await reader.cancel();
    await until(() => h.slots.running === 0);
  });

  it('an engine failing after the stream started ends it with an error event and no [DONE]', async () => {
    const h = await start({ failAfter: 2 });
    const res = await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, stream: true }, { query: await chatToken({ job_id: 'job-fail' }) });
    expect(res.status).toBe(200);
    const all = await events(res);
    expect(all).not.toContain('[DONE]');
    expect(all.at(-1)).toEqual({
      error: { message: expect.stringMatching(/^internal error \(reference \w+\)/), type: 'server_error', param: null, code: 'internal_error' },
    });
    expect(h.tracker.takeCompleted()).toEqual([expect.objectContaining({ jobId: 'job-fail', error: 'engine_error' })]);
    expect(h.slots.running).toBe(0);
  });
});

describe('authentication: the session token', () => {
  it('a query token wins over a bearer (a redirected client may still send its API key)', async () => {
    const h = await start();
    const res = await post(h, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 1 }, { query: await promptToken('Hi'), bearer: 'sk-not-a-token' });
    expect(res.status).toBe(200);
  });

  it('no token, a malformed one, an expired one and a replayed one are 401', async () => {
    const h = await start();
    const body = { model: MODEL, prompt: 'Hi', max_tokens: 1 };
    await expectOpenAiError(await post(h, '/v1/completions', body), 401, {
      message: /session token is required/,
      type: 'authentication_error',
      param: 'session_token',
      code: 'invalid_session_token',
    });
    await expectOpenAiError(await post(h, '/v1/completions', body, { bearer: 'sk-an-api-key' }), 401, { message: /malformed/ });
    const expired = await promptToken('Hi', { exp: Math.floor(Date.now() / 1000) - 60 });
    await expectOpenAiError(await post(h, '/v1/completions', body, { query: expired }), 401, { message: /expired/ });
    const token = await promptToken('Hi');
    expect((await post(h, '/v1/completions', body, { query: token })).status).toBe(200);
    await expectOpenAiError(await post(h, '/v1/completions', body, { query: token }), 401, { message: /token already used/, code: 'invalid_session_token' });
  });

  it('a token for another agent, model, prompt, messages, temperature or parameters is 403 (and is not used up by the refusal)', async () => {
    const h = await start();
    const chat = { model: MODEL, messages: MESSAGES, max_tokens: 1 };
    await expectOpenAiError(await post(h, '/v1/chat/completions', chat, { query: await chatToken({ aud: 'other-agent' }) }), 403, {
      message: /not this agent/,
      type: 'permission_error',
      code: 'session_token_mismatch',
    });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { ...chat, model: 'other-model' }, { query: await chatToken() }), 403, {
      message: /does not match the session token's model/,
    });
    const token = await chatToken();
    await expectOpenAiError(await post(h, '/v1/chat/completions', { ...chat, messages: [{ role: 'user', content: 'hello' }] }, { query: token }), 403, {
      message: /messages do not match/,
      param: 'messages',
    });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { ...chat, temperature: 0.2 }, { query: token }), 403, { param: 'temperature' });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { ...chat, top_p: 0.5 }, { query: token }), 403, { param: 'top_p' });
    await expectOpenAiError(await post(h, '/v1/completions', { model: MODEL, prompt: 'other', max_tokens: 1 }, { query: await promptToken('Hi') }), 403, {
      param: 'prompt',
    });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { ...chat, max_tokens: 17 }, { query: token }), 403, {
      message: /above the session token's limit of 16/,
    });
    // None of the refusals used the token up.
    expect((await post(h, '/v1/chat/completions', chat, { query: token })).status).toBe(200);
  });

  it('a generation refuses an embeddings grant (403) and an embeddings call a generation grant', async () => {
    const h = await start({ embedDimensions: 4 });
    const embeddingsGrant = await signer.sign({ prompt_sha256: promptSha256('["Hi"]'), parameters: { task: 'embeddings' } });
    await expectOpenAiError(await post(h, '/v1/completions', { model: MODEL, prompt: '["Hi"]', max_tokens: 1 }, { query: embeddingsGrant }), 403, {
      message: /grants embeddings, not a generation/,
    });
    const generationGrant = await promptToken('["Hi"]');
    await expectOpenAiError(await post(h, '/v1/embeddings', { model: MODEL, input: 'Hi' }, { query: generationGrant }), 403, {
      code: 'session_token_mismatch',
    });
  });
});

describe('errors in OpenAI shape', () => {
  it('invalid bodies are 400 naming the param', async () => {
    const h = await start();
    const token = await chatToken();
    await expectOpenAiError(await post(h, '/v1/chat/completions', '{"model":', { query: token }), 400, {
      code: 'invalid_json',
      type: 'invalid_request_error',
      param: null,
    });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { model: MODEL }, { query: token }), 400, {
      param: 'messages',
      code: 'missing_required_parameter',
    });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, n: 2 }, { query: token }), 400, {
      param: 'n',
      code: 'unsupported_parameter',
    });
    await expectOpenAiError(await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, max_tokens: 5000 }, { query: token }), 400, {
      message: /max_tokens must be ≤ 4096/,
      param: 'max_tokens',
      code: 'invalid_value',
    });
    // Still unused.
    expect((await post(h, '/v1/chat/completions', { model: MODEL, messages: MESSAGES, max_tokens: 1 }, { query: token })).status).toBe(200);
  });

  it('a model not served here is 404 (and the job is reported rejected at once)', async () => {
    const h = await start();
    const token = await promptToken('Hi', { model: 'llama-70b', job_id: 'job-404' });
    await expectOpenAiError(await post(h, '/v1/completions', { model: 'llama-70b', prompt: 'Hi' }, { query: token }), 404, {
      message: /model llama-70b is not served by this agent \(serves fake-model\)/,
      param: 'model',
      code: 'model_not_found',
    });
    expect(h.tracker.takeRejected()).toEqual(['job-404']);
  });

  it('a full queue is 429 with Retry-After', async () => {
    const h = await start({ tokenDelayMs: 20 }, { maxConcurrent: 1, maxQueue: 0 });
    const ac = new AbortController();
    const first = await post(
      h,
      '/v1/completions',
      { model: MODEL, prompt: 'Hi', stream: true },
      { query: await promptToken('Hi', { max_tokens: 500 }) },
      { signal: ac.signal },
    );
    await first.body!.getReader().read();
    const busy = await post(h, '/v1/completions', { model: MODEL, prompt: 'Hi' }, { query: await promptToken('Hi') });
    expect(busy.headers.get('retry-after')).toBe('1');
    await expectOpenAiError(busy, 429, { message: /agent is busy/, code: 'agent_busy' });
    ac.abort();
    await until(() => h.slots.running === 0);
  });

  it('a draining or starting agent is 503', async () => {
    const h = await start();
    h.setState('draining');
    await expectOpenAiError(await post(h, '/v1/completions', { model: MODEL, prompt: 'Hi' }, { query: await promptToken('Hi') }), 503, {
      message: /draining/,
      type: 'server_error',
      code: 'agent_unavailable',
    });
    expect((await fetch(`${h.url}/health`)).status).toBe(503);
    h.setState('starting');
    await expectOpenAiError(await post(h, '/v1/embeddings', { model: MODEL, input: 'x' }, { query: 'any' }), 503, { message: /starting/ });
  });

  it('unknown routes are 404 and known ones with another method 405, in OpenAI shape', async () => {
    const h = await start();
    await expectOpenAiError(await fetch(`${h.url}/v1/nothing`), 404, { code: 'unknown_url' });
    const res = await fetch(`${h.url}/v1/chat/completions`);
    expect(res.headers.get('allow')).toBe('POST');
    await expectOpenAiError(res, 405, { code: 'method_not_allowed' });
  });
});

describe('a client that goes away cancels its job', () => {
  /** Opens a streamed completion with node:http; resolves once the first event arrived, with the request to destroy. */
  function openStream(h: Harness, token: string, stream: boolean): Promise<{ destroy(): void; firstData: string }> {
    return new Promise((resolve, reject) => {
      const url = new URL('/v1/completions', h.url);
      url.searchParams.set('session_token', token);
      const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', (d: Buffer) => resolve({ destroy: () => req.destroy(), firstData: d.toString() }));
      });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ model: MODEL, prompt: 'Hi', stream }));
      if (!stream) resolve({ destroy: () => req.destroy(), firstData: '' });
      setTimeout(() => reject(new Error('no data')), 5000).unref();
    });
  }

  it('mid-stream: the engine sees the abort within a second, the slot is freed and the job reported cancelled', async () => {
    const h = await start({ tokenDelayMs: 50 });
    const s = await openStream(h, await promptToken('Hi', { job_id: 'job-gone', max_tokens: 1000 }), true);
    expect(s.firstData).toMatch(/^data: /);
    expect(h.slots.running).toBe(1);
    const destroyedAt = Date.now();
    s.destroy();
    await until(() => h.engine.abortedGenerations === 1 && h.slots.running === 0, 1000);
    expect(Date.now() - destroyedAt).toBeLessThan(1000);
    await until(() => h.tracker.activeJobIds().length === 0);
    expect(h.tracker.takeCompleted()).toEqual([expect.objectContaining({ jobId: 'job-gone', error: 'cancelled' })]);
    expect(h.engine.calls[0]!.maxTokens).toBe(1000);
  });

  it('before a non-streaming answer is complete: the same', async () => {
    const h = await start({ tokenDelayMs: 50 });
    const s = await openStream(h, await promptToken('Hi', { job_id: 'job-gone-2', max_tokens: 1000 }), false);
    await until(() => h.slots.running === 1 && h.engine.calls.length === 1);
    s.destroy();
    await until(() => h.engine.abortedGenerations === 1 && h.slots.running === 0, 1000);
    await until(() => h.tracker.activeJobIds().length === 0);
    expect(h.tracker.takeCompleted()).toEqual([expect.objectContaining({ jobId: 'job-gone-2', error: 'cancelled' })]);
  });
});

describe('embeddings', () => {
  const embeddingsToken = (input: string[], claims: TestClaims = {}) =>
    signer.sign({ prompt_sha256: promptSha256(JSON.stringify(input)), parameters: { task: 'embeddings' }, ...claims });

  it('answers a list of embeddings with usage; the job reports the input tokens and no generated tokens', async () => {
    const h = await start({ embedDimensions: 3 });
    const input = ['hello world', 'abc'];
    const res = await post(h, '/v1/embeddings', { model: MODEL, input }, { bearer: await embeddingsToken(input, { job_id: 'job-emb' }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [11, 0.104, 0.101] },
        { object: 'embedding', index: 1, embedding: [3, 0.097, 0.098] },
      ],
      model: MODEL,
      usage: { prompt_tokens: 3, total_tokens: 3 },
    });
    expect(h.engine.embedCalls.map((c) => c.input)).toEqual([input]);
    expect(h.tracker.takeCompleted()).toEqual([
      { jobId: 'job-emb', tokensGenerated: 0, timeToFirstTokenMs: 0, tokensPerSecond: 0, error: '', promptTokens: 3 },
    ]);
    expect(h.slots.running).toBe(0);
  });

  it('base64 encoding and other inputs than the token’s (403)', async () => {
    const h = await start({ embedDimensions: 2 });
    const res = await post(h, '/v1/embeddings', { model: MODEL, input: 'ab', encoding_format: 'base64' }, { query: await embeddingsToken(['ab']) });
    const body = (await res.json()) as { data: { embedding: string }[] };
    const bytes = Buffer.from(body.data[0]!.embedding, 'base64');
    expect([bytes.readFloatLE(0), bytes.readFloatLE(4)]).toEqual([2, Math.fround(0.097)]);
    await expectOpenAiError(await post(h, '/v1/embeddings', { model: MODEL, input: 'other' }, { query: await embeddingsToken(['ab']) }), 403, {
      param: 'prompt',
    });
  });

  it('an engine without embed is 400 naming the model (the token is not used up; the job is reported rejected)', async () => {
    const h = await start();
    const token = await embeddingsToken(['x'], { job_id: 'job-no-embed' });
    await expectOpenAiError(await post(h, '/v1/embeddings', { model: MODEL, input: 'x' }, { query: token }), 400, {
      message: /^model "fake-model" on this agent cannot embed$/,
      param: 'model',
      code: 'model_not_supported',
      type: 'invalid_request_error',
    });
    expect(h.tracker.takeRejected()).toEqual(['job-no-embed']);
    expect(h.tracker.totals.requests).toBe(0);
  });
});

describe('models and health', () => {
  it('GET /v1/models lists this agent’s models in OpenAI’s shape; GET /health says healthy', async () => {
    const h = await start();
    expect(await (await fetch(`${h.url}/v1/models`)).json()).toEqual({
      object: 'list',
      data: [{ id: MODEL, object: 'model', created: expect.any(Number), owned_by: 'titancompute' }],
    });
    expect((await fetch(`${h.url}/v1/models/${MODEL}`)).status).toBe(200);
    await expectOpenAiError(await fetch(`${h.url}/v1/models/meta-llama/other`), 404, { code: 'model_not_found' });
    const health = await fetch(`${h.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'healthy', agent_id: AGENT_ID, engine: 'fake', models: [MODEL] });
  });
});

describe('closing', () => {
  it('closeHttpServer does not wait for a client socket that never sent a request beyond its grace', async () => {
    const h = await start();
    const app = harnesses.pop()!;
    const { port } = new URL(h.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const closed = new Promise((r) => socket.once('close', r));
    const t0 = Date.now();
    await closeHttpServer(app, 100);
    expect(Date.now() - t0).toBeLessThan(1000);
    await closed;
  });
});
