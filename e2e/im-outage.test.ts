/**
 * End-to-end: an instance-manager outage longer than its stale timeout must not take inference
 * down. Real processes (instance manager on SQLite, coordinator, two agents on the bundled model):
 * SIGKILL the instance manager, keep it down for twice its stale timeout, restart it on the same
 * port and data dir; the agents keep serving throughout, are alive again at the instance manager
 * (same incarnation: never marked stale), and an explicit TryKillInstance still stops an agent.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InstanceManagerClient, TitanClient } from '@titancompute/client';
import { startCluster, startService, waitForAgents } from '../scripts/lib/launch.mjs';
import { agentStates, BINS, closeChannels, freePort, isOffline, MODEL, tempDir, waitFor, type Cluster, type ServiceProcess } from './support.js';

const STALE_TIMEOUT_MS = 3000;
const imEnv = { TITAN_HOST: '127.0.0.1', TITAN_STALE_TIMEOUT: `${STALE_TIMEOUT_MS}ms`, TITAN_SWEEP_INTERVAL: '100ms' };
const msg = (line: object) => String((line as { msg?: unknown }).msg ?? '');

afterAll(() => closeChannels());

describe('an instance-manager outage longer than its stale timeout', () => {
  let cluster: Cluster;
  let client: TitanClient;
  let im: InstanceManagerClient;
  let imPort: number;
  const dataDir = tempDir('im-outage');
  beforeAll(async () => {
    imPort = await freePort();
    cluster = await startCluster({
      dataDir,
      agents: 2,
      coordinatorArgs: ['--heartbeat-timeout', '2000ms', '--heartbeat-interval', '1s'],
      agentArgs: ['--im-health-interval', '300ms'],
      ports: { instanceManager: imPort },
      env: { TITAN_STALE_TIMEOUT: imEnv.TITAN_STALE_TIMEOUT, TITAN_SWEEP_INTERVAL: imEnv.TITAN_SWEEP_INTERVAL },
    });
    await waitForAgents(cluster.coordinator.address, 2);
    client = new TitanClient({ coordinator: cluster.coordinator.address, clientId: 'e2e-im-outage' });
    im = new InstanceManagerClient({ address: cluster.instanceManager.address });
  }, 60_000);
  afterAll(async () => {
    client?.close();
    im?.close();
    await cluster?.stop();
  }, 30_000);

  /**
   * Generates until each of `agentIds` has served a request. The scheduler breaks ties by agent
   * id, so requests go out four at a time: reserved slots spread them over the agents.
   */
  async function servedByEach(agentIds: string[], what: string): Promise<void> {
    const served = new Set<string>();
    try {
      await waitFor(
        async () => {
          const results = await Promise.all(Array.from({ length: 4 }, () => client.complete({ model: MODEL, prompt: what, maxTokens: 4 })));
          for (const { stats } of results) served.add(stats.agentId);
          return agentIds.every((id) => served.has(id));
        },
        45_000,
        `inference served by ${agentIds.join(' and ')} (${what})`,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; served by: ${[...served].join(', ') || 'none'}`);
    }
  }

  const agentInstances = async () => new Map((await im.listInstances({ type: 'INFERENCE_AGENT' })).map((d) => [d.id, d]));

  it('agents keep serving, are alive again after the restart without a new incarnation, and a kill still stops one', async () => {
    const names = cluster.agents.map((a) => a.name);
    const { value: before } = await waitFor(
      async () => {
        const live = await agentInstances();
        return names.every((n) => live.get(n)?.services.length) ? live : undefined;
      },
      20_000,
      'both agents registered at the instance manager',
    );

    const old = cluster.instanceManager;
    await old.stop('SIGKILL');
    const downAt = Date.now();
    await servedByEach(names, 'during the outage');
    const outageLeftMs = 2 * STALE_TIMEOUT_MS - (Date.now() - downAt);
    if (outageLeftMs > 0) await new Promise((r) => setTimeout(r, outageLeftMs)); // down for twice the stale timeout

    const restarted: ServiceProcess = await startService({
      name: 'instance-manager',
      bin: BINS['instance-manager'],
      args: ['--port', String(imPort), '--data-dir', join(dataDir, 'instance-manager')],
      env: imEnv,
    });
    cluster.processes[cluster.processes.indexOf(old)] = restarted;
    cluster.instanceManager = restarted;
    const restartedAt = Date.now();
    expect(restarted.logs.some((l) => msg(l).startsWith('registry was down'))).toBe(true);

    // Both agents check in again: alive, same incarnation (createdAtMs), address and services kept.
    const { value: after } = await waitFor(
      async () => {
        const live = await agentInstances();
        return names.every((n) => (live.get(n)?.lastHealthCheckMs ?? 0) >= restartedAt) ? live : undefined;
      },
      20_000,
      'both agents alive and checking in after the restart',
    );
    for (const name of names) {
      expect(after.get(name)).toMatchObject({
        createdAtMs: before.get(name)!.createdAtMs,
        address: before.get(name)!.address,
        services: before.get(name)!.services,
      });
    }
    await servedByEach(names, 'after the restart');
    for (const agent of cluster.agents) {
      expect(agent.child.exitCode).toBeNull();
      const lines = agent.logs.map(msg);
      expect(lines.filter((m) => m.startsWith('instance manager unreachable'))).toHaveLength(1); // once per outage
      expect(lines).toContain('instance manager reachable again');
      expect(lines).not.toContain('instance manager told this agent to stop');
    }

    // An explicit kill still stops the agent: it drains, exits 0, and the coordinator stops routing to it.
    const [victim, survivor] = cluster.agents as [ServiceProcess, ServiceProcess];
    expect((await im.killInstance(victim.name, 'e2e outage test')).killedInstanceIds).toEqual([victim.name]);
    let timer: NodeJS.Timeout | undefined;
    const exitCode = await Promise.race([victim.exited, new Promise((r) => (timer = setTimeout(() => r('still running'), 20_000)))]);
    clearTimeout(timer);
    expect(exitCode).toBe(0);
    expect(victim.logs.some((l) => msg(l) === 'instance manager told this agent to stop')).toBe(true);
    await waitFor(async () => isOffline((await agentStates(cluster.coordinator.address)).get(victim.name)), 5000, 'the killed agent not routable');
    const { stats } = await client.complete({ model: MODEL, prompt: 'after the kill', maxTokens: 2 });
    expect(stats.agentId).toBe(survivor.name);
    expect(survivor.child.exitCode).toBeNull();
  }, 120_000);
});
