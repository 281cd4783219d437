import { instanceManager as im } from '@titancompute/protocol';
import type { InstanceDetails, InstanceEvent, InstanceEventType, InstanceInfo, InstanceService, InstanceType, RemovalReason, ServiceType } from '../types.js';

function stripPrefix<T extends string>(name: string | undefined, prefix: string): T {
  return (name?.startsWith(prefix) ? name.slice(prefix.length) : 'UNSPECIFIED') as T;
}

/** proto InstanceType → string union. */
export function fromInstanceType(value: im.InstanceType): InstanceType {
  return stripPrefix(im.InstanceType[value], 'INSTANCE_TYPE_');
}
/** string union → proto InstanceType. */
export function toInstanceType(value: InstanceType): im.InstanceType {
  return im.InstanceType[`INSTANCE_TYPE_${value}` as keyof typeof im.InstanceType];
}
/** proto ServiceType → string union. */
export function fromServiceType(value: im.ServiceType): ServiceType {
  return stripPrefix(im.ServiceType[value], 'SERVICE_TYPE_');
}
/** string union → proto ServiceType. */
export function toServiceType(value: ServiceType): im.ServiceType {
  return im.ServiceType[`SERVICE_TYPE_${value}` as keyof typeof im.ServiceType];
}
/** proto EventType → string union. */
export function fromEventType(value: im.EventType): InstanceEventType {
  return stripPrefix(im.EventType[value], 'EVENT_TYPE_');
}
/** proto RemovalReason → string union. */
export function fromRemovalReason(value: im.RemovalReason): RemovalReason {
  return stripPrefix(im.RemovalReason[value], 'REMOVAL_REASON_');
}

/** Every InstanceType name (for CLI validation). */
export const INSTANCE_TYPES: readonly InstanceType[] = Object.keys(im.InstanceType)
  .filter((k) => k.startsWith('INSTANCE_TYPE_'))
  .map((k) => k.slice('INSTANCE_TYPE_'.length) as InstanceType);

/** Every ServiceType name (for CLI validation). */
export const SERVICE_TYPES: readonly ServiceType[] = Object.keys(im.ServiceType)
  .filter((k) => k.startsWith('SERVICE_TYPE_'))
  .map((k) => k.slice('SERVICE_TYPE_'.length) as ServiceType);

/** Friendly Instance. */
export function fromInstance(i: im.Instance): InstanceInfo {
  return { id: i.id, type: fromInstanceType(i.type), hostname: i.hostname, address: i.address, metadata: { ...i.metadata } };
}
/** Proto Instance. */
export function toInstance(i: Partial<InstanceInfo> & { id: string; type: InstanceType }): im.Instance {
  return { id: i.id, type: toInstanceType(i.type), hostname: i.hostname ?? '', address: i.address ?? '', metadata: { ...i.metadata } };
}
/** Friendly Service. */
export function fromService(s: im.Service): InstanceService {
  return { type: fromServiceType(s.type), port: s.port, url: s.url };
}
/** Proto Service. */
export function toService(s: Partial<InstanceService> & { type: ServiceType }): im.Service {
  return { type: toServiceType(s.type), port: s.port ?? 0, url: s.url ?? '' };
}
/** Friendly InstanceDescription. */
export function fromDescription(d: im.InstanceDescription): InstanceDetails {
  const instance = d.instance ?? { id: '', type: 0, hostname: '', address: '', metadata: {} };
  return {
    ...fromInstance(instance),
    services: d.services.map(fromService),
    parentId: d.parentId || undefined,
    childIds: [...d.childIds],
    healthy: d.healthy,
    lastHealthCheckMs: d.lastHealthCheckMs,
    createdAtMs: d.createdAtMs,
  };
}
/** Friendly InstanceEvent. */
export function fromEvent(e: im.InstanceEvent, snapshot: boolean): InstanceEvent {
  return {
    sequence: e.sequence,
    type: fromEventType(e.type),
    instanceId: e.instanceId,
    instanceType: fromInstanceType(e.instanceType),
    relatedInstanceId: e.relatedInstanceId || undefined,
    service: e.service ? fromService(e.service) : undefined,
    instance: e.instance ? fromInstance(e.instance) : undefined,
    removalReason: e.removalReason ? fromRemovalReason(e.removalReason) : undefined,
    timestampMs: e.timestampMs,
    snapshot,
  };
}
