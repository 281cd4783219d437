import type { JobSlots } from '../capacity/job-slots.js';

/** What {@link createJobEndWait} reads. */
export interface JobEndWaitOptions {
  /** The agent's slots (the coordinator schedules on `running + queued` against `maxConcurrent`). */
  slots: Pick<JobSlots, 'running' | 'queued' | 'maxConcurrent'>;
  /** Resolves once the coordinator has acknowledged every health update sent so far (or after its timeout). */
  whenAcked: () => Promise<void>;
}

/**
 * How long a finished job's last message waits for the coordinator to know that the job ended.
 *
 * A client that asks again the moment its stream ends must not be refused because the
 * coordinator still counts the slot the stream just freed. The end of a job is reported at once;
 * its done message waits for that report's ack only when that slot is the one the next request
 * would need: when, without the ends not acknowledged yet (this job's among them), the coordinator
 * would count no slot free. With another slot free as far as the coordinator knows, the done
 * message leaves at once (the ack takes a round trip to the coordinator: about 0.7 ms on
 * loopback, far more across a network, on every stream).
 *
 * Call the returned function after the job's slot was released and its end handed to the link.
 *
 * @example
 * ```ts
 * const jobEndReported = createJobEndWait({ slots, whenAcked: () => link.whenAcked(250) });
 * release();
 * tracker.finish(end);
 * await jobEndReported();
 * ```
 */
export function createJobEndWait(options: JobEndWaitOptions): () => Promise<void> {
  const { slots } = options;
  /** Jobs whose end the coordinator has not acknowledged yet. */
  let unacknowledgedEnds = 0;
  return () => {
    unacknowledgedEnds += 1;
    const acked = options.whenAcked().finally(() => {
      unacknowledgedEnds -= 1;
    });
    // Free as the coordinator counts them: the ends it has not acknowledged still hold their slots there.
    const freeForTheCoordinator = slots.maxConcurrent - slots.running - slots.queued - unacknowledgedEnds;
    if (freeForTheCoordinator >= 1) {
      acked.catch(() => undefined);
      return Promise.resolve();
    }
    return acked;
  };
}
