/**
 * Issue 10, finding 5: a used session token must stay used when the agent process dies right
 * after accepting it (SIGKILL: no shutdown code runs) and comes back with the same data dir.
 * Real processes: the built instance manager, coordinator and agent (bundled model).
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc';
import { startCluster, startService, waitForAgents } from '../scripts/lib/launch.mjs';
import { agentClient, BINS, closeChannels, coordinatorClient, MODEL, tempDir, waitFor, type Cluster, type ServiceProcess } from './support.js';

const stops: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  closeChannels();
  for (const stop of stops.reverse()) await stop();
});

describe('session tokens across an agent killed with SIGKILL', () => {
  it('a token accepted just before the kill is refused by the restarted agent ("token already used"); a new one works', async () => {
    const dataDir = tempDir('replay');
    const cluster: Cluster = await startCluster({ dataDir, agents: 1, coordinatorArgs: ['--heartbeat-interval', '1s'] });
    stops.push(() => cluster.stop());
    const coordinator = coordinatorClient(cluster.coordinator.address);
    await waitForAgents(cluster.coordinator.address, 1, 60_000);

    const prompt = 'Once upon a time';
    const grant = await coordinator.requestInference({
      clientId: 'e2e-replay',
      model: MODEL,
      prompt,
      maxTokens: 64,
      temperature: 0,
      parameters: {},
      excludeAgentIds: [],
      temperatureSet: false,
    });
    const request = { sessionToken: grant.sessionToken, model: MODEL, prompt, maxTokens: 0, temperature: 0, stream: true, options: {} };
    const first = agentClient(grant.agentEndpoint).streamInference(request)[Symbol.asyncIterator]();
    expect((await first.next()).done).toBe(false); // accepted: the stream has started
    stops.push(async () => first.return?.());
    const [agent] = cluster.agents as [ServiceProcess];
    agent.child.kill('SIGKILL');
    await agent.exited;

    const restarted = await startService({
      name: 'agent-1-again',
      bin: BINS.agent,
      args: ['--port', '0', '--agent-id', 'agent-1', '--public-host', '127.0.0.1', '--data-dir', join(dataDir, 'agent-1')],
      env: { TITAN_HOST: '127.0.0.1', TITAN_LOG_LEVEL: 'info', TITAN_JOIN_TOKEN: cluster.joinToken, TITAN_COORDINATOR: cluster.coordinator.address },
    });
    stops.push(() => restarted.stop());
    const again = agentClient(restarted.address);
    const replay = await (async () => {
      for await (const _ of again.streamInference(request)) return undefined;
      return undefined;
    })().then(
      () => undefined,
      (err: { code?: number; details?: string }) => err,
    );
    expect(replay).toMatchObject({ code: Status.UNAUTHENTICATED, details: 'token already used' });

    const fresh = await waitFor(
      async () => {
        const g = await coordinator
          .requestInference({
            clientId: 'e2e-replay-2',
            model: MODEL,
            prompt,
            maxTokens: 4,
            temperature: 0,
            parameters: {},
            excludeAgentIds: [],
            temperatureSet: false,
          })
          .catch(() => undefined);
        return g && g.agentEndpoint === restarted.address ? g : undefined;
      },
      60_000,
      'the restarted agent routable',
    );
    const msgs = [];
    for await (const m of again.streamInference({ ...request, sessionToken: fresh.value.sessionToken })) msgs.push(m);
    expect(msgs.at(-1)?.done).toBe(true);
  }, 180_000);
});
