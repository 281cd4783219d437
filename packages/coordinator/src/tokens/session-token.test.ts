import { afterEach, describe, expect, it } from '@jest/globals';
import { statSync } from 'node:fs';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { TokenVerificationError } from '../errors.js';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { makeTempDir, startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';
import { keyringPath, openKeyring, rotateKeyring } from './keyring.js';
import { createHash } from 'node:crypto';
import { DEFAULT_ISSUER, promptSha256, signSessionToken, verifySessionToken } from './session-token.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function coordinatorWithAgent(options: Parameters<typeof startTestCoordinator>[0] = {}): Promise<{ tc: TestCoordinator; agent: FakeAgent }> {
  const tc = await startTestCoordinator(options);
  const agent = await startFakeAgent({ coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`, joinToken: 'test-join-token', agentId: 'agent-a', totalVramMb: 8000 });
  cleanups.push(async () => {
    await agent.close();
    await tc.stop();
  });
  return { tc, agent };
}

describe('session tokens', () => {
  it('verify with the published key and carry the agreed claims', async () => {
    const { tc } = await coordinatorWithAgent();
    const grant = await tc.client.requestInference({ clientId: 'client-9', model: 'tiny', prompt: 'hi', maxTokens: 42, temperature: 0.5, parameters: { top_k: '5' } });
    const pub = await tc.client.getPublicKey({});
    expect(pub).toMatchObject({ algorithm: 'EdDSA', issuer: DEFAULT_ISSUER });
    expect(pub.publicKeyPem).toContain('BEGIN PUBLIC KEY');
    expect(pub.keys[0]).toMatchObject({ keyId: pub.keyId, publicKeyPem: pub.publicKeyPem, retireAt: 0 });
    expect(decodeProtectedHeader(grant.sessionToken)).toMatchObject({ alg: 'EdDSA', kid: pub.keyId });
    const claims = await verifySessionToken(grant.sessionToken, { keys: pub.keys, issuer: pub.issuer, audience: 'agent-a' });
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
    expect(claims.exp).toBe(grant.expiresAt);
    expect(claims.exp - claims.iat).toBe(300);
    expect(claims.nbf).toBe(claims.iat);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('fail with a wrong audience, after expiry and after tampering', async () => {
    const { tc } = await coordinatorWithAgent();
    const grant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const { keys, issuer } = await tc.client.getPublicKey({});
    await expect(verifySessionToken(grant.sessionToken, { keys, issuer, audience: 'agent-b' })).rejects.toThrow(TokenVerificationError);
    await expect(verifySessionToken(grant.sessionToken, { keys, issuer: 'someone-else', audience: 'agent-a' })).rejects.toThrow(TokenVerificationError);
    await expect(
      verifySessionToken(grant.sessionToken, { keys, issuer, audience: 'agent-a', now: (grant.expiresAt + 6) * 1000 }),
    ).rejects.toThrow(/expired/);
    const [h, p, s] = grant.sessionToken.split('.') as [string, string, string];
    const payload = decodeJwt(grant.sessionToken);
    const forged = Buffer.from(JSON.stringify({ ...payload, max_tokens: 100000 })).toString('base64url');
    await expect(verifySessionToken(`${h}.${forged}.${s}`, { keys, issuer, audience: 'agent-a' })).rejects.toThrow(TokenVerificationError);
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    await expect(verifySessionToken(`${h}.${p}.${flipped}`, { keys, issuer, audience: 'agent-a' })).rejects.toThrow(TokenVerificationError);
  });

  it('expire after the configured TTL', async () => {
    const { tc } = await coordinatorWithAgent({ tokenTtlMs: 1000 });
    const grant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'hi' });
    const { keys, issuer } = await tc.client.getPublicKey({});
    await verifySessionToken(grant.sessionToken, { keys, issuer, audience: 'agent-a', clockToleranceSec: 0 });
    await new Promise((r) => setTimeout(r, (grant.expiresAt + 1) * 1000 - Date.now()));
    await expect(verifySessionToken(grant.sessionToken, { keys, issuer, audience: 'agent-a', clockToleranceSec: 0 })).rejects.toThrow(/expired/);
  });
});

describe('prompt binding claim', () => {
  it('prompt_sha256 is the base64url SHA-256 of the UTF-8 prompt, exactly as sent (no trimming or normalisation)', async () => {
    const { tc } = await coordinatorWithAgent();
    const { keys, issuer } = await tc.client.getPublicKey({});
    const prompts = ['  café\n', 'cafe\u0301', 'Once upon a time'];
    const hashes = new Set<string>();
    for (const [i, prompt] of prompts.entries()) {
      const grant = await tc.client.requestInference({ clientId: `c-${i}`, model: 'tiny', prompt, temperature: 1.25, temperatureSet: true });
      const claims = await verifySessionToken(grant.sessionToken, { keys, issuer, audience: 'agent-a' });
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
    await expect(verifySessionToken(grant.sessionToken, { keys: after.keys, issuer: after.issuer, audience: 'agent-a' })).resolves.toMatchObject({ job_id: grant.jobId });
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
    for (const g of [oldGrant, newGrant]) {
      await expect(verifySessionToken(g.sessionToken, { keys: pub.keys, issuer: pub.issuer, audience: 'agent-a' })).resolves.toBeDefined();
    }
  });

  it('drops a rotated-out key once every token it signed has expired', async () => {
    const dataDir = makeTempDir();
    let now = 1_000_000_000_000;
    const ttl = 60_000;
    const keyring = await openKeyring({ dataDir, tokenTtlMs: ttl, now: () => now });
    const signed = await signSessionToken(keyring, { agentId: 'a', clientId: 'c', jobId: 'j', model: 'm', maxTokens: 1, temperature: 0 }, { issuer: 'i', ttlMs: ttl, now });
    const { kid } = await rotateKeyring({ dataDir, tokenTtlMs: ttl, now: () => now });
    await keyring.reload();
    expect(keyring.current().kid).toBe(kid);
    expect(keyring.publishedKeys().map((k) => k.keyId)).toEqual([kid, signed.kid]);
    now += ttl + 1000;
    expect(keyring.publishedKeys().map((k) => k.keyId)).toEqual([kid]);
    keyring.close();
  });
});
