import type { instanceManager } from '@titancompute/protocol';
import { NotFoundError } from '../errors.js';
import type { InstanceRecord, Store } from '../store/store.js';
import { findAncestor } from './ancestors.js';
import type { Liveness } from './liveness.js';
import { deathMessageOrStale, describeRecord } from './proto-mapping.js';
import type { ListCriteria } from './registry.js';

/** The registry's reads: they sweep first when needed and never return a dead or stale instance. */
export interface Queries {
  /** The live instance (every ancestor live too), or {@link NotFoundError}. */
  getLive(id: string): Promise<InstanceRecord>;
  /** Live instances matching `criteria`, described. */
  listLive(criteria: ListCriteria): Promise<instanceManager.InstanceDescription[]>;
  /** Full description of a live record. */
  describe(record: InstanceRecord): Promise<instanceManager.InstanceDescription>;
  /** Live children of a live instance, described. */
  children(id: string): Promise<instanceManager.InstanceDescription[]>;
  /** Live parent of a live instance, described; undefined when it has none. */
  parent(id: string): Promise<instanceManager.InstanceDescription | undefined>;
}

/** Creates the {@link Queries} of a registry over a store and its {@link Liveness}. */
export function createQueries(store: Store, liveness: Liveness): Queries {
  const { ensureSwept, isLive, now, staleTimeoutMs } = liveness;
  // Records as stored, with the health checks acknowledged but not written yet.
  const current = (records: InstanceRecord[]) => records.map(liveness.current);

  const describe = async (r: InstanceRecord) =>
    describeRecord(
      r,
      (await store.aliveChildren(r.id)).filter(isLive).map((c) => c.id),
    );

  const getLive = async (id: string): Promise<InstanceRecord> => {
    await ensureSwept();
    const stored = await store.getInstance(id);
    const rec = stored && liveness.current(stored);
    if (!rec || !isLive(rec)) {
      throw new NotFoundError(rec ? deathMessageOrStale(rec) : `unknown instance ${id}`, { kind: 'instance', id });
    }
    // Ancestors could have gone stale since the sweep above: check the chain.
    const deadAncestor = await findAncestor(
      rec.parentId,
      (p) => store.getInstance(p),
      (_, p) => !p || !isLive(p),
    );
    if (deadAncestor !== undefined) throw new NotFoundError(`instance ${id} is dead (its ancestor ${deadAncestor} died)`, { kind: 'instance', id });
    return rec;
  };

  return {
    getLive,
    describe,

    async listLive(criteria) {
      await ensureSwept();
      const all = current(await store.listAlive()).filter(isLive);
      const byId = new Map(all.map((r) => [r.id, r]));
      // Live only when every ancestor is live (in `byId`) too.
      const live: InstanceRecord[] = [];
      for (const r of all) {
        if (
          (await findAncestor(
            r.parentId,
            (p) => byId.get(p),
            (_, p) => !p,
          )) === undefined
        )
          live.push(r);
      }
      const children = new Map<string, string[]>();
      for (const r of live) {
        if (!r.parentId) continue;
        const list = children.get(r.parentId) ?? [];
        list.push(r.id);
        children.set(r.parentId, list);
      }
      const healthyCutoff = now() - staleTimeoutMs / 2;
      return live
        .filter(
          (r) =>
            (!criteria.type || r.type === criteria.type) &&
            (!criteria.parentId || r.parentId === criteria.parentId) &&
            (!criteria.serviceType || r.services.some((s) => s.type === criteria.serviceType)) &&
            (!criteria.healthyOnly || r.lastHealthMs >= healthyCutoff),
        )
        .map((r) => describeRecord(r, children.get(r.id) ?? []));
    },

    async children(id) {
      await getLive(id);
      const kids = current(await store.aliveChildren(id)).filter(isLive);
      return Promise.all(kids.map(describe));
    },

    async parent(id) {
      const rec = await getLive(id);
      if (!rec.parentId) return undefined;
      const p = await store.getInstance(rec.parentId);
      return p && isLive(p) ? describe(liveness.current(p)) : undefined;
    },
  };
}
