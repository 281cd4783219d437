import { describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  canonicalMessagesJson,
  messagesSha256,
  parametersMismatch,
  promptSha256,
  readSessionTokenClaims,
  SESSION_TOKEN_CLAIMS,
  sessionTokenClaimsSchema,
  sessionTokenPayload,
} from './session-token.js';

describe('session-token contract', () => {
  it('sessionTokenPayload: the private claims in signing order; parameters only when any, prompt only as its hash', () => {
    const grant = { agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 8, temperature: 0.7 };
    expect(Object.keys(sessionTokenPayload({ ...grant, parameters: { top_k: '5' }, prompt: 'hi' }))).toEqual([
      'job_id',
      'model',
      'max_tokens',
      'temperature',
      'agent_id',
      'client_id',
      'parameters',
      'prompt_sha256',
    ]);
    expect(sessionTokenPayload({ ...grant, parameters: {} })).not.toHaveProperty(SESSION_TOKEN_CLAIMS.parameters);
    expect(sessionTokenPayload({ ...grant, prompt: 'hi' })).toMatchObject({ prompt_sha256: createHash('sha256').update('hi', 'utf8').digest('base64url') });
    expect(JSON.stringify(sessionTokenPayload({ ...grant, prompt: 'secret prompt' }))).not.toContain('secret prompt');
  });

  it('messages_sha256: signed only for messages, the SHA-256 of the canonical [role, content] JSON, order- and role-sensitive', () => {
    const grant = { agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 8, temperature: 0.7 };
    const messages = [
      { role: 'system', content: 'Be "brief"\n' },
      { role: 'user', content: 'héllo' },
    ];
    expect(canonicalMessagesJson(messages)).toBe('[["system","Be \\"brief\\"\\n"],["user","héllo"]]');
    const payload = sessionTokenPayload({ ...grant, prompt: '', messages });
    expect(Object.keys(payload).slice(-2)).toEqual(['prompt_sha256', 'messages_sha256']);
    expect(payload).toMatchObject({
      messages_sha256: createHash('sha256').update('[["system","Be \\"brief\\"\\n"],["user","héllo"]]', 'utf8').digest('base64url'),
    });
    expect(JSON.stringify(payload)).not.toContain('héllo');
    expect(sessionTokenPayload({ ...grant, prompt: 'hi', messages: [] })).not.toHaveProperty(SESSION_TOKEN_CLAIMS.messagesSha256);
    expect(sessionTokenPayload({ ...grant, prompt: 'hi' })).not.toHaveProperty(SESSION_TOKEN_CLAIMS.messagesSha256);
    // Reordering, changing a role, or moving text between turns all change the hash.
    expect(messagesSha256([messages[1]!, messages[0]!])).not.toBe(messagesSha256(messages));
    expect(messagesSha256([{ ...messages[0]!, role: 'user' }, messages[1]!])).not.toBe(messagesSha256(messages));
    expect(messagesSha256([{ role: 'user', content: 'ab' }])).not.toBe(
      messagesSha256([
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
      ]),
    );
    const claims = { jti: 'x', exp: 1, ...payload };
    expect(sessionTokenClaimsSchema.parse(claims)).toMatchObject({ messages_sha256: messagesSha256(messages) });
    expect(sessionTokenClaimsSchema.safeParse({ ...claims, messages_sha256: 'short' }).error?.issues[0]?.path).toEqual(['messages_sha256']);
  });

  it('the claims schema accepts what is signed and names what is wrong', () => {
    const claims = {
      jti: 'x',
      exp: 1,
      ...sessionTokenPayload({ agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 8, temperature: 0.7, prompt: 'p' }),
    };
    expect(sessionTokenClaimsSchema.parse(claims)).toMatchObject({ model: 'm', prompt_sha256: promptSha256('p') });
    const bad = sessionTokenClaimsSchema.safeParse({ ...claims, prompt_sha256: 'short' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['prompt_sha256']);
    expect(sessionTokenClaimsSchema.safeParse({ ...claims, max_tokens: 0 }).error?.issues[0]?.path).toEqual(['max_tokens']);
  });

  it('readSessionTokenClaims: what the schema returns for claims it accepts, undefined for claims it refuses', () => {
    const signed = {
      iss: 'titancompute-coordinator',
      aud: 'a',
      sub: 'c',
      jti: 'x',
      iat: 1,
      nbf: 1,
      exp: 2,
      ...sessionTokenPayload({ agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 8, temperature: 0.7, parameters: { seed: '1' }, prompt: 'p' }),
    };
    expect(readSessionTokenClaims({ ...signed, extra: 1 })).toEqual(sessionTokenClaimsSchema.parse(signed));
    const value = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.string({ maxLength: 3 }),
      fc.constantFrom('', 'x', promptSha256('p'), 'titancompute-coordinator'),
      fc.double(),
      fc.integer({ min: -2, max: 3 }),
      fc.constantFrom(0.5, 2, 2.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY),
      fc.array(fc.oneof(fc.string({ maxLength: 2 }), fc.integer()), { maxLength: 2 }),
      fc.dictionary(fc.constantFrom('seed', 'top_k', '__proto__'), fc.oneof(fc.string({ maxLength: 2 }), fc.integer())),
    );
    const keys = ['iss', 'aud', 'sub', 'jti', 'iat', 'nbf', 'exp', ...Object.values(SESSION_TOKEN_CLAIMS)];
    fc.assert(
      fc.property(fc.record(Object.fromEntries(keys.map((k) => [k, value])), { requiredKeys: [] }), fc.boolean(), (changes, fromSigned) => {
        const payload = JSON.parse(JSON.stringify({ ...(fromSigned ? signed : {}), ...changes })) as Record<string, unknown>;
        const bySchema = sessionTokenClaimsSchema.safeParse(payload);
        const fast = readSessionTokenClaims(payload);
        if (fast !== undefined) expect(fast).toEqual(bySchema.data);
        else expect(bySchema.success && !Object.hasOwn(payload.parameters ?? {}, '__proto__')).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it('parametersMismatch: empty requested means the granted ones; otherwise the first differing key', () => {
    expect(parametersMismatch({ top_k: '5' }, {})).toBeUndefined();
    expect(parametersMismatch(undefined, {})).toBeUndefined();
    expect(parametersMismatch({ top_k: '5', seed: '1' }, { seed: '1', top_k: '5' })).toBeUndefined();
    expect(parametersMismatch({ top_k: '5' }, { top_k: '6' })).toEqual({ key: 'top_k', requested: '6', granted: '5' });
    expect(parametersMismatch({ top_k: '5', seed: '1' }, { top_k: '5' })).toEqual({ key: 'seed', requested: undefined, granted: '1' });
    expect(parametersMismatch(undefined, { seed: '1' })).toEqual({ key: 'seed', requested: '1', granted: undefined });
    expect(parametersMismatch({}, { constructor: 'x' })).toEqual({ key: 'constructor', requested: 'x', granted: undefined });
  });
});
