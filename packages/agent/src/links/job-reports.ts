import type { JobOutcome } from '@titancompute/protocol';

/** Most finished jobs kept for re-sending until the coordinator acknowledges them (oldest dropped first). */
export const MAX_UNACKED_OUTCOMES = 1000;

/**
 * The job reports of one coordinator link: every health update gets a timestamp above the
 * previous one's, and carries every finished job (and every refused token's job id) the
 * coordinator has not acknowledged yet. An ack echoing timestamp E covers every update up to E
 * (one ordered stream). The ledger outlives streams and coordinators: what a broken stream (or a
 * coordinator that died) never acknowledged rides on the next stream's updates, to whichever
 * coordinator is home then.
 */
export interface JobReportLedger {
  /**
   * Stamps the next update: returns its timestamp and the finished jobs it carries (`completed`,
   * just taken, plus every earlier one still unacknowledged), and the same for the job ids of
   * refused tokens (`rejected`; releasing a reservation twice is harmless).
   */
  stamp(completed: readonly JobOutcome[], rejected?: readonly string[]): { timestamp: number; completedJobs: JobOutcome[]; rejectedJobIds: string[] };
  /** Timestamp of the latest stamped update (0 before the first). */
  readonly lastSentTs: number;
  /** The coordinator acknowledged the update stamped `echo` (and so every earlier one). */
  ack(echo: number): void;
  /** Resolves once the update stamped `ts` (or a later one) is acknowledged (never, if none is). */
  ackOf(ts: number): Promise<void>;
  /** Resolves once every update stamped so far is acknowledged, or after `timeoutMs`. */
  whenAllAcked(timeoutMs: number): Promise<void>;
}

/** Creates a {@link JobReportLedger}. */
export function createJobReportLedger(): JobReportLedger {
  let lastSentTs = 0;
  // Finished jobs not yet acknowledged, with the timestamp of the first update that carried them.
  let unacked: { outcome: JobOutcome; sentTs: number }[] = [];
  // Job ids of refused tokens not yet acknowledged, likewise.
  let unackedRejected: { jobId: string; sentTs: number }[] = [];
  const ackWaiters = new Map<number, () => void>();
  /** Highest update timestamp the coordinator acked, and who waits for one (see whenAllAcked). */
  let ackedTs = 0;
  let ackListeners: { ts: number; resolve: () => void }[] = [];

  return {
    get lastSentTs() {
      return lastSentTs;
    },
    stamp(completed, rejected = []) {
      let ts = Date.now();
      if (ts <= lastSentTs) ts = lastSentTs + 1;
      lastSentTs = ts;
      for (const outcome of completed) unacked.push({ outcome, sentTs: ts });
      for (const jobId of rejected) unackedRejected.push({ jobId, sentTs: ts });
      // A coordinator that never acks must not make every update (and these lists) grow forever.
      if (unacked.length > MAX_UNACKED_OUTCOMES) unacked = unacked.slice(-MAX_UNACKED_OUTCOMES);
      if (unackedRejected.length > MAX_UNACKED_OUTCOMES) unackedRejected = unackedRejected.slice(-MAX_UNACKED_OUTCOMES);
      return { timestamp: ts, completedJobs: unacked.map((u) => u.outcome), rejectedJobIds: unackedRejected.map((u) => u.jobId) };
    },
    ack(echo) {
      // An ack covers every earlier update too (one sent to a coordinator that died never gets its own).
      for (const [ts, resolve] of ackWaiters) {
        if (ts > echo) continue;
        resolve();
        ackWaiters.delete(ts);
      }
      if (echo > ackedTs) ackedTs = echo;
      if (ackListeners.length > 0) {
        for (const l of ackListeners) if (l.ts <= echo) l.resolve();
        ackListeners = ackListeners.filter((l) => l.ts > echo);
      }
      // Not only when the ack is for the latest update: under steady load the next update is
      // always sent before the previous one's ack arrives (the list then grew without end).
      const covered = unacked.findIndex((u) => u.sentTs > echo);
      if (covered !== 0) unacked = covered === -1 ? [] : unacked.slice(covered);
      const coveredRejected = unackedRejected.findIndex((u) => u.sentTs > echo);
      if (coveredRejected !== 0) unackedRejected = coveredRejected === -1 ? [] : unackedRejected.slice(coveredRejected);
    },
    ackOf(ts) {
      return new Promise<void>((resolve) => ackWaiters.set(ts, resolve));
    },
    whenAllAcked(timeoutMs) {
      const ts = lastSentTs;
      if (ts <= ackedTs) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        ackListeners.push({
          ts,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}
