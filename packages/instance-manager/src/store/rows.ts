import type { instanceManager } from '@titancompute/protocol';
import type { InstanceRecord, NewEvent } from './records.js';

/** A row of the `instances` table as SQLite or PostgreSQL return it (bigints may be strings). */
export interface InstanceRow {
  id: string;
  type: number | string;
  hostname: string;
  address: string;
  metadata: string;
  services: string;
  parent_id: string | null;
  alive: number | boolean;
  last_health_ms: number | string;
  created_at_ms: number | string;
  died_at_ms: number | string | null;
  removal_reason: number | string | null;
  removal_message: string | null;
  removal_root_reason: number | string | null;
}

/** A row of the `events` table. */
export interface EventRow {
  seq: number | string;
  type: number | string;
  instance_id: string;
  instance_type: number | string;
  related_instance_id: string;
  service: string | null;
  instance: string | null;
  removal_reason: number | string;
  timestamp_ms: number | string;
}

const num = (v: number | string): number => (typeof v === 'number' ? v : Number(v));
const numOrNull = (v: number | string | null): number | null => (v === null ? null : num(v));

/** Row → record. */
export function rowToRecord(row: InstanceRow): InstanceRecord {
  return {
    id: row.id,
    type: num(row.type),
    hostname: row.hostname,
    address: row.address,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    services: JSON.parse(row.services) as instanceManager.Service[],
    parentId: row.parent_id,
    alive: Boolean(Number(row.alive)),
    lastHealthMs: num(row.last_health_ms),
    createdAtMs: num(row.created_at_ms),
    diedAtMs: numOrNull(row.died_at_ms),
    removalReason: numOrNull(row.removal_reason),
    removalMessage: row.removal_message,
    removalRootReason: numOrNull(row.removal_root_reason),
  };
}

/** Columns of `instances`, in the order of {@link recordToParams}. */
const INSTANCE_COLUMNS = [
  'id',
  'type',
  'hostname',
  'address',
  'metadata',
  'services',
  'parent_id',
  'alive',
  'last_health_ms',
  'created_at_ms',
  'died_at_ms',
  'removal_reason',
  'removal_message',
  'removal_root_reason',
] as const;

/**
 * The INSERT of both SQL stores: a new instance, or a new incarnation replacing the dead row
 * with the same id. `placeholder(i)` spells the dialect's i-th (0-based) parameter.
 */
export function upsertInstanceSql(placeholder: (i: number) => string): string {
  const updates = INSTANCE_COLUMNS.filter((c) => c !== 'id').map((c) => `${c} = excluded.${c}`);
  return (
    `INSERT INTO instances (${INSTANCE_COLUMNS.join(', ')}) VALUES (${INSTANCE_COLUMNS.map((_, i) => placeholder(i)).join(', ')}) ` +
    `ON CONFLICT (id) DO UPDATE SET ${updates.join(', ')}`
  );
}

/** Record → positional parameters of {@link upsertInstanceSql} (alive as 0/1). */
export function recordToParams(r: InstanceRecord): unknown[] {
  return [
    r.id,
    r.type,
    r.hostname,
    r.address,
    JSON.stringify(r.metadata),
    JSON.stringify(r.services),
    r.parentId,
    r.alive,
    r.lastHealthMs,
    r.createdAtMs,
    r.diedAtMs,
    r.removalReason,
    r.removalMessage,
    r.removalRootReason,
  ];
}

/** A row of the `registry_presence` table (one row, id 1). */
export interface PresenceRow {
  up_since_ms: number | string;
  seen_ms: number | string;
}

/** Row → presence. */
export function rowToPresence(row: PresenceRow): { upSinceMs: number; seenMs: number } {
  return { upSinceMs: num(row.up_since_ms), seenMs: num(row.seen_ms) };
}

/** Row → event. */
export function rowToEvent(row: EventRow): instanceManager.InstanceEvent {
  return {
    sequence: num(row.seq),
    type: num(row.type),
    instanceId: row.instance_id,
    instanceType: num(row.instance_type),
    relatedInstanceId: row.related_instance_id,
    service: row.service ? (JSON.parse(row.service) as instanceManager.Service) : undefined,
    instance: row.instance ? (JSON.parse(row.instance) as instanceManager.Instance) : undefined,
    removalReason: num(row.removal_reason),
    timestampMs: num(row.timestamp_ms),
  };
}

/** Event → positional parameters of the INSERT in both SQL stores. */
export function eventToParams(e: NewEvent): unknown[] {
  return [
    e.type,
    e.instanceId,
    e.instanceType,
    e.relatedInstanceId,
    e.service ? JSON.stringify(e.service) : null,
    e.instance ? JSON.stringify(e.instance) : null,
    e.removalReason,
    e.timestampMs,
  ];
}
