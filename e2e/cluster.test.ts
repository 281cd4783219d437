/**
 * End-to-end tests across real processes: the built bins of the instance manager, the
 * coordinator and two agents (embedded llama.cpp, bundled model), started on free ports with
 * temporary data dirs, exactly as `pnpm start` starts them.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Status } from 'nice-grpc';
import { PROTO_VERSION } from '@titancompute/protocol';
import { type GenerationStats, InstanceManagerClient, StreamInterruptedError, TitanClient } from '@titancompute/client';
import { startCluster, startService, waitForAgents } from '../scripts/lib/launch.mjs';
import {
  agentClient,
  agentStates,
  BINS,
  closeChannels,
  collect,
  coordinatorClient,
  freePort,
  isOffline,
  isRoutable,
  MODEL,
  runTitan,
  tempDir,
  waitFor,
  type Cluster,
} from './support.js';

const HEARTBEAT_TIMEOUT_MS = 2000;
const coordinatorArgs = ['--heartbeat-timeout', `${HEARTBEAT_TIMEOUT_MS}ms`, '--heartbeat-interval', '1s'];

afterAll(() => closeChannels());

describe('a running cluster', () => {
  let cluster: Cluster;
  let client: TitanClient;
  beforeAll(async () => {
    cluster = await startCluster({ dataDir: tempDir('main'), agents: 2, coordinatorArgs });
    await waitForAgents(cluster.coordinator.address, 2);
    client = new TitanClient({ coordinator: cluster.coordinator.address, clientId: 'e2e' });
  }, 60_000);
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
  }, 30_000);

  it('1. generates through the SDK, streamed from one of the agents', async () => {
    const chunks: string[] = [];
    let stats: GenerationStats | undefined;
    for await (const chunk of client.generate({ model: MODEL, prompt: 'Hello', maxTokens: 12 })) {
      if (!chunk.done) chunks.push(chunk.text);
      else stats = chunk.stats;
    }
    expect(chunks.join('').length).toBeGreaterThan(0);
    expect(stats).toMatchObject({ tokens: 12, finishReason: 'length' });
    expect(['agent-1', 'agent-2']).toContain(stats!.agentId);
    expect(stats!.tokensPerSecond).toBeGreaterThan(0);
  }, 30_000);

  it('1. generates through the titan CLI (text on stdout, summary on stderr)', async () => {
    const result = await runTitan(['generate', '--coordinator', cluster.coordinator.address, '--model', MODEL, '--max-tokens', '8', 'Hello']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim().length).toBeGreaterThan(0);
    expect(result.stderr).toMatch(/8 tokens/);
    expect(result.stderr).toMatch(/agent-[12]/);
    const json = await runTitan(['generate', '--json', '--coordinator', cluster.coordinator.address, '--model', MODEL, '--max-tokens', '4', 'Hi']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ stats: { tokens: 4 } });
  }, 60_000);

  it('7. refuses proto_version skew with FAILED_PRECONDITION naming both versions', async () => {
    const skewed = 'ffffffffffffffff';
    for (const call of [
      () => coordinatorClient(cluster.coordinator.address, skewed).querySystemStatus({}),
      () => agentClient(cluster.agents[0]!.address, skewed).getStatus({}),
    ]) {
      const err = (await call().catch((e: unknown) => e)) as { code: Status; details: string };
      expect(err.code).toBe(Status.FAILED_PRECONDITION);
      expect(err.details).toContain(skewed);
      expect(err.details).toContain(PROTO_VERSION);
    }
  });

  it('8. refuses a replayed session token and a token for another agent', async () => {
    const coordinator = coordinatorClient(cluster.coordinator.address);
    const grant = await coordinator.requestInference({ clientId: 'e2e', model: MODEL, prompt: 'Hi', maxTokens: 4 });
    const own = cluster.agents.find((a) => a.name === grant.agentId)!;
    const other = cluster.agents.find((a) => a.name !== grant.agentId)!;
    const request = { sessionToken: grant.sessionToken, model: MODEL, prompt: 'Hi', maxTokens: 4 };
    // Presented to the wrong agent first: refused (and not burnt there).
    const wrong = (await collect(agentClient(other.address).streamInference(request)).catch((e: unknown) => e)) as { code: Status };
    expect([Status.UNAUTHENTICATED, Status.PERMISSION_DENIED]).toContain(wrong.code);
    const first = await collect(agentClient(own.address).streamInference(request));
    expect(first.at(-1)?.done).toBe(true);
    const replay = (await collect(agentClient(own.address).streamInference(request)).catch((e: unknown) => e)) as { code: Status; details: string };
    expect(replay.code).toBe(Status.UNAUTHENTICATED);
  });

  it('8. an agent without the join token cannot register', async () => {
    const raw = coordinatorClient(cluster.coordinator.address);
    const err = (await raw
      .registerAgent({ agentId: 'intruder', endpoint: '127.0.0.1:1', maxJobs: 4, supportedModels: [MODEL], totalRamMb: 1024 })
      .catch((e: unknown) => e)) as { code: Status };
    expect(err.code).toBe(Status.UNAUTHENTICATED);
    const intruder = await startService({
      name: 'intruder',
      bin: BINS.agent,
      args: ['--port', '0', '--agent-id', 'intruder', '--data-dir', tempDir('intruder')],
      env: { TITAN_HOST: '127.0.0.1', TITAN_COORDINATOR: cluster.coordinator.address, TITAN_JOIN_TOKEN: 'not-the-token' },
    });
    try {
      await new Promise((r) => setTimeout(r, 2500));
      expect((await agentStates(cluster.coordinator.address)).has('intruder')).toBe(false);
    } finally {
      await intruder.stop('SIGKILL');
    }
  }, 30_000);

  it('the titan CLI exits quietly when the reader closes the pipe early (`titan generate … | head`)', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(
      process.execPath,
      [BINS.titan, 'generate', '--coordinator', cluster.coordinator.address, '--model', MODEL, '--max-tokens', '400', 'A long story'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Take the first tokens, then close our end like `head -c 1` does while tokens keep coming.
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(stderr).not.toContain('EPIPE');
    expect(code).toBe(0);
  }, 30_000);

  it('3. evicts a frozen agent (SIGSTOP) within HEARTBEAT_TIMEOUT + 1 s, and takes it back after SIGCONT', async () => {
    const frozen = cluster.agents[0]!;
    frozen.child.kill('SIGSTOP');
    try {
      const { elapsedMs } = await waitFor(
        async () => isOffline((await agentStates(cluster.coordinator.address)).get(frozen.name)),
        HEARTBEAT_TIMEOUT_MS + 5000,
        `${frozen.name} to be evicted`,
      );
      // Heartbeats stop at most one interval before the freeze; polling adds up to ~0.1 s.
      expect(elapsedMs).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT_MS + 1000 + 200);
      // Requests now all go to the other agent.
      const { stats } = await client.complete({ model: MODEL, prompt: 'x', maxTokens: 2 });
      expect(stats.agentId).toBe(cluster.agents[1]!.name);
    } finally {
      frozen.child.kill('SIGCONT');
    }
    await waitFor(async () => isRoutable((await agentStates(cluster.coordinator.address)).get(frozen.name)), 10_000, `${frozen.name} to come back`);
  }, 30_000);

  it('2. an agent killed mid-stream: typed interruption, offline at once, next request to the survivor', async () => {
    const generation = client.generate({ model: MODEL, prompt: 'Tell me a long story', maxTokens: 1500 });
    const iterator = generation[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    // Find the agent streaming to us.
    const { value: busy } = await waitFor(
      async () => {
        for (const agent of cluster.agents) {
          const status = await agentClient(agent.address).getStatus({});
          if (status.activeSessions > 0) return agent;
        }
        return undefined;
      },
      5000,
      'the streaming agent',
    );
    const survivor = cluster.agents.find((a) => a !== busy)!;
    busy.child.kill('SIGKILL');
    const killedAt = Date.now();
    let received = 1;
    const err = await (async () => {
      try {
        for (let r = await iterator.next(); !r.done; r = await iterator.next()) received += 1;
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(StreamInterruptedError);
    expect((err as StreamInterruptedError).tokensReceived).toBeGreaterThanOrEqual(1);
    const { elapsedMs } = await waitFor(async () => isOffline((await agentStates(cluster.coordinator.address)).get(busy.name)), 3000, `${busy.name} offline`);
    expect(Date.now() - killedAt).toBeLessThan(1500);
    expect(elapsedMs).toBeLessThan(1500);
    const { stats } = await client.complete({ model: MODEL, prompt: 'again', maxTokens: 3 });
    expect(stats.agentId).toBe(survivor.name);
    void received;
  }, 60_000);
});

describe('a coordinator restart', () => {
  let cluster: Cluster;
  let port: number;
  let httpPort: number;
  const dataDir = tempDir('restart');
  beforeAll(async () => {
    port = await freePort();
    httpPort = await freePort();
    cluster = await startCluster({ dataDir, agents: 2, coordinatorArgs, ports: { coordinator: port, http: httpPort } });
    await waitForAgents(cluster.coordinator.address, 2);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  it('4. agents register again within two heartbeat intervals, and a token issued before the restart still verifies', async () => {
    const grant = await coordinatorClient(cluster.coordinator.address).requestInference({ clientId: 'e2e', model: MODEL, prompt: 'Hi', maxTokens: 3 });
    const old = cluster.coordinator;
    expect(await old.stop()).toBe(0);
    const restarted = await startService({
      name: 'coordinator',
      bin: BINS.coordinator,
      args: ['--port', String(port), '--http-port', String(httpPort), '--data-dir', join(dataDir, 'coordinator'), ...coordinatorArgs],
      env: { TITAN_HOST: '127.0.0.1', TITAN_JOIN_TOKEN: cluster.joinToken },
    });
    // Replace the process in the cluster so afterAll stops it.
    cluster.processes[cluster.processes.indexOf(old)] = restarted;
    const { elapsedMs } = await waitFor(
      async () => {
        const states = await agentStates(restarted.address);
        return isRoutable(states.get('agent-1')) && isRoutable(states.get('agent-2'));
      },
      10_000,
      'both agents to register again',
    );
    expect(elapsedMs).toBeLessThanOrEqual(2 * 1000 + 500);
    const agent = cluster.agents.find((a) => a.name === grant.agentId)!;
    const messages = await collect(agentClient(agent.address).streamInference({ sessionToken: grant.sessionToken, model: MODEL, prompt: 'Hi', maxTokens: 3 }));
    expect(messages.at(-1)).toMatchObject({ done: true });
  }, 60_000);
});

describe('the instance manager', () => {
  let cluster: Cluster;
  let client: TitanClient;
  let im: InstanceManagerClient;
  let imPort: number;
  const dataDir = tempDir('im');
  beforeAll(async () => {
    imPort = await freePort();
    cluster = await startCluster({
      dataDir,
      agents: 2,
      coordinatorArgs,
      agentArgs: ['--im-health-interval', '500ms'],
      ports: { instanceManager: imPort },
    });
    await waitForAgents(cluster.coordinator.address, 2);
    client = new TitanClient({ coordinator: cluster.coordinator.address, clientId: 'e2e' });
    im = new InstanceManagerClient({ address: cluster.instanceManager.address });
  }, 60_000);
  afterAll(async () => {
    client?.close();
    im?.close();
    await cluster?.stop();
  }, 30_000);

  it('6. keeps instances, children and metrics across its own restart (SQLite)', async () => {
    await im.addInstance({ id: 'worker-under-agent-2', type: 'BROWSER_BACKEND', hostname: 'localhost' });
    expect(await im.addChild('agent-2', 'worker-under-agent-2')).toMatchObject({ success: true });
    await im.postSystemMetrics('worker-under-agent-2', { usedMemoryBytes: 1000, totalMemoryBytes: 4000, cpuPercent: 12.5 });
    // The agents post their own LLM metrics after a request.
    await client.complete({ model: MODEL, prompt: 'metrics', maxTokens: 3 });
    await waitFor(
      async () => (await im.getLlmMetrics('agent-1'))?.requestCount || (await im.getLlmMetrics('agent-2'))?.requestCount || undefined,
      10_000,
      'LLM metrics',
    );

    const old = cluster.instanceManager;
    expect(await old.stop()).toBe(0);
    const restarted = await startService({
      name: 'instance-manager',
      bin: BINS['instance-manager'],
      args: ['--port', String(imPort), '--data-dir', join(dataDir, 'instance-manager')],
      env: { TITAN_HOST: '127.0.0.1' },
    });
    cluster.processes[cluster.processes.indexOf(old)] = restarted;

    expect(await im.getInstance('agent-2')).toMatchObject({ id: 'agent-2', type: 'INFERENCE_AGENT' });
    expect((await im.getChildren('agent-2')).map((c) => c.id)).toEqual(['worker-under-agent-2']);
    expect(await im.getSystemMetrics('worker-under-agent-2')).toMatchObject({ usedMemoryBytes: 1000, totalMemoryBytes: 4000 });
    const llm = [await im.getLlmMetrics('agent-1'), await im.getLlmMetrics('agent-2')];
    expect(llm.some((m) => (m?.requestCount ?? 0) >= 1)).toBe(true);
  }, 60_000);

  it("5. killing an agent's instance makes the agent drain and exit, and the coordinator stops routing to it", async () => {
    const victim = cluster.agents[0]!;
    const survivor = cluster.agents[1]!;
    const killed = await im.killInstance(victim.name, 'e2e');
    expect(killed.killedInstanceIds).toContain(victim.name);
    const exitCode = await Promise.race([victim.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    expect(exitCode).toBe(0);
    expect(victim.logs.some((l) => /told this agent to stop/.test(String((l as { msg?: string }).msg)))).toBe(true);
    await waitFor(async () => isOffline((await agentStates(cluster.coordinator.address)).get(victim.name)), 3000, 'victim not routable');
    for (let i = 0; i < 3; i += 1) {
      const { stats } = await client.complete({ model: MODEL, prompt: `after ${i}`, maxTokens: 2 });
      expect(stats.agentId).toBe(survivor.name);
    }
  }, 60_000);
});

describe('a TitanCompute v1 client', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({
      dataDir: tempDir('v1'),
      agents: 1,
      coordinatorArgs,
      env: { TITAN_PROTO_VERSION_POLICY: 'allow-missing' },
    });
    await waitForAgents(cluster.coordinator.address, 1);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  it("9. completes v1's flow: REST inference request, then StreamInference without a proto_version header", async () => {
    const { createChannel, createClient } = await import('nice-grpc');
    const { AgentServiceDefinition } = await import('@titancompute/protocol');
    const httpPort = (cluster.coordinator as unknown as { httpPort: number }).httpPort;
    const response = await fetch(`http://127.0.0.1:${httpPort}/api/v1/inference/request`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'v1-client', model: MODEL, prompt: 'Hello', max_tokens: 5 }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(expect.arrayContaining(['agent_endpoint', 'session_token', 'expires_at', 'job_id', 'estimated_rtt_ms', 'agent_id']));
    // The generated stubs alone: no middleware, so no proto_version header.
    const channel = createChannel(String(body.agent_endpoint));
    const agent = createClient(AgentServiceDefinition, channel);
    const messages = await collect(
      agent.streamInference({ sessionToken: String(body.session_token), model: MODEL, prompt: 'Hello', maxTokens: 5, stream: true }),
    ).finally(() => channel.close());
    expect(
      messages
        .filter((m) => !m.done)
        .map((m) => m.content)
        .join('').length,
    ).toBeGreaterThan(0);
    expect(messages.at(-1)).toMatchObject({ done: true });
    expect(messages.at(-1)!.metadata.tokens_generated).toBe('5');
  }, 60_000);
});
