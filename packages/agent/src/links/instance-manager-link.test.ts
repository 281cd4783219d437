import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { createClientFactory } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager } from '@titancompute/protocol';
import { startInstanceManager, type InstanceManagerOptions, type RunningInstanceManager } from '@titancompute/instance-manager';
import { createLogger } from '@titancompute/server-kit';
import { startAgent, type RunningAgent, type StartAgentOptions } from '../agent.js';
import { startFakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { startFakeInstanceManager } from '../test-support/fake-instance-manager.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('instance manager link', () => {
  it('adds the agent and its gRPC service, posts metrics, and drains + stops when a v1 instance manager answers healthy=false', async () => {
    const coordinator = await startFakeCoordinator();
    const im = await startFakeInstanceManager();
    cleanups.push(
      () => coordinator.stop(),
      () => im.stop(),
    );
    const agent = await startAgent({
      agentId: 'im-agent',
      host: '127.0.0.1',
      port: 0,
      coordinator: coordinator.address,
      joinToken: 'join-secret',
      engine: createFakeEngine(),
      instanceManager: im.address,
      imHealthIntervalMs: 100,
      drainTimeoutMs: 1000,
      nvidiaSmiPath: '/nonexistent/nvidia-smi',
      logLevel: 'silent',
    });
    cleanups.push(() => agent.stop());
    await coordinator.waitFor(() => im.healthChecks >= 2 && im.llmMetrics.length > 0 && im.systemMetrics.length > 0);
    expect(im.instances[0]).toMatchObject({ id: 'im-agent', type: instanceManager.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, address: agent.endpoint });
    expect(im.services).toEqual([
      { instanceId: 'im-agent', service: { type: instanceManager.ServiceType.SERVICE_TYPE_AGENT_GRPC, port: agent.port, url: `grpc://${agent.endpoint}` } },
    ]);
    expect(im.llmMetrics.at(-1)).toMatchObject({ requestCount: 0, tokensReceived: 0, tokensSent: 0 });
    expect(im.systemMetrics.at(-1)!.totalMemoryBytes).toBeGreaterThan(0);
    expect(im.gpuMetrics).toHaveLength(0); // CPU-only agent

    im.healthy = false;
    const reason = await agent.closed;
    expect(reason).toMatch(/instance manager/);
    expect(coordinator.deregistrations.map((d) => d.agentId)).toEqual(['im-agent']);
  });

  it('registers again (not stops) on STALE or UNKNOWN, and drains + stops on KILLED', async () => {
    const coordinator = await startFakeCoordinator();
    const im = await startFakeInstanceManager();
    cleanups.push(
      () => coordinator.stop(),
      () => im.stop(),
    );
    const agent = await startAgent({ ...agentBase('im-agent-3', coordinator.address), instanceManager: im.address, drainTimeoutMs: 1000 });
    cleanups.push(() => agent.stop());
    let stopped = false;
    void agent.closed.then(() => (stopped = true));
    await coordinator.waitFor(() => im.instances.length === 1 && im.healthChecks >= 1);
    for (const status of [instanceManager.HealthStatus.HEALTH_STATUS_STALE, instanceManager.HealthStatus.HEALTH_STATUS_UNKNOWN]) {
      const registrations = im.instances.length;
      im.healthy = false;
      im.status = status;
      await coordinator.waitFor(() => im.instances.length > registrations && im.services.length > registrations);
      im.healthy = true;
      im.status = instanceManager.HealthStatus.HEALTH_STATUS_ALIVE;
      expect(stopped).toBe(false);
    }
    expect(im.instances.every((i) => i.id === 'im-agent-3' && i.address === agent.endpoint)).toBe(true);
    im.healthy = false;
    im.status = instanceManager.HealthStatus.HEALTH_STATUS_KILLED;
    expect(await agent.closed).toMatch(/instance manager/);
    expect(coordinator.deregistrations.map((d) => d.agentId)).toEqual(['im-agent-3']);
  });

  it('sends its health checks over one TryHealthCheckStream, and over unary TryHealthCheck to an instance manager without it', async () => {
    for (const withoutHealthStream of [false, true]) {
      const coordinator = await startFakeCoordinator();
      const im = await startFakeInstanceManager({ withoutHealthStream });
      cleanups.push(
        () => coordinator.stop(),
        () => im.stop(),
      );
      const id = withoutHealthStream ? 'im-agent-unary' : 'im-agent-stream';
      const agent = await startAgent({ ...agentBase(id, coordinator.address), instanceManager: im.address, drainTimeoutMs: 1000 });
      cleanups.push(() => agent.stop());
      await coordinator.waitFor(() => im.healthChecks >= 4);
      if (withoutHealthStream) {
        expect(im.streamedHealthChecks).toBe(0);
      } else {
        expect(im.streamedHealthChecks).toBe(im.healthChecks);
        expect(im.healthStreams).toBe(1);
      }
      // Either way a kill still stops the agent.
      im.healthy = false;
      im.status = instanceManager.HealthStatus.HEALTH_STATUS_KILLED;
      expect(await agent.closed).toMatch(/instance manager/);
    }
  });

  it('keeps serving while the instance manager is unreachable', async () => {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    const agent = await startAgent({
      agentId: 'im-agent-2',
      host: '127.0.0.1',
      port: 0,
      coordinator: coordinator.address,
      joinToken: 'join-secret',
      engine: createFakeEngine(),
      instanceManager: '127.0.0.1:1',
      imHealthIntervalMs: 50,
      nvidiaSmiPath: '/nonexistent/nvidia-smi',
      logLevel: 'silent',
    });
    cleanups.push(() => agent.stop());
    let stopped = false;
    void agent.closed.then(() => (stopped = true));
    await coordinator.waitFor(() => coordinator.updates.length > 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(stopped).toBe(false);
  });
});

/** Agent options shared by the tests below (fake engine, no GPU, fast health checks). */
function agentBase(agentId: string, coordinator: string): StartAgentOptions {
  return {
    agentId,
    host: '127.0.0.1',
    port: 0,
    coordinator,
    joinToken: 'join-secret',
    engine: createFakeEngine(),
    imHealthIntervalMs: 100,
    nvidiaSmiPath: '/nonexistent/nvidia-smi',
    logLevel: 'silent',
  };
}

/** A JSON logger writing to a temp file, and the messages it wrote so far. */
function captureLogs(): { logger: ReturnType<typeof createLogger>; messages(): string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'titan-im-link-'));
  const fd = openSync(join(dir, 'agent.log'), 'w');
  cleanups.push(async () => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    logger: createLogger({ service: 'titan-agent', level: 'info', fd }),
    messages: () =>
      readFileSync(join(dir, 'agent.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { msg: string }).msg),
  };
}

/** Polls `probe` every 50 ms until it is true (errors count as false), or fails after `timeoutMs`. */
async function waitUntil(probe: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (
      await Promise.resolve()
        .then(probe)
        .catch(() => false)
    )
      return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('instance manager link against the real instance manager', () => {
  /** Starts a real instance manager, restartable on the same port and storage. */
  async function realIm(options: InstanceManagerOptions) {
    let im: RunningInstanceManager = await startInstanceManager({ host: '127.0.0.1', port: 0, logLevel: 'silent', ...options });
    const port = im.port;
    const channel = createTitanChannel(`127.0.0.1:${port}`);
    const factory = createClientFactory().use(createProtoVersionClientMiddleware());
    const get = factory.create(instanceManager.GetServiceDefinition, channel);
    const tryClient = factory.create(instanceManager.TryServiceDefinition, channel);
    cleanups.push(async () => {
      channel.close();
      await im.stop();
    });
    return {
      address: `127.0.0.1:${port}`,
      get,
      try: tryClient,
      describe: async (id: string) => (await get.getInstance({ instanceId: id })).instance,
      stop: () => im.stop(),
      async restart() {
        im = await startInstanceManager({ host: '127.0.0.1', port, logLevel: 'silent', ...options });
      },
    };
  }

  async function agentOn(imAddress: string, agentId: string, logger?: ReturnType<typeof createLogger>) {
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    const agent: RunningAgent = await startAgent({
      ...agentBase(agentId, coordinator.address),
      instanceManager: imAddress,
      drainTimeoutMs: 1000,
      ...(logger ? { logger } : {}),
    });
    cleanups.push(() => agent.stop());
    const state = { closedWith: undefined as string | undefined };
    void agent.closed.then((reason) => (state.closedWith = reason));
    return { agent, coordinator, state };
  }

  it('an outage longer than the stale timeout: the agent keeps serving, logs it once, finds itself still registered when the instance manager returns; a kill still stops it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'titan-im-outage-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const staleTimeoutMs = 1000;
    const im = await realIm({ storage: { kind: 'sqlite', dataDir: dir }, staleTimeoutMs, sweepIntervalMs: 50 });
    const log = captureLogs();
    const { agent, coordinator, state } = await agentOn(im.address, 'outage-agent', log.logger);
    await waitUntil(async () => (await im.describe('outage-agent'))?.services.length === 1, 'the agent to register');
    const before = (await im.describe('outage-agent'))!;

    await im.stop();
    await new Promise((r) => setTimeout(r, 2.5 * staleTimeoutMs)); // the outage: longer than the stale timeout
    expect(state.closedWith).toBeUndefined();
    await im.restart();
    const restartedAt = Date.now();

    await waitUntil(async () => ((await im.describe('outage-agent'))?.lastHealthCheckMs ?? 0) >= restartedAt, 'a health check after the restart');
    await waitUntil(() => log.messages().includes('instance manager reachable again'), 'the recovery log line');
    const after = (await im.describe('outage-agent'))!;
    // The same incarnation (never marked stale), with its address and gRPC service.
    expect(after.createdAtMs).toBe(before.createdAtMs);
    expect(after.instance).toMatchObject({ address: agent.endpoint });
    expect(after.services).toEqual([{ type: instanceManager.ServiceType.SERVICE_TYPE_AGENT_GRPC, port: agent.port, url: `grpc://${agent.endpoint}` }]);
    const messages = log.messages();
    expect(messages.filter((m) => m.startsWith('instance manager unreachable'))).toHaveLength(1); // once per outage, not per attempt
    // Registered once: the instance manager kept the record alive, so nothing needed registering again.
    expect(messages.filter((m) => m === 'registered with the instance manager')).toHaveLength(1);
    expect(messages).not.toContain('instance manager told this agent to stop');
    expect(state.closedWith).toBeUndefined();

    expect(await im.try.tryKillInstance({ instanceId: 'outage-agent', reason: 'decommissioned' })).toMatchObject({ success: true });
    expect(await agent.closed).toMatch(/killed: decommissioned/);
    expect(coordinator.deregistrations.map((d) => d.agentId)).toEqual(['outage-agent']);
  }, 30_000);

  it('a kill issued while the agent still backs off from an outage is obeyed, not undone by registering again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'titan-im-outage-kill-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const im = await realIm({ storage: { kind: 'sqlite', dataDir: dir }, staleTimeoutMs: 30_000 });
    const coordinator = await startFakeCoordinator();
    cleanups.push(() => coordinator.stop());
    // Retries 1 s apart at first: the kill below lands between two of them.
    const agent = await startAgent({
      ...agentBase('kill-in-outage', coordinator.address),
      instanceManager: im.address,
      imHealthIntervalMs: 1000,
      drainTimeoutMs: 1000,
    });
    cleanups.push(() => agent.stop());
    await waitUntil(async () => (await im.describe('kill-in-outage'))?.services.length === 1, 'the agent to register');
    const incarnation = (await im.describe('kill-in-outage'))!.createdAtMs;

    await im.stop();
    await new Promise((r) => setTimeout(r, 1500)); // at least one failed health check: the agent is in its outage
    await im.restart();
    expect(await im.try.tryKillInstance({ instanceId: 'kill-in-outage', reason: 'decommissioned during the outage' })).toMatchObject({ success: true });

    expect(await agent.closed).toMatch(/killed: decommissioned during the outage/);
    // No new incarnation was registered over the kill: the instance stays dead.
    await expect(im.describe('kill-in-outage')).rejects.toThrow(/is dead \(killed: decommissioned during the outage\)/);
    expect(incarnation).toBeGreaterThan(0);
  }, 30_000);

  it('marked stale while the instance manager runs: the agent registers a new incarnation and keeps serving', async () => {
    let skewMs = 0;
    // The instance manager's clock jumps ahead (as if the agent had been silent): with the outage
    // gap out of reach, the jump is plain staleness, not an outage of the instance manager.
    const im = await realIm({ storage: 'memory', staleTimeoutMs: 1000, sweepIntervalMs: 50, outageGapMs: 3_600_000, now: () => Date.now() + skewMs });
    const { state } = await agentOn(im.address, 'stale-agent');
    await waitUntil(async () => (await im.describe('stale-agent'))?.services.length === 1, 'the agent to register');
    const first = (await im.describe('stale-agent'))!;
    skewMs = 60_000;
    await waitUntil(async () => ((await im.describe('stale-agent'))?.createdAtMs ?? 0) > first.createdAtMs, 'a new incarnation');
    expect((await im.describe('stale-agent'))!.services).toHaveLength(1);
    expect(state.closedWith).toBeUndefined();
  }, 30_000);
});
