/**
 * Session tokens signed by a real coordinator and verified the way agents do: with the agent's
 * own token verifier (`@titancompute/agent`) and the shared contract of `@titancompute/protocol`.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { readFileSync, statSync } from 'node:fs';
import { decodeJwt, decodeProtectedHeader, importPKCS8, jwtVerify, SignJWT } from 'jose';
import { Status } from 'nice-grpc-common';
import { createTokenVerifier, TokenError, type TokenVerifier } from '@titancompute/agent';
import { messagesSha256, sessionTokenClaimsSchema, sessionTokenPayload, SESSION_TOKEN_ISSUER, type PublicKeyResponse } from '@titancompute/protocol';
import { TokenSigningError } from '../errors.js';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { makeTempDir, startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';
import { importPublicKey, keyringPath, openKeyring, rotateKeyring } from './keyring.js';
import { createHash, createSecretKey } from 'node:crypto';
import { DEFAULT_ISSUER, promptSha256, signSessionToken } from './session-token.js';

/** The verifier a real agent `agentId` builds, fetching its keys from `fetchKeys` (the coordinator's GetPublicKey). */
function agentVerifier(fetchKeys: () => Promise<PublicKeyResponse>, agentId = 'agent-a', clockToleranceSec?: number): TokenVerifier {
  return createTokenVerifier({ agentId, fetchKeys, ...(clockToleranceSec !== undefined ? { clockToleranceSec } : {}) });
}

/** The status of the TokenError `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<{ code: Status; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenError);
  return { code: (err as TokenError).grpcStatus, message: (err as TokenError).message };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function coordinatorWithAgent(options: Parameters<typeof startTestCoordinator>[0] = {}): Promise<{ tc: TestCoordinator; agent: FakeAgent }> {
  const tc = await startTestCoordinator(options);
  const agent = await startFakeAgent({
    coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`,
    joinToken: 'test-join-token',
    agentId: 'agent-a',
    totalVramMb: 8000,
  });
  cleanups.push(async () => {
    await agent.close();
    await tc.stop();
  });
  return { tc, agent };
}

describe('session tokens', () => {
  it('verify with the published key and carry the agreed claims', async () => {
    const { tc } = await coordinatorWithAgent();
    const grant = await tc.client.requestInference({
      clientId: 'client-9',
      model: 'tiny',
      prompt: 'hi',
      maxTokens: 42,
      temperature: 0.5,
      parameters: { top_k: '5' },
    });
    const pub = await tc.client.getPublicKey({});
    expect(pub).toMatchObject({ algorithm: 'EdDSA', issuer: DEFAULT_ISSUER });
    expect(pub.publicKeyPem).toContain('BEGIN PUBLIC KEY');
    expect(pub.keys[0]).toMatchObject({ keyId: pub.keyId, publicKeyPem: pub.publicKeyPem, retireAt: 0 });
    expect(decodeProtectedHeader(grant.sessionToken)).toEqual({ alg: 'EdDSA', kid: pub.keyId, typ: 'JWT' });
    const verified = await agentVerifier(async () => pub).verify(grant.sessionToken, undefined, { prompt: 'hi', temperature: 0.5, options: { top_k: '5' } });
    expect(verified).toMatchObject({ jobId: grant.jobId, clientId: 'client-9', model: 'tiny', maxTokens: 42, temperature: 0.5, parameters: { top_k: '5' } });
    // On the wire: exactly these claims, in the contract's schema.
    const claims = sessionTokenClaimsSchema.parse(decodeJwt(grant.sessionToken));
    expect(Object.keys(decodeJwt(grant.sessionToken))).toEqual([
      'job_id',
      'model',
      'max_tokens',
      'temperature',
      'agent_id',
      'client_id',
      'parameters',
      'prompt_sha256',
      'iss',
      'aud',
      'sub',
      'jti',
      'iat',
      'nbf',
      'exp',
    ]);
    expect(claims).toMatchObject({
      iss: DEFAULT_ISSUER,
      aud: 'agent-a',
      sub: 'client-9',
      job_id: grant.jobId,
      model: 'tiny',
      max_tokens: 42,
      temperature: 0.5,
      agent_id: 'agent-a',
      client_id: 'client-9',
      parameters: { top_k: '5' },
      prompt_sha256: createHash('sha256').update('hi').digest('base64url'),
    });
    expect(claims).not.toHaveProperty('prompt');
    expect(DEFAULT_ISSUER).toBe(SESSION_TOKEN_ISSUER);
    expect(claims.exp).toBe(grant.expiresAt);
    expect(claims.exp - claims.iat!).toBe(300);
    expect(claims.nbf).toBe(claims.iat);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('of a chat request carry messages_sha256 (and the empty prompt hash); the agent accepts those messages only', async () => {
    const { tc } = await coordinatorWithAgent();
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
    ];
    const grant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: '', messages });
    const claims = sessionTokenClaimsSchema.parse(decodeJwt(grant.sessionToken));
    expect(claims).toMatchObject({ prompt_sha256: promptSha256(''), messages_sha256: messagesSha256(messages) });
    expect(JSON.stringify(decodeJwt(grant.sessionToken))).not.toContain('be brief');
    const pub = await tc.client.getPublicKey({});
    const verifier = agentVerifier(async () => pub);
    expect(await refusal(verifier.verify(grant.sessionToken, undefined, { prompt: '', messages: [messages[1]!], temperature: 0 }))).toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    await expect(verifier.verify(grant.sessionToken, undefined, { prompt: '', messages, temperature: 0 })).resolves.toMatchObject({ jobId: grant.jobId });
    // A prompt request's token has no messages claim; a bad role is INVALID_ARGUMENT naming it.
    const prompt = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    expect(decodeJwt(prompt.sessionToken)).not.toHaveProperty('messages_sha256');
    const bad = await tc.client.requestInference({ clientId: 'c', model: 'tiny', messages: [{ role: 'tool', content: 'x' }] }).then(
      () => undefined,
      (e: unknown) => e as { code: Status; details: string },
    );
    expect(bad).toMatchObject({ code: Status.INVALID_ARGUMENT, details: expect.stringContaining('messages[0].role') });
  });

  it('are refused by an agent for another audience, another issuer and after tampering', async () => {
    const { tc } = await coordinatorWithAgent();
    const grant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const pub = await tc.client.getPublicKey({});
    expect(await refusal(agentVerifier(async () => pub, 'agent-b').verify(grant.sessionToken))).toEqual({
      code: Status.PERMISSION_DENIED,
      message: 'session token is for agent "agent-a", not this agent (agent-b)',
    });
    expect(await refusal(agentVerifier(async () => ({ ...pub, issuer: 'someone-else' })).verify(grant.sessionToken))).toMatchObject({
      code: Status.UNAUTHENTICATED,
      message: expect.stringMatching(/claim iss is invalid/),
    });
    const verifier = agentVerifier(async () => pub);
    const [h, p, s] = grant.sessionToken.split('.') as [string, string, string];
    const payload = decodeJwt(grant.sessionToken);
    const forged = Buffer.from(JSON.stringify({ ...payload, max_tokens: 100000 })).toString('base64url');
    expect(await refusal(verifier.verify(`${h}.${forged}.${s}`))).toEqual({ code: Status.UNAUTHENTICATED, message: 'session token signature is invalid' });
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    expect(await refusal(verifier.verify(`${h}.${p}.${flipped}`))).toEqual({ code: Status.UNAUTHENTICATED, message: 'session token signature is invalid' });
    // The untouched token still verifies (the refusals above did not use it up).
    await expect(verifier.verify(grant.sessionToken, undefined, { prompt: 'hi', temperature: 0 })).resolves.toMatchObject({ jobId: grant.jobId });
  });

  it('expire after the configured TTL', async () => {
    // exp is whole seconds: a 3 s TTL leaves at least 2 s to verify the fresh token in.
    const { tc } = await coordinatorWithAgent({ tokenTtlMs: 3000 });
    const first = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const second = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const verifier = agentVerifier(() => tc.client.getPublicKey({}), 'agent-a', 0);
    await verifier.verify(first.sessionToken);
    await new Promise((r) => setTimeout(r, (second.expiresAt + 1) * 1000 - Date.now()));
    expect(await refusal(verifier.verify(second.sessionToken))).toEqual({ code: Status.UNAUTHENTICATED, message: 'session token expired' });
  });
});

describe('signing', () => {
  it("writes the very bytes jose's SignJWT writes for the same claims and key (crypto.sign with a KeyObject; Ed25519 is deterministic)", async () => {
    const dataDir = makeTempDir();
    const now = 1_700_000_000_000;
    const keyring = await openKeyring({ dataDir, tokenTtlMs: 60_000, now: () => now });
    const grants = [
      { agentId: 'agent-a', clientId: 'c', jobId: 'j-1', model: 'm', maxTokens: 8, temperature: 0.7, prompt: 'héllo "quoted"\n' },
      {
        agentId: 'agent-b',
        clientId: 'c2',
        jobId: 'j-2',
        model: 'm',
        maxTokens: 1,
        temperature: 0,
        parameters: { top_k: '5', ünï: 'çödé' },
        prompt: '',
        messages: [{ role: 'user', content: 'hi' }],
      },
    ];
    const stored = JSON.parse(readFileSync(keyringPath(dataDir), 'utf8')) as { keys: { privateKeyPem: string }[] };
    const joseKey = await importPKCS8(stored.keys[0]!.privateKeyPem, 'EdDSA');
    for (const grant of grants) {
      const signed = await signSessionToken(keyring, grant, { issuer: 'iss-x', ttlMs: 60_000, now });
      const expected = await new SignJWT(sessionTokenPayload(grant))
        .setProtectedHeader({ alg: 'EdDSA', kid: signed.kid, typ: 'JWT' })
        .setIssuer('iss-x')
        .setAudience(grant.agentId)
        .setSubject(grant.clientId)
        .setJti(signed.jti)
        .setIssuedAt(now / 1000)
        .setNotBefore(now / 1000)
        .setExpirationTime(now / 1000 + 60)
        .sign(joseKey);
      expect(signed.token).toBe(expected);
      expect(signed.expiresAt).toBe(now / 1000 + 60);
      // And jose verifies it with the published key, as agents do.
      const { payload } = await jwtVerify(signed.token, await importPublicKey(keyring.current().publicKeyPem), {
        issuer: 'iss-x',
        audience: grant.agentId,
        currentDate: new Date(now),
      });
      expect(payload).toMatchObject({ job_id: grant.jobId, sub: grant.clientId, jti: signed.jti });
    }
    keyring.close();
  });

  it('wraps a key that cannot sign in a TokenSigningError', async () => {
    const keyring = await openKeyring({ dataDir: makeTempDir(), tokenTtlMs: 60_000 });
    const broken = { ...keyring, current: () => ({ ...keyring.current(), privateKey: createSecretKey(Buffer.alloc(32)) }) };
    await expect(
      signSessionToken(broken, { agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 1, temperature: 0 }, { issuer: 'i', ttlMs: 1000 }),
    ).rejects.toBeInstanceOf(TokenSigningError);
    keyring.close();
  });
});

describe('prompt binding claim', () => {
  it('prompt_sha256 is the base64url SHA-256 of the UTF-8 prompt, exactly as sent (no trimming or normalisation)', async () => {
    const { tc } = await coordinatorWithAgent();
    const verifier = agentVerifier(() => tc.client.getPublicKey({}));
    const prompts = ['  café\n', 'cafe\u0301', 'Once upon a time'];
    const hashes = new Set<string>();
    for (const [i, prompt] of prompts.entries()) {
      const grant = await tc.client.requestInference({ clientId: `c-${i}`, model: 'tiny', prompt, temperature: 1.25, temperatureSet: true });
      // The agent accepts it for exactly this prompt (and no other: see the agent's session-binding tests).
      await expect(verifier.verify(grant.sessionToken, undefined, { prompt, temperature: 1.25 })).resolves.toMatchObject({ temperature: 1.25 });
      const claims = sessionTokenClaimsSchema.parse(decodeJwt(grant.sessionToken));
      expect(claims.prompt_sha256).toBe(createHash('sha256').update(Buffer.from(prompt, 'utf8')).digest('base64url'));
      expect(claims.prompt_sha256).toBe(promptSha256(prompt));
      expect(claims.temperature).toBe(1.25);
      hashes.add(claims.prompt_sha256 ?? '');
    }
    expect(hashes.size).toBe(prompts.length);
    expect(promptSha256('x')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('keyring persistence and rotation', () => {
  it('survives a coordinator restart: same key, agents re-register, old tokens verify', async () => {
    const dataDir = makeTempDir();
    const first = await startTestCoordinator({ dataDir });
    const port = first.coordinator.port;
    const agent = await startFakeAgent({ coordinatorAddress: `127.0.0.1:${port}`, joinToken: 'test-join-token', agentId: 'agent-a', heartbeatIntervalMs: 50 });
    cleanups.push(() => agent.close());
    const grant = await first.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const before = await first.client.getPublicKey({});
    await first.stop();

    const second = await startTestCoordinator({ dataDir, port });
    cleanups.push(() => second.stop(true));
    await waitFor(async () => (await second.client.querySystemStatus({})).totalAgents === 1, 5000);
    expect(agent.registrations).toBe(2);
    expect(agent.acks.some((a) => a.reregister)).toBe(true);
    const after = await second.client.getPublicKey({});
    expect(after.keyId).toBe(before.keyId);
    await expect(agentVerifier(async () => after).verify(grant.sessionToken)).resolves.toMatchObject({ jobId: grant.jobId });
    expect((await second.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' })).agentId).toBe('agent-a');
    expect(statSync(keyringPath(dataDir)).mode & 0o777).toBe(0o600);
  });

  it('rotation: a running coordinator signs with the new key and keeps publishing the old one', async () => {
    const { tc } = await coordinatorWithAgent({ keyReloadIntervalMs: 100 });
    const oldGrant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const oldKid = (await tc.client.getPublicKey({})).keyId;
    const { kid, previousKid } = await rotateKeyring({ dataDir: tc.dataDir, tokenTtlMs: 300_000 });
    expect(previousKid).toBe(oldKid);
    await waitFor(async () => (await tc.client.getPublicKey({})).keyId === kid, 3000);
    const pub = await tc.client.getPublicKey({});
    expect(pub.keys.map((k) => k.keyId)).toEqual([kid, oldKid]);
    expect(pub.keys[1]?.retireAt).toBeGreaterThanOrEqual(oldGrant.expiresAt);
    const newGrant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    expect(decodeProtectedHeader(newGrant.sessionToken).kid).toBe(kid);
    const verifier = agentVerifier(async () => pub);
    for (const g of [oldGrant, newGrant]) {
      await expect(verifier.verify(g.sessionToken)).resolves.toMatchObject({ jobId: g.jobId });
    }
  });

  it('drops a rotated-out key once every token it signed has expired', async () => {
    const dataDir = makeTempDir();
    let now = 1_000_000_000_000;
    const ttl = 60_000;
    const keyring = await openKeyring({ dataDir, tokenTtlMs: ttl, now: () => now });
    const signed = await signSessionToken(
      keyring,
      { agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 1, temperature: 0 },
      { issuer: 'i', ttlMs: ttl, now },
    );
    const { kid } = await rotateKeyring({ dataDir, tokenTtlMs: ttl, now: () => now });
    await keyring.reload();
    expect(keyring.current().kid).toBe(kid);
    expect(keyring.publishedKeys().map((k) => k.keyId)).toEqual([kid, signed.kid]);
    now += ttl + 1000;
    expect(keyring.publishedKeys().map((k) => k.keyId)).toEqual([kid]);
    keyring.close();
  });
});
