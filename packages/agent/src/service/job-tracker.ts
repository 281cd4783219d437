import type { JobOutcome } from '@titancompute/protocol';

/** Counters since the agent started. */
export interface JobTotals {
  /** Requests that reached the engine or the queue (accepted tokens). */
  requests: number;
  completed: number;
  failed: number;
  tokensGenerated: number;
  promptTokens: number;
}

/**
 * Which jobs are running or queued, which finished since the last health update, and the
 * counters reported by GetStatus and to the instance manager.
 */
export interface JobTracker {
  /** A job was accepted (queued or running). */
  start(jobId: string): void;
  /** A job ended (success: `error` ""). */
  finish(outcome: JobOutcome, promptTokens?: number): void;
  activeJobIds(): string[];
  /** Outcomes finished since the previous call (removed from the tracker). */
  takeCompleted(): JobOutcome[];
  readonly totals: Readonly<JobTotals>;
  /** Mean tokens/s of the last 20 successful jobs (0 before any). */
  readonly recentTokensPerSecond: number;
  /** Called after every start/finish. */
  onChange(listener: () => void): void;
  /** Resolves when no job is active (at once if none). */
  idle(): Promise<void>;
}

/** Creates a {@link JobTracker}. */
export function createJobTracker(): JobTracker {
  const active = new Map<string, number>();
  let completed: JobOutcome[] = [];
  const totals: JobTotals = { requests: 0, completed: 0, failed: 0, tokensGenerated: 0, promptTokens: 0 };
  const recent: number[] = [];
  const listeners: (() => void)[] = [];
  let idleWaiters: (() => void)[] = [];
  const changed = () => {
    if (active.size === 0) {
      const w = idleWaiters;
      idleWaiters = [];
      for (const f of w) f();
    }
    for (const l of listeners) l();
  };
  return {
    totals,
    get recentTokensPerSecond() {
      return recent.length === 0 ? 0 : recent.reduce((a, b) => a + b, 0) / recent.length;
    },
    start(jobId) {
      active.set(jobId, (active.get(jobId) ?? 0) + 1);
      totals.requests++;
      changed();
    },
    finish(outcome, promptTokens = 0) {
      const n = active.get(outcome.jobId) ?? 0;
      if (n <= 1) active.delete(outcome.jobId);
      else active.set(outcome.jobId, n - 1);
      completed.push(outcome);
      if (completed.length > 10_000) completed = completed.slice(-10_000);
      totals.tokensGenerated += outcome.tokensGenerated;
      totals.promptTokens += promptTokens;
      if (outcome.error === '') {
        totals.completed++;
        if (outcome.tokensPerSecond > 0) {
          recent.push(outcome.tokensPerSecond);
          if (recent.length > 20) recent.shift();
        }
      } else totals.failed++;
      changed();
    },
    activeJobIds() {
      return [...active.keys()];
    },
    takeCompleted() {
      const out = completed;
      completed = [];
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
