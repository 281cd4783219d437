/** The Traffic page's series and totals from the per-second points (pure: no DOM). */
import type { TrafficPoint } from './wire.js';

/** Columns for the charts: x (unix seconds) and one array per series. */
export interface TrafficSeries {
  xs: number[];
  requests: number[];
  scheduled: number[];
  ttftP50: (number | null)[];
  ttftP95: (number | null)[];
  tokens: number[];
  busy: number[];
  errors: number[];
  running: number[];
  queued: number[];
}

/** Splits the points into chart columns. */
export function trafficSeries(points: readonly TrafficPoint[]): TrafficSeries {
  const s: TrafficSeries = { xs: [], requests: [], scheduled: [], ttftP50: [], ttftP95: [], tokens: [], busy: [], errors: [], running: [], queued: [] };
  for (const p of points) {
    s.xs.push(p.t);
    s.requests.push(p.requests);
    s.scheduled.push(p.scheduled);
    s.ttftP50.push(p.ttftP50);
    s.ttftP95.push(p.ttftP95);
    s.tokens.push(p.tokens);
    s.busy.push(p.busy);
    s.errors.push(p.errors);
    s.running.push(p.running);
    s.queued.push(p.queued);
  }
  return s;
}

/** Totals over the window, and the latest values. */
export interface TrafficTotals {
  requests: number;
  tokens: number;
  completed: number;
  busy: number;
  errors: number;
  /** Most recent second with a TTFT. */
  lastTtftP50: number | null;
  lastTtftP95: number | null;
  /** Requests per second over the last minute. */
  requestsPerSecondLastMinute: number;
  /** Tokens per second over the last minute. */
  tokensPerSecondLastMinute: number;
  running: number;
}

/** Sums the window; "last minute" is the last 60 points. */
export function trafficTotals(points: readonly TrafficPoint[]): TrafficTotals {
  const t: TrafficTotals = {
    requests: 0,
    tokens: 0,
    completed: 0,
    busy: 0,
    errors: 0,
    lastTtftP50: null,
    lastTtftP95: null,
    requestsPerSecondLastMinute: 0,
    tokensPerSecondLastMinute: 0,
    running: points.at(-1)?.running ?? 0,
  };
  for (const p of points) {
    t.requests += p.requests;
    t.tokens += p.tokens;
    t.completed += p.completed;
    t.busy += p.busy;
    t.errors += p.errors;
    if (p.ttftP50 !== null) {
      t.lastTtftP50 = p.ttftP50;
      t.lastTtftP95 = p.ttftP95;
    }
  }
  const minute = points.slice(-60);
  if (minute.length > 0) {
    t.requestsPerSecondLastMinute = minute.reduce((n, p) => n + p.requests, 0) / minute.length;
    t.tokensPerSecondLastMinute = minute.reduce((n, p) => n + p.tokens, 0) / minute.length;
  }
  return t;
}
