import { afterEach, describe, expect, it } from '@jest/globals';
import type { JobOutcome } from '@titancompute/protocol';
import { createLogger } from '@titancompute/server-kit';
import { startAgent, type RunningAgent } from '../agent.js';
import type { PrefixCacheState } from '../engines/engine.js';
import { generateCredential } from '../identity/agent-credential.js';
import { collect, createAgentClient } from '../test-support/agent-client.js';
import { startFakeCoordinator, type FakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { createTestSigner } from '../test-support/token-signer.js';
import { createCoordinatorLink } from './coordinator-link.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function agentFor(coordinator: FakeCoordinator, extra: Partial<Parameters<typeof startAgent>[0]> = {}): Promise<RunningAgent> {
  const agent = await startAgent({
    agentId: 'link-agent',
    host: '127.0.0.1',
    port: 0,
    coordinator: coordinator.address,
    joinToken: 'join-secret',
    engine: createFakeEngine({ models: ['fake-model'], tokenDelayMs: 20 }),
    heartbeatIntervalMs: 200,
    registerBackoffInitialMs: 50,
    registerBackoffMaxMs: 200,
    drainTimeoutMs: 2000,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    logLevel: 'silent',
    ...extra,
  });
  cleanups.push(() => agent.stop());
  return agent;
}

describe('coordinator link', () => {
  it('registers with the join token, endpoint, memory and models, then streams health on one stream', async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    const agent = await agentFor(coordinator);
    await coordinator.waitFor(() => coordinator.updates.length >= 3);
    const [reg] = coordinator.registrations;
    expect(reg).toMatchObject({
      agentId: 'link-agent',
      endpoint: agent.endpoint,
      maxJobs: 4,
      maxQueue: 8,
      supportedModels: ['fake-model'],
      engine: 'fake',
      totalVramMb: 0,
    });
    expect(agent.endpoint).toBe(`127.0.0.1:${agent.port}`);
    expect(reg!.totalRamMb).toBeGreaterThan(0);
    const later = coordinator.updates.at(-1)!;
    expect(later).toMatchObject({ agentId: 'link-agent', runningJobs: 0, queuedJobs: 0, draining: false });
    expect(later.freeRamMb).toBeGreaterThan(0);
    expect(later.rttMs).toBeGreaterThanOrEqual(0);
    const stamps = coordinator.updates.map((u) => u.timestamp);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
  });

  it("sends the engine's prefix-cache report on a stream's first update and then only when it changed; again after a re-registration", async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    let state: PrefixCacheState = {
      version: 1,
      blockHashes: ['0123456789abcdef'],
      usedCells: 10,
      totalCells: 100,
      usedSequences: 1,
      totalSequences: 2,
      counts: [{ model: 'fake-model', queryTokens: 10, hitTokens: 0 }],
    };
    await agentFor(coordinator, { engine: Object.assign(createFakeEngine({ models: ['fake-model'] }), { prefixCache: () => state }) });
    const reports = () => coordinator.updates.filter((u) => u.prefixCache !== undefined).map((u) => u.prefixCache);
    await coordinator.waitFor(() => coordinator.updates.length >= 3);
    expect(coordinator.updates[0]?.prefixCache).toEqual({
      blockHashes: ['0123456789abcdef'],
      usedCells: 10,
      totalCells: 100,
      usedSequences: 1,
      totalSequences: 2,
    });
    expect(reports()).toHaveLength(1);
    state = { ...state, version: 2, blockHashes: ['fedcba9876543210'], usedCells: 20 };
    await coordinator.waitFor(() => reports().length === 2);
    expect(reports()[1]).toMatchObject({ blockHashes: ['fedcba9876543210'], usedCells: 20 });
    const seen = coordinator.updates.length;
    await coordinator.waitFor(() => coordinator.updates.length >= seen + 2);
    expect(reports()).toHaveLength(2);
    // A coordinator that forgot the agent hears the unchanged state again.
    coordinator.forgetAgents();
    await coordinator.waitFor(() => coordinator.registrations.length === 2 && reports().length === 3, 3000);
    expect(reports()[2]).toMatchObject({ blockHashes: ['fedcba9876543210'] });
  });

  it('sends no prefix-cache report for an engine without one', async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    await agentFor(coordinator);
    await coordinator.waitFor(() => coordinator.updates.length >= 2);
    expect(coordinator.updates.every((u) => u.prefixCache === undefined)).toBe(true);
  });

  it('keeps retrying with a wrong join token and never registers', async () => {
    const coordinator = await startFakeCoordinator({ joinToken: 'the-real-one' });
    cleanups.push(() => coordinator.stop());
    await agentFor(coordinator);
    await new Promise((r) => setTimeout(r, 300));
    expect(coordinator.registrations).toHaveLength(0);
  });

  it('registers again when an ack says reregister', async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    await agentFor(coordinator);
    await coordinator.waitFor(() => coordinator.registrations.length === 1 && coordinator.updates.length > 0);
    coordinator.forgetAgents();
    await coordinator.waitFor(() => coordinator.registrations.length === 2, 3000);
  });

  it('waits for a coordinator that is not up yet, and re-registers after it restarts', async () => {
    const first = await startFakeCoordinator();
    const port = first.port;
    await first.stop();
    const pending = startFakeCoordinator({ port });
    const signer = await createTestSigner({ aud: 'link-agent', model: 'fake-model' });
    const agentPromise = agentFor({ ...first, address: `127.0.0.1:${port}` } as FakeCoordinator);
    const c1 = await pending;
    c1.signers.push(signer);
    const agent = await agentPromise;
    await c1.waitFor(() => c1.registrations.length === 1 && c1.updates.length > 0);
    await c1.stop();
    // the restarted coordinator has a new key: the agent must fetch it after re-registering
    const c2 = await startFakeCoordinator({ port });
    const newSigner = await createTestSigner({ aud: 'link-agent', model: 'fake-model' });
    c2.signers.push(newSigner);
    cleanups.push(() => c2.stop());
    await c2.waitFor(() => c2.registrations.length === 1 && c2.updates.length > 0, 5000);
    expect(c2.registrations[0]?.agentId).toBe('link-agent');
    const { client, channel } = createAgentClient(`127.0.0.1:${agent.port}`);
    try {
      const msgs = await collect(
        client.streamInference({
          sessionToken: await newSigner.sign({ max_tokens: 2 }),
          model: 'fake-model',
          prompt: 'x',
          maxTokens: 0,
          temperature: 0,
          stream: true,
        }),
      );
      expect(msgs.at(-1)?.done).toBe(true);
    } finally {
      channel.close();
    }
  });

  it('sends a prompt update when a job starts, and on stop drains, then deregisters', async () => {
    const signer = await createTestSigner({ aud: 'link-agent', model: 'fake-model' });
    const coordinator = await startFakeCoordinator({ signers: [signer], heartbeatIntervalSeconds: 60 });
    cleanups.push(() => coordinator.stop());
    const agent = await agentFor(coordinator);
    await coordinator.waitFor(() => coordinator.updates.length >= 1);
    const { client, channel } = createAgentClient(`127.0.0.1:${agent.port}`);
    cleanups.push(async () => channel.close());
    const stream = collect(
      client.streamInference({
        sessionToken: await signer.sign({ max_tokens: 10, job_id: 'slow-job' }),
        model: 'fake-model',
        prompt: 'x',
        maxTokens: 0,
        temperature: 0,
        stream: true,
      }),
    );
    // the heartbeat interval is 60 s: only the prompt (debounced) update can carry the job
    await coordinator.waitFor(() => coordinator.updates.some((u) => u.activeJobIds.includes('slow-job')), 1000);
    const stopping = agent.stop('test');
    await coordinator.waitFor(() => coordinator.updates.some((u) => u.draining), 1000);
    const msgs = await stream;
    expect(msgs.at(-1)?.stats?.tokensGenerated).toBe(10);
    await stopping;
    expect(coordinator.deregistrations).toEqual([{ agentId: 'link-agent', reason: 'test', agentCredential: coordinator.credentials.get('link-agent') }]);
    expect(coordinator.updates.flatMap((u) => u.completedJobs).map((j) => j.jobId)).toContain('slow-job');
  });

  it('deregisters on stop even while the coordinator has not answered its registration yet', async () => {
    // The coordinator has recorded the agent, so it must hear that the agent leaves (a SIGTERM
    // right after start hit this window and left the agent registered until its heartbeat timeout).
    const coordinator = await startFakeCoordinator({ registerDelayMs: 1500 });
    cleanups.push(() => coordinator.stop());
    const agent = await agentFor(coordinator);
    await coordinator.waitFor(() => coordinator.registrations.length === 1);
    await agent.stop('test');
    expect(coordinator.deregistrations.map((d) => d.agentId)).toEqual(['link-agent']);
  });

  it('sends the jobs that end in one turn of the event loop in one update, and whenAcked waits for its ack', async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    let completed: JobOutcome[] = [];
    const link = createCoordinatorLink({
      address: coordinator.address,
      joinToken: 'join-secret',
      credential: generateCredential(),
      agentId: 'flush-agent',
      heartbeatIntervalMs: 60_000,
      registration: () => ({ agentId: 'flush-agent', endpoint: '127.0.0.1:1', maxJobs: 4, supportedModels: ['fake-model'] }),
      snapshot: () => ({
        freeVramMb: 0,
        freeRamMb: 1,
        totalRamMb: 1,
        runningJobs: 0,
        queuedJobs: 0,
        cpuPercent: 0,
        gpus: [],
        activeJobIds: [],
        draining: false,
      }),
      takeCompleted: () => {
        const out = completed;
        completed = [];
        return out;
      },
      logger: createLogger({ service: 'test', level: 'silent' }),
    });
    cleanups.push(() => link.stop('test done'));
    link.start();
    await coordinator.waitFor(() => coordinator.updates.length >= 1);
    const before = coordinator.updates.length;
    // Three streams that started together end together: one update, acked before any done message.
    for (const jobId of ['a', 'b', 'c']) {
      completed.push({ jobId, tokensGenerated: 1, timeToFirstTokenMs: 1, tokensPerSecond: 1, error: '', promptTokens: 1 });
      link.flush();
    }
    await link.whenAcked(5000);
    expect(coordinator.updates).toHaveLength(before + 1);
    expect(coordinator.updates.at(-1)!.completedJobs.map((j) => j.jobId)).toEqual(['a', 'b', 'c']);
  });
});
