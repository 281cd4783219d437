import type { AgentRegistration, GpuInfo, HealthUpdate } from '@titancompute/protocol';
import type { BreakerSnapshot } from '../scheduler/circuit-breaker.js';
import type { AgentRecord, EndpointCheck } from './agent-record.js';

/**
 * One agent as the replica its health stream is homed on last wrote it to the shared fleet
 * (`fleet_agents.snapshot`): its registration, latest health, state, endpoint check, breaker and
 * throughput average. Every other replica keeps a copy of it in its registry.
 */
export interface FleetSnapshot {
  registration: Omit<AgentRegistration, 'agentCredential'>;
  health: {
    freeVramMb: number;
    freeRamMb: number;
    totalRamMb: number;
    runningJobs: number;
    queuedJobs: number;
    cpuPercent: number;
    rttMs: number;
    gpus: GpuInfo[];
  };
  online: boolean;
  deregistered: boolean;
  draining: boolean;
  endpointCheck: EndpointCheck;
  breaker: BreakerSnapshot;
  tokensPerSecond: number | null;
}

/** A snapshot as read back, with where and when it was written. */
export interface SharedAgentView {
  agentId: string;
  snapshot: FleetSnapshot;
  /** The replica its health stream is homed on (null: none now). */
  homeReplica: string | null;
  /** When the home replica last heard from it (the database's clock, ms). */
  lastSeenMs: number;
  /** `fleet_load`: reservations over every replica, and the row's version. */
  reserved: number;
  loadVersion: number;
}

/** What one scheduling decision asks of the shared reservations. */
export interface SharedReservationRequest {
  /** Candidates, best first (bounded): the first with a free slot in the database gets the job. */
  candidates: readonly AgentRecord[];
  jobId: string;
  clientId: string;
  /** The API key the job is granted with (its usage is charged by whichever replica hears the outcome). */
  keyId: string | undefined;
  /** Slots the client may hold over the cluster (reservations + started jobs); 0: no limit checked. */
  clientLimit: number;
  /** When the token expires (ms). */
  tokenExpiresAtMs: number;
}

/** The outcome of {@link FleetStore.reserve}. */
export type SharedReservation =
  | { readonly outcome: 'reserved'; readonly agent: AgentRecord; readonly held: number }
  | { readonly outcome: 'busy'; readonly held: number }
  | { readonly outcome: 'client_limit'; readonly held: number };

/** A job another replica granted, as the replica hearing its outcome needs it. */
export interface SharedGrant {
  jobId: string;
  agentId: string;
  keyId: string | undefined;
  tokenExpiresAtMs: number;
}

/**
 * The fleet shared by coordinator replicas (`--store postgres`): the registry's shared facts live
 * in the database, each replica keeps an in-memory copy of every agent (scheduling stays in
 * memory), and reservations are taken atomically in the database. The coordinator service tells
 * it what happened on this replica's health streams; the request router reserves through it.
 */
export interface FleetStore {
  /** This replica's id (`fleet_agents.home_replica` of the agents homed here). */
  readonly replicaId: string;
  /** Reads every agent into the registry, starts listening, flushing and sweeping. */
  start(): Promise<void>;
  /** RegisterAgent was answered here: writes the registration at once. */
  registered(record: AgentRecord): Promise<void>;
  /**
   * A health update of an agent homed here was applied to the registry: its snapshot is written
   * at the next flush. Resolves once written when the update changed jobs (started, ended,
   * rejected), so the agent's ack comes after its slot is free for every replica.
   */
  healthApplied(record: AgentRecord, update: HealthUpdate): Promise<void> | undefined;
  /** The health stream homed here ended (the agent is offline unless it re-homed elsewhere). */
  streamClosed(record: AgentRecord): void;
  /** Something else of an agent this replica speaks for changed (its endpoint check). */
  snapshotChanged(record: AgentRecord): void;
  /** DeregisterAgent was answered here: no more traffic for it anywhere, its jobs dropped. */
  deregistered(record: AgentRecord): Promise<void>;
  /** Takes a slot atomically (see {@link SharedReservationRequest}). */
  reserve(request: SharedReservationRequest): Promise<SharedReservation>;
  /** Gives a reservation back (its token could not be signed). */
  release(jobId: string): Promise<void>;
  /** Jobs among `jobIds` granted to `agentId` by any replica (for outcomes reported here). */
  grantsOf(agentId: string, jobIds: readonly string[]): Promise<SharedGrant[]>;
  /** Writes what is pending now. */
  flush(): Promise<void>;
  /** Stops timers and listening, after a last flush. Does not close the database. */
  stop(): Promise<void>;
}
