import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { SCRIPTED_MODEL, startRealCluster, waitFor, type RealCluster } from '@titancompute/test-support';
import type { OpenAiMode } from './openai-routes.js';

let cluster: RealCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** A cluster of scripted agents whose coordinator serves the OpenAI API in `mode`. */
async function start(mode: OpenAiMode, agents: Parameters<typeof startRealCluster>[0] = [{ agentId: 'agent-a' }]) {
  cluster = await startRealCluster(agents, { coordinator: { openAiMode: mode } });
  return cluster;
}

/** The official client, as a user configures it: the coordinator's base URL and some key; no retries so errors show. */
const openai = (c: RealCluster) => new OpenAI({ baseURL: `http://127.0.0.1:${c.coordinator.httpPort}/v1`, apiKey: 'unused', maxRetries: 0 });

/** Running jobs the agent reports (GetStatus). */
const running = async (c: RealCluster) => (await c.client.agentStatus(c.agents[0]!.endpoint)).runningJobs;

describe.each(['relay', 'redirect'] as const)('the OpenAI API through the official openai client (%s mode)', (mode) => {
  it('answers a chat completion with the text, finish_reason and usage', async () => {
    const c = await start(mode);
    const res = await openai(c).chat.completions.create({ model: SCRIPTED_MODEL, messages: [{ role: 'user', content: 'count' }], max_tokens: 4 });
    expect(res.object).toBe('chat.completion');
    expect(res.id).toMatch(/^chatcmpl-/);
    expect(res.model).toBe(SCRIPTED_MODEL);
    expect(res.choices).toHaveLength(1);
    expect(res.choices[0]).toMatchObject({ index: 0, finish_reason: 'length', message: { role: 'assistant', content: 'word0 word1 word2 word3 ' } });
    expect(res.usage).toMatchObject({ completion_tokens: 4 });
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + 4);
  });

  it('streams a chat completion chunk by chunk, with a last usage chunk when asked', async () => {
    const c = await start(mode);
    const stream = await openai(c).chat.completions.create({
      model: SCRIPTED_MODEL,
      messages: [{ role: 'user', content: 'count' }],
      max_completion_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const finish: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    let role: string | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      role ??= chunk.choices[0]?.delta.role;
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices[0]?.finish_reason) finish.push(chunk.choices[0].finish_reason);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(role).toBe('assistant');
    expect(text).toBe('word0 word1 word2 word3 word4 ');
    expect(finish).toEqual(['length']);
    expect(usage).toMatchObject({ completion_tokens: 5 });
  });

  it('serves completions, streaming and not', async () => {
    const c = await start(mode);
    const whole = await openai(c).completions.create({ model: SCRIPTED_MODEL, prompt: 'count', max_tokens: 2, temperature: 0 });
    expect(whole).toMatchObject({ object: 'text_completion', choices: [{ text: 'word0 word1 ', finish_reason: 'length' }], usage: { completion_tokens: 2 } });
    const stream = await openai(c).completions.create({ model: SCRIPTED_MODEL, prompt: 'count', max_tokens: 3, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe('word0 word1 word2 ');
  });

  it('an abort mid-stream cancels the generation on the agent and frees its slot within 1 s', async () => {
    const c = await start(mode, [{ agentId: 'agent-a', tokenDelayMs: 20 }]);
    const controller = new AbortController();
    const stream = await openai(c).chat.completions.create(
      { model: SCRIPTED_MODEL, messages: [{ role: 'user', content: 'go on' }], max_tokens: 2000, stream: true },
      { signal: controller.signal },
    );
    let chunks = 0;
    const ended = (async () => {
      for await (const _ of stream) {
        chunks += 1;
        if (chunks === 3) {
          expect(await running(c)).toBe(1);
          controller.abort();
        }
      }
    })().catch((e: unknown) => e);
    // The openai client ends an aborted stream's iteration quietly (or with its abort error).
    const outcome = await ended;
    expect(outcome === undefined || outcome instanceof Error).toBe(true);
    expect(chunks).toBe(3);
    const aborted = Date.now();
    await waitFor(async () => (await running(c)) === 0, 1000, 'the agent to cancel the job and free its slot', { intervalMs: 10, stopOnError: true });
    expect(Date.now() - aborted).toBeLessThan(1000);
    // The coordinator hears of it too: the next request finds the slot free.
    const next = await openai(c).completions.create({ model: SCRIPTED_MODEL, prompt: 'again', max_tokens: 1 });
    expect(next.choices[0]?.text).toBe('word0 ');
  });

  it('answers an unknown model 404, an unsupported option 400, in OpenAI error shape', async () => {
    const c = await start(mode);
    const notFound = await openai(c)
      .chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
    expect((notFound as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const bad = await openai(c)
      .chat.completions.create({ model: SCRIPTED_MODEL, messages: [{ role: 'user', content: 'x' }], n: 2 })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad).toMatchObject({ status: 400, param: 'n', code: 'unsupported_parameter' });
    const embed = await openai(c)
      .embeddings.create({ model: SCRIPTED_MODEL, input: 'x' })
      .catch((e: unknown) => e);
    expect(embed).toBeInstanceOf(OpenAI.BadRequestError);
    expect((embed as Error).message).toContain(`"${SCRIPTED_MODEL}" cannot embed`);
  });

  it('answers 429 with a true Retry-After when every slot is taken', async () => {
    const c = await start(mode, [{ agentId: 'agent-a', tokenDelayMs: 20, maxConcurrentJobs: 1, maxQueue: 0 }]);
    const controller = new AbortController();
    const stream = await openai(c).completions.create({ model: SCRIPTED_MODEL, prompt: 'long', max_tokens: 2000, stream: true }, { signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const busy = await openai(c)
      .completions.create({ model: SCRIPTED_MODEL, prompt: 'x', max_tokens: 1 })
      .catch((e: unknown) => e);
    controller.abort();
    await iterator.return?.();
    expect(busy).toBeInstanceOf(OpenAI.RateLimitError);
    const headers = (busy as InstanceType<typeof OpenAI.RateLimitError>).headers;
    expect(Number(headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(headers.get('retry-after-ms'))).toBeGreaterThan(0);
  });
});

describe('the OpenAI API routes', () => {
  it('lists every model a healthy agent serves, with its agents count', async () => {
    const c = await start('relay', [{ agentId: 'agent-a' }, { agentId: 'agent-b' }]);
    const models = await openai(c).models.list();
    expect(models.data).toEqual([expect.objectContaining({ id: SCRIPTED_MODEL, object: 'model', owned_by: 'titancompute', agents: 2 })]);
    const one = await openai(c).models.retrieve(SCRIPTED_MODEL);
    expect(one.id).toBe(SCRIPTED_MODEL);
    await expect(openai(c).models.retrieve('nope')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('redirect mode answers 307 to the agent with the session token, and the agent streams directly', async () => {
    const c = await start('redirect');
    const { data, response } = await openai(c).completions.create({ model: SCRIPTED_MODEL, prompt: 'count', max_tokens: 2 }).withResponse();
    expect(data.choices[0]?.text).toBe('word0 word1 ');
    expect(response.redirected).toBe(true);
    expect(new URL(response.url).port).not.toBe(String(c.coordinator.httpPort));
    expect(new URL(response.url).searchParams.get('session_token')).toMatch(/^ey/);
  });

  it('curl -L follows the redirect and streams from the agent (as the README shows)', async () => {
    const c = await start('redirect');
    const body = JSON.stringify({ model: SCRIPTED_MODEL, messages: [{ role: 'user', content: 'count' }], max_tokens: 3, stream: true });
    const { stdout } = await promisify(execFile)('curl', [
      '-sS',
      '-L',
      '--fail-with-body',
      `http://127.0.0.1:${c.coordinator.httpPort}/v1/chat/completions`,
      '-H',
      'content-type: application/json',
      '--data',
      body,
    ]);
    const deltas = stdout
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => (JSON.parse(e.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '');
    expect(deltas.join('')).toBe('word0 word1 word2 ');
    expect(stdout.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('pins the SSE wire format: data: lines, one JSON chunk each, then data: [DONE]', async () => {
    const c = await start('relay');
    const body = JSON.stringify({
      model: SCRIPTED_MODEL,
      messages: [{ role: 'user', content: 'count' }],
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const raw = await new Promise<{ status: number; type: string; text: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: c.coordinator.httpPort, path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(raw.status).toBe(200);
    expect(raw.type).toMatch(/^text\/event-stream/);
    expect(raw.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = raw.text.split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: ') && !e.slice(6).includes('\n'))).toBe(true);
    const chunks = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.slice(6)) as Record<string, unknown> & { choices: { delta: Record<string, string>; finish_reason: string | null }[] });
    expect(chunks[0]!.choices[0]!.delta).toMatchObject({ role: 'assistant' });
    expect(chunks.map((ch) => ch.choices[0]?.delta.content ?? '').join('')).toBe('word0 word1 ');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 2 });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
    expect(new Set(chunks.map((ch) => ch.id)).size).toBe(1);
  });
});

/** Creates an API key through the admin REST API; returns its secret. */
async function createKey(c: RealCluster, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${c.coordinator.httpPort}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${c.coordinator.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { secret: string }).secret;
}

/** A key's usage as the admin API lists it. */
async function keyUsage(c: RealCluster, name: string): Promise<{ tokens_used: number; requests_total: number }> {
  const res = await fetch(`http://127.0.0.1:${c.coordinator.httpPort}/admin/keys`, { headers: { authorization: `Bearer ${c.coordinator.adminToken}` } });
  const body = (await res.json()) as { keys: { name: string; tokens_used: number; requests_total: number }[] };
  return body.keys.find((k) => k.name === name)!;
}

describe('the OpenAI API with API keys', () => {
  const client = (c: RealCluster, apiKey: string) => new OpenAI({ baseURL: `http://127.0.0.1:${c.coordinator.httpPort}/v1`, apiKey, maxRetries: 0 });

  it('401 without a valid key once a key exists, 403 for a model outside the key, x-ratelimit headers on success', async () => {
    const c = await start('relay');
    const secret = await createKey(c, { name: 'app', requests_per_minute: 100, tokens_per_minute: 100000 });
    const other = await createKey(c, { name: 'other-models', models: ['some-other-model'] });
    for (const bad of ['unused', 'tk-not-a-real-key']) {
      const err = await client(c, bad)
        .completions.create({ model: SCRIPTED_MODEL, prompt: 'x', max_tokens: 1 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    }
    await expect(client(c, 'unused').models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const forbidden = await client(c, other)
      .completions.create({ model: SCRIPTED_MODEL, prompt: 'x', max_tokens: 1 })
      .catch((e: unknown) => e);
    expect(forbidden).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((forbidden as Error).message).toContain(SCRIPTED_MODEL);
    const { data, response } = await client(c, secret).completions.create({ model: SCRIPTED_MODEL, prompt: 'x', max_tokens: 2 }).withResponse();
    expect(data.choices[0]?.text).toBe('word0 word1 ');
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('100');
    expect(Number(response.headers.get('x-ratelimit-remaining-requests'))).toBe(99);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('100000');
  });

  it('an rpm-10 key sending 30 requests in a burst gets exactly 10; the 429s carry a true Retry-After', async () => {
    const c = await start('relay', [{ agentId: 'agent-a', maxConcurrentJobs: 64 }]);
    const secret = await createKey(c, { name: 'burst', requests_per_minute: 10 });
    const results = await Promise.all(
      Array.from({ length: 30 }, () =>
        client(c, secret)
          .completions.create({ model: SCRIPTED_MODEL, prompt: 'x', max_tokens: 1 })
          .then(() => 'ok' as const)
          .catch((e: unknown) => e),
      ),
    );
    expect(results.filter((r) => r === 'ok')).toHaveLength(10);
    const limited = results.filter((r) => r instanceof OpenAI.RateLimitError) as InstanceType<typeof OpenAI.RateLimitError>[];
    expect(limited).toHaveLength(20);
    for (const err of limited) {
      expect(err.code).toBe('rate_limit_exceeded');
      // The window frees its first slot a minute after the first grant: Retry-After says so.
      const seconds = Number(err.headers.get('retry-after'));
      expect(seconds).toBeGreaterThan(50);
      expect(seconds).toBeLessThanOrEqual(60);
    }
  });

  it('a busy 429 also carries the key’s x-ratelimit headers and a Retry-After', async () => {
    const c = await start('relay', [{ agentId: 'agent-a', tokenDelayMs: 20, maxConcurrentJobs: 1, maxQueue: 0 }]);
    const secret = await createKey(c, { name: 'busy-key', requests_per_minute: 50 });
    const controller = new AbortController();
    const stream = await client(c, secret).completions.create(
      { model: SCRIPTED_MODEL, prompt: 'long', max_tokens: 2000, stream: true },
      { signal: controller.signal },
    );
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const busy = await client(c, secret)
      .completions.create({ model: SCRIPTED_MODEL, prompt: 'x', max_tokens: 1 })
      .catch((e: unknown) => e);
    controller.abort();
    await iterator.return?.();
    expect(busy).toBeInstanceOf(OpenAI.RateLimitError);
    const headers = (busy as InstanceType<typeof OpenAI.RateLimitError>).headers;
    expect(headers.get('x-ratelimit-limit-requests')).toBe('50');
    expect(headers.get('x-ratelimit-remaining-requests')).toBe('49');
    expect(Number(headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('a key is charged the tokens the agent reports (prompt + generated), not max_tokens', async () => {
    const c = await start('redirect');
    const secret = await createKey(c, { name: 'metered', tokens_per_minute: 1000 });
    const res = await client(c, secret).completions.create({ model: SCRIPTED_MODEL, prompt: 'count', max_tokens: 3 });
    expect(res.usage!.completion_tokens).toBe(3);
    await waitFor(async () => (await keyUsage(c, 'metered')).tokens_used > 0, 3000, 'the job outcome to be charged', { intervalMs: 20 });
    expect(await keyUsage(c, 'metered')).toMatchObject({ tokens_used: res.usage!.total_tokens, requests_total: 1 });
  });
});
