import type { instanceManager, stats } from '@titancompute/protocol';
import { createMutex } from '../util/mutex.js';
import { createListenerSet } from './listeners.js';
import type { InstanceRecord, MetricsKind, NewEvent, Presence, Store, StoreTx } from './store.js';

const clone = <T>(value: T): T => structuredClone(value);

/**
 * A throwaway in-process store (`--storage memory`). Transactions are serialised by a
 * mutex and write to a staging copy that replaces the state only when the whole
 * transaction succeeded, so nothing is half-written.
 */
export function createMemoryStore(): Store {
  let instances = new Map<string, InstanceRecord>();
  let events: instanceManager.InstanceEvent[] = [];
  let lastSequence = 0;
  let presence: Presence | undefined;
  const metrics = new Map<string, unknown>();
  const hostStats = new Map<string, stats.Stats>();
  const mutex = createMutex();
  const listeners = createListenerSet();

  const aliveIds = (pred: (r: InstanceRecord) => boolean) => [...instances.values()].filter((r) => r.alive && pred(r));

  return {
    backend: 'memory',
    async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
      return mutex.runExclusive(async () => {
        // Copy-on-write staging: rows touched are cloned into `staged`.
        const staged = new Map<string, InstanceRecord>();
        const newEvents: instanceManager.InstanceEvent[] = [];
        let seq = lastSequence;
        let stagedPresence = presence;
        const read = (id: string) => staged.get(id) ?? instances.get(id);
        const write = (id: string): InstanceRecord => {
          let rec = staged.get(id);
          if (!rec) {
            const cur = instances.get(id);
            if (!cur) throw new Error(`no instance ${id}`);
            rec = clone(cur);
            staged.set(id, rec);
          }
          return rec;
        };
        const all = () => {
          const merged = new Map(instances);
          for (const [k, v] of staged) merged.set(k, v);
          return [...merged.values()];
        };
        const tx: StoreTx = {
          getInstance: async (id) => {
            const r = read(id);
            return r ? clone(r) : undefined;
          },
          insertInstance: async (record) => {
            staged.set(record.id, clone(record));
          },
          touch: async (id, nowMs) => {
            const r = read(id);
            if (r?.alive) write(id).lastHealthMs = nowMs;
          },
          touchMany: async (beats) => {
            const missed: string[] = [];
            for (const [id, ms] of beats) {
              const r = read(id);
              if (!r?.alive) missed.push(id);
              // A shallow copy is enough: only the number changes (nothing nested is mutated in place).
              else if (ms > r.lastHealthMs) staged.set(id, { ...r, lastHealthMs: ms });
            }
            return missed;
          },
          oldestAliveHealthMs: async () => {
            let min: number | undefined;
            for (const r of all()) if (r.alive && (min === undefined || r.lastHealthMs < min)) min = r.lastHealthMs;
            return min;
          },
          markDead: async (id, death) => {
            const r = read(id);
            if (!r?.alive) return false;
            if (death.onlyIfStaleBefore !== undefined && r.lastHealthMs >= death.onlyIfStaleBefore) return false;
            const w = write(id);
            w.alive = false;
            w.diedAtMs = death.nowMs;
            w.removalReason = death.reason;
            w.removalMessage = death.message;
            w.removalRootReason = death.rootReason;
            return true;
          },
          setParent: async (childId, parentId) => {
            write(childId).parentId = parentId;
          },
          setServices: async (id, services) => {
            write(id).services = clone(services);
          },
          aliveChildIds: async (parentId) =>
            all()
              .filter((r) => r.alive && r.parentId === parentId)
              .map((r) => r.id),
          staleAliveIds: async (cutoffMs) =>
            all()
              .filter((r) => r.alive && r.lastHealthMs < cutoffMs)
              .map((r) => r.id),
          readPresence: async () => (stagedPresence ? { ...stagedPresence } : undefined),
          writePresence: async (p) => {
            stagedPresence = { ...p };
          },
          appendEvent: async (event: NewEvent) => {
            seq += 1;
            newEvents.push({ ...clone(event), sequence: seq });
            return seq;
          },
        };
        const result = await fn(tx);
        presence = stagedPresence;
        if (staged.size > 0) {
          const next = new Map(instances);
          for (const [k, v] of staged) next.set(k, v);
          instances = next;
        }
        if (newEvents.length > 0) {
          events = events.concat(newEvents);
          lastSequence = seq;
          queueMicrotask(() => listeners.emit());
        }
        return result;
      });
    },
    async getInstance(id) {
      const r = instances.get(id);
      return r ? clone(r) : undefined;
    },
    async aliveChildren(parentId) {
      return aliveIds((r) => r.parentId === parentId).map(clone);
    },
    async listAlive() {
      return aliveIds(() => true).map(clone);
    },
    async snapshot() {
      return { instances: aliveIds(() => true).map(clone), sequence: lastSequence };
    },
    async readEvents(afterSequence, limit) {
      const first = events[0]?.sequence ?? lastSequence + 1;
      const start = Math.max(0, afterSequence + 1 - first);
      return events.slice(start, start + limit).map(clone);
    },
    async eventBounds() {
      return { firstRetained: events[0]?.sequence ?? lastSequence + 1, latest: lastSequence };
    },
    async pruneEvents(keep) {
      const drop = Math.max(0, events.length - keep);
      if (drop > 0) events = events.slice(drop);
      return drop;
    },
    async putMetrics(id, kind: MetricsKind, value) {
      metrics.set(`${kind}\u0000${id}`, clone(value));
    },
    async getMetrics(id, kind: MetricsKind) {
      const v = metrics.get(`${kind}\u0000${id}`);
      return v === undefined ? undefined : clone(v);
    },
    async putStats(hostname, value) {
      hostStats.set(hostname, clone(value));
    },
    async getStats(hostname) {
      const v = hostStats.get(hostname);
      return v ? clone(v) : undefined;
    },
    watch: (listener) => listeners.add(listener),
    async close() {},
  };
}
