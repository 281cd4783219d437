import { afterEach, describe, expect, it } from '@jest/globals';
import { instanceManager } from '@titancompute/protocol';
import { startAgent } from '../agent.js';
import { startFakeCoordinator } from '../test-support/fake-coordinator.js';
import { createFakeEngine } from '../test-support/fake-engine.js';
import { startFakeInstanceManager } from '../test-support/fake-instance-manager.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('instance manager link', () => {
  it('adds the agent and its gRPC service, posts metrics, and drains + stops when told healthy=false', async () => {
    const coordinator = await startFakeCoordinator();
    const im = await startFakeInstanceManager();
    cleanups.push(() => coordinator.stop(), () => im.stop());
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
