/** Options of {@link createGrantLedger}. */
export interface GrantLedgerOptions {
  /**
   * How long a granted job stays claimable after its token expired or after the agent last
   * listed it as active. Default 5 min.
   */
  graceMs?: number;
  /** How often expired grants are dropped. Default 5 s. */
  sweepIntervalMs?: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/**
 * The jobs this coordinator granted, per agent. An agent's `completed_jobs` count (breaker,
 * tokens/s average, metrics) only for job ids granted to that very agent, each once, so a
 * caller cannot report fake failures or fake throughput. A grant lives until its outcome is
 * reported, or until `graceMs` after its token expired (never started) or after the agent last
 * listed it in `active_job_ids` (a long job stays claimable while it runs).
 */
export interface GrantLedger {
  /** The coordinator granted `jobId` on `agentId`; its token expires at `expiresAtMs`. */
  grant(agentId: string, jobId: string, expiresAtMs: number): void;
  /** Whether `jobId` is granted to `agentId` here (and not yet completed). */
  has(agentId: string, jobId: string): boolean;
  /** The agent lists the job as running or queued: keeps it claimable. */
  touch(agentId: string, jobId: string): void;
  /** Takes the grant for a reported outcome: true once for a job granted to this agent, false otherwise. */
  complete(agentId: string, jobId: string): boolean;
  /** Grants held for an agent. */
  size(agentId: string): number;
  /** Drops expired grants now. */
  sweep(): void;
  /** Stops the sweeper. */
  stop(): void;
}

/**
 * Creates a {@link GrantLedger} with its own unref'd sweeper.
 *
 * @example
 * ```ts
 * const ledger = createGrantLedger();
 * ledger.grant('gpu-1', jobId, tokenExpiresAtMs);
 * ledger.complete('gpu-1', jobId); // true; a second call, or another agent's, is false
 * ```
 */
export function createGrantLedger(options: GrantLedgerOptions = {}): GrantLedger {
  const now = options.now ?? Date.now;
  const graceMs = options.graceMs ?? 300_000;
  const byAgent = new Map<string, Map<string, number>>();
  const sweep = () => {
    const t = now();
    for (const [agentId, jobs] of byAgent) {
      for (const [jobId, until] of jobs) if (until <= t) jobs.delete(jobId);
      if (jobs.size === 0) byAgent.delete(agentId);
    }
  };
  const timer = setInterval(sweep, options.sweepIntervalMs ?? 5000);
  timer.unref();
  return {
    grant(agentId, jobId, expiresAtMs) {
      let jobs = byAgent.get(agentId);
      if (!jobs) byAgent.set(agentId, (jobs = new Map()));
      jobs.set(jobId, Math.max(expiresAtMs, now()) + graceMs);
    },
    has(agentId, jobId) {
      return byAgent.get(agentId)?.has(jobId) ?? false;
    },
    touch(agentId, jobId) {
      const jobs = byAgent.get(agentId);
      if (jobs?.has(jobId)) jobs.set(jobId, Math.max(jobs.get(jobId)!, now() + graceMs));
    },
    complete(agentId, jobId) {
      const jobs = byAgent.get(agentId);
      const until = jobs?.get(jobId);
      if (until === undefined) return false;
      jobs!.delete(jobId);
      if (jobs!.size === 0) byAgent.delete(agentId);
      return until > now();
    },
    size(agentId) {
      return byAgent.get(agentId)?.size ?? 0;
    },
    sweep,
    stop() {
      clearInterval(timer);
    },
  };
}

/** What {@link recordGrants} needs of a grant: the agent, the job and the token's expiry (unix seconds). */
export interface RecordableGrant {
  agentId: string;
  jobId: string;
  expiresAt: number;
}

/**
 * Wraps a request router so every grant it hands out is recorded in `ledger`: only outcomes of
 * jobs really handed to an agent count. The trace context (if any) is passed through.
 *
 * @example
 * ```ts
 * const route = recordGrants(createRequestRouter(options), createGrantLedger());
 * ```
 */
export function recordGrants<I, G extends RecordableGrant, T = never>(
  route: (input: I, traceContext?: T) => Promise<G>,
  ledger: Pick<GrantLedger, 'grant'>,
): (input: I, traceContext?: T) => Promise<G> {
  const record = (grant: G) => {
    ledger.grant(grant.agentId, grant.jobId, grant.expiresAt * 1000);
    return grant;
  };
  // A reaction on the route's promise, not another async function around it (one frame less per request).
  return (input, traceContext) => route(input, traceContext).then(record);
}
