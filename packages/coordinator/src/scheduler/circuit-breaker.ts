/** Breaker states: closed (normal), open (no traffic), half-open (probing). */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Thresholds of a {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. Default 3. */
  failureThreshold?: number;
  /** How long the breaker stays open before it lets probes through (half-open). Default 30 s. */
  openDurationMs?: number;
  /** Consecutive successes in half-open that close it again. Default 2. */
  successThreshold?: number;
}

/** Resolved breaker thresholds. */
export type ResolvedBreakerOptions = Required<CircuitBreakerOptions>;

/**
 * A breaker's state as data (shared by replicas on PostgreSQL: the replica an agent's health
 * stream is homed on feeds the breaker, the others copy it). `openedAtMs` is wall-clock ms.
 */
export interface BreakerSnapshot {
  state: BreakerState;
  failures: number;
  successes: number;
  openedAtMs: number;
}

/** Default thresholds (v1's: 3 failures → open 30 s → half-open → 2 successes → closed). */
export const DEFAULT_BREAKER_OPTIONS: ResolvedBreakerOptions = { failureThreshold: 3, openDurationMs: 30_000, successThreshold: 2 };

/**
 * A per-agent circuit breaker fed by real signals: failed jobs the agent reports and dropped
 * health streams count as failures, successful jobs as successes. Time is passed in, so it
 * is deterministic in tests and simulations.
 *
 * @example
 * ```ts
 * const breaker = new CircuitBreaker({ failureThreshold: 3, openDurationMs: 30_000, successThreshold: 2 });
 * breaker.recordFailure(Date.now());
 * breaker.state(Date.now()); // 'closed' until the third consecutive failure
 * ```
 */
export class CircuitBreaker {
  private readonly options: ResolvedBreakerOptions;
  private current: BreakerState = 'closed';
  private failures = 0;
  private successes = 0;
  private openedAt = 0;

  constructor(options: CircuitBreakerOptions = {}) {
    this.options = { ...DEFAULT_BREAKER_OPTIONS, ...options };
  }

  /** The state at `nowMs`; an open breaker turns half-open once its open duration has passed. */
  state(nowMs: number): BreakerState {
    if (this.current === 'open' && nowMs - this.openedAt >= this.options.openDurationMs) {
      this.current = 'half-open';
      this.successes = 0;
    }
    return this.current;
  }

  /** True while closed (no clock needed: the hot path of scheduling). */
  get closed(): boolean {
    return this.current === 'closed';
  }

  /** Whether traffic may be sent (closed or half-open). */
  allows(nowMs: number): boolean {
    return this.state(nowMs) !== 'open';
  }

  /** A job succeeded. */
  recordSuccess(nowMs: number): void {
    const state = this.state(nowMs);
    this.failures = 0;
    if (state === 'half-open') {
      this.successes += 1;
      if (this.successes >= this.options.successThreshold) {
        this.current = 'closed';
        this.successes = 0;
      }
    }
  }

  /** A job failed or the agent's health stream dropped. */
  recordFailure(nowMs: number): void {
    const state = this.state(nowMs);
    if (state === 'half-open') {
      this.open(nowMs);
      return;
    }
    if (state === 'open') return;
    this.failures += 1;
    if (this.failures >= this.options.failureThreshold) this.open(nowMs);
  }

  /** Its state as data (see {@link BreakerSnapshot}). */
  snapshot(): BreakerSnapshot {
    return { state: this.current, failures: this.failures, successes: this.successes, openedAtMs: this.openedAt };
  }

  /** Takes the state another replica's breaker of the same agent had (see {@link BreakerSnapshot}). */
  restore(snapshot: BreakerSnapshot): void {
    this.current = snapshot.state;
    this.failures = snapshot.failures;
    this.successes = snapshot.successes;
    this.openedAt = snapshot.openedAtMs;
  }

  private open(nowMs: number): void {
    this.current = 'open';
    this.openedAt = nowMs;
    this.failures = 0;
    this.successes = 0;
  }
}
