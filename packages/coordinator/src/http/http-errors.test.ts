import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Fastify, { type FastifyInstance } from 'fastify';
import { Status } from 'nice-grpc-common';
import { createLogger } from '@titancompute/server-kit';
import {
  AdminAuthError,
  AgentsBusyError,
  ApiKeyAuthError,
  ApiKeyExistsError,
  ApiKeyNotFoundError,
  ClientShareExceededError,
  CoordinatorError,
  InvalidRequestError,
  KeyringError,
  ModelNotAllowedError,
  NoAgentAvailableError,
  QuotaExceededError,
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
  'missing-key': () => new ApiKeyAuthError('missing', 'missing API key'),
  'revoked-key': () => new ApiKeyAuthError('revoked', 'API key "a" (tk-1234567…) was revoked at 2026-01-01T00:00:00.000Z', 'a'),
  admin: () => new AdminAuthError('invalid admin token'),
  model: () => new ModelNotAllowedError('a', 'big', ['tiny']),
  rpm: () => new QuotaExceededError('a', 'rpm', { limit: 10, used: 10 }, 41_500, { 'x-ratelimit-limit-requests': '10', 'x-ratelimit-remaining-requests': '0' }),
  budget: () => new QuotaExceededError('a', 'budget', { limit: 50, used: 60 }, undefined),
  'no-key': () => new ApiKeyNotFoundError('nope'),
  exists: () => new ApiKeyExistsError('a'),
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

  it('maps API-key refusals: UNAUTHENTICATED 401 (missing_api_key, invalid_api_key; unauthorized for the admin token), PERMISSION_DENIED 403 model_not_allowed', async () => {
    expect(await get('missing-key')).toMatchObject({ status: 401, body: { error: 'missing_api_key', code: 401, message: 'missing API key' } });
    expect(await get('revoked-key')).toMatchObject({ status: 401, body: { error: 'invalid_api_key', message: expect.stringContaining('"a"') } });
    expect(await get('admin')).toMatchObject({ status: 401, body: { error: 'unauthorized', message: 'invalid admin token' } });
    expect(await get('model')).toMatchObject({
      status: 403,
      body: { error: 'model_not_allowed', message: 'API key "a" may not use model "big" (allowed: tiny)' },
    });
  });

  it('maps quotas to 429: rate_limited with the true Retry-After and x-ratelimit-* headers; budget_exhausted without a retry', async () => {
    const rpm = await get('rpm');
    expect(rpm).toMatchObject({ status: 429, body: { error: 'rate_limited', code: 429 } });
    expect(rpm.headers.get('retry-after-ms')).toBe('41500');
    expect(rpm.headers.get('retry-after')).toBe('42');
    expect(rpm.headers.get('x-ratelimit-limit-requests')).toBe('10');
    expect(rpm.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(rpm.headers.get('titan-quota')).toBe('rpm');
    const budget = await get('budget');
    expect(budget).toMatchObject({ status: 429, body: { error: 'budget_exhausted' } });
    expect(budget.headers.get('retry-after')).toBeNull();
    expect(budget.headers.get('titan-quota')).toBe('budget');
  });

  it('maps the admin API: NOT_FOUND 404, ALREADY_EXISTS 409', async () => {
    expect(await get('no-key')).toMatchObject({ status: 404, body: { error: 'not_found' } });
    expect(await get('exists')).toMatchObject({ status: 409, body: { error: 'already_exists' } });
  });

  it('has one entry per gRPC status the REST routes can answer besides INTERNAL', () => {
    expect([...HTTP_ERROR_BY_GRPC_STATUS.keys()].sort()).toEqual(
      [
        Status.INVALID_ARGUMENT,
        Status.UNAVAILABLE,
        Status.RESOURCE_EXHAUSTED,
        Status.UNAUTHENTICATED,
        Status.PERMISSION_DENIED,
        Status.NOT_FOUND,
        Status.ALREADY_EXISTS,
      ].sort(),
    );
  });
});
