import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClientFactory, type Channel } from 'nice-grpc';
import { AgentServiceDefinition, CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel } from '@titancompute/protocol';
import { TitanClient, type TitanError } from '../index.js';
import {
  createScriptedEngine,
  SCRIPTED_MODEL,
  startAgent,
  startCoordinator,
  type CoordinatorOptions,
  type RunningAgent,
  type RunningCoordinator,
  waitFor,
} from '@titancompute/test-support';

/** A real coordinator and real in-process agents (scripted engine), torn down after each test. */
interface Fleet {
  coordinator: RunningCoordinator;
  agents: RunningAgent[];
  channels: Channel[];
  stop(): Promise<void>;
}
let fleet: Fleet | undefined;
afterEach(async () => {
  await fleet?.stop();
  fleet = undefined;
});

async function startFleet(agentSlots: number[], coordinatorOptions: Partial<CoordinatorOptions>, tokenDelayMs = 1): Promise<Fleet> {
  const dataDir = mkdtempSync(join(tmpdir(), 'titan-capacity-'));
  const coordinator = await startCoordinator({
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    dataDir,
    logLevel: 'silent',
    heartbeatIntervalMs: 1000,
    ...coordinatorOptions,
  });
  const agents: RunningAgent[] = [];
  const f: Fleet = {
    coordinator,
    agents,
    channels: [],
    async stop() {
      for (const c of f.channels) c.close();
      for (const a of agents) await a.stop();
      await coordinator.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  fleet = f;
  for (const [i, slots] of agentSlots.entries()) {
    agents.push(
      await startAgent({
        agentId: `agent-${i}`,
        host: '127.0.0.1',
        port: 0,
        coordinator: coordinator.address,
        joinToken: coordinator.joinToken,
        engine: createScriptedEngine({ tokenDelayMs }),
        maxConcurrentJobs: slots,
        maxQueue: 0,
        heartbeatIntervalMs: 1000,
        drainTimeoutMs: 500,
        logLevel: 'silent',
      }),
    );
  }
  const status = coordinatorClient(f);
  await waitFor(
    async () => {
      const s = await status.querySystemStatus({ includeAgents: true });
      // Routable: healthy, or degraded (a busy test machine may report high CPU or memory use).
      return s.agents.filter((a) => a.status === 'healthy' || a.status === 'degraded').length === agentSlots.length;
    },
    10_000,
    'agents to become healthy',
    { intervalMs: 25, stopOnError: true },
  );
  return f;
}

function coordinatorClient(f: Fleet) {
  const channel = createTitanChannel(f.coordinator.address);
  f.channels.push(channel);
  return createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
}

describe('capacity is counted right (real coordinator and agents)', () => {
  it('2,000 short generations at concurrency = slots − 1 get no busy answer', async () => {
    const f = await startFleet([4, 4], { maxClientShare: 1 });
    const slots = 8;
    // Busy retries off: a single busy answer anywhere fails a generation.
    const client = new TitanClient({ coordinator: f.coordinator.address, busyRetries: 0, maxAttempts: 1 });
    const total = 2000;
    let next = 0;
    const failures: TitanError[] = [];
    const worker = async () => {
      while (next < total) {
        next++;
        try {
          await client.complete({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 2 });
        } catch (err) {
          failures.push(err as TitanError);
        }
      }
    };
    await Promise.all(Array.from({ length: slots - 1 }, worker));
    client.close();
    const metrics = (await coordinatorClient(f).querySystemStatus({ includeMetrics: true })).metrics!;
    expect(failures.map((e) => `${e.name}: ${e.message}`).slice(0, 3)).toEqual([]);
    expect(metrics.rejectedBusyTotal).toBe(0);
    expect(metrics.scheduledTotal).toBe(total);
  }, 120_000);

  it.each([
    ['more tokens than granted (checked by the agent)', { prompt: 'p', maxTokens: 999 }],
    ['another prompt than granted (checked by the token verifier)', { prompt: 'not the granted prompt', maxTokens: 4 }],
  ])('a token the agent refuses after verifying it frees its slot at once: %s', async (_case, ask) => {
    const f = await startFleet([1], { claimWindowMs: 60_000, maxClientShare: 1 });
    const coordinator = coordinatorClient(f);
    const grant = await coordinator.requestInference({ clientId: 'c', model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 4 });
    expect((await coordinator.querySystemStatus({ includeMetrics: true })).metrics?.reservedJobs).toBe(1);
    const channel = createTitanChannel(grant.agentEndpoint);
    f.channels.push(channel);
    const agent = createClientFactory().use(createProtoVersionClientMiddleware()).create(AgentServiceDefinition, channel);
    // Asking for more than the token grants: refused with PERMISSION_DENIED.
    const refused = await (async () => {
      for await (const _ of agent.streamInference({ sessionToken: grant.sessionToken, model: SCRIPTED_MODEL, ...ask })) void _;
    })().catch((e: unknown) => e);
    expect(String(refused)).toMatch(/PERMISSION_DENIED/);
    // The agent reports the job rejected right away: the slot is free long before the claim window.
    for (let i = 0; ; i++) {
      if ((await coordinator.querySystemStatus({ includeMetrics: true })).metrics?.reservedJobs === 0) break;
      if (i > 100) throw new Error('the rejected job still holds its slot');
      await new Promise((r) => setTimeout(r, 20));
    }
    const again = await coordinator.requestInference({ clientId: 'c', model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 4 });
    expect(again.agentId).toBe('agent-0');
  });

  it('the SDK waits out a busy answer (until the blocking claim window ends) and then streams', async () => {
    const f = await startFleet([1], { claimWindowMs: 600, maxClientShare: 1 });
    // Someone takes the only slot and never uses it.
    await coordinatorClient(f).requestInference({ clientId: 'hoarder', model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 4 });
    const client = new TitanClient({ coordinator: f.coordinator.address });
    const result = await client.complete({ model: SCRIPTED_MODEL, prompt: 'p', maxTokens: 3 });
    client.close();
    expect(result.text).toBe('word0 word1 word2 ');
    const metrics = (await coordinatorClient(f).querySystemStatus({ includeMetrics: true })).metrics!;
    expect(metrics.rejectedBusyTotal).toBeGreaterThanOrEqual(1);
  });
});
