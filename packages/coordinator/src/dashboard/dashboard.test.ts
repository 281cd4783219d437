import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import Fastify from 'fastify';
import { createClientFactory } from 'nice-grpc';
import { createProtoVersionClientMiddleware, createTitanChannel, instanceManager as im } from '@titancompute/protocol';
import { createLogger } from '@titancompute/server-kit';
import { startInstanceManager } from '@titancompute/instance-manager';
import { createAgentRegistry } from '../registry/agent-registry.js';
import { startFakeAgent, type FakeAgent } from '../test-support/fake-agent.js';
import { startTestCoordinator, waitFor } from '../test-support/test-coordinator.js';
import { createDashboard } from './dashboard.js';
import type { FleetMessage, HelloMessage, InstanceEventWire, InstancesMessage, KeysMessage, TrafficMessage } from './dashboard-wire.js';
import { createTrafficRecorder } from './traffic-recorder.js';

const JOIN = 'test-join-token';
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

interface SseEvent {
  event: string;
  data: unknown;
  id?: string;
}

/** The fleet as a browser folds the `fleet` events of a stream. */
function fleetOf(stream: Stream): Map<string, FleetMessage['rows'][number]> {
  const rows = new Map<string, FleetMessage['rows'][number]>();
  for (const e of stream.events) {
    if (e.event !== 'fleet') continue;
    const m = e.data as FleetMessage;
    if (m.full) rows.clear();
    for (const row of m.rows) rows.set(row.id, row);
    for (const id of m.removed) rows.delete(id);
  }
  return rows;
}

/**
 * The traffic points as a browser folds the `traffic` events (one point per second, the newest
 * report of a second wins), summed. Sums, because a request and its scheduling decision may
 * land in two seconds when the clock crosses a second between them.
 */
function trafficTotals(stream: Stream): { requests: number; scheduled: number; completed: number; tokens: number } {
  const points = new Map<number, TrafficMessage['points'][number]>();
  for (const e of stream.events) {
    if (e.event !== 'traffic') continue;
    for (const p of (e.data as TrafficMessage).points) points.set(p.t, p);
  }
  const totals = { requests: 0, scheduled: 0, completed: 0, tokens: 0 };
  for (const p of points.values()) {
    totals.requests += p.requests;
    totals.scheduled += p.scheduled;
    totals.completed += p.completed;
    totals.tokens += p.tokens;
  }
  return totals;
}

/** An open `/dashboard/api/stream`: every event so far, and a way to wait for one. */
interface Stream {
  status: number;
  events: SseEvent[];
  text: () => string;
  next<T>(event: string, match?: (data: T) => boolean, timeoutMs?: number): Promise<T>;
  ended: Promise<void>;
  close(): void;
}

async function openStream(url: string, headers: Record<string, string> = {}): Promise<Stream> {
  const controller = new AbortController();
  const res = await fetch(url, { headers, signal: controller.signal });
  const events: SseEvent[] = [];
  let raw = '';
  let buffered = '';
  let ended: Promise<void> = Promise.resolve();
  if (res.ok && res.body) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    ended = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          raw += value;
          buffered += value;
          let end: number;
          while ((end = buffered.indexOf('\n\n')) >= 0) {
            const block = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            const fields = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]));
            if (fields.event) events.push({ event: fields.event, data: JSON.parse(fields.data ?? 'null'), id: fields.id });
          }
        }
      } catch {
        // aborted
      }
    })();
    cleanups.push(() => controller.abort());
  }
  return {
    status: res.status,
    events,
    text: () => raw,
    ended,
    close: () => controller.abort(),
    async next<T>(event: string, match: (data: T) => boolean = () => true, timeoutMs = 5000) {
      let found: T | undefined;
      await waitFor(() => {
        found = events.find((e) => e.event === event && match(e.data as T))?.data as T | undefined;
        return found !== undefined;
      }, timeoutMs);
      return found as T;
    },
  };
}

async function cluster(options: Parameters<typeof startTestCoordinator>[0] = {}, agentIds: string[] = ['agent-a', 'agent-b']) {
  const tc = await startTestCoordinator({ heartbeatTimeoutMs: 1500, ...options });
  cleanups.push(() => tc.stop(true));
  const agents: FakeAgent[] = [];
  for (const agentId of agentIds) {
    const agent = await startFakeAgent({
      coordinatorAddress: `127.0.0.1:${tc.coordinator.port}`,
      joinToken: JOIN,
      agentId,
      maxJobs: 2,
      models: ['tiny'],
      totalVramMb: 0,
      totalRamMb: 16_000,
      heartbeatIntervalMs: 200,
    });
    cleanups.push(() => agent.close());
    agents.push(agent);
  }
  await waitFor(() => agents.every((a) => a.acks.length > 0), 5000);
  return { tc, agents, stream: (headers?: Record<string, string>) => openStream(`${tc.httpUrl}/dashboard/api/stream`, headers) };
}

describe('the dashboard API on the coordinator', () => {
  it('streams hello, the fleet, traffic, instances and keys; a request moves the traffic; a dropped agent goes offline', async () => {
    const { tc, agents, stream } = await cluster();
    const s = await stream();
    expect(s.status).toBe(200);
    const hello = await s.next<HelloMessage>('hello');
    expect(hello).toMatchObject({ authMode: 'none', heartbeatTimeoutMs: 1500, trafficWindowSeconds: 900, instanceManager: null });
    const fleet = await s.next<FleetMessage>('fleet', (m) => m.full);
    expect(fleet.rows.map((r) => r.id).sort()).toEqual(['agent-a', 'agent-b']);
    await waitFor(() => [...fleetOf(s).values()].every((r) => r.state === 'healthy'), 5000);
    expect(fleetOf(s).get('agent-a')).toMatchObject({ state: 'healthy', cpuOnly: true, maxJobs: 2, models: ['tiny'], totalRamMb: 16_000 });
    expect(await s.next<TrafficMessage>('traffic', (m) => m.full)).toMatchObject({ full: true });
    expect(await s.next<InstancesMessage>('instances')).toMatchObject({ configured: false });
    expect(await s.next<KeysMessage>('keys')).toEqual({ authMode: 'none', keys: [] });

    const res = await fetch(`${tc.httpUrl}/api/v1/inference/request`, {
      method: 'POST',
      body: JSON.stringify({ client_id: 'me', model: 'tiny', prompt: 'hi' }),
    });
    expect(res.status).toBe(200);
    const grant = (await res.json()) as { job_id: string; agent_id: string };
    const agent = agents.find((a) => a.agentId === grant.agent_id)!;
    agent.startJob(grant.job_id);
    agent.finishJob(grant.job_id, { tokensGenerated: 12, timeToFirstTokenMs: 42, tokensPerSecond: 30 });
    await waitFor(() => trafficTotals(s).requests === 1 && trafficTotals(s).scheduled === 1, 5000);
    const done = await s.next<TrafficMessage>('traffic', (m) => m.points.some((p) => p.completed === 1), 5000);
    expect(done.points.find((p) => p.completed === 1)).toMatchObject({ tokens: 12, ttftP50: 42, ttftP95: 42 });
    await s.next<FleetMessage>('fleet', (m) => m.rows.some((r) => r.id === grant.agent_id && r.tokensPerSecond === 30));

    // Killed: its stream drops, the row turns offline at once; later the registry evicts it and the row stays, gone.
    agents.find((a) => a.agentId === 'agent-b')!.drop();
    await s.next<FleetMessage>('fleet', (m) => m.rows.some((r) => r.id === 'agent-b' && r.state === 'offline'), 3000);
    await s.next<FleetMessage>('fleet', (m) => m.rows.some((r) => r.id === 'agent-b' && r.gone), 5000);
  }, 30_000);

  it('while auth is on, every route but session and login needs the admin credential; a session cookie opens the stream', async () => {
    const { tc, stream } = await cluster({}, ['agent-a']);
    const admin = { authorization: `Bearer ${tc.coordinator.adminToken}` };
    const open = await stream();
    await open.next('hello');

    const created = await fetch(`${tc.httpUrl}/admin/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'ci', requests_per_minute: 60, budget_tokens: 1000 }),
    });
    expect(created.status).toBe(201);
    const { secret } = (await created.json()) as { secret: string };
    // The stream opened without a credential ends once auth is on.
    await open.ended;

    expect(await (await fetch(`${tc.httpUrl}/dashboard/api/session`)).json()).toEqual({ authRequired: true, authenticated: false });
    expect((await stream()).status).toBe(401);
    expect((await fetch(`${tc.httpUrl}/dashboard/api/snapshot`)).status).toBe(401);
    const login = (token: unknown) => fetch(`${tc.httpUrl}/dashboard/api/login`, { method: 'POST', body: JSON.stringify({ token }) });
    expect((await login('wrong')).status).toBe(401);
    expect((await login('')).status).toBe(400);
    const ok = await login(tc.coordinator.adminToken);
    expect(ok.status).toBe(204);
    const cookie = ok.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^titan_dashboard=[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    expect(cookie).not.toContain(tc.coordinator.adminToken);
    const session = { cookie: cookie.split(';')[0]! };
    expect(await (await fetch(`${tc.httpUrl}/dashboard/api/session`, { headers: session })).json()).toEqual({ authRequired: true, authenticated: true });

    const s = await stream(session);
    expect(s.status).toBe(200);
    expect(await s.next<HelloMessage>('hello')).toMatchObject({ authMode: 'keys' });
    // A request with the key shows in the key's usage.
    const res = await fetch(`${tc.httpUrl}/api/v1/inference/request`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify({ model: 'tiny', prompt: 'hi' }),
    });
    expect(res.status).toBe(200);
    const keys = await s.next<KeysMessage>('keys', (m) => m.keys.some((k) => k.requestsTotal === 1), 8000);
    expect(keys.keys[0]).toMatchObject({ name: 'ci', state: 'active', requestsPerMinute: 60, budgetTokens: 1000, requestsLastMinute: 1, concurrent: 1 });
    expect(keys.keys[0]!.prefix).toBe(secret.slice(0, 10));

    const bearer = await fetch(`${tc.httpUrl}/dashboard/api/snapshot`, { headers: admin });
    expect(bearer.status).toBe(200);
    const everything = `${s.text()}${await bearer.text()}`;
    for (const secretValue of [tc.coordinator.adminToken, JOIN, secret]) expect(everything).not.toContain(secretValue);

    // Logging out ends the session.
    expect((await fetch(`${tc.httpUrl}/dashboard/api/logout`, { method: 'POST', headers: session })).status).toBe(204);
    expect((await stream(session)).status).toBe(401);
  }, 30_000);

  it('replays the instance manager events after Last-Event-ID (or ?last_event_id=) and shows its tree', async () => {
    const manager = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: 'memory', logLevel: 'silent' });
    cleanups.push(() => manager.stop());
    const { tc, stream } = await cluster({ instanceManager: manager.address }, []);
    const channel = createTitanChannel(manager.address);
    cleanups.push(() => channel.close());
    const tryClient = createClientFactory().use(createProtoVersionClientMiddleware()).create(im.TryServiceDefinition, channel);
    const first = await stream();
    await first.next<InstancesMessage>('instances', (m) => m.connected);
    for (const id of ['one', 'two', 'three']) {
      await tryClient.tryAddInstance({ instance: { id, type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: 'h', address: '', metadata: {} } });
    }
    await first.next<InstanceEventWire>('instance-event', (e) => e.instanceId === 'three');
    const ids = first.events.filter((e) => e.event === 'instance-event').map((e) => Number(e.id));
    expect(ids).toHaveLength(3);
    await first.next<InstancesMessage>('instances', (m) => m.instances.length === 3);
    first.close();

    const resumed = await stream({ 'last-event-id': String(ids[0]) });
    await resumed.next('keys'); // the end of the opening burst
    expect(resumed.events.filter((e) => e.event === 'instance-event').map((e) => (e.data as InstanceEventWire).instanceId)).toEqual(['two', 'three']);
    expect(resumed.events.some((e) => e.event === 'instance-gap')).toBe(false);
    const byQuery = await openStream(`${tc.httpUrl}/dashboard/api/stream?last_event_id=${ids[1]}`);
    await byQuery.next('keys');
    expect(byQuery.events.filter((e) => e.event === 'instance-event').map((e) => e.id)).toEqual([String(ids[2])]);
    // Without one: the buffered events so far.
    const fresh = await stream();
    await fresh.next('keys');
    expect(fresh.events.filter((e) => e.event === 'instance-event')).toHaveLength(3);
  }, 30_000);
});

describe('resuming the instance feed across a coordinator restart', () => {
  it("a viewer's Last-Event-ID gets the events it missed while the coordinator was down, replayed by the instance manager", async () => {
    const manager = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: 'memory', logLevel: 'silent' });
    cleanups.push(() => manager.stop());
    const channel = createTitanChannel(manager.address);
    cleanups.push(() => channel.close());
    const tryClient = createClientFactory().use(createProtoVersionClientMiddleware()).create(im.TryServiceDefinition, channel);
    const add = (id: string) =>
      tryClient.tryAddInstance({ instance: { id, type: im.InstanceType.INSTANCE_TYPE_INFERENCE_AGENT, hostname: '', address: '', metadata: {} } });

    const first = await startTestCoordinator({ instanceManager: manager.address });
    const before = await openStream(`${first.httpUrl}/dashboard/api/stream`);
    await before.next<InstancesMessage>('instances', (m) => m.connected);
    await add('seen-1');
    await add('seen-2');
    const seen = await before.next<InstanceEventWire>('instance-event', (e) => e.instanceId === 'seen-2');
    before.close();
    await first.stop(true);

    await add('missed-1'); // while no coordinator watched
    await add('missed-2');
    const second = await startTestCoordinator({ instanceManager: manager.address });
    cleanups.push(() => second.stop(true));
    const probe = await openStream(`${second.httpUrl}/dashboard/api/stream`);
    await probe.next<InstancesMessage>('instances', (m) => m.connected);
    probe.close();
    await add('live-1');

    const resumed = await openStream(`${second.httpUrl}/dashboard/api/stream`, { 'last-event-id': String(seen.sequence) });
    await resumed.next<InstanceEventWire>('instance-event', (e) => e.instanceId === 'live-1');
    const relayed = resumed.events.filter((e) => e.event === 'instance-event').map((e) => (e.data as InstanceEventWire).instanceId);
    expect(relayed).toEqual(['missed-1', 'missed-2', 'live-1']);
    expect(resumed.events.some((e) => e.event === 'instance-gap')).toBe(false);
  }, 30_000);
});

describe('the dashboard app on the HTTP port', () => {
  const logger = createLogger({ service: 'test', level: 'silent' });
  const keys = { mode: () => 'none' as const, list: async () => [] };

  /** A bare fastify with the dashboard registered, listening on 127.0.0.1; its base URL. */
  async function serve(assetsDir: string): Promise<string> {
    const app = Fastify();
    app.get('/api/v1/health', async () => ({ status: 'healthy' }));
    const dashboard = createDashboard({
      registry: createAgentRegistry({ heartbeatTimeoutMs: 1000 }),
      keys,
      adminToken: 'admin',
      traffic: createTrafficRecorder(),
      heartbeatTimeoutMs: 1000,
      logger,
      assetsDir,
    });
    dashboard.register(app);
    cleanups.push(() => app.close());
    cleanups.push(() => dashboard.stop());
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }

  it('serves the built files at / with a strict CSP, hashed assets cached for good, and other paths untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'titan-assets-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>dash</title>');
    writeFileSync(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
    const url = await serve(dir);

    const index = await fetch(`${url}/`);
    expect(index.status).toBe(200);
    expect(await index.text()).toContain('<title>dash</title>');
    expect(index.headers.get('content-type')).toMatch(/^text\/html/);
    expect(index.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const asset = await fetch(`${url}/assets/index-abc123.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('cache-control')).toContain('immutable');
    expect((await fetch(`${url}/api/v1/health`)).status).toBe(200);
    expect((await fetch(`${url}/assets/%2e%2e/%2e%2e/etc/passwd`)).status).toBe(404);
    expect((await fetch(`${url}/nothing-here`)).status).toBe(404);
  });

  it('without a build, / says how to build it and the APIs still work', async () => {
    const url = await serve(join(tmpdir(), 'titan-no-such-dashboard', String(Date.now())));
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('pnpm build');
    expect(await (await fetch(`${url}/dashboard/api/session`)).json()).toEqual({ authRequired: false, authenticated: true });
  });

  it('the coordinator serves the real build at / (after pnpm build)', async () => {
    const tc = await startTestCoordinator();
    cleanups.push(() => tc.stop(true));
    const res = await fetch(`${tc.httpUrl}/`);
    expect(res.status).toBe(200);
    const html = await res.text();
    const built = readFileSync(new URL('../../../dashboard/dist/index.html', import.meta.url), 'utf8');
    expect(html).toBe(built);
    const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(html)![1]!;
    const js = await fetch(`${tc.httpUrl}/${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
  });

  it("an open stream does not hold up the coordinator's stop", async () => {
    const tc = await startTestCoordinator({ shutdownTimeoutMs: 10_000 });
    const s = await openStream(`${tc.httpUrl}/dashboard/api/stream`);
    await s.next('keys');
    const started = Date.now();
    await tc.stop(true);
    await s.ended;
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
