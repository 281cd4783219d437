import type { stats } from '@titancompute/protocol';
import { NotFoundError } from '../errors.js';
import type { Store } from '../store/store.js';
import { hostnameSchema, statsSchema, validate } from '../validation/schemas.js';

/** StatsService: the latest memory stats uploaded per hostname. */
export function createStatsService(store: Store, now: () => number = Date.now): stats.StatsServiceImplementation {
  return {
    async uploadStats(request) {
      const hostname = validate(hostnameSchema, request.hostname, 'hostname');
      const s = validate(statsSchema, request.stats, 'stats');
      await store.putStats(hostname, { ...s, timestampMs: s.timestampMs || now() });
      return { success: true };
    },
    async getStats(request) {
      const hostname = validate(hostnameSchema, request.hostname, 'hostname');
      const s = await store.getStats(hostname);
      if (!s) throw new NotFoundError(`no stats uploaded for host ${hostname}`, { kind: 'host', id: hostname });
      return { hostname, stats: s };
    },
  };
}
