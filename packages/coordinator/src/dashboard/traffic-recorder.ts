import type { CoordinatorMetricsSink, DecisionOutcome } from '../metrics.js';
import type { TrafficPoint } from './dashboard-wire.js';

/** Default {@link TrafficRecorderOptions.windowSeconds}: 15 minutes. */
export const DEFAULT_TRAFFIC_WINDOW_SECONDS = 900;

/** Most TTFT samples kept for one second (a uniform reservoir beyond that). */
const MAX_TTFT_SAMPLES_PER_SECOND = 4096;

/** Job errors that are not failures: the client went away, or the agent was full. */
const NOT_FAILED = new Set(['', 'cancelled', 'busy']);

/** What the recorder reads of a finished job (a `JobOutcome`). */
export interface RecordedOutcome {
  error: string;
  tokensGenerated: number;
  timeToFirstTokenMs: number;
}

/** Jobs on the fleet now, sampled as each second closes. */
export interface FleetLoad {
  running: number;
  queued: number;
}

/** Options of {@link createTrafficRecorder}. */
export interface TrafficRecorderOptions {
  /** Seconds kept. Default {@link DEFAULT_TRAFFIC_WINDOW_SECONDS}. */
  windowSeconds?: number;
  /** Jobs running and queued on the fleet now. Default: none. */
  load?: () => FleetLoad;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/**
 * The coordinator's traffic, one point per second over a sliding window (a ring buffer):
 * requests, grants, busy answers, errors, finished jobs, tokens, TTFT p50/p95 and the fleet's
 * running/queued jobs. Feed it with {@link recordTraffic} (the metrics sink) and the registry's
 * job outcomes; {@link TrafficRecorder.flush} closes the seconds that have ended.
 */
export interface TrafficRecorder {
  readonly windowSeconds: number;
  /** An inference request arrived. */
  request(): void;
  /** A scheduling decision was made. */
  decision(outcome: DecisionOutcome): void;
  /** An agent reported a job finished. */
  jobFinished(outcome: RecordedOutcome): void;
  /** Closes every second that has ended (empty ones included) and returns their points, oldest first. */
  flush(): TrafficPoint[];
  /** The window's closed seconds, oldest first (at most `windowSeconds`); seconds still open are not closed here. */
  history(): TrafficPoint[];
}

interface OpenSecond {
  t: number;
  requests: number;
  scheduled: number;
  busy: number;
  errors: number;
  completed: number;
  tokens: number;
  ttft: number[];
  ttftSeen: number;
}

const emptySecond = (t: number): OpenSecond => ({ t, requests: 0, scheduled: 0, busy: 0, errors: 0, completed: 0, tokens: 0, ttft: [], ttftSeen: 0 });

/** The `p` quantile (0–1) of sorted values, nearest rank. */
function quantile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? null;
}

/**
 * Creates a {@link TrafficRecorder}.
 *
 * @example
 * ```ts
 * const traffic = createTrafficRecorder({ load: () => ({ running: 3, queued: 0 }) });
 * traffic.request();
 * traffic.decision('scheduled');
 * setInterval(() => console.log(traffic.flush()), 1000);
 * ```
 */
export function createTrafficRecorder(options: TrafficRecorderOptions = {}): TrafficRecorder {
  const windowSeconds = Math.max(1, Math.floor(options.windowSeconds ?? DEFAULT_TRAFFIC_WINDOW_SECONDS));
  const now = options.now ?? Date.now;
  const ring: (TrafficPoint | undefined)[] = new Array(windowSeconds);
  let newest = -1;
  let count = 0;
  let open = emptySecond(Math.floor(now() / 1000));

  /** The open second, after closing any that ended. */
  const current = () => {
    const t = Math.floor(now() / 1000);
    if (t !== open.t) close(t);
    return open;
  };
  const push = (point: TrafficPoint) => {
    newest = (newest + 1) % windowSeconds;
    ring[newest] = point;
    count = Math.min(windowSeconds, count + 1);
  };
  let closed: TrafficPoint[] = [];
  /** Closes the open second and every empty one up to (not including) `t`. */
  const close = (t: number) => {
    if (t <= open.t) return;
    const load = options.load?.() ?? { running: 0, queued: 0 };
    const sorted = open.ttft.sort((a, b) => a - b);
    const point: TrafficPoint = {
      t: open.t,
      requests: open.requests,
      scheduled: open.scheduled,
      busy: open.busy,
      errors: open.errors,
      completed: open.completed,
      tokens: open.tokens,
      ttftP50: quantile(sorted, 0.5),
      ttftP95: quantile(sorted, 0.95),
      running: load.running,
      queued: load.queued,
    };
    push(point);
    closed.push(point);
    // Seconds without anything (the process slept, or nobody asked): zeros, the same load.
    for (let s = Math.max(open.t + 1, t - windowSeconds); s < t; s += 1) {
      const empty: TrafficPoint = { ...emptyPoint(s), running: load.running, queued: load.queued };
      push(empty);
      closed.push(empty);
    }
    if (closed.length > windowSeconds) closed = closed.slice(-windowSeconds);
    open = emptySecond(t);
  };

  return {
    windowSeconds,
    request() {
      current().requests += 1;
    },
    decision(outcome) {
      const s = current();
      if (outcome === 'scheduled') s.scheduled += 1;
      else if (outcome === 'busy' || outcome === 'client_limit' || outcome === 'quota') s.busy += 1;
      else if (outcome === 'no_agent' || outcome === 'error') s.errors += 1;
    },
    jobFinished(outcome) {
      const s = current();
      s.completed += 1;
      if (!NOT_FAILED.has(outcome.error)) s.errors += 1;
      if (Number.isFinite(outcome.tokensGenerated) && outcome.tokensGenerated > 0) s.tokens += outcome.tokensGenerated;
      const ttft = outcome.timeToFirstTokenMs;
      if (outcome.error === '' && Number.isFinite(ttft) && ttft > 0) {
        s.ttftSeen += 1;
        if (s.ttft.length < MAX_TTFT_SAMPLES_PER_SECOND) s.ttft.push(ttft);
        else {
          // Reservoir sampling keeps the quantiles unbiased under a flood.
          const slot = Math.floor(Math.random() * s.ttftSeen);
          if (slot < MAX_TTFT_SAMPLES_PER_SECOND) s.ttft[slot] = ttft;
        }
      }
    },
    flush() {
      current();
      const out = closed;
      closed = [];
      return out;
    },
    history() {
      // Only what flush() already handed out (or will hand out next): a viewer joining between
      // ticks never gets a second twice.
      const out: TrafficPoint[] = [];
      for (let i = count - 1; i >= 0; i -= 1) {
        const point = ring[(newest - i + windowSeconds) % windowSeconds];
        if (point) out.push(point);
      }
      return out;
    },
  };
}

/** Jobs running and queued over the agents that are online. */
export function fleetLoad(records: Iterable<{ online: boolean; runningJobs: number; queuedJobs: number }>): FleetLoad {
  let running = 0;
  let queued = 0;
  for (const r of records) {
    if (!r.online) continue;
    running += r.runningJobs;
    queued += r.queuedJobs;
  }
  return { running, queued };
}

function emptyPoint(t: number): TrafficPoint {
  return { t, requests: 0, scheduled: 0, busy: 0, errors: 0, completed: 0, tokens: 0, ttftP50: null, ttftP95: null, running: 0, queued: 0 };
}

/**
 * A metrics sink that also feeds `traffic` (requests and scheduling decisions); everything
 * else is the wrapped sink's.
 *
 * @example
 * ```ts
 * const metrics = recordTraffic(createCoordinatorMetrics(registry), traffic);
 * ```
 */
export function recordTraffic(sink: CoordinatorMetricsSink, traffic: TrafficRecorder): CoordinatorMetricsSink {
  const request: CoordinatorMetricsSink['request'] = (transport) => {
    sink.request(transport);
    traffic.request();
  };
  const decision: CoordinatorMetricsSink['decision'] = (outcome, latencyMs) => {
    sink.decision(outcome, latencyMs);
    traffic.decision(outcome);
  };
  // A proxy, not a copy: whatever else the sink has (now or later) stays the sink's own.
  return new Proxy(sink, {
    get(target, property) {
      if (property === 'request') return request;
      if (property === 'decision') return decision;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
