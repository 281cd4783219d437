import type { instanceManager } from '@titancompute/protocol';

/** Everything the registry stores about one instance, alive or dead. */
export interface InstanceRecord {
  id: string;
  type: instanceManager.InstanceType;
  hostname: string;
  address: string;
  metadata: Record<string, string>;
  services: instanceManager.Service[];
  /** null when it has no parent. */
  parentId: string | null;
  /** False once killed, stale or cascaded; never true again. */
  alive: boolean;
  lastHealthMs: number;
  createdAtMs: number;
  diedAtMs: number | null;
  removalReason: instanceManager.RemovalReason | null;
  /**
   * Why the death that took this instance started: KILLED or STALE (for PARENT_DIED, the
   * ancestor's reason). null while alive, and for deaths recorded before this was kept.
   */
  removalRootReason: instanceManager.RemovalReason | null;
  /** Kill reason given by the caller, or a description of why it died. */
  removalMessage: string | null;
}

/**
 * When the registry has been up without a gap (shared by every replica of one database).
 * An instance cannot go stale before `upSinceMs` + the stale timeout.
 */
export interface Presence {
  /** Start of the current up period: the first start (or sweep) after a gap with no replica running. */
  upSinceMs: number;
  /** Latest sweep by any replica. */
  seenMs: number;
}

/** An event before the store gives it a sequence number. */
export type NewEvent = Omit<instanceManager.InstanceEvent, 'sequence'>;

/** Kinds of metrics kept as "latest value per instance". */
export type MetricsKind = 'proxy' | 'system' | 'gpu' | 'llm';
