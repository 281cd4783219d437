import { afterAll, describe, expect, it } from '@jest/globals';
import { instanceManager } from '@titancompute/protocol';
import { createStore } from '../store/create-store.js';
import { createMemoryStore } from '../store/memory-store.js';
import type { Store } from '../store/store.js';
import { testBackends } from '../test-support/backends.js';
import { makeInstance } from '../test-support/clients.js';
import { createRegistry, type Registry, type RegistryOptions } from './registry.js';

const { EventType, HealthStatus } = instanceManager;
const STALE = 1000;
/** Long enough that only sweeps and explicit flushes write health checks during a test. */
const NEVER = 3_600_000;
const backends = await testBackends('instance-manager liveness');

/** A store that counts its transactions. */
function counting(store: Store): Store & { transactions: number } {
  const counted = {
    ...store,
    transactions: 0,
    transaction<T>(fn: Parameters<Store['transaction']>[0]): Promise<T> {
      counted.transactions += 1;
      return store.transaction(fn as never) as Promise<T>;
    },
  };
  return counted;
}

/** The last health check as stored (not counting what the registry holds in memory). */
const stored = async (store: Store, id: string) => (await store.getInstance(id))?.lastHealthMs;

describe.each(backends)('buffered health checks on $name storage', (backend) => {
  const stores: Store[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
    await backend.cleanup();
  });
  async function setUp(options: Partial<RegistryOptions> & { spec?: ReturnType<typeof backend.fresh>; start?: number } = {}) {
    const clock = { t: options.start ?? Date.now() };
    const store = counting(await createStore(options.spec ?? backend.fresh()));
    stores.push(store);
    const registry = createRegistry(store, { staleTimeoutMs: STALE, healthFlushIntervalMs: NEVER, now: () => clock.t, ...options });
    await registry.sweep();
    return { clock, store, registry };
  }

  it('answers health checks of live instances without a transaction and writes them in one transaction per flush', async () => {
    const { clock, store, registry } = await setUp();
    const ids = Array.from({ length: 50 }, (_, i) => `beat-${i}`);
    for (const id of ids) expect((await registry.addInstance(makeInstance(id))).success).toBe(true);
    const registeredAt = clock.t;
    clock.t += 400;
    const before = store.transactions;
    for (const id of ids) expect(await registry.healthCheck(id)).toEqual({ healthy: true, message: '', status: HealthStatus.HEALTH_STATUS_ALIVE });
    expect(store.transactions).toBe(before);
    // Not written yet, but every read counts them.
    expect(await stored(store, 'beat-7')).toBe(registeredAt);
    expect((await registry.getLive('beat-7')).lastHealthMs).toBe(clock.t);
    expect((await registry.listLive({})).find((d) => d.instance?.id === 'beat-7')?.lastHealthCheckMs).toBe(clock.t);

    await registry.flush();
    expect(store.transactions).toBe(before + 1);
    for (const id of ids) expect(await stored(store, id)).toBe(clock.t);
    await registry.flush(); // nothing left: no transaction
    expect(store.transactions).toBe(before + 1);
  });

  it('writes buffered health checks by itself within the flush interval', async () => {
    const { store, registry } = await setUp({ now: Date.now, healthFlushIntervalMs: 30 });
    await registry.addInstance(makeInstance('timed'));
    const registered = (await stored(store, 'timed'))!;
    await new Promise((r) => setTimeout(r, 5));
    await registry.healthCheck('timed');
    const deadline = Date.now() + 2000;
    while ((await stored(store, 'timed')) === registered && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(await stored(store, 'timed')).toBeGreaterThan(registered);
  });

  it('judges staleness on acknowledged checks not written yet: exactly one stale timeout after the last one', async () => {
    const { clock, store, registry } = await setUp();
    await registry.addInstance(makeInstance('checking'));
    await registry.addInstance(makeInstance('quiet'));
    const start = clock.t;
    clock.t = start + 600;
    await registry.healthCheck('checking'); // buffered only
    expect(await stored(store, 'checking')).toBe(start);
    clock.t = start + STALE + 1; // quiet is stale, checking is not
    expect(await registry.sweep()).toEqual(['quiet']);
    clock.t = start + 600 + STALE; // exactly one stale timeout after checking's acknowledged check: still alive
    expect((await registry.getLive('checking')).lastHealthMs).toBe(start + 600);
    expect(await registry.sweep()).toEqual([]);
    clock.t += 1;
    expect(await registry.healthCheck('checking')).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_STALE });
    expect((await store.getInstance('checking'))?.alive).toBe(false);
  });

  it('a stale ancestor is swept before a descendant’s buffered check is answered', async () => {
    const { clock, registry } = await setUp();
    await registry.addInstance(makeInstance('anc-parent'));
    await registry.addInstance(makeInstance('anc-child'));
    expect((await registry.addChild('anc-parent', 'anc-child')).success).toBe(true);
    clock.t += STALE - 100;
    expect(await registry.healthCheck('anc-child')).toMatchObject({ healthy: true });
    clock.t += 200; // the parent is stale now; no sweep ran
    expect(await registry.healthCheck('anc-child')).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_STALE });
  });

  it('a kill wins over a buffered check, which never brings the instance back', async () => {
    const { clock, store, registry } = await setUp();
    await registry.addInstance(makeInstance('doomed'));
    clock.t += 100;
    expect(await registry.healthCheck('doomed')).toMatchObject({ healthy: true });
    expect((await registry.killInstance('doomed', 'test')).success).toBe(true);
    expect(await registry.healthCheck('doomed')).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_KILLED });
    await registry.flush();
    expect((await store.getInstance('doomed'))?.alive).toBe(false);
    expect(await registry.healthCheck('doomed')).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_KILLED });
  });

  it('a crash loses at most the unwritten last-seen times: never an instance or an event, and no instance goes stale for it', async () => {
    if (backend.name === 'memory') return; // nothing survives a restart of memory storage
    const spec = backend.fresh();
    const a = await setUp({ spec });
    await a.registry.addInstance(makeInstance('survivor'));
    const registeredAt = a.clock.t;
    a.clock.t += 500;
    await a.registry.healthCheck('survivor'); // acknowledged, not written: the crash below loses it
    const events = await a.store.readEvents(0, 100);
    // The crash: the process is gone without a flush.
    await a.store.close();

    const b = await setUp({ spec, start: a.clock.t + 1 });
    const rec = await b.registry.getLive('survivor');
    expect(rec.lastHealthMs).toBe(registeredAt); // the buffered check is lost …
    expect(await b.store.readEvents(0, 100)).toEqual(events); // … no event is
    expect(events.map((e) => [e.type, e.instanceId])).toEqual([[EventType.EVENT_TYPE_ADDED, 'survivor']]);
    if (backend.name === 'sqlite') {
      // The restart starts a grace period of one stale timeout, so the lost check costs nothing:
      // the stored check is more than a stale timeout old, the instance is alive all the same.
      b.clock.t = registeredAt + STALE + 400;
    } else {
      // PostgreSQL replicas share their up period (this restart came within the outage gap, as
      // if other replicas kept running): the instance is judged from its last written check,
      // which its next check only has to follow within one stale timeout.
      b.clock.t = registeredAt + STALE - 1;
    }
    // Its first sweep learnt which instances are alive: their checks need no transaction.
    const transactions = b.store.transactions;
    expect(await b.registry.healthCheck('survivor')).toMatchObject({ healthy: true, status: HealthStatus.HEALTH_STATUS_ALIVE });
    expect(b.store.transactions).toBe(transactions);
  });
});

describe('replicas sharing a store', () => {
  /** Two registries over one memory store, as two PostgreSQL replicas over one database. */
  async function replicas(): Promise<{ a: Registry; b: Registry; store: Store & { transactions: number } }> {
    const store = counting(createMemoryStore());
    const options = { staleTimeoutMs: 30_000, healthFlushIntervalMs: NEVER, soleReplica: false };
    const a = createRegistry(store, options);
    const b = createRegistry(store, options);
    await a.sweep();
    await b.sweep();
    return { a, b, store };
  }

  it('a kill through one replica reaches the other’s answers with the REMOVED event (forget) or at its next flush', async () => {
    const { a, b } = await replicas();
    for (const id of ['via-event', 'via-flush']) {
      await b.addInstance(makeInstance(id));
      expect(await b.healthCheck(id)).toMatchObject({ healthy: true });
      expect((await a.killInstance(id, 'elsewhere')).success).toBe(true);
    }
    b.forget('via-event');
    expect(await b.healthCheck('via-event')).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_KILLED });
    await b.flush(); // its write finds the row dead
    expect(await b.healthCheck('via-flush')).toMatchObject({ healthy: false, status: HealthStatus.HEALTH_STATUS_KILLED });
  });

  it('an instance registered through one replica is checked through the other (one storage read, then from memory)', async () => {
    const { a, b, store } = await replicas();
    await a.addInstance(makeInstance('roamer'));
    const before = store.transactions;
    expect(await b.healthCheck('roamer')).toMatchObject({ healthy: true });
    expect(store.transactions).toBe(before + 1);
    expect(await b.healthCheck('roamer')).toMatchObject({ healthy: true });
    expect(store.transactions).toBe(before + 1);
  });
});
