import { describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc-common';
import type { PublicKeyResponse } from '@titancompute/protocol';
import { createLogger } from '@titancompute/server-kit';
import { createJobSlots } from '../capacity/job-slots.js';
import { ReplayStoreError, TokenError } from '../errors.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import { createReplayCache, type ReplayCache } from '../tokens/replay-cache.js';
import { createTokenVerifier, promptSha256 } from '../tokens/token-verifier.js';
import { createJobRunner, type GenerationJobRequest } from './job-runner.js';
import { createJobTracker } from './job-tracker.js';

const AGENT = 'runner-agent';
const PROMPT = 'hello';

const keysOf = (signer: TestSigner): PublicKeyResponse => ({
  publicKeyPem: signer.publicKeyPem,
  algorithm: 'EdDSA',
  issuer: 'titancompute-coordinator',
  keyId: signer.kid,
  keys: [signer.publicKey()],
});

/** A job runner over a fake engine whose replay store says the claims are on disk when `durable` does. */
async function runnerWith(durable: () => Promise<void>) {
  const signer = await createTestSigner({ aud: AGENT, model: 'fake-model', max_tokens: 4, prompt_sha256: promptSha256(PROMPT) });
  const memory = createReplayCache();
  const replayCache: ReplayCache = {
    claim: (jti, exp) => memory.claim(jti, exp),
    whenDurable: durable,
    get size() {
      return memory.size;
    },
    close: () => memory.close(),
  };
  const engine = createFakeEngine({ models: ['fake-model'], tokenDelayMs: 1 });
  const tracker = createJobTracker();
  const runner = createJobRunner({
    engine,
    verifier: createTokenVerifier({ agentId: AGENT, fetchKeys: async () => keysOf(signer), replayCache }),
    slots: createJobSlots({ maxConcurrent: 2, maxQueue: 2 }),
    tracker,
    limits: { maxPromptBytes: 32 * 1024, maxTokensLimit: 4096 },
    state: () => 'healthy',
    logger: createLogger({ service: 'test', level: 'silent' }),
  });
  const request = async (): Promise<GenerationJobRequest> => ({
    sessionToken: await signer.sign(),
    model: '',
    prompt: PROMPT,
    messages: [],
    maxTokens: 0,
    temperature: 0,
    options: {},
  });
  return { runner, engine, tracker, request };
}

describe('createJobRunner', () => {
  it("starts the engine at once but yields nothing before the token's use is on disk", async () => {
    let onDisk!: () => void;
    const durable = new Promise<void>((resolve) => (onDisk = resolve));
    const { runner, engine, request } = await runnerWith(() => durable);
    const job = await runner.admitGeneration(await request(), new AbortController().signal);
    try {
      const batches = job.run();
      let first: IteratorResult<unknown> | undefined;
      const next = batches.next().then((r) => (first = r));
      // The fake engine makes a token every millisecond: all four are out long before the store says so.
      await new Promise((r) => setTimeout(r, 50));
      expect(engine.calls).toHaveLength(1);
      expect(first).toBeUndefined();
      onDisk();
      await next;
      expect(first).toMatchObject({ done: false, value: { tokenIndex: 0 } });
      let r = await batches.next();
      while (!r.done) r = await batches.next();
      expect(r.value.tokensGenerated).toBe(4);
    } finally {
      job.close();
    }
  });

  it('fails a job whose token the replay store cannot flush with UNAVAILABLE, reported as unavailable', async () => {
    const { runner, tracker, request } = await runnerWith(() => Promise.reject(new ReplayStoreError('disk gone')));
    const job = await runner.admitGeneration(await request(), new AbortController().signal);
    try {
      const err = await job
        .run()
        .next()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(TokenError);
      expect((err as TokenError).grpcStatus).toBe(Status.UNAVAILABLE);
      expect((err as TokenError).message).toMatch(/cannot record the session token as used/);
    } finally {
      job.close();
    }
    expect(tracker.takeCompleted().map((o) => o.error)).toEqual(['unavailable']);
  });
});
