import { describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import type { PublicKeyResponse } from '@titancompute/protocol';
import { ReplayStoreError, TokenError } from '../errors.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { createReplayCache, type ReplayCache } from './replay-cache.js';
import { createTokenVerifier, messagesSha256, promptSha256 } from './token-verifier.js';

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

async function errorOf(p: Promise<unknown>): Promise<TokenError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenError);
  return err as TokenError;
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

    const limited = createTokenVerifier({
      agentId: AGENT,
      refetchIntervalMs: 60_000,
      fetchKeys: async () => {
        fetches++;
        return keysOf([oldKey]);
      },
    });
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

  it('binds the prompt: another prompt is PERMISSION_DENIED naming the field, without using the token up', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const token = await signer.sign({ job_id: 'job-p', temperature: 0.7, prompt_sha256: promptSha256('prompt A') });
    const wrong = await errorOf(verifier.verify(token, undefined, { prompt: 'prompt B', temperature: 0 }));
    expect(wrong.grpcStatus).toBe(Status.PERMISSION_DENIED);
    expect(wrong.message).toMatch(/^prompt does not match/);
    expect(wrong.context).toMatchObject({ field: 'prompt', jobId: 'job-p' });
    expect(wrong.jobId).toBe('job-p');
    await expect(verifier.verify(token, undefined, { prompt: 'prompt A', temperature: 0 })).resolves.toMatchObject({
      jobId: 'job-p',
      promptSha256: promptSha256('prompt A'),
    });
    const replay = await errorOf(verifier.verify(token, undefined, { prompt: 'prompt A', temperature: 0 }));
    expect(replay.message).toBe('token already used');
    expect(replay.jobId).toBe('job-p');
  });

  it('binds the temperature: unset (0) or the same float32 value passes, any other is refused without using the token up', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const prompt = 'hello';
    const token = await signer.sign({ job_id: 'job-t', temperature: 0.7, prompt_sha256: promptSha256(prompt) });
    for (const temperature of [0.9, 1.5, 0.5]) {
      const err = await errorOf(verifier.verify(token, undefined, { prompt, temperature }));
      expect(err.grpcStatus).toBe(Status.PERMISSION_DENIED);
      expect(err.message).toMatch(new RegExp(`^temperature ${temperature} does not match the session token's 0.7`));
      expect(err.context).toMatchObject({ field: 'temperature' });
      expect(err.jobId).toBe('job-t');
    }
    // 0.7 arrives as float32 (0.699999988...) from a v1 client that sends the same value twice.
    await expect(verifier.verify(token, undefined, { prompt, temperature: Math.fround(0.7) })).resolves.toMatchObject({ temperature: 0.7 });
    const unset = await signer.sign({ temperature: 0.7, prompt_sha256: promptSha256(prompt) });
    await expect(verifier.verify(unset, undefined, { prompt, temperature: 0 })).resolves.toBeDefined();
    const greedy = await signer.sign({ temperature: 0, prompt_sha256: promptSha256(prompt) });
    expect((await errorOf(verifier.verify(greedy, undefined, { prompt, temperature: 0.2 }))).grpcStatus).toBe(Status.PERMISSION_DENIED);
  });

  it('binds the messages: other messages, or messages on a prompt token, are PERMISSION_DENIED naming messages, without using the token up', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
    ];
    const token = await signer.sign({ job_id: 'job-m', temperature: 0.7, prompt_sha256: promptSha256(''), messages_sha256: messagesSha256(messages) });
    for (const other of [[], [messages[1]!], [{ role: 'user', content: 'be brief' }, messages[1]!], [messages[1]!, messages[0]!]]) {
      const err = await errorOf(verifier.verify(token, undefined, { prompt: '', messages: other, temperature: 0 }));
      expect(err.grpcStatus).toBe(Status.PERMISSION_DENIED);
      expect(err.message).toMatch(/^messages do not match/);
      expect(err.context).toMatchObject({ field: 'messages', jobId: 'job-m' });
    }
    // A prompt token grants no messages.
    const promptToken = await signer.sign({ job_id: 'job-p2', temperature: 0.7, prompt_sha256: promptSha256('') });
    const smuggled = await errorOf(verifier.verify(promptToken, undefined, { prompt: '', messages, temperature: 0 }));
    expect(smuggled.grpcStatus).toBe(Status.PERMISSION_DENIED);
    expect(smuggled.context).toMatchObject({ field: 'messages', jobId: 'job-p2' });
    await expect(verifier.verify(promptToken, undefined, { prompt: '', temperature: 0 })).resolves.toMatchObject({ messagesSha256: undefined });
    // Not used up by the refusals.
    await expect(verifier.verify(token, undefined, { prompt: '', messages: messages.map((m) => ({ ...m })), temperature: 0 })).resolves.toMatchObject({
      jobId: 'job-m',
      messagesSha256: messagesSha256(messages),
    });
  });

  it('accepts tokens without prompt_sha256 (older coordinator) unless requirePromptBinding, which refuses them without using them up', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const lenient = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    await expect(lenient.verify(await signer.sign(), undefined, { prompt: 'anything', temperature: 0 })).resolves.toMatchObject({ promptSha256: undefined });
    const strict = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]), requirePromptBinding: true });
    const token = await signer.sign({ job_id: 'job-old' });
    const err = await errorOf(strict.verify(token, undefined, { prompt: 'anything', temperature: 0 }));
    expect(err.grpcStatus).toBe(Status.PERMISSION_DENIED);
    expect(err.message).toMatch(/no prompt_sha256 claim/);
    expect(err.jobId).toBe('job-old');
    await expect(lenient.verify(token, undefined, { prompt: 'anything', temperature: 0 })).resolves.toBeDefined();
  });

  it('names the job on every refusal of a validly signed token, and on none of a forged one', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]) });
    expect((await errorOf(verifier.verify(await signer.sign({ aud: 'agent-b', job_id: 'job-b' })))).jobId).toBe('job-b');
    expect((await errorOf(verifier.verify(await signer.sign({ job_id: 'job-m', max_tokens: undefined })))).jobId).toBe('job-m');
    const refusedByAuthorize = await errorOf(
      verifier.verify(await signer.sign({ job_id: 'job-a' }), () => {
        throw new TokenError('model mismatch', Status.PERMISSION_DENIED);
      }),
    );
    expect(refusedByAuthorize.jobId).toBe('job-a');
    const stranger = await createTestSigner({ aud: AGENT }, signer.kid);
    expect((await errorOf(verifier.verify(await stranger.sign({ job_id: 'job-x' })))).jobId).toBeUndefined();
  });

  it('records used jtis in the replay cache it is given', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const replayCache = createReplayCache();
    const first = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]), replayCache });
    const token = await signer.sign();
    await first.verify(token);
    expect(replayCache.size).toBe(1);
    const second = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]), replayCache });
    expect((await errorOf(second.verify(token))).message).toBe('token already used');
  });

  it('admit uses the token up at once and says when that is on disk; verify resolves only then', async () => {
    const signer = await createTestSigner({ aud: AGENT });
    const memory = createReplayCache();
    let onDisk!: () => void;
    let durable = new Promise<void>((resolve) => (onDisk = resolve));
    const replayCache: ReplayCache = { claim: (j, e) => memory.claim(j, e), whenDurable: () => durable, size: 0, close: () => memory.close() };
    const verifier = createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf([signer]), replayCache });
    const token = await signer.sign({ job_id: 'job-d' });
    const { grant, recorded } = await verifier.admit(token);
    expect(grant.jobId).toBe('job-d');
    // Used up before it is on disk: nobody else gets it meanwhile.
    expect((await errorOf(verifier.admit(token))).message).toBe('token already used');
    let settled = false;
    void recorded.then(() => (settled = true));
    const verified = verifier.verify(await signer.sign({ job_id: 'job-e' })).then((g) => g.jobId);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    onDisk();
    await expect(recorded).resolves.toBeUndefined();
    await expect(verified).resolves.toBe('job-e');

    durable = Promise.reject(new ReplayStoreError('disk gone'));
    durable.catch(() => undefined);
    const failed = await verifier.admit(await signer.sign({ job_id: 'job-f' }));
    const err = await errorOf(failed.recorded);
    expect(err.grpcStatus).toBe(Status.UNAVAILABLE);
    expect(err.jobId).toBe('job-f');
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
