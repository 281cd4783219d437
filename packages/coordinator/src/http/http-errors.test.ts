import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Fastify, { type FastifyInstance } from 'fastify';
import { Status } from 'nice-grpc-common';
import { createLogger } from '@titancompute/server-kit';
import {
  AgentsBusyError,
  ClientShareExceededError,
  CoordinatorError,
  InvalidRequestError,
  KeyringError,
  NoAgentAvailableError,
  TokenSigningError,
} from '../errors.js';
import { HTTP_ERROR_BY_GRPC_STATUS, sendMappedError } from './http-errors.js';

// Each case: what the route throws, and the REST answer v1 clients rely on.
const cases: Record<string, () => Error> = {
  invalid: () => new InvalidRequestError('max_tokens', 'must be from 1 to 4096'),
  'no-agents': () => new NoAgentAvailableError('tiny'),
  busy: () => new AgentsBusyError('tiny', 1500),
  share: () => new ClientShareExceededError('c', 'tiny', { held: 1, limit: 1, share: 0.5, fleetSlots: 2 }, 250),
  signing: () => new TokenSigningError('ed25519 key unusable'),
  keyring: () => new KeyringError('keyring.json unreadable'),
  internal: () => new CoordinatorError('scheduling failed'),
  plain: () => new Error('boom'),
};

let app: FastifyInstance;
let base: string;
beforeAll(async () => {
  app = Fastify({ logger: false });
  const logger = createLogger({ service: 'test', level: 'silent' });
  app.get<{ Params: { kind: string } }>('/:kind', async (req, reply) => sendMappedError(reply, cases[req.params.kind]!(), logger));
  base = await app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(() => app.close());

async function get(kind: string) {
  const res = await fetch(`${base}/${kind}`);
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

describe('REST answers from the declared gRPC status', () => {
  it('maps INVALID_ARGUMENT to 400 invalid_argument with the message naming the field', async () => {
    expect(await get('invalid')).toMatchObject({ status: 400, body: { error: 'invalid_argument', code: 400, message: 'max_tokens: must be from 1 to 4096' } });
  });

  it("maps UNAVAILABLE to v1's 503 no_agents", async () => {
    expect(await get('no-agents')).toMatchObject({ status: 503, body: { error: 'no_agents', code: 503, message: 'no agent available for model "tiny"' } });
  });

  it('maps RESOURCE_EXHAUSTED to 429 agents_busy with the retry-after-ms trailer as headers (Retry-After rounded up to seconds)', async () => {
    const busy = await get('busy');
    expect(busy).toMatchObject({ status: 429, body: { error: 'agents_busy', code: 429 } });
    expect(busy.headers.get('retry-after-ms')).toBe('1500');
    expect(busy.headers.get('retry-after')).toBe('2');
    const share = await get('share');
    expect(share).toMatchObject({ status: 429, body: { error: 'agents_busy', code: 429 } });
    expect(share.body.message).toMatch(/client "c" already holds 1 of its limit of 1/);
    expect(share.headers.get('retry-after-ms')).toBe('250');
    expect(share.headers.get('retry-after')).toBe('1');
  });

  it('answers 500 token_generation_failed without the details for internal errors, declared INTERNAL or undeclared', async () => {
    for (const kind of ['signing', 'keyring', 'internal', 'plain']) {
      const res = await get(kind);
      expect(res).toEqual({
        status: 500,
        headers: expect.anything(),
        body: { error: 'token_generation_failed', code: 500, message: 'could not generate a session token' },
      });
      expect(res.headers.get('retry-after-ms')).toBeNull();
    }
  });

  it('has one entry per gRPC status the inference route can answer besides INTERNAL', () => {
    expect([...HTTP_ERROR_BY_GRPC_STATUS.keys()].sort()).toEqual([Status.INVALID_ARGUMENT, Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED].sort());
  });
});
