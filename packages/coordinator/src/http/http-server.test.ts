import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, type TestCoordinator } from '../test-support/test-coordinator.js';

let tc: TestCoordinator;
let agent: FakeAgent;

async function post(body: string, contentType = 'application/json') {
  const res = await fetch(`${tc.httpUrl}/api/v1/inference/request`, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

describe('v1 REST API', () => {
  beforeAll(async () => {
    tc = await startTestCoordinator({ allowedModels: ['tiny', 'other'] });
    agent = await startFakeAgent({
      coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`,
      joinToken: 'test-join-token',
      agentId: 'agent-a',
      maxJobs: 2,
      totalVramMb: 0,
      totalRamMb: 16_000,
    });
  });
  afterAll(async () => {
    await agent.close();
    await tc.stop(true);
  });

  it('POST /api/v1/inference/request returns v1 fields and effective limits', async () => {
    const res = await post(JSON.stringify({ client_id: 'c', model: 'tiny', prompt: 'hello', max_tokens: 12, temperature: 0 }));
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ agent_id: 'agent-a', max_tokens: 12, temperature: 0 });
    expect(res.json.agent_endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(typeof res.json.session_token).toBe('string');
    expect(typeof res.json.job_id).toBe('string');
    expect(res.json.expires_at as number).toBeGreaterThan(Date.now() / 1000);
    expect(typeof res.json.estimated_rtt_ms).toBe('number');
    agent.finishJob(res.json.job_id as string);
    await agent.send();
  });

  it.each([
    ['{not json', 'invalid_json', 400],
    ['[1,2]', 'invalid_json', 400],
    [JSON.stringify({ model: 'tiny', prompt: 'p' }), 'missing_client_id', 400],
    [JSON.stringify({ client_id: 'c', prompt: 'p' }), 'missing_model', 400],
    [JSON.stringify({ client_id: 'c', model: 'tiny' }), 'missing_prompt', 400],
    [JSON.stringify({ client_id: 'c', model: 'tiny', prompt: 'p', max_tokens: 999999 }), 'invalid_argument', 400],
    [JSON.stringify({ client_id: 'c', model: 'tiny', prompt: 'p', temperature: 'hot' }), 'invalid_argument', 400],
    [JSON.stringify({ client_id: 'c', model: 'forbidden', prompt: 'p' }), 'invalid_argument', 400],
    [JSON.stringify({ client_id: 'c', model: 'other', prompt: 'p' }), 'no_agents', 503],
  ])('answers %s with error %s', async (body, error, status) => {
    const res = await post(body);
    expect(res.status).toBe(status);
    expect(res.json).toMatchObject({ error, code: status });
    expect(typeof res.json.message).toBe('string');
  });

  it('names the field of an invalid argument', async () => {
    const res = await post(JSON.stringify({ client_id: 'c', model: 'tiny', prompt: 'p', max_tokens: 999999 }));
    expect(res.json.message).toMatch(/max_tokens/);
  });

  it('answers 429 agents_busy with Retry-After when every agent is full', async () => {
    // Two clients fill the agent (one client may hold only half of the fleet's slots).
    const body = (client: string) => JSON.stringify({ client_id: client, model: 'tiny', prompt: 'p' });
    const grants = [await post(body('c1')), await post(body('c2'))];
    expect(grants.map((g) => g.status)).toEqual([200, 200]);
    const res = await post(body('c3'));
    expect(res.status).toBe(429);
    expect(res.json).toMatchObject({ error: 'agents_busy', code: 429 });
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    for (const g of grants) agent.finishJob(g.json.job_id as string);
    await agent.send();
  });

  it('GET /api/v1/health and /api/v1/status keep v1 shapes', async () => {
    const health = (await (await fetch(`${tc.httpUrl}/api/v1/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'healthy', service: 'titancompute-coordinator' });
    expect(typeof health.timestamp).toBe('number');
    const bare = (await (await fetch(`${tc.httpUrl}/api/v1/status`)).json()) as Record<string, unknown>;
    expect(bare).toMatchObject({ total_agents: 1, healthy_agents: 1 });
    expect(bare.agents).toBeUndefined();
    const full = (await (await fetch(`${tc.httpUrl}/api/v1/status?include_agents=true`)).json()) as { agents: Record<string, unknown>[] };
    expect(full.agents[0]).toMatchObject({
      id: 'agent-a',
      status: 'healthy',
      total_vram_mb: 0,
      total_ram_mb: 16_000,
      max_jobs: 2,
      supported_models: ['tiny'],
    });
    for (const key of ['endpoint', 'free_vram_mb', 'free_ram_mb', 'running_jobs', 'queued_jobs', 'rtt_ms', 'last_heartbeat'])
      expect(full.agents[0]).toHaveProperty(key);
  });

  it('GET /metrics exposes requests, decisions by outcome, agents by state and the latency histogram', async () => {
    const res = await fetch(`${tc.httpUrl}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/titan_coordinator_requests_total\{transport="http"\} [1-9]/);
    expect(text).toMatch(/titan_coordinator_scheduling_decisions_total\{outcome="scheduled"\} [1-9]/);
    expect(text).toMatch(/titan_coordinator_scheduling_decisions_total\{outcome="no_agents?"\} [1-9]/);
    expect(text).toMatch(/titan_coordinator_scheduling_decisions_total\{outcome="busy"\} [1-9]/);
    expect(text).toMatch(/titan_coordinator_agents\{state="healthy"\} 1/);
    // Every scheduled request is observed by the histogram (how fast it was is a benchmark's business).
    const scheduled = Number(/titan_coordinator_scheduling_decisions_total\{outcome="scheduled"\} (\d+)/.exec(text)?.[1]);
    expect(text).toContain(`titan_coordinator_scheduling_latency_seconds_count ${scheduled}`);
    expect(text).toContain(`titan_coordinator_scheduling_latency_seconds_bucket{le="+Inf"} ${scheduled}`);
    expect(text).toContain('titan_coordinator_jobs_finished_total{result="completed"}');
  });
});
