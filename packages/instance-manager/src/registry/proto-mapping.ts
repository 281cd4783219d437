import { instanceManager } from '@titancompute/protocol';
import type { InstanceRecord, NewEvent } from '../store/store.js';

const { EventType, HealthStatus, RemovalReason } = instanceManager;

/** Whether a stored record and a registration describe the same instance (type, hostname, address, metadata). */
export function sameDescription(r: InstanceRecord, i: instanceManager.Instance): boolean {
  if (r.type !== i.type || r.hostname !== i.hostname || r.address !== i.address) return false;
  const a = Object.keys(r.metadata);
  const b = Object.keys(i.metadata);
  return a.length === b.length && a.every((k) => r.metadata[k] === i.metadata[k]);
}

/** Whether two services are the same registration (type, port, url). */
export const sameService = (a: instanceManager.Service, b: instanceManager.Service): boolean => a.type === b.type && a.port === b.port && a.url === b.url;

/** What a dead record means for the instance: stop (a kill, or a kill's cascade) or register again. */
export function deathStatus(r: InstanceRecord): instanceManager.HealthStatus {
  const root = r.removalReason === RemovalReason.REMOVAL_REASON_PARENT_DIED ? r.removalRootReason : r.removalReason;
  return root === RemovalReason.REMOVAL_REASON_KILLED ? HealthStatus.HEALTH_STATUS_KILLED : HealthStatus.HEALTH_STATUS_STALE;
}

/** `instance <id> is dead (<why>[: <message>])` for a dead record. */
export function deathMessage(r: InstanceRecord): string {
  const why =
    r.removalReason === RemovalReason.REMOVAL_REASON_KILLED
      ? 'killed'
      : r.removalReason === RemovalReason.REMOVAL_REASON_STALE
        ? 'stale'
        : r.removalReason === RemovalReason.REMOVAL_REASON_PARENT_DIED
          ? 'its parent died'
          : 'dead';
  return `instance ${r.id} is dead (${why}${r.removalMessage ? `: ${r.removalMessage}` : ''})`;
}

/** {@link deathMessage}, or `… is dead (stale)` for a record still marked alive but stale. */
export const deathMessageOrStale = (r: InstanceRecord): string => (r.alive ? `instance ${r.id} is dead (stale)` : deathMessage(r));

/** The wire description of a live record with the given live children. */
export function describeRecord(r: InstanceRecord, childIds: string[]): instanceManager.InstanceDescription {
  return {
    instance: { id: r.id, type: r.type, hostname: r.hostname, address: r.address, metadata: { ...r.metadata } },
    services: r.services.map((s) => ({ ...s })),
    parentId: r.parentId ?? '',
    childIds,
    healthy: true,
    lastHealthCheckMs: r.lastHealthMs,
    createdAtMs: r.createdAtMs,
  };
}

/** The record of a new incarnation: alive, checked now, no parent or services. */
export function newInstanceRecord(instance: instanceManager.Instance, nowMs: number): InstanceRecord {
  return {
    id: instance.id,
    type: instance.type,
    hostname: instance.hostname,
    address: instance.address,
    metadata: { ...instance.metadata },
    services: [],
    parentId: null,
    alive: true,
    lastHealthMs: nowMs,
    createdAtMs: nowMs,
    diedAtMs: null,
    removalReason: null,
    removalMessage: null,
    removalRootReason: null,
  };
}

/** ADDED for a registration. */
export function addedEvent(instance: instanceManager.Instance, nowMs: number): NewEvent {
  return {
    type: EventType.EVENT_TYPE_ADDED,
    instanceId: instance.id,
    instanceType: instance.type,
    relatedInstanceId: '',
    instance: { ...instance, metadata: { ...instance.metadata } },
    removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED,
    timestampMs: nowMs,
  };
}

/** REMOVED for one death (of the root of a kill, or of a descendant with PARENT_DIED). */
export function removedEvent(id: string, type: instanceManager.InstanceType, reason: instanceManager.RemovalReason, nowMs: number): NewEvent {
  return { type: EventType.EVENT_TYPE_REMOVED, instanceId: id, instanceType: type, relatedInstanceId: '', removalReason: reason, timestampMs: nowMs };
}

/** CHILD_ADDED (on the parent) and PARENT_ADDED (on the child) for one link. */
export function linkEvents(parent: InstanceRecord, child: InstanceRecord, nowMs: number): [NewEvent, NewEvent] {
  const base = { service: undefined, instance: undefined, removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED, timestampMs: nowMs };
  return [
    { ...base, type: EventType.EVENT_TYPE_CHILD_ADDED, instanceId: parent.id, instanceType: parent.type, relatedInstanceId: child.id },
    { ...base, type: EventType.EVENT_TYPE_PARENT_ADDED, instanceId: child.id, instanceType: child.type, relatedInstanceId: parent.id },
  ];
}

/** SERVICE_ADDED for one service registration. */
export function serviceAddedEvent(record: InstanceRecord, service: instanceManager.Service, nowMs: number): NewEvent {
  return {
    type: EventType.EVENT_TYPE_SERVICE_ADDED,
    instanceId: record.id,
    instanceType: record.type,
    relatedInstanceId: '',
    service,
    removalReason: RemovalReason.REMOVAL_REASON_UNSPECIFIED,
    timestampMs: nowMs,
  };
}
