import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor, type TestCoordinator } from '../test-support/test-coordinator.js';

let tc: TestCoordinator;
let agent: FakeAgent;

const grpcState = async () => (await tc.client.querySystemStatus({ includeAgents: true })).agents.find((a) => a.agentId === 'agent-d')?.status;
const restState = async () => {
  const res = await fetch(`${tc.httpUrl}/api/v1/status?include_agents=true`);
  const body = (await res.json()) as { agents: Array<{ id: string; status: string }> };
  return body.agents.find((a) => a.id === 'agent-d')?.status;
};
const finishedJobs = async () => {
  const text = await (await fetch(`${tc.httpUrl}/metrics`)).text();
  const read = (result: string) => Number(new RegExp(`titan_coordinator_jobs_finished_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { completed: read('completed'), failed: read('failed'), cancelled: read('cancelled') };
};

beforeAll(async () => {
  tc = await startTestCoordinator({ allowedModels: ['tiny'] });
  agent = await startFakeAgent({
    coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`,
    joinToken: 'test-join-token',
    agentId: 'agent-d',
    maxJobs: 2,
    totalVramMb: 0,
    totalRamMb: 16_000,
  });
  await waitFor(async () => (await grpcState()) === 'healthy', 10_000);
});
afterAll(async () => {
  await agent.close();
  await tc.stop(true);
});

describe('what status reports about agents and jobs', () => {
  it('counts a job the client cancelled as cancelled, not failed, in /metrics and QuerySystemStatus', async () => {
    const grant = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'p' });
    // What a real agent reports when the client aborts the stream (Ctrl-C): error "cancelled".
    agent.finishJob(grant.jobId, { error: 'cancelled' });
    await agent.send();
    await waitFor(async () => (await finishedJobs()).cancelled === 1, 5000);
    expect(await finishedJobs()).toEqual({ completed: 0, failed: 0, cancelled: 1 });
    const status = await tc.client.querySystemStatus({ includeMetrics: true });
    expect(status.metrics?.jobsFailedTotal).toBe(0);
    // A real failure still counts as failed.
    const second = await tc.client.requestInference({ clientId: 'c', model: 'tiny', prompt: 'p' });
    agent.finishJob(second.jobId, { error: 'engine_error' });
    await agent.send();
    await waitFor(async () => (await finishedJobs()).failed === 1, 5000);
    expect(await finishedJobs()).toEqual({ completed: 0, failed: 1, cancelled: 1 });
  });

  it('shows a draining agent as "draining" (gRPC and REST), and healthy again when it stops draining', async () => {
    agent.state.draining = true;
    await agent.send();
    expect(await grpcState()).toBe('draining');
    expect(await restState()).toBe('draining');
    agent.state.draining = false;
    await agent.send();
    expect(await grpcState()).toBe('healthy');
  });
});
