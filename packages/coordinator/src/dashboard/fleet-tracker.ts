import type { AgentRecord } from '../registry/agent-record.js';
import { isCpuOnly } from '../scheduler/scheduler.js';
import type { FleetGpu, FleetMessage, FleetRow } from './dashboard-wire.js';

/** Default {@link FleetTrackerOptions.goneTtlMs}: 5 minutes. */
export const DEFAULT_GONE_TTL_MS = 300_000;

/** Options of {@link createFleetTracker}. */
export interface FleetTrackerOptions {
  /** The registry's records now. */
  list: () => Iterable<AgentRecord>;
  /** How long the row of an agent the registry forgot (evicted) stays, offline. Default {@link DEFAULT_GONE_TTL_MS}. */
  goneTtlMs?: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/**
 * The Fleet page's rows and their changes. {@link FleetTracker.update} reads the registry and
 * answers only the rows that changed since the previous update (compared by their JSON), so a
 * thousand agents cost the browser only what moved. An agent the registry evicted keeps its
 * last row, `offline` and `gone`, for `goneTtlMs`.
 */
export interface FleetTracker {
  /** Reads the registry; the rows that changed and the ids removed since the last update. */
  update(): FleetMessage;
  /** Every row as of the last update (a `full` message). */
  snapshot(): FleetMessage;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const finiteOrNull = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? null : round1(n));

/** The row of a record: what the dashboard shows, never its credential or capabilities. */
export function fleetRow(record: AgentRecord): FleetRow {
  const gpus: FleetGpu[] = record.gpus.map((g) => ({
    index: g.index,
    name: g.name,
    memoryTotalMb: g.memoryTotalMb,
    memoryUsedMb: g.memoryUsedMb > 0 || g.memoryFreeMb <= 0 ? g.memoryUsedMb : Math.max(0, g.memoryTotalMb - g.memoryFreeMb),
    utilizationPercent: finiteOrNull(g.utilizationPercent),
    temperatureC: finiteOrNull(g.temperatureC),
  }));
  return {
    id: record.agentId,
    endpoint: record.endpoint,
    httpEndpoint: record.httpEndpoint,
    state: record.state(),
    breaker: record.breakerState(),
    gone: false,
    engine: record.engine,
    models: [...record.supportedModels].sort(),
    gpus,
    cpuOnly: isCpuOnly(record),
    totalVramMb: record.totalVramMb,
    freeVramMb: record.freeVramMb,
    totalRamMb: record.totalRamMb,
    freeRamMb: record.freeRamMb,
    cpuPercent: round1(record.cpuPercent),
    runningJobs: record.runningJobs,
    queuedJobs: record.queuedJobs,
    reservedJobs: record.reservedJobs,
    maxJobs: record.maxJobs,
    maxQueue: record.maxQueue,
    tokensPerSecond: finiteOrNull(record.tokensPerSecond),
    rttMs: round1(record.rttMs),
    lastHeartbeatMs: record.lastHeartbeatMs,
  };
}

interface Known {
  row: FleetRow;
  json: string;
  /** Local ms the registry stopped listing it. */
  goneAtMs?: number;
}

/**
 * Creates a {@link FleetTracker} over the registry.
 *
 * @example
 * ```ts
 * const fleet = createFleetTracker({ list: () => registry.list() });
 * setInterval(() => broadcast('fleet', fleet.update()), 1000);
 * ```
 */
export function createFleetTracker(options: FleetTrackerOptions): FleetTracker {
  const now = options.now ?? Date.now;
  const goneTtlMs = options.goneTtlMs ?? DEFAULT_GONE_TTL_MS;
  const known = new Map<string, Known>();

  return {
    update() {
      const t = now();
      const rows: FleetRow[] = [];
      const removed: string[] = [];
      const seen = new Set<string>();
      for (const record of options.list()) {
        const row = fleetRow(record);
        seen.add(row.id);
        const json = JSON.stringify(row);
        const before = known.get(row.id);
        if (before?.json === json) continue;
        known.set(row.id, { row, json });
        rows.push(row);
      }
      for (const [id, k] of known) {
        if (seen.has(id)) continue;
        if (k.goneAtMs === undefined) {
          const row: FleetRow = { ...k.row, state: 'offline', gone: true, runningJobs: 0, queuedJobs: 0, reservedJobs: 0 };
          known.set(id, { row, json: JSON.stringify(row), goneAtMs: t });
          rows.push(row);
        } else if (t - k.goneAtMs >= goneTtlMs) {
          known.delete(id);
          removed.push(id);
        }
      }
      return { full: false, rows, removed, at: t };
    },
    snapshot() {
      return { full: true, rows: [...known.values()].map((k) => k.row), removed: [], at: now() };
    },
  };
}
