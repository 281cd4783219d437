import { describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import type { PublicKeyResponse } from '@titancompute/protocol';
import { TokenError } from '../errors.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { createTokenVerifier } from './token-verifier.js';

const AGENT = 'agent-a';

function keysOf(signers: TestSigner[]): PublicKeyResponse {
  const [current] = signers;
  return {
    publicKeyPem: current?.publicKeyPem ?? '',
    algorithm: 'EdDSA',
    issuer: 'titancompute-coordinator',
    keyId: current?.kid ?? '',
    keys: signers.map((s) => s.publicKey()),
  };
}

async function codeOf(p: Promise<unknown>): Promise<Status> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenError);
  return (err as TokenError).grpcStatus;
}

describe('createTokenVerifier', () => {
  it('accepts a valid token once and returns its grant', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const token = await signer.sign({ job_id: 'job-1', max_tokens: 32, temperature: 0.2 });
    const grant = await verifier.verify(token);
    expect(grant).toMatchObject({ jobId: 'job-1', model: 'llama-2-tiny-random', maxTokens: 32, temperature: 0.2, clientId: 'test-client' });
    const replay = await verifier.verify(token).catch((e: unknown) => e as TokenError);
    expect(replay).toBeInstanceOf(TokenError);
    expect((replay as TokenError).grpcStatus).toBe(Status.UNAUTHENTICATED);
    expect((replay as TokenError).message).toBe('token already used');
  });

  it('does not burn the jti when the authorize check refuses the request', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const token = await signer.sign();
    await expect(
      verifier.verify(token, () => {
        throw new TokenError('nope', Status.PERMISSION_DENIED);
      }),
    ).rejects.toThrow('nope');
    await expect(verifier.verify(token)).resolves.toBeDefined();
  });

  it('rejects expired, not-yet-valid, tampered, wrong-issuer and wrong-audience tokens', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const now = Math.floor(Date.now() / 1000);
    expect(await codeOf(verifier.verify(await signer.sign({ exp: now - 60 })))).toBe(Status.UNAUTHENTICATED);
    expect(await codeOf(verifier.verify(await signer.sign({ nbf: now + 60 })))).toBe(Status.UNAUTHENTICATED);
    const good = await signer.sign();
    const [h, p, s] = good.split('.');
    const payload = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...payload, max_tokens: 4000 })).toString('base64url');
    expect(await codeOf(verifier.verify(`${h}.${forged}.${s}`))).toBe(Status.UNAUTHENTICATED);
    expect(await codeOf(verifier.verify(await signer.sign({ iss: 'someone-else' })))).toBe(Status.UNAUTHENTICATED);
    expect(await codeOf(verifier.verify(await signer.sign({ aud: 'agent-b' })))).toBe(Status.PERMISSION_DENIED);
    expect(await codeOf(verifier.verify('not-a-jwt-at-all'))).toBe(Status.UNAUTHENTICATED);
  });

  it('tolerates clock skew of a few seconds on exp', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    await expect(verifier.verify(await signer.sign({ exp: Math.floor(Date.now() / 1000) - 2 }))).resolves.toBeDefined();
  });

  it('rejects a token signed by a key the coordinator does not publish', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const stranger = await createTestSigner({ aud: AGENT }, signer.kid);
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    expect(await codeOf(verifier.verify(await stranger.sign()))).toBe(Status.UNAUTHENTICATED);
  });

  it('refetches keys once on an unknown key id (rotation), rate-limited', async () => {
    const oldKey = await createTestSigner({ aud: AGENT });
    const newKey = await createTestSigner({ aud: AGENT });
    let published = [oldKey];
    let fetches = 0;
    const verifier = createTokenVerifier({
      agentId: AGENT,
      refetchIntervalMs: 0,
      fetchKeys: async () => {
        fetches++;
        return keysOf(published);
      },
    });
    await verifier.verify(await oldKey.sign());
    published = [newKey, oldKey];
    await expect(verifier.verify(await newKey.sign())).resolves.toBeDefined();
    await expect(verifier.verify(await oldKey.sign())).resolves.toBeDefined();
    expect(fetches).toBe(2);

    const limited = createTokenVerifier({ agentId: AGENT, refetchIntervalMs: 60_000, fetchKeys: async () => (fetches++, keysOf([oldKey])) });
    fetches = 0;
    await limited.refresh();
    const unknown = await createTestSigner({ aud: AGENT });
    for (let i = 0; i < 3; i++) expect(await codeOf(limited.verify(await unknown.sign()))).toBe(Status.UNAUTHENTICATED);
    expect(fetches).toBe(1);
  });

  it('answers UNAVAILABLE when keys cannot be fetched, and never accepts the token', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({
      agentId: AGENT,
      fetchKeys: async () => {
        throw new Error('coordinator down');
      },
    });
    expect(await codeOf(verifier.verify(await signer.sign()))).toBe(Status.UNAVAILABLE);
  });

  it('refuses non-EdDSA tokens (alg confusion)', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid: signer.kid })).toString('base64url');
    const good = await signer.sign();
    const payload = good.split('.')[1];
    expect(await codeOf(verifier.verify(`${header}.${payload}.`))).toBe(Status.UNAUTHENTICATED);
  });
});
