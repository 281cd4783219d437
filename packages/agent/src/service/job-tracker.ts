import type { JobOutcome } from '@titancompute/protocol';

/** Counters since the agent started. */
export interface JobTotals {
  /** Requests that reached the engine or the queue (accepted tokens). */
  requests: number;
  completed: number;
  failed: number;
  /** Jobs the client cancelled (Ctrl-C, abort): not failures. */
  cancelled: number;
  tokensGenerated: number;
  promptTokens: number;
}

/** What changed in a {@link JobTracker}: a job was accepted, ended, or its token refused before it started. */
export type JobChange = 'start' | 'finish' | 'reject';

/**
 * Which jobs are running or queued, which started, finished or were rejected since the last
 * health update, and the counters reported by GetStatus and to the instance manager.
 */
export interface JobTracker {
  /** A job was accepted (queued or running). */
  start(jobId: string): void;
  /** A job ended (success: `error` ""); its `promptTokens` count towards the totals. */
  finish(outcome: JobOutcome): void;
  /**
   * The session token of `jobId` verified (its signature is the coordinator's) but was refused
   * before any job started (wrong model, limits…): the coordinator may free its slot at once.
   */
  reject(jobId: string): void;
  activeJobIds(): string[];
  /** Outcomes finished since the previous call (removed from the tracker). */
  takeCompleted(): JobOutcome[];
  /** Ids of jobs accepted since the previous call. */
  takeStarted(): string[];
  /** Ids of jobs rejected since the previous call. */
  takeRejected(): string[];
  readonly totals: Readonly<JobTotals>;
  /** Mean tokens/s of the last 20 successful jobs (0 before any). */
  readonly recentTokensPerSecond: number;
  /** Called after every start, finish and reject, with which it was. */
  onChange(listener: (change: JobChange) => void): void;
  /** Resolves when no job is active (at once if none). */
  idle(): Promise<void>;
}

/** Creates a {@link JobTracker}. */
export function createJobTracker(): JobTracker {
  const active = new Map<string, number>();
  let completed: JobOutcome[] = [];
  let started: string[] = [];
  let rejected: string[] = [];
  const MAX_PENDING = 10_000;
  const totals: JobTotals = { requests: 0, completed: 0, failed: 0, cancelled: 0, tokensGenerated: 0, promptTokens: 0 };
  const recent: number[] = [];
  const listeners: ((change: JobChange) => void)[] = [];
  let idleWaiters: (() => void)[] = [];
  const changed = (change: JobChange) => {
    if (active.size === 0) {
      const w = idleWaiters;
      idleWaiters = [];
      for (const f of w) f();
    }
    for (const l of listeners) l(change);
  };
  return {
    totals,
    get recentTokensPerSecond() {
      return recent.length === 0 ? 0 : recent.reduce((a, b) => a + b, 0) / recent.length;
    },
    start(jobId) {
      active.set(jobId, (active.get(jobId) ?? 0) + 1);
      started.push(jobId);
      if (started.length > MAX_PENDING) started = started.slice(-MAX_PENDING);
      totals.requests++;
      changed('start');
    },
    finish(outcome) {
      const n = active.get(outcome.jobId) ?? 0;
      if (n <= 1) active.delete(outcome.jobId);
      else active.set(outcome.jobId, n - 1);
      completed.push(outcome);
      if (completed.length > MAX_PENDING) completed = completed.slice(-MAX_PENDING);
      totals.tokensGenerated += outcome.tokensGenerated;
      totals.promptTokens += outcome.promptTokens;
      if (outcome.error === '') {
        totals.completed++;
        if (outcome.tokensPerSecond > 0) {
          recent.push(outcome.tokensPerSecond);
          if (recent.length > 20) recent.shift();
        }
      } else if (outcome.error === 'cancelled') totals.cancelled++;
      else totals.failed++;
      changed('finish');
    },
    reject(jobId) {
      if (rejected.includes(jobId)) return;
      rejected.push(jobId);
      if (rejected.length > MAX_PENDING) rejected = rejected.slice(-MAX_PENDING);
      changed('reject');
    },
    activeJobIds() {
      return [...active.keys()];
    },
    takeCompleted() {
      const out = completed;
      completed = [];
      return out;
    },
    takeStarted() {
      const out = started;
      started = [];
      return out;
    },
    takeRejected() {
      const out = rejected;
      rejected = [];
      return out;
    },
    onChange(listener) {
      listeners.push(listener);
    },
    idle() {
      if (active.size === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}
