import { instanceManager } from '@titancompute/protocol';
import type { Store } from '../store/store.js';
import { findAncestor } from './ancestors.js';
import type { Liveness } from './liveness.js';
import { addedEvent, deathMessage, linkEvents, newInstanceRecord, sameDescription, sameService, serviceAddedEvent } from './proto-mapping.js';
import type { TryResult } from './registry.js';

const { RemovalReason } = instanceManager;

/** Most services one instance may register. */
export const MAX_SERVICES_PER_INSTANCE = 64;

/** The registry's Try* writes (health checks aside, see {@link Liveness.healthCheck}); each is one store transaction. */
export interface Commands {
  /** TryAddInstance: registers (or idempotently refreshes, or starts a new incarnation of) an instance. */
  addInstance(instance: instanceManager.Instance): Promise<TryResult>;
  /** TryKillInstance: kills a live instance and every descendant. */
  killInstance(id: string, reason: string): Promise<TryResult & { killedInstanceIds: string[] }>;
  /** TryAddChild: links two live instances (one parent per child, no cycle). */
  addChild(parentId: string, childId: string): Promise<TryResult>;
  /** TryAddService: adds a service to a live instance (the same one again is idempotent). */
  addService(id: string, service: instanceManager.Service): Promise<TryResult>;
}

/** Creates the {@link Commands} of a registry over a store and its {@link Liveness}. */
export function createCommands(store: Store, liveness: Liveness): Commands {
  const { now, liveInTx, killTree } = liveness;
  return {
    addInstance: (instance) =>
      store.transaction(async (tx): Promise<TryResult> => {
        const nowMs = now();
        const existing = await tx.getInstance(instance.id);
        let reincarnated = false;
        if (existing) {
          const live = await liveInTx(tx, instance.id, nowMs);
          if (live.record) {
            if (!sameDescription(existing, instance)) {
              return { success: false, message: `instance ${instance.id} already exists with a different description` };
            }
            await tx.touch(instance.id, nowMs);
            return { success: true, message: `instance ${instance.id} already registered with this description` };
          }
          // The id belongs to a dead instance (killed or stale, its REMOVED already emitted):
          // this registration starts a new incarnation under the same id, like a restarted
          // process. It starts with no parent, children or services; the latest metrics stay
          // (with their timestamps) until new ones are posted.
          reincarnated = true;
        }
        await tx.insertInstance(newInstanceRecord(instance, nowMs));
        await tx.appendEvent(addedEvent(instance, nowMs));
        return { success: true, message: reincarnated ? 'registered again (the previous instance with this id is dead)' : 'registered' };
      }),

    killInstance: (id, reason) =>
      store.transaction(async (tx) => {
        const nowMs = now();
        const rec = await tx.getInstance(id);
        if (!rec) return { success: false, message: `unknown instance ${id}`, killedInstanceIds: [] };
        if (!rec.alive) return { success: false, message: deathMessage(rec), killedInstanceIds: [] };
        const killedInstanceIds = await killTree(tx, id, RemovalReason.REMOVAL_REASON_KILLED, reason || 'killed', nowMs);
        return { success: true, message: `killed ${killedInstanceIds.length} instance(s)`, killedInstanceIds };
      }),

    addChild: (parentId, childId) =>
      store.transaction(async (tx): Promise<TryResult> => {
        if (parentId === childId) return { success: false, message: 'an instance cannot be its own child' };
        const nowMs = now();
        const parent = await liveInTx(tx, parentId, nowMs);
        if (!parent.record) return { success: false, message: `parent: ${parent.message}` };
        const child = await liveInTx(tx, childId, nowMs);
        if (!child.record) return { success: false, message: `child: ${child.message}` };
        if (child.record.parentId === parentId) return { success: true, message: `${childId} is already a child of ${parentId}` };
        if (child.record.parentId) {
          return { success: false, message: `${childId} already has a parent (${child.record.parentId}); an instance has one parent` };
        }
        // Cycle: the child must not be the parent's ancestor.
        if (
          (await findAncestor(
            parent.record.parentId,
            (id) => tx.getInstance(id),
            (id) => id === childId,
          )) !== undefined
        ) {
          return { success: false, message: `${childId} is an ancestor of ${parentId}: that link would make a cycle` };
        }
        await tx.setParent(childId, parentId);
        for (const event of linkEvents(parent.record, child.record, nowMs)) await tx.appendEvent(event);
        return { success: true, message: 'linked' };
      }),

    addService: (id, service) =>
      store.transaction(async (tx): Promise<TryResult> => {
        const nowMs = now();
        const live = await liveInTx(tx, id, nowMs);
        if (!live.record) return { success: false, message: live.message };
        const services = live.record.services;
        if (services.some((s) => sameService(s, service))) return { success: true, message: 'service already registered' };
        if (services.length >= MAX_SERVICES_PER_INSTANCE) {
          return { success: false, message: `instance ${id} already has ${MAX_SERVICES_PER_INSTANCE} services (the maximum)` };
        }
        const clean = { type: service.type, port: service.port, url: service.url };
        await tx.setServices(id, [...services, clean]);
        await tx.appendEvent(serviceAddedEvent(live.record, clean, nowMs));
        return { success: true, message: 'service registered' };
      }),
  };
}
