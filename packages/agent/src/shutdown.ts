import type { Logger, ServiceServer } from '@titancompute/server-kit';
import type { JobSlots } from './capacity/job-slots.js';
import type { Engine } from './engines/engine.js';
import type { CoordinatorLink } from './links/coordinator-link.js';
import type { InstanceManagerLink } from './links/instance-manager-link.js';
import type { AgentServiceHandle } from './service/agent-service.js';
import type { JobTracker } from './service/job-tracker.js';
import type { StatsSampler } from './stats/system-stats.js';
import type { ReplayCache } from './tokens/replay-cache.js';

/** How long streams cut at the drain deadline get to report their end before the agent goes on stopping. */
const CUT_STREAMS_GRACE_MS = 2000;

/** How long the draining health update waits for the coordinator's ack. */
const ANNOUNCE_DRAINING_TIMEOUT_MS = 1000;

/** The running parts an agent's shutdown stops, in order. */
export interface ShutdownParts {
  logger: Logger;
  /** How long in-flight streams may finish before they are cut. */
  drainTimeoutMs: number;
  /** Marks the agent draining (GetStatus, health updates and new streams see it). */
  markDraining(): void;
  server: Pick<ServiceServer, 'setServing' | 'shutdown'>;
  coordinatorLink: CoordinatorLink;
  /** The instance manager link, when there is one (it is created after the shutdown, which it may trigger). */
  instanceManagerLink: () => InstanceManagerLink | undefined;
  service: Pick<AgentServiceHandle, 'abortAll'>;
  slots: Pick<JobSlots, 'running' | 'queued'>;
  tracker: Pick<JobTracker, 'idle'>;
  stats: Pick<StatsSampler, 'stop'>;
  replayCache: Pick<ReplayCache, 'close'> | undefined;
  engine: Pick<Engine, 'close'>;
}

/** An agent's stop, once: see {@link createShutdown}. */
export interface Shutdown {
  /** Drains, deregisters and stops everything; later calls return the first call's promise. */
  stop(reason?: string): Promise<void>;
  /** Resolves with the reason once the agent has stopped. */
  readonly closed: Promise<string>;
}

/**
 * The agent's stop: takes no new work (NOT_SERVING, a draining update the coordinator acks),
 * lets in-flight streams finish up to the drain timeout and cuts the rest, then deregisters
 * from the coordinator and closes the server, the replay store and the engine.
 */
export function createShutdown(parts: ShutdownParts): Shutdown {
  const { logger, slots } = parts;
  let resolveClosed!: (reason: string) => void;
  const closed = new Promise<string>((resolve) => {
    resolveClosed = resolve;
  });
  let stopping: Promise<void> | undefined;

  /** Stops taking work and tells the coordinator and instance manager links. */
  async function refuseNewWork(reason: string): Promise<void> {
    logger.info({ reason, running: slots.running, queued: slots.queued, drainTimeoutMs: parts.drainTimeoutMs }, 'draining: taking no new work');
    parts.markDraining();
    parts.server.setServing(false);
    parts.instanceManagerLink()?.stop();
    await parts.coordinatorLink.announceDraining(ANNOUNCE_DRAINING_TIMEOUT_MS);
  }

  /** Waits for in-flight streams up to the drain timeout; cuts whatever is left then. */
  async function drainJobs(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      parts.tracker.idle().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), parts.drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      logger.warn({ running: slots.running, queued: slots.queued }, 'drain deadline reached; cancelling the remaining streams');
      parts.service.abortAll('agent drain deadline reached');
      await Promise.race([parts.tracker.idle(), new Promise((r) => setTimeout(r, CUT_STREAMS_GRACE_MS))]);
    }
  }

  /** Deregisters, then closes every part. */
  async function release(reason: string): Promise<void> {
    await parts.coordinatorLink.stop(reason);
    parts.stats.stop();
    await parts.server.shutdown();
    parts.replayCache?.close();
    await parts.engine.close();
  }

  return {
    closed,
    stop(reason = 'shutdown') {
      stopping ??= (async () => {
        await refuseNewWork(reason);
        await drainJobs();
        await release(reason);
        logger.info({ reason }, 'agent stopped');
        resolveClosed(reason);
      })();
      return stopping;
    },
  };
}
