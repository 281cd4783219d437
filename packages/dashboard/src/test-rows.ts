/** Rows and points for the tests of the pure modules (not part of the app bundle: nothing imports it but tests). */
import type { FleetRow, TrafficPoint } from './wire.js';

/** A healthy CPU-only agent row; `over` changes any field. */
export function row(id: string, over: Partial<FleetRow> = {}): FleetRow {
  return {
    id,
    endpoint: `10.0.0.${id.length}:50052`,
    httpEndpoint: '',
    state: 'healthy',
    breaker: 'closed',
    gone: false,
    engine: 'llama-cpp',
    models: ['tiny'],
    gpus: [],
    cpuOnly: true,
    totalVramMb: 0,
    freeVramMb: 0,
    totalRamMb: 16_000,
    freeRamMb: 8_000,
    cpuPercent: 10,
    runningJobs: 0,
    queuedJobs: 0,
    reservedJobs: 0,
    maxJobs: 4,
    maxQueue: 8,
    tokensPerSecond: null,
    rttMs: 1,
    lastHeartbeatMs: 1000,
    ...over,
  };
}

/** A quiet second; `over` changes any field. */
export function point(t: number, over: Partial<TrafficPoint> = {}): TrafficPoint {
  return { t, requests: 0, scheduled: 0, busy: 0, errors: 0, completed: 0, tokens: 0, ttftP50: null, ttftP95: null, running: 0, queued: 0, ...over };
}
