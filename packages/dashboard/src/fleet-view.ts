/** The Fleet page's filtering, sorting and totals (pure: no DOM). */
import type { FleetRow } from './wire.js';

/** Columns the table sorts by. */
export type FleetSortKey = 'id' | 'state' | 'engine' | 'memory' | 'slots' | 'queue' | 'tokens' | 'rtt' | 'heartbeat';

/** Which rows the state chips show. */
export type FleetStateFilter = 'all' | 'healthy' | 'degraded' | 'draining' | 'offline' | 'unverified' | 'breaker-open';

/** The table's view: text filter, state filter and sort. */
export interface FleetQuery {
  text: string;
  state: FleetStateFilter;
  sort: FleetSortKey;
  descending: boolean;
}

/** Default view: every agent, by id. */
export const DEFAULT_FLEET_QUERY: FleetQuery = { text: '', state: 'all', sort: 'id', descending: false };

/** Order of states when sorting by state: the ones that need attention first. */
const STATE_RANK: Record<string, number> = { offline: 0, unverified: 1, draining: 2, 'half-open': 3, degraded: 4, healthy: 5 };

/** Used fraction of the memory that counts: VRAM over all GPUs, or RAM on CPU-only agents. */
export function memoryUsed(row: FleetRow): number {
  const total = row.cpuOnly ? row.totalRamMb : row.totalVramMb;
  const free = row.cpuOnly ? row.freeRamMb : row.freeVramMb;
  return total > 0 ? Math.min(1, Math.max(0, (total - free) / total)) : 0;
}

/** Slots in use: running jobs plus reservations, of `maxJobs`. */
export function slotsUsed(row: FleetRow): number {
  return row.runningJobs + row.reservedJobs;
}

/** Whether a row matches the text (id, endpoint, engine, models, state, GPU names; case-insensitive, every word). */
export function matchesText(row: FleetRow, text: string): boolean {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const haystack = [
    row.id,
    row.endpoint,
    row.engine,
    row.state,
    row.breaker === 'open' ? 'circuit-open breaker-open' : '',
    ...row.models,
    ...row.gpus.map((g) => g.name),
  ]
    .join(' ')
    .toLowerCase();
  return words.every((w) => haystack.includes(w));
}

/** Whether a row passes the state chip. */
export function matchesState(row: FleetRow, filter: FleetStateFilter): boolean {
  if (filter === 'all') return true;
  if (filter === 'breaker-open') return row.breaker === 'open';
  if (filter === 'degraded') return row.state === 'degraded' || row.state === 'half-open';
  return row.state === filter;
}

const sortValue = (row: FleetRow, key: FleetSortKey): number | string => {
  switch (key) {
    case 'id':
      return row.id;
    case 'state':
      return STATE_RANK[row.state] ?? 9;
    case 'engine':
      return row.engine;
    case 'memory':
      return memoryUsed(row);
    case 'slots':
      return row.maxJobs > 0 ? slotsUsed(row) / row.maxJobs : 0;
    case 'queue':
      return row.queuedJobs;
    case 'tokens':
      return row.tokensPerSecond ?? -1;
    case 'rtt':
      return row.rttMs;
    case 'heartbeat':
      return row.lastHeartbeatMs;
  }
};

/** The rows the table shows, in order (ties by id). */
export function viewFleet(rows: Iterable<FleetRow>, query: FleetQuery): FleetRow[] {
  const out: FleetRow[] = [];
  for (const row of rows) if (matchesState(row, query.state) && matchesText(row, query.text)) out.push(row);
  const dir = query.descending ? -1 : 1;
  out.sort((a, b) => {
    const va = sortValue(a, query.sort);
    const vb = sortValue(b, query.sort);
    const c = typeof va === 'string' ? va.localeCompare(vb as string) : va - (vb as number);
    return c !== 0 ? c * dir : a.id.localeCompare(b.id);
  });
  return out;
}

/** The fleet's totals for the tiles above the table. */
export interface FleetSummary {
  agents: number;
  healthy: number;
  degraded: number;
  draining: number;
  offline: number;
  unverified: number;
  breakerOpen: number;
  slotsUsed: number;
  slotsTotal: number;
  queued: number;
}

/** Totals over every row; slots count only agents that take work (not offline or draining). */
export function summarizeFleet(rows: Iterable<FleetRow>): FleetSummary {
  const s: FleetSummary = {
    agents: 0,
    healthy: 0,
    degraded: 0,
    draining: 0,
    offline: 0,
    unverified: 0,
    breakerOpen: 0,
    slotsUsed: 0,
    slotsTotal: 0,
    queued: 0,
  };
  for (const row of rows) {
    s.agents += 1;
    if (row.state === 'healthy') s.healthy += 1;
    else if (row.state === 'degraded' || row.state === 'half-open') s.degraded += 1;
    else if (row.state === 'draining') s.draining += 1;
    else if (row.state === 'offline') s.offline += 1;
    else if (row.state === 'unverified') s.unverified += 1;
    if (row.breaker === 'open') s.breakerOpen += 1;
    if (row.state !== 'offline' && row.state !== 'draining') {
      s.slotsUsed += slotsUsed(row);
      s.slotsTotal += row.maxJobs;
      s.queued += row.queuedJobs;
    }
  }
  return s;
}
