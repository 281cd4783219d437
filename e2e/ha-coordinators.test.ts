/**
 * End-to-end: highly available coordinators (issue #14). Real processes on the real PostgreSQL:
 * an instance manager, three coordinators with `--store postgres` (one database, one keyring
 * secret, one join token) and three agents on the bundled model, each given all three
 * coordinators (in a different order, so their health streams start on different replicas).
 * A steady load runs through the SDK, which is given the three addresses too. SIGKILL one
 * coordinator, then a second: no request fails (the SDK moves a call whose coordinator died to
 * the next address before the first token), every agent keeps serving and re-homes its health
 * stream on the survivor; then both come back on their ports and schedule the whole fleet again.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { TitanClient } from '@titancompute/client';
import { startService } from '../scripts/lib/launch.mjs';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '@titancompute/test-support/postgres';
import { agentStates, BINS, closeChannels, freePort, isRoutable, MODEL, tempDir, waitFor, type ServiceProcess } from './support.js';

const HEARTBEAT = ['--heartbeat-interval', '500ms', '--heartbeat-timeout', '3s'];
const available = await postgresAvailable('e2e/ha-coordinators');
const describeWithPostgres = available ? describe : describe.skip;

afterAll(() => closeChannels());

describeWithPostgres('three coordinators on PostgreSQL, two of them SIGKILLed under load', () => {
  const dataDir = tempDir('ha');
  const joinToken = randomBytes(24).toString('base64url');
  const keyringSecret = randomBytes(32).toString('base64');
  let db: TestDatabase;
  let im: ServiceProcess;
  const ports: number[] = [];
  const coordinators: (ServiceProcess | undefined)[] = [];
  const agents: ServiceProcess[] = [];
  const addresses = () => ports.map((p) => `127.0.0.1:${p}`);

  const common = () => ({ TITAN_HOST: '127.0.0.1', TITAN_LOG_LEVEL: 'info', TITAN_JOIN_TOKEN: joinToken });
  const startCoordinator = (i: number) =>
    startService({
      name: `coordinator-${'abc'[i]}`,
      bin: BINS.coordinator,
      args: ['--port', String(ports[i]), '--http-port', '0', '--data-dir', join(dataDir, `coordinator-${i}`), '--store', 'postgres', ...HEARTBEAT],
      env: { ...common(), TITAN_POSTGRES_URL: db.url, TITAN_KEYRING_SECRET: keyringSecret, TITAN_INSTANCE_MANAGER: im.address },
      readyTimeoutMs: 30_000,
    });

  beforeAll(async () => {
    db = await createTestDatabase();
    for (let i = 0; i < 3; i += 1) ports.push(await freePort());
    im = await startService({
      name: 'instance-manager',
      bin: BINS['instance-manager'],
      args: ['--port', '0', '--data-dir', join(dataDir, 'instance-manager')],
      env: common(),
    });
    // One at a time would hide the migration lock; all three at once is what a deploy does.
    coordinators.push(...(await Promise.all([0, 1, 2].map(startCoordinator))));
    for (let i = 0; i < 3; i += 1) {
      const order = [...addresses().slice(i), ...addresses().slice(0, i)].join(',');
      agents.push(
        await startService({
          name: `agent-${i + 1}`,
          bin: BINS.agent,
          args: [
            '--port',
            '0',
            '--http-port',
            '0',
            '--agent-id',
            `agent-${i + 1}`,
            '--public-host',
            '127.0.0.1',
            '--data-dir',
            join(dataDir, `agent-${i + 1}`),
          ],
          env: { ...common(), TITAN_COORDINATOR: order, TITAN_INSTANCE_MANAGER: im.address },
        }),
      );
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...agents, ...coordinators].map((p) => p?.stop()));
    await im?.stop();
    await db?.drop();
  }, 60_000);

  /** The agents a coordinator can route to now (healthy or degraded, endpoint verified). */
  const routable = async (address: string) => [...(await agentStates(address)).entries()].filter(([, s]) => isRoutable(s)).map(([id]) => id);

  it('every replica schedules every agent; killing two replicas loses no request; they come back', async () => {
    for (const address of addresses()) {
      await waitFor(async () => (await routable(address)).length === 3, 30_000, `all three agents routable on ${address}`);
    }

    const client = new TitanClient({ coordinator: addresses(), clientId: 'e2e-ha' });
    const served = new Map<string, number>();
    const failures: string[] = [];
    let completed = 0;
    let running = true;
    const worker = async () => {
      while (running) {
        try {
          const { stats } = await client.complete({ model: MODEL, prompt: 'The fleet keeps going', maxTokens: 8 });
          served.set(stats.agentId, (served.get(stats.agentId) ?? 0) + 1);
          completed += 1;
        } catch (err) {
          failures.push(`${(err as Error).name}: ${(err as Error).message}`);
        }
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    try {
      await waitFor(async () => completed >= 20, 30_000, '20 requests before the first kill');

      // SIGKILL the first replica: its agents move to another within 2 s; the load goes on.
      await coordinators[0]!.stop('SIGKILL');
      coordinators[0] = undefined;
      const afterFirst = completed;
      await waitFor(async () => completed >= afterFirst + 20, 30_000, '20 more requests after coordinator-a died');

      // And the second: one replica is left, and it has every agent.
      await coordinators[1]!.stop('SIGKILL');
      coordinators[1] = undefined;
      const afterSecond = completed;
      await waitFor(async () => completed >= afterSecond + 20, 30_000, '20 more requests after coordinator-b died');
      await waitFor(async () => (await routable(addresses()[2]!)).length === 3, 10_000, 'all three agents routable on coordinator-c');

      // Both come back on their ports: they see the whole fleet from the shared store.
      coordinators[0] = await startCoordinator(0);
      coordinators[1] = await startCoordinator(1);
      for (const address of addresses().slice(0, 2)) {
        await waitFor(async () => (await routable(address)).length === 3, 30_000, `all three agents routable again on ${address}`);
      }
      const afterReturn = completed;
      await waitFor(async () => completed >= afterReturn + 20, 30_000, '20 more requests after both came back');
    } finally {
      running = false;
      await Promise.all(workers);
      client.close();
    }

    expect(failures).toEqual([]);
    // Every agent kept serving through it all.
    expect([...served.keys()].sort()).toEqual(['agent-1', 'agent-2', 'agent-3']);
    // The agents whose home died moved within 2 s of the kill, and said so once per move.
    const moves = agents.flatMap((a) => a.logs.filter((l) => String((l as { msg?: unknown }).msg ?? '').includes('moved to another coordinator'))) as {
      from?: string;
      to?: string;
      afterMs?: number;
    }[];
    // agent-1 started on coordinator-a and agent-2 on coordinator-b: at least those two moved.
    expect(moves.length).toBeGreaterThanOrEqual(2);
    for (const move of moves) {
      expect(move.afterMs).toBeLessThanOrEqual(2000);
    }
    expect(moves.some((m) => m.from === addresses()[0])).toBe(true);
    expect(moves.some((m) => m.from === addresses()[1])).toBe(true);
  }, 240_000);
});
