import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ClientError, Status } from 'nice-grpc';
import { instanceManager } from '@titancompute/protocol';
import { startInstanceManager, type RunningInstanceManager } from './index.js';
import { testBackends } from './test-support/backends.js';
import { collect, connectClients, makeInstance, sleep, type ImClients } from './test-support/clients.js';

const { EventType, HealthStatus, RemovalReason, InstanceType, ServiceType } = instanceManager;
const backends = await testBackends('instance-manager');

async function grpcError(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ClientError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

describe.each(backends)('instance manager on $name storage', (backend) => {
  const started: Array<{ im: RunningInstanceManager; c: ImClients }> = [];
  const start = async (opts: Parameters<typeof startInstanceManager>[0] = {}) => {
    const im = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: backend.fresh(), logLevel: 'silent', ...opts });
    const c = connectClients(im.port);
    started.push({ im, c });
    return { im, c };
  };
  let c: ImClients;

  beforeAll(async () => {
    ({ c } = await start());
  });
  afterAll(async () => {
    for (const s of started) {
      s.c.close();
      await s.im.stop();
    }
    await backend.cleanup();
  });

  it('registers an instance, reads it back, and treats an identical re-add as an idempotent retry', async () => {
    const inst = makeInstance('reg-1', { metadata: { zone: 'a', gpu: 'h100' } });
    expect(await c.try.tryAddInstance({ instance: inst })).toMatchObject({ success: true });
    expect(await c.try.tryAddInstance({ instance: inst })).toMatchObject({ success: true });
    const different = await c.try.tryAddInstance({ instance: { ...inst, hostname: 'elsewhere' } });
    expect(different.success).toBe(false);
    expect(different.message).toMatch(/different description/);
    const { instance } = await c.get.getInstance({ instanceId: 'reg-1' });
    expect(instance?.instance).toEqual(inst);
    expect(instance?.healthy).toBe(true);
    expect(instance?.lastHealthCheckMs).toBeGreaterThan(Date.now() - 5000);
    const hc = await c.get.getHealthCheck({ instanceId: 'reg-1' });
    expect(hc.healthCheck).toMatchObject({ instanceId: 'reg-1', healthy: true });
  });

  it('answers health checks: true while alive, false for unknown and killed ids; re-registering a dead id starts a new incarnation', async () => {
    await c.try.tryAddInstance({ instance: makeInstance('hc-1') });
    expect(await c.try.tryHealthCheck({ instanceId: 'hc-1' })).toMatchObject({ healthy: true });
    expect((await c.try.tryHealthCheck({ instanceId: 'nobody' })).healthy).toBe(false);
    const kill = await c.try.tryKillInstance({ instanceId: 'hc-1', reason: 'maintenance' });
    expect(kill).toMatchObject({ success: true, killedInstanceIds: ['hc-1'] });
    const after = await c.try.tryHealthCheck({ instanceId: 'hc-1' });
    expect(after.healthy).toBe(false);
    expect(after.message).toMatch(/killed: maintenance/);
    expect((await c.try.tryKillInstance({ instanceId: 'hc-1', reason: '' })).success).toBe(false);
    expect((await c.try.tryKillInstance({ instanceId: 'never-was', reason: '' })).success).toBe(false);
    expect((await grpcError(c.get.getInstance({ instanceId: 'hc-1' }))).code).toBe(Status.NOT_FOUND);
    // The killed incarnation stays dead; a process that registers the id again (e.g. after a
    // restart) is a new instance: alive, healthy, announced with ADDED, with no old links.
    const sub = collect(c, { instanceIds: ['hc-1'] });
    await sub.until((m) => m.some((x) => x.caughtUp));
    const readd = await c.try.tryAddInstance({ instance: makeInstance('hc-1') });
    expect(readd).toMatchObject({ success: true, message: expect.stringContaining('registered again') });
    expect(await c.try.tryHealthCheck({ instanceId: 'hc-1' })).toMatchObject({ healthy: true });
    expect((await c.get.getInstance({ instanceId: 'hc-1' })).instance).toMatchObject({ parentId: '', childIds: [], services: [] });
    await sub.until((m) => m.some((x) => x.event?.type === EventType.EVENT_TYPE_ADDED));
    expect(sub.events().filter((e) => e.type === EventType.EVENT_TYPE_ADDED)).toHaveLength(1);
    sub.stop();
  });

  it('kills every descendant over several generations, emitting REMOVED once per instance', async () => {
    const sub = collect(c, { instanceIds: [] });
    await sub.until((m) => m.some((x) => x.caughtUp));
    const ids = ['g0', 'g1', 'g2', 'g3', 'g3b', 'side'];
    for (const id of ids) expect((await c.try.tryAddInstance({ instance: makeInstance(id) })).success).toBe(true);
    for (const [p, ch] of [
      ['g0', 'g1'],
      ['g1', 'g2'],
      ['g2', 'g3'],
      ['g2', 'g3b'],
    ] as const) {
      expect((await c.try.tryAddChild({ parentId: p, childId: ch })).success).toBe(true);
    }
    const kill = await c.try.tryKillInstance({ instanceId: 'g1', reason: 'test' });
    expect(kill.success).toBe(true);
    expect(new Set(kill.killedInstanceIds)).toEqual(new Set(['g1', 'g2', 'g3', 'g3b']));
    for (const id of ['g1', 'g2', 'g3', 'g3b']) expect((await c.try.tryHealthCheck({ instanceId: id })).healthy).toBe(false);
    expect((await c.try.tryHealthCheck({ instanceId: 'g0' })).healthy).toBe(true);
    expect((await c.get.getChildren({ instanceId: 'g0' })).children).toEqual([]);
    await sub.until((m) => m.filter((x) => x.event?.type === EventType.EVENT_TYPE_REMOVED).length >= 4);
    await sleep(100);
    const removed = sub.events().filter((e) => e.type === EventType.EVENT_TYPE_REMOVED);
    expect(removed.map((e) => [e.instanceId, e.removalReason]).sort()).toEqual(
      [
        ['g1', RemovalReason.REMOVAL_REASON_KILLED],
        ['g2', RemovalReason.REMOVAL_REASON_PARENT_DIED],
        ['g3', RemovalReason.REMOVAL_REASON_PARENT_DIED],
        ['g3b', RemovalReason.REMOVAL_REASON_PARENT_DIED],
      ].sort(),
    );
    const seqs = sub.events().map((e) => e.sequence);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(seqs.length);
    sub.stop();
  });

  it('links children only under the rules: alive, one parent, no self-link, no cycle', async () => {
    for (const id of ['a1', 'a2', 'a3', 'a4']) await c.try.tryAddInstance({ instance: makeInstance(id) });
    expect((await c.try.tryAddChild({ parentId: 'a1', childId: 'a2' })).success).toBe(true);
    expect((await c.try.tryAddChild({ parentId: 'a1', childId: 'a2' })).success).toBe(true); // idempotent
    expect((await c.try.tryAddChild({ parentId: 'a2', childId: 'a3' })).success).toBe(true);
    expect((await c.try.tryAddChild({ parentId: 'a3', childId: 'a1' })).message).toMatch(/cycle/);
    expect((await c.try.tryAddChild({ parentId: 'a4', childId: 'a2' })).message).toMatch(/already has a parent/);
    expect((await c.try.tryAddChild({ parentId: 'a4', childId: 'a4' })).success).toBe(false);
    expect((await c.try.tryAddChild({ parentId: 'a4', childId: 'ghost' })).success).toBe(false);
    const parent = await c.get.getParent({ instanceId: 'a3' });
    expect(parent.parent?.instance?.id).toBe('a2');
    expect((await c.get.getParent({ instanceId: 'a1' })).parent).toBeUndefined();
    const kids = await c.get.getChildren({ instanceId: 'a1' });
    expect(kids.children.map((k) => k.instance?.id)).toEqual(['a2']);
    expect((await c.get.getInstance({ instanceId: 'a2' })).instance).toMatchObject({ parentId: 'a1', childIds: ['a3'] });
    await c.try.tryKillInstance({ instanceId: 'a4', reason: '' });
    await c.try.tryAddInstance({ instance: makeInstance('a5') });
    expect((await c.try.tryAddChild({ parentId: 'a4', childId: 'a5' })).success).toBe(false);
  });

  it('registers services and filters GetAllInstances by type, parent, service type and health', async () => {
    await c.try.tryAddInstance({ instance: makeInstance('svc-coord', { type: InstanceType.INSTANCE_TYPE_COORDINATOR }) });
    await c.try.tryAddInstance({ instance: makeInstance('svc-agent') });
    await c.try.tryAddChild({ parentId: 'svc-coord', childId: 'svc-agent' });
    const svc = { type: ServiceType.SERVICE_TYPE_AGENT_GRPC, port: 50052, url: '' };
    expect((await c.try.tryAddService({ instanceId: 'svc-agent', service: svc })).success).toBe(true);
    expect((await c.try.tryAddService({ instanceId: 'svc-agent', service: svc })).success).toBe(true);
    expect((await c.try.tryAddService({ instanceId: 'ghost', service: svc })).success).toBe(false);
    const { instance } = await c.get.getInstance({ instanceId: 'svc-agent' });
    expect(instance?.services).toEqual([svc]);
    const coords = await c.get.getAllInstances({ type: InstanceType.INSTANCE_TYPE_COORDINATOR });
    expect(coords.instances.map((i) => i.instance?.id)).toEqual(['svc-coord']);
    const withSvc = await c.get.getAllInstances({ serviceType: ServiceType.SERVICE_TYPE_AGENT_GRPC });
    expect(withSvc.instances.map((i) => i.instance?.id)).toEqual(['svc-agent']);
    const kids = await c.get.getAllInstances({ parentId: 'svc-coord', healthyOnly: true });
    expect(kids.instances.map((i) => i.instance?.id)).toEqual(['svc-agent']);
    const all = await c.get.getAllInstances({});
    expect(all.instances.every((i) => i.healthy)).toBe(true);
    expect(all.instances.find((i) => i.instance?.id === 'svc-coord')?.childIds).toEqual(['svc-agent']);
  });

  it('stores the latest metrics per live instance and refuses unknown instances with NOT_FOUND', async () => {
    await c.try.tryAddInstance({ instance: makeInstance('m-1') });
    expect((await c.get.getSystemMetrics({ instanceId: 'm-1' })).metrics).toBeUndefined();
    await c.post.postSystemMetrics({ instanceId: 'm-1', metrics: { usedMemoryBytes: 1, totalMemoryBytes: 10, cpuPercent: 150, timestampMs: 0 } });
    await c.post.postSystemMetrics({ instanceId: 'm-1', metrics: { usedMemoryBytes: 5, totalMemoryBytes: 10, cpuPercent: 50, timestampMs: 1234 } });
    expect((await c.get.getSystemMetrics({ instanceId: 'm-1' })).metrics).toEqual({
      usedMemoryBytes: 5,
      totalMemoryBytes: 10,
      cpuPercent: 50,
      timestampMs: 1234,
    });
    await c.post.postProxyMetrics({
      instanceId: 'm-1',
      metrics: { activeConnections: 2, totalConnections: 9, bytesSent: 100, bytesReceived: 200, timestampMs: 0 },
    });
    const proxy = (await c.get.getProxyMetrics({ instanceId: 'm-1' })).metrics;
    expect(proxy).toMatchObject({ activeConnections: 2, totalConnections: 9 });
    expect(proxy?.timestampMs).toBeGreaterThan(Date.now() - 5000);
    const gpu = {
      usedMemoryBytes: 10,
      totalMemoryBytes: 80,
      utilizationPercent: 40,
      timestampMs: 5,
      devices: [{ index: 0, name: 'H100', usedMemoryBytes: 10, totalMemoryBytes: 80, utilizationPercent: 40 }],
    };
    await c.post.postGpuMetrics({ instanceId: 'm-1', metrics: gpu });
    expect((await c.get.getGpuMetrics({ instanceId: 'm-1' })).metrics).toEqual(gpu);
    await c.post.postLlmMetrics({ instanceId: 'm-1', metrics: { requestCount: 3, tokensReceived: 30, tokensSent: 300, timestampMs: 7 } });
    expect((await c.get.getLlmMetrics({ instanceId: 'm-1' })).metrics).toEqual({ requestCount: 3, tokensReceived: 30, tokensSent: 300, timestampMs: 7 });
    const unknown = await grpcError(
      c.post.postLlmMetrics({ instanceId: 'nope', metrics: { requestCount: 1, tokensReceived: 0, tokensSent: 0, timestampMs: 0 } }),
    );
    expect(unknown.code).toBe(Status.NOT_FOUND);
    await c.try.tryKillInstance({ instanceId: 'm-1', reason: '' });
    expect((await grpcError(c.get.getLlmMetrics({ instanceId: 'm-1' }))).code).toBe(Status.NOT_FOUND);
    expect(
      (await grpcError(c.post.postSystemMetrics({ instanceId: 'm-1', metrics: { usedMemoryBytes: 1, totalMemoryBytes: 2, cpuPercent: 1, timestampMs: 0 } })))
        .code,
    ).toBe(Status.NOT_FOUND);
  });

  it('StatsService keeps the latest upload per host and answers NOT_FOUND for unknown hosts', async () => {
    expect(await c.stats.uploadStats({ hostname: 'h1', stats: { usedMemoryBytes: 1000, totalMemoryBytes: 2000, timestampMs: 1234567890 } })).toEqual({
      success: true,
    });
    await c.stats.uploadStats({ hostname: 'h1', stats: { usedMemoryBytes: 1500, totalMemoryBytes: 2000, timestampMs: 1234567891 } });
    expect(await c.stats.getStats({ hostname: 'h1' })).toEqual({
      hostname: 'h1',
      stats: { usedMemoryBytes: 1500, totalMemoryBytes: 2000, timestampMs: 1234567891 },
    });
    expect((await grpcError(c.stats.getStats({ hostname: 'h2' }))).code).toBe(Status.NOT_FOUND);
    const bad = await grpcError(c.stats.uploadStats({ hostname: '', stats: { usedMemoryBytes: 1, totalMemoryBytes: 2, timestampMs: 0 } }));
    expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^hostname:/);
  });

  it('answers bad input with INVALID_ARGUMENT naming the field', async () => {
    const cases: Array<[Promise<unknown>, RegExp]> = [
      [c.try.tryAddInstance({ instance: makeInstance('bad id!') }), /^instance\.id:/],
      [c.try.tryAddInstance({ instance: makeInstance('') }), /^instance\.id:/],
      [c.try.tryAddInstance({ instance: makeInstance('x'.repeat(129)) }), /^instance\.id:/],
      [c.try.tryAddInstance({}), /^instance: required/],
      [c.try.tryAddInstance({ instance: makeInstance('t1', { type: InstanceType.INSTANCE_TYPE_UNSPECIFIED }) }), /^instance\.type:/],
      [c.try.tryAddInstance({ instance: makeInstance('t2', { type: 99 as instanceManager.InstanceType }) }), /^instance\.type:/],
      [
        c.try.tryAddInstance({ instance: makeInstance('t3', { metadata: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }) }),
        /^instance\.metadata:.*64/,
      ],
      [c.try.tryAddInstance({ instance: makeInstance('t4', { metadata: { k: 'v'.repeat(1025) } }) }), /^instance\.metadata\.k:/],
      [c.try.tryHealthCheck({ instanceId: '' }), /^instance_id:/],
      [c.try.tryAddChild({ parentId: 'ok', childId: 'no way' }), /^child_id:/],
      [c.try.tryAddService({ instanceId: 'ok', service: { type: ServiceType.SERVICE_TYPE_AGENT_GRPC, port: 70000, url: '' } }), /^service\.port:/],
      [c.try.tryAddService({ instanceId: 'ok', service: { type: ServiceType.SERVICE_TYPE_UNSPECIFIED, port: 80, url: '' } }), /^service\.type:/],
      [
        c.post.postSystemMetrics({ instanceId: 'ok', metrics: { usedMemoryBytes: -1, totalMemoryBytes: 2, cpuPercent: 1, timestampMs: 0 } }),
        /^metrics\.used_memory_bytes:/,
      ],
      [
        c.post.postSystemMetrics({ instanceId: 'ok', metrics: { usedMemoryBytes: 3, totalMemoryBytes: 2, cpuPercent: 1, timestampMs: 0 } }),
        /^metrics\.used_memory_bytes:.*total/,
      ],
      [
        c.post.postGpuMetrics({ instanceId: 'ok', metrics: { usedMemoryBytes: 1, totalMemoryBytes: 2, utilizationPercent: 101, timestampMs: 0, devices: [] } }),
        /^metrics\.utilization_percent:/,
      ],
      [c.post.postProxyMetrics({ instanceId: 'ok' }), /^metrics: required/],
      [c.get.getAllInstances({ type: 42 as instanceManager.InstanceType }), /^type:/],
      [
        c.sub
          .subscribeToInstanceUpdates({ instanceIds: ['bad id'] })
          [Symbol.asyncIterator]()
          .next(),
        /^instance_ids\[0\]:/,
      ],
    ];
    for (const [call, field] of cases) {
      const err = await grpcError(call);
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toMatch(field);
    }
  });

  it('keeps the invariants under hundreds of concurrent TryAddChild and TryKillInstance calls', async () => {
    const n = 60;
    const ids = Array.from({ length: n }, (_, i) => `race-${i}`);
    await Promise.all(ids.map((id) => c.try.tryAddInstance({ instance: makeInstance(id) })));
    let seed = 42;
    const rnd = (k: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % k;
    };
    const calls: Array<Promise<unknown>> = [];
    const kills: string[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 10 === 9) {
        const id = ids[rnd(n)]!;
        kills.push(id);
        calls.push(c.try.tryKillInstance({ instanceId: id, reason: 'race' }));
      } else {
        calls.push(c.try.tryAddChild({ parentId: ids[rnd(n)]!, childId: ids[rnd(n)]! }));
      }
    }
    await Promise.all(calls);
    const live = (await c.get.getAllInstances({})).instances.filter((d) => d.instance!.id.startsWith('race-'));
    const liveIds = new Set(live.map((d) => d.instance!.id));
    for (const k of kills) expect(liveIds.has(k)).toBe(false); // no lost kill
    const parentOf = new Map(live.map((d) => [d.instance!.id, d.parentId]));
    for (const d of live) {
      if (d.parentId) expect(liveIds.has(d.parentId)).toBe(true); // no live child of a dead parent
      const seen = new Set<string>();
      let p: string | undefined = d.instance!.id;
      while (p) {
        expect(seen.has(p)).toBe(false); // no cycle
        seen.add(p);
        p = parentOf.get(p) || undefined;
      }
    }
    for (const id of ids) {
      const healthy = (await c.try.tryHealthCheck({ instanceId: id })).healthy;
      expect(healthy).toBe(liveIds.has(id));
    }
  });

  it('resumes from a sequence without losing an event, and reports pruned history as OUT_OF_RANGE', async () => {
    const first = collect(c, { instanceIds: ['res-1', 'res-2', 'res-3'] });
    await first.until((m) => m.some((x) => x.caughtUp));
    await c.try.tryAddInstance({ instance: makeInstance('res-1') });
    await first.until(() => first.events().length >= 1);
    const lastSeen = first.events().at(-1)!.sequence;
    first.stop();
    await first.done;
    // Missed while disconnected:
    await c.try.tryAddInstance({ instance: makeInstance('res-2') });
    await c.try.tryAddChild({ parentId: 'res-1', childId: 'res-2' });
    await c.try.tryAddInstance({ instance: makeInstance('res-3') });
    await c.try.tryKillInstance({ instanceId: 'res-1', reason: 'bye' });
    const resumed = collect(c, { instanceIds: ['res-1', 'res-2', 'res-3'], fromSequence: lastSeen });
    await resumed.until((m) => m.some((x) => x.caughtUp));
    await c.try.tryAddInstance({ instance: makeInstance('res-4') }); // filtered out
    await c.try.tryKillInstance({ instanceId: 'res-3', reason: 'live' });
    await resumed.until(() => resumed.events().length >= 7);
    expect(resumed.events().map((e) => [e.type, e.instanceId])).toEqual([
      [EventType.EVENT_TYPE_ADDED, 'res-2'],
      [EventType.EVENT_TYPE_CHILD_ADDED, 'res-1'],
      [EventType.EVENT_TYPE_PARENT_ADDED, 'res-2'],
      [EventType.EVENT_TYPE_ADDED, 'res-3'],
      [EventType.EVENT_TYPE_REMOVED, 'res-1'],
      [EventType.EVENT_TYPE_REMOVED, 'res-2'],
      [EventType.EVENT_TYPE_REMOVED, 'res-3'],
    ]);
    // Sequences strictly increase; the live event follows the caught_up marker.
    const seqs = resumed.events().map((e) => e.sequence);
    expect(seqs.every((q, i) => i === 0 || q > seqs[i - 1]!)).toBe(true);
    const caught = resumed.messages.find((m) => m.caughtUp)!;
    expect(caught.sequence).toBeGreaterThan(lastSeen);
    expect(resumed.messages.at(-1)!.event?.sequence).toBeGreaterThan(caught.sequence);
    resumed.stop();
    const ahead = collect(c, { fromSequence: 10_000_000 });
    expect(((await ahead.done) as ClientError).code).toBe(Status.OUT_OF_RANGE);
  });

  it('sends a snapshot of live instances, then caught_up, then live events', async () => {
    const { c: c2 } = await start();
    await c2.try.tryAddInstance({ instance: makeInstance('snap-1') });
    await c2.try.tryAddInstance({ instance: makeInstance('snap-2', { type: InstanceType.INSTANCE_TYPE_VLLM }) });
    await c2.try.tryAddInstance({ instance: makeInstance('snap-dead') });
    await c2.try.tryKillInstance({ instanceId: 'snap-dead', reason: '' });
    const sub = collect(c2, { includeSnapshot: true, instanceTypes: [InstanceType.INSTANCE_TYPE_INFERENCE_AGENT] });
    await sub.until((m) => m.some((x) => x.caughtUp));
    const snap = sub.messages.filter((m) => m.snapshot);
    expect(snap.map((m) => m.event?.instanceId)).toEqual(['snap-1']);
    expect(snap[0]!.event).toMatchObject({ type: EventType.EVENT_TYPE_ADDED, instance: makeInstance('snap-1') });
    const caughtIdx = sub.messages.findIndex((m) => m.caughtUp);
    expect(caughtIdx).toBe(snap.length);
    await c2.try.tryAddInstance({ instance: makeInstance('snap-3') });
    await sub.until(() => sub.events().some((e) => e.instanceId === 'snap-3'));
    expect(sub.events().every((e) => e.sequence > sub.messages[caughtIdx]!.sequence)).toBe(true);
    sub.stop();
  });

  it('prunes old events beyond the retention; resuming from before them is OUT_OF_RANGE', async () => {
    const { c: c3 } = await start({ eventRetention: 3, sweepIntervalMs: 50 });
    for (let i = 0; i < 8; i++) await c3.try.tryAddInstance({ instance: makeInstance(`prune-${i}`) });
    let code: Status | undefined;
    for (let attempt = 0; attempt < 40 && code !== Status.OUT_OF_RANGE; attempt++) {
      await sleep(50);
      const s = collect(c3, { fromSequence: 1 });
      const res = await Promise.race([s.done, s.until((m) => m.some((x) => x.caughtUp)).then(() => undefined)]);
      s.stop();
      code = (res as ClientError | undefined)?.code;
    }
    expect(code).toBe(Status.OUT_OF_RANGE);
  });

  it('sweeps a stale instance within one sweep interval, cascading, with REMOVED reason STALE', async () => {
    const { c: s } = await start({ staleTimeoutMs: 300, sweepIntervalMs: 100 });
    const sub = collect(s, {});
    await sub.until((m) => m.some((x) => x.caughtUp));
    await s.try.tryAddInstance({ instance: makeInstance('stale-parent') });
    await s.try.tryAddInstance({ instance: makeInstance('stale-child') });
    await s.try.tryAddInstance({ instance: makeInstance('fresh') });
    await s.try.tryAddChild({ parentId: 'stale-parent', childId: 'stale-child' });
    const lastCheck = Date.now();
    // The child and 'fresh' keep heartbeating; the parent goes silent.
    const beat = setInterval(() => {
      void s.try.tryHealthCheck({ instanceId: 'stale-child' }).catch(() => undefined);
      void s.try.tryHealthCheck({ instanceId: 'fresh' }).catch(() => undefined);
    }, 50);
    try {
      await sub.until(() => sub.events().some((e) => e.type === EventType.EVENT_TYPE_REMOVED && e.instanceId === 'stale-child'), 3000);
      const removedAt = Date.now();
      expect(removedAt - lastCheck).toBeLessThan(300 + 100 + 1000);
      const removed = sub.events().filter((e) => e.type === EventType.EVENT_TYPE_REMOVED);
      expect(removed.map((e) => [e.instanceId, e.removalReason])).toEqual([
        ['stale-parent', RemovalReason.REMOVAL_REASON_STALE],
        ['stale-child', RemovalReason.REMOVAL_REASON_PARENT_DIED],
      ]);
      expect((await s.try.tryHealthCheck({ instanceId: 'stale-child' })).healthy).toBe(false);
      expect((await s.try.tryHealthCheck({ instanceId: 'fresh' })).healthy).toBe(true);
    } finally {
      clearInterval(beat);
      sub.stop();
    }
  });

  it('never returns a stale instance, even before the sweeper runs', async () => {
    const { c: s } = await start({ staleTimeoutMs: 200, sweepIntervalMs: 60_000 });
    await s.try.tryAddInstance({ instance: makeInstance('lazy') });
    expect((await s.get.getInstance({ instanceId: 'lazy' })).instance?.instance?.id).toBe('lazy');
    await sleep(300);
    expect((await s.get.getAllInstances({})).instances).toEqual([]);
    expect((await grpcError(s.get.getInstance({ instanceId: 'lazy' }))).code).toBe(Status.NOT_FOUND);
    const hc = await s.try.tryHealthCheck({ instanceId: 'lazy' });
    expect(hc.healthy).toBe(false);
    expect(hc.message).toMatch(/stale/);
  });

  it('TryHealthCheck says why an instance is not alive: KILLED (also through a kill cascade), STALE (also through a stale cascade) or UNKNOWN', async () => {
    let clock = Date.now();
    const { c: s } = await start({ staleTimeoutMs: 1000, sweepIntervalMs: 600_000, now: () => clock });
    for (const id of ['k-parent', 'k-child', 's-parent', 's-child']) await s.try.tryAddInstance({ instance: makeInstance(id) });
    await s.try.tryAddChild({ parentId: 'k-parent', childId: 'k-child' });
    await s.try.tryAddChild({ parentId: 's-parent', childId: 's-child' });
    expect(await s.try.tryHealthCheck({ instanceId: 's-child' })).toMatchObject({ healthy: true, status: HealthStatus.HEALTH_STATUS_ALIVE });

    await s.try.tryKillInstance({ instanceId: 'k-parent', reason: 'decommissioned' });
    expect(await s.try.tryHealthCheck({ instanceId: 'k-parent' })).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_KILLED });
    expect(await s.try.tryHealthCheck({ instanceId: 'k-child' })).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_KILLED });

    clock += 900;
    await s.try.tryHealthCheck({ instanceId: 's-child' }); // the child keeps checking in, its parent does not
    clock += 200;
    const child = await s.try.tryHealthCheck({ instanceId: 's-child' });
    expect(child).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_STALE });
    expect(child.message).toMatch(/parent/);
    expect(await s.try.tryHealthCheck({ instanceId: 's-parent' })).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_STALE });
    expect(await s.try.tryHealthCheck({ instanceId: 'never-registered' })).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_UNKNOWN });
    // Registering again after staleness starts a new, alive incarnation.
    expect(await s.try.tryAddInstance({ instance: makeInstance('s-child') })).toMatchObject({ success: true });
    expect(await s.try.tryHealthCheck({ instanceId: 's-child' })).toMatchObject({ healthy: true, status: HealthStatus.HEALTH_STATUS_ALIVE });
  });

  it('TryHealthCheckStream answers many instances on one stream, one answer per request in order, as TryHealthCheck would', async () => {
    for (const id of ['hs-1', 'hs-2', 'hs-dead']) await c.try.tryAddInstance({ instance: makeInstance(id) });
    await c.try.tryKillInstance({ instanceId: 'hs-dead', reason: 'gone' });
    const asked = Array.from({ length: 300 }, (_, i) => ['hs-1', 'hs-2', 'hs-dead', 'hs-never'][i % 4]!);
    const answers: instanceManager.TryHealthCheckStreamResponse[] = [];
    for await (const a of c.try.tryHealthCheckStream(each(asked.map((instanceId) => ({ instanceId }))))) answers.push(a);
    expect(answers.map((a) => a.instanceId)).toEqual(asked);
    const unary = new Map<string, instanceManager.TryHealthCheckResponse>();
    for (const id of new Set(asked)) unary.set(id, await c.try.tryHealthCheck({ instanceId: id }));
    for (const a of answers) expect({ healthy: a.healthy, status: a.status, message: a.message }).toEqual(unary.get(a.instanceId));
    expect(answers.filter((a) => a.instanceId === 'hs-dead').every((a) => a.status === HealthStatus.HEALTH_STATUS_KILLED)).toBe(true);
    expect(answers.filter((a) => a.instanceId === 'hs-never').every((a) => a.status === HealthStatus.HEALTH_STATUS_UNKNOWN)).toBe(true);
    expect(answers.filter((a) => a.instanceId === 'hs-1').every((a) => a.healthy && a.status === HealthStatus.HEALTH_STATUS_ALIVE)).toBe(true);
  });

  it('TryHealthCheckStream: an invalid instance_id ends the stream with INVALID_ARGUMENT after the answers before it', async () => {
    await c.try.tryAddInstance({ instance: makeInstance('hs-valid') });
    const answers: string[] = [];
    const err = await grpcError(
      (async () => {
        for await (const a of c.try.tryHealthCheckStream(each([{ instanceId: 'hs-valid' }, { instanceId: 'not valid!' }, { instanceId: 'hs-valid' }])))
          answers.push(a.instanceId);
      })(),
    );
    expect(answers).toEqual(['hs-valid']);
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^instance_id: /);
  });

  it('TryHealthCheckStream ends with UNAVAILABLE when the server stops, without holding up shutdown', async () => {
    const im = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: backend.fresh(), logLevel: 'silent', shutdownTimeoutMs: 20_000 });
    const s = connectClients(im.port);
    await s.try.tryAddInstance({ instance: makeInstance('hs-open') });
    const requests = openRequests();
    const answers: instanceManager.TryHealthCheckStreamResponse[] = [];
    const ended = (async () => {
      for await (const a of s.try.tryHealthCheckStream(requests)) {
        answers.push(a);
        if (answers.length < 3) requests.push('hs-open');
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    requests.push('hs-open');
    while (answers.length < 3) await sleep(10);
    const t0 = Date.now();
    await im.stop();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(((await ended) as ClientError).code).toBe(Status.UNAVAILABLE);
    expect(answers.every((a) => a.healthy)).toBe(true);
    s.close();
  });

  it('ends subscriptions with UNAVAILABLE when the server stops, without holding up shutdown', async () => {
    const im = await startInstanceManager({ host: '127.0.0.1', port: 0, storage: backend.fresh(), logLevel: 'silent', shutdownTimeoutMs: 20_000 });
    const s = connectClients(im.port);
    const sub = collect(s, {});
    await sub.until((m) => m.some((x) => x.caughtUp));
    const t0 = Date.now();
    await im.stop();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(((await sub.done) as ClientError).code).toBe(Status.UNAVAILABLE);
    s.close();
  });
});

/** Requests of a stream that stays open until `end()`: `push(id)` sends one more health check. */
function openRequests(): AsyncIterable<{ instanceId: string }> & { push(id: string): void; end(): void } {
  const queue: string[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  return {
    push(id) {
      queue.push(id);
      wake?.();
    },
    end() {
      done = true;
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        const id = queue.shift();
        if (id !== undefined) yield { instanceId: id };
        else if (done) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

/** The values as an async iterable (what a streaming call takes). */
async function* each<T>(values: T[]): AsyncGenerator<T> {
  yield* values;
}
