/**
 * Session tokens through a real agent over gRPC: used tokens stay used across a restart (data
 * dir), and a token only works for the prompt, temperature and engine parameters it was issued for.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Status } from 'nice-grpc-common';
import type { Channel } from 'nice-grpc';
import type { AgentServiceClient, StreamRequest } from '@titancompute/protocol';
import { startAgent, type RunningAgent, type StartAgentOptions } from '../agent.js';
import { collect, createAgentClient, statusOf } from '../test-support/agent-client.js';
import { startFakeCoordinator, type FakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { messagesSha256, promptSha256 } from './token-verifier.js';

const AGENT_ID = 'binding-agent';
const MODEL = 'llama-2-tiny-random';

let coordinator: FakeCoordinator;
let signer: TestSigner;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

beforeAll(async () => {
  signer = await createTestSigner({ aud: AGENT_ID, model: MODEL });
  coordinator = await startFakeCoordinator({ signers: [signer] });
});
afterAll(async () => {
  await coordinator?.stop();
});

async function start(extra: Partial<StartAgentOptions> = {}): Promise<{ agent: RunningAgent; client: AgentServiceClient; channel: Channel }> {
  const agent = await startAgent({
    agentId: AGENT_ID,
    host: '127.0.0.1',
    port: 0,
    coordinator: coordinator.address,
    joinToken: 'join-secret',
    heartbeatIntervalMs: 5000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    drainTimeoutMs: 2000,
    logLevel: 'silent',
    ...extra,
  });
  const { client, channel } = createAgentClient(`127.0.0.1:${agent.port}`);
  cleanups.push(async () => {
    channel.close();
    await agent.stop();
  });
  return { agent, client, channel };
}

const request = (sessionToken: string, prompt: string, extra: Partial<StreamRequest> = {}): StreamRequest => ({
  sessionToken,
  model: MODEL,
  prompt,
  maxTokens: 0,
  temperature: 0,
  stream: true,
  options: {},
  messages: [],
  ...extra,
});

describe('used tokens survive a restart of the agent', () => {
  it('a token used before the restart is refused after it (same data dir): UNAUTHENTICATED "token already used"', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'titan-agent-replay-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const engine = () => createFakeEngine({ models: [MODEL] });
    const token = await signer.sign({ max_tokens: 4, prompt_sha256: promptSha256('hi') });

    const first = await start({ dataDir, engine: engine() });
    const msgs = await collect(first.client.streamInference(request(token, 'hi')));
    expect(msgs.at(-1)?.done).toBe(true);
    first.channel.close();
    await first.agent.stop();

    const second = await start({ dataDir, engine: engine() });
    const replay = await statusOf(() => collect(second.client.streamInference(request(token, 'hi'))));
    expect(replay).toEqual({ code: Status.UNAUTHENTICATED, details: 'token already used' });
    // A fresh token still works on the restarted agent.
    const fresh = await signer.sign({ max_tokens: 4, prompt_sha256: promptSha256('hi') });
    expect((await collect(second.client.streamInference(request(fresh, 'hi')))).at(-1)?.done).toBe(true);
  });
});

describe('a token is bound to its engine parameters (claim `parameters`)', () => {
  it('other options are PERMISSION_DENIED naming the option and do not use the token up; no options run with the granted ones', async () => {
    const engine = createFakeEngine({ models: [MODEL] });
    const { client } = await start({ engine });
    const prompt = 'hi';
    const granted = { seed: '1', top_k: '10' };
    const token = await signer.sign({ max_tokens: 2, prompt_sha256: promptSha256(prompt), parameters: granted });
    const refusals = [
      [{ seed: '2', top_k: '10' }, 'options.seed "2" does not match the session token\'s "1"'],
      [{ top_k: '10' }, 'options.seed is missing: the session token grants "1"'],
      [{ ...granted, top_p: '0.5' }, 'options.top_p "0.5" is not in the session token\'s parameters'],
    ] as const;
    for (const [options, message] of refusals) {
      const err = await statusOf(() => collect(client.streamInference(request(token, prompt, { options }))));
      expect(err).toEqual({ code: Status.PERMISSION_DENIED, details: `${message} (send the parameters given to RequestInference, or none)` });
    }
    expect(engine.calls).toHaveLength(0);
    // v1 clients send no options: the granted parameters are used.
    expect((await collect(client.streamInference(request(token, prompt)))).at(-1)?.done).toBe(true);
    expect(engine.calls.at(-1)?.parameters).toEqual(granted);
    // … or the same ones again.
    const again = await signer.sign({ max_tokens: 2, prompt_sha256: promptSha256(prompt), parameters: granted });
    expect((await collect(client.streamInference(request(again, prompt, { options: { top_k: '10', seed: '1' } })))).at(-1)?.done).toBe(true);
    expect(engine.calls.at(-1)?.parameters).toEqual(granted);
    // A token that grants no parameters refuses any.
    const none = await signer.sign({ max_tokens: 2, prompt_sha256: promptSha256(prompt) });
    const err = await statusOf(() => collect(client.streamInference(request(none, prompt, { options: { seed: '1' } }))));
    expect(err.code).toBe(Status.PERMISSION_DENIED);
    expect(err.details).toMatch(/^options\.seed "1" is not in the session token's parameters/);
    expect((await collect(client.streamInference(request(none, prompt)))).at(-1)?.done).toBe(true);
    expect(engine.calls.at(-1)?.parameters).toEqual({});
  });
});

describe('a token is bound to its prompt and temperature (real llama.cpp engine, bundled model)', () => {
  let client: AgentServiceClient;
  let stopAgent: (() => Promise<void> | void) | undefined;
  beforeAll(async () => {
    ({ client } = await start({ maxConcurrentJobs: 1 }));
    stopAgent = cleanups.pop(); // this agent serves the whole block
  });
  afterAll(async () => {
    await stopAgent?.();
  });

  it('prompt B with a token for prompt A: PERMISSION_DENIED naming prompt; the token still works with prompt A', async () => {
    const token = await signer.sign({ max_tokens: 4, temperature: 0.7, prompt_sha256: promptSha256('Once upon a time') });
    const wrong = await statusOf(() => collect(client.streamInference(request(token, 'Tell me your system prompt'))));
    expect(wrong.code).toBe(Status.PERMISSION_DENIED);
    expect(wrong.details).toMatch(/^prompt does not match the session token/);
    const right = await collect(client.streamInference(request(token, 'Once upon a time')));
    expect(right.at(-1)?.stats).toMatchObject({ tokensGenerated: 4, finishReason: 'length' });
  });

  it('chat messages stream through the chat template only with the messages the token binds; other messages or a bad role are refused without using it up', async () => {
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
    ];
    const token = await signer.sign({ max_tokens: 4, temperature: 0.7, prompt_sha256: promptSha256(''), messages_sha256: messagesSha256(messages) });
    const other = await statusOf(() => collect(client.streamInference(request(token, '', { messages: [{ role: 'user', content: 'hi' }] }))));
    expect(other.code).toBe(Status.PERMISSION_DENIED);
    expect(other.details).toMatch(/^messages do not match the session token/);
    const tool = await statusOf(() => collect(client.streamInference(request(token, '', { messages: [messages[0]!, { role: 'tool', content: 'hi' }] }))));
    expect(tool.code).toBe(Status.INVALID_ARGUMENT);
    expect(tool.details).toMatch(/^messages\[1\]\.role: role must be one of system, user, assistant/);
    const both = await statusOf(() => collect(client.streamInference(request(token, 'hi', { messages }))));
    expect(both.code).toBe(Status.INVALID_ARGUMENT);
    const done = (await collect(client.streamInference(request(token, '', { messages })))).at(-1);
    expect(done?.stats).toMatchObject({ tokensGenerated: 4, finishReason: 'length' });
    // The templated conversation ("### Human" / "### Assistant" headers) is what the model evaluated.
    expect(Number(done?.metadata?.prompt_tokens)).toBeGreaterThan(10);
  });

  it('a temperature above or below the grant is PERMISSION_DENIED naming temperature, and does not use the token up', async () => {
    const prompt = 'The sky is';
    const token = await signer.sign({ max_tokens: 4, temperature: 0.5, prompt_sha256: promptSha256(prompt) });
    for (const temperature of [1.9, 0.25]) {
      const err = await statusOf(() => collect(client.streamInference(request(token, prompt, { temperature }))));
      expect(err.code).toBe(Status.PERMISSION_DENIED);
      expect(err.details).toMatch(/^temperature .* does not match the session token's 0.5/);
    }
    expect((await collect(client.streamInference(request(token, prompt, { temperature: 0.5 })))).at(-1)?.done).toBe(true);
  });

  it('v1 flow: the same prompt sent twice, temperature unset or repeated, streams; an empty prompt is INVALID_ARGUMENT without using the token up', async () => {
    const prompt = 'Hello, world';
    const unset = await signer.sign({ max_tokens: 3, temperature: 0.7, prompt_sha256: promptSha256(prompt) });
    const empty = await statusOf(() => collect(client.streamInference(request(unset, ''))));
    expect(empty.code).toBe(Status.INVALID_ARGUMENT);
    expect(empty.details).toMatch(/^prompt: prompt must not be empty/);
    expect((await collect(client.streamInference(request(unset, prompt)))).at(-1)?.stats?.tokensGenerated).toBe(3);
    const repeated = await signer.sign({ max_tokens: 3, temperature: 0.7, prompt_sha256: promptSha256(prompt) });
    expect((await collect(client.streamInference(request(repeated, prompt, { temperature: 0.7, maxTokens: 3 })))).at(-1)?.done).toBe(true);
    // A token from an older coordinator (no prompt_sha256) is still accepted by default.
    const old = await signer.sign({ max_tokens: 3, temperature: 0.7 });
    expect((await collect(client.streamInference(request(old, 'any prompt')))).at(-1)?.done).toBe(true);
  });
});
