import type { Logger } from '@titancompute/server-kit';
import type { Store } from '../store/store.js';
import type { Registry } from './registry.js';

/** Options of {@link startSweeper}. */
export interface SweeperOptions {
  registry: Registry;
  store: Store;
  intervalMs: number;
  /** Events kept for resuming subscribers. */
  eventRetention: number;
  logger: Logger;
}

/**
 * Every `intervalMs`: kills stale instances (REMOVED with reason STALE, descendants
 * PARENT_DIED) and prunes events beyond the retention. Several replicas may sweep the same
 * PostgreSQL database: the sweep only flips rows that are still alive and still stale, in
 * one transaction, so nothing is emitted twice. Returns a stop function that waits for a
 * sweep in progress.
 */
export function startSweeper(options: SweeperOptions): () => Promise<void> {
  let running: Promise<void> | undefined;
  let ticks = 0;
  const tick = () => {
    if (running) return;
    running = (async () => {
      const killed = await options.registry.sweep();
      if (killed.length > 0) options.logger.info({ killed: killed.length, ids: killed.slice(0, 20) }, 'swept stale instances');
      if (ticks++ % 10 === 0) await options.store.pruneEvents(options.eventRetention);
    })()
      .catch((err: unknown) => options.logger.warn({ err }, 'sweep failed'))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
