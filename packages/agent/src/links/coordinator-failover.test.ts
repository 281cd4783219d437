import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { JobOutcome } from '@titancompute/protocol';
import { createLogger, type Logger } from '@titancompute/server-kit';
import { startAgent, type RunningAgent } from '../agent.js';
import { generateCredential } from '../identity/agent-credential.js';
import { collect, createAgentClient } from '../test-support/agent-client.js';
import { startFakeCoordinator, type FakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { createTestSigner, type TestSigner } from '../test-support/token-signer.js';
import type { LookupAll } from './coordinator-addresses.js';
import { createCoordinatorLink, type CoordinatorLinkOptions } from './coordinator-link.js';

const AGENT_ID = 'failover-agent';
/** The contract: an agent whose home coordinator dies is registered and streaming elsewhere within 2 s. */
const FAILOVER_BOUND_MS = 2000;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function coordinators(n: number, options: Parameters<typeof startFakeCoordinator>[0] = {}): Promise<FakeCoordinator[]> {
  const started: FakeCoordinator[] = [];
  for (let i = 0; i < n; i++) {
    const c = await startFakeCoordinator(options);
    cleanups.push(() => c.stop());
    started.push(c);
  }
  return started;
}

/** A JSON logger writing to a temp file, and the records it wrote so far. */
function captureLogs(): { logger: Logger; records(): Array<Record<string, unknown> & { msg: string }> } {
  const dir = mkdtempSync(join(tmpdir(), 'titan-failover-'));
  const fd = openSync(join(dir, 'agent.log'), 'w');
  cleanups.push(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    logger: createLogger({ service: 'titan-agent', level: 'info', fd }),
    records: () =>
      readFileSync(join(dir, 'agent.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown> & { msg: string }),
  };
}

/** Polls until `predicate` holds; returns the ms it took, or throws naming `what`. */
async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`not in ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

const MOVED = 'moved to another coordinator (home changed)';

describe('an agent with several coordinators', () => {
  it('moves to the next one within 2 s of its home stopping, with the same credential, and reports there the job that ended meanwhile; logs the move once', async () => {
    const signer = await createTestSigner({ aud: AGENT_ID, model: 'fake-model' });
    const [a, b, c] = await coordinators(3, { signers: [signer] });
    const logs = captureLogs();
    const agent: RunningAgent = await startAgent({
      agentId: AGENT_ID,
      host: '127.0.0.1',
      port: 0,
      coordinator: `${a!.address},${b!.address},${c!.address}`,
      joinToken: 'join-secret',
      engine: createFakeEngine({ models: ['fake-model'], tokenDelayMs: 60 }),
      heartbeatIntervalMs: 200,
      registerBackoffInitialMs: 50,
      registerBackoffMaxMs: 200,
      drainTimeoutMs: 2000,
      nvidiaSmiPath: '/nonexistent/nvidia-smi',
      logger: logs.logger,
    });
    cleanups.push(() => agent.stop());
    await waitUntil(() => a!.registrations.length === 1 && a!.updates.length > 0, 'registered and streaming on the first coordinator');
    expect(agent.coordinator).toBe(a!.address);
    const health = async () => (await (await fetch(`http://127.0.0.1:${agent.httpPort}/health`)).json()) as { coordinator: string | null };
    expect((await health()).coordinator).toBe(a!.address);

    // A job that starts on A's watch and ends after A is gone.
    const { client, channel } = createAgentClient(agent.endpoint);
    cleanups.push(() => channel.close());
    const stream = collect(
      client.streamInference({
        sessionToken: await signer.sign({ max_tokens: 10, job_id: 'moving-job' }),
        model: 'fake-model',
        prompt: 'x',
        maxTokens: 0,
        temperature: 0,
        stream: true,
      }),
    );
    await waitUntil(() => a!.updates.some((u) => u.activeJobIds.includes('moving-job')), 'the job reported running to A');
    const stoppedAt = Date.now();
    await a!.stop();
    await waitUntil(() => b!.registrations.length === 1 && b!.updates.length > 0, 'registered and streaming on B');
    expect(Date.now() - stoppedAt).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
    expect(b!.registrations[0]).toMatchObject({ agentId: AGENT_ID, endpoint: agent.endpoint });
    // The same credential: replicas that share identities accept it.
    expect(b!.credentials.get(AGENT_ID)).toBe(a!.credentials.get(AGENT_ID));
    expect(agent.coordinator).toBe(b!.address);
    expect((await health()).coordinator).toBe(b!.address);
    // The running job is known to the new home from its first update on.
    expect(b!.updates[0]?.activeJobIds).toContain('moving-job');

    const msgs = await stream;
    expect(msgs.at(-1)?.stats?.tokensGenerated).toBe(10);
    await waitUntil(() => b!.updates.some((u) => u.completedJobs.some((j) => j.jobId === 'moving-job')), 'the job outcome reported to B');
    expect(a!.updates.flatMap((u) => u.completedJobs)).toEqual([]);
    // C was never needed.
    expect(c!.registrations).toHaveLength(0);
    const moves = logs.records().filter((r) => r.msg === MOVED);
    expect(moves).toHaveLength(1);
    expect(moves[0]).toMatchObject({ from: a!.address, to: b!.address });

    // On stop it deregisters from its home, not from the coordinator it left.
    await agent.stop('test');
    expect(b!.deregistrations.map((d) => d.agentId)).toEqual([AGENT_ID]);
  });

  it('leaves a home that stops acking; what it never acked (finished jobs, refused tokens) is sent again to the next one', async () => {
    const [hung] = await coordinators(1, { acks: false });
    const [next] = await coordinators(1);
    let completed: JobOutcome[] = [];
    let rejected: string[] = [];
    const link = createCoordinatorLink(
      linkOptions(`${hung!.address},${next!.address}`, {
        ackTimeoutMs: 400,
        takeCompleted: () => completed.splice(0),
        takeRejected: () => rejected.splice(0),
      }),
    );
    cleanups.push(() => link.stop('test done'));
    link.start();
    await waitUntil(() => hung!.updates.length >= 1, 'streaming to the hung coordinator');
    completed = [{ jobId: 'never-acked', tokensGenerated: 3, timeToFirstTokenMs: 1, tokensPerSecond: 1, error: '', promptTokens: 1 }];
    rejected = ['refused-job'];
    link.flush();
    await waitUntil(() => hung!.updates.some((u) => u.completedJobs.length > 0), 'the outcome sent to the hung coordinator');
    expect(hung!.updates.at(-1)?.rejectedJobIds).toEqual(['refused-job']);
    await waitUntil(() => next!.updates.length > 0, 'streaming to the next coordinator', 3000);
    expect(link.home).toBe(next!.address);
    expect(next!.updates[0]?.completedJobs.map((j) => j.jobId)).toEqual(['never-acked']);
    expect(next!.updates[0]?.rejectedJobIds).toEqual(['refused-job']);
    // Acked there: not sent again.
    const seen = next!.updates.length;
    await waitUntil(() => next!.updates.length >= seen + 2, 'two more updates');
    expect(next!.updates.at(-1)?.completedJobs).toEqual([]);
    expect(next!.updates.at(-1)?.rejectedJobIds).toEqual([]);
  });

  it('with one name that resolves to several addresses, resolves it again on reconnection and moves to another address', async () => {
    const first = await startFakeCoordinator();
    cleanups.push(() => first.stop());
    // The same port on another loopback address: one name, two coordinators.
    const second = await startFakeCoordinator({ host: '127.0.0.2', port: first.port });
    cleanups.push(() => second.stop());
    const lookups: string[] = [];
    const lookup: LookupAll = async (hostname) => {
      lookups.push(hostname);
      return [
        { address: '127.0.0.1', family: 4 },
        { address: '127.0.0.2', family: 4 },
      ];
    };
    const link = createCoordinatorLink(linkOptions(`coordinators.test:${first.port}`, { lookup }));
    cleanups.push(() => link.stop('test done'));
    link.start();
    await link.registered;
    await waitUntil(() => first.updates.length > 0, 'streaming to the first address');
    expect(link.home).toBe(first.address);
    const before = lookups.length;
    const stoppedAt = Date.now();
    await first.stop();
    await waitUntil(() => second.registrations.length === 1 && second.updates.length > 0, 'streaming to the second address');
    expect(Date.now() - stoppedAt).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
    expect(link.home).toBe(second.address);
    expect(lookups.length).toBeGreaterThan(before);
    expect(lookups.every((h) => h === 'coordinators.test')).toBe(true);
  });

  it('fetches the public keys from its home: after a move, from the new one', async () => {
    const [a, b] = await coordinators(2);
    const link = createCoordinatorLink(linkOptions(`${a!.address},${b!.address}`));
    cleanups.push(() => link.stop('test done'));
    link.start();
    await waitUntil(() => a!.updates.length > 0, 'streaming to A');
    a!.signers.push(await createTestSigner({ aud: AGENT_ID, model: 'm' }));
    await link.getPublicKey();
    expect([a!.keyFetches, b!.keyFetches]).toEqual([1, 0]);
    await a!.stop();
    await waitUntil(() => b!.updates.length > 0, 'streaming to B');
    const signer: TestSigner = await createTestSigner({ aud: AGENT_ID, model: 'm' });
    b!.signers.push(signer);
    expect((await link.getPublicKey()).keyId).toBe(signer.kid);
    expect(b!.keyFetches).toBe(1);
  });

  it('with every coordinator down, backs off and registers with the first one that comes up', async () => {
    const [a, b] = await coordinators(2);
    const ports = [a!.port, b!.port];
    await a!.stop();
    await b!.stop();
    const link = createCoordinatorLink(linkOptions(`127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`));
    cleanups.push(() => link.stop('test done'));
    link.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(link.home).toBeUndefined();
    const revived = await startFakeCoordinator({ port: ports[1] });
    cleanups.push(() => revived.stop());
    await link.registered;
    await waitUntil(() => revived.updates.length > 0, 'streaming to the coordinator that came up');
    expect(link.home).toBe(revived.address);
  });
});

/** Options of a bare link (no agent around it) to `address`. */
function linkOptions(address: string, extra: Partial<CoordinatorLinkOptions> = {}): CoordinatorLinkOptions {
  return {
    address,
    joinToken: 'join-secret',
    credential: generateCredential(),
    agentId: AGENT_ID,
    heartbeatIntervalMs: 100,
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    registration: () => ({ agentId: AGENT_ID, endpoint: '127.0.0.1:1', maxJobs: 4, supportedModels: ['fake-model'] }),
    snapshot: () => ({ freeVramMb: 0, freeRamMb: 1, totalRamMb: 1, runningJobs: 0, queuedJobs: 0, cpuPercent: 0, gpus: [], activeJobIds: [], draining: false }),
    takeCompleted: () => [],
    logger: createLogger({ service: 'test', level: 'silent' }),
    ...extra,
  };
}
