import { describe, expect, it } from '@jest/globals';
import type { CoordinatorMetricsSink } from '../metrics.js';
import { createTrafficRecorder, fleetLoad, recordTraffic } from './traffic-recorder.js';

const outcome = (ttft: number, tokens = 10, error = '') => ({ error, tokensGenerated: tokens, timeToFirstTokenMs: ttft });

describe('traffic recorder', () => {
  it('closes one point per second with counts, TTFT p50/p95 and the fleet load', () => {
    let t = 1_000_000;
    const traffic = createTrafficRecorder({ now: () => t, load: () => ({ running: 3, queued: 1 }) });
    for (let i = 0; i < 5; i += 1) traffic.request();
    traffic.decision('scheduled');
    traffic.decision('scheduled');
    traffic.decision('busy');
    traffic.decision('client_limit');
    traffic.decision('quota');
    traffic.decision('no_agent');
    traffic.decision('invalid');
    for (let ms = 1; ms <= 100; ms += 1) traffic.jobFinished(outcome(ms, 2));
    traffic.jobFinished(outcome(5000, 4, 'engine_error'));
    traffic.jobFinished(outcome(0, 1, 'cancelled'));
    expect(traffic.flush()).toEqual([]); // the second is still open
    t += 1000;
    const [point, ...rest] = traffic.flush();
    expect(rest).toEqual([]);
    expect(point).toEqual({
      t: 1000,
      requests: 5,
      scheduled: 2,
      busy: 3,
      errors: 2, // no_agent + the engine error; cancelled is no failure, invalid is the client's
      completed: 102,
      tokens: 205,
      ttftP50: 50,
      ttftP95: 95,
      running: 3,
      queued: 1,
    });
    expect(traffic.history()).toEqual([point]);
  });

  it('fills quiet seconds with zeros and keeps only the window', () => {
    let t = 0;
    const traffic = createTrafficRecorder({ now: () => t, windowSeconds: 10 });
    traffic.request();
    t = 4500;
    const points = traffic.flush();
    expect(points.map((p) => [p.t, p.requests])).toEqual([
      [0, 1],
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    expect(points[1]!.ttftP50).toBeNull();
    t = 60_000;
    traffic.request();
    t = 61_000;
    traffic.flush();
    const history = traffic.history();
    expect(history).toHaveLength(10);
    expect(history.map((p) => p.t)).toEqual([51, 52, 53, 54, 55, 56, 57, 58, 59, 60]);
    expect(history.at(-1)!.requests).toBe(1);
  });

  it('keeps TTFT quantiles bounded under a flood (reservoir)', () => {
    let t = 0;
    const traffic = createTrafficRecorder({ now: () => t });
    for (let i = 0; i < 50_000; i += 1) traffic.jobFinished(outcome(i % 2 === 0 ? 10 : 20));
    t = 1000;
    const [point] = traffic.flush();
    expect(point!.completed).toBe(50_000);
    expect([10, 20]).toContain(point!.ttftP50);
    expect(point!.ttftP95).toBe(20);
  });

  it('recordTraffic feeds requests and decisions and leaves the rest to the wrapped sink', () => {
    const calls: string[] = [];
    const sink = {
      prometheus: { marker: true },
      request: (transport: string) => calls.push(`request:${transport}`),
      decision: (outcome: string, latency?: number) => calls.push(`decision:${outcome}:${latency}`),
      jobFinished: (error: string) => calls.push(`job:${error}`),
      scheduledTotal: () => 7,
    } as unknown as CoordinatorMetricsSink;
    let t = 0;
    const traffic = createTrafficRecorder({ now: () => t });
    const wrapped = recordTraffic(sink, traffic);
    wrapped.request('grpc');
    wrapped.decision('scheduled', 1.5);
    wrapped.jobFinished('');
    expect(wrapped.scheduledTotal()).toBe(7);
    expect(wrapped.prometheus).toBe(sink.prometheus);
    expect(calls).toEqual(['request:grpc', 'decision:scheduled:1.5', 'job:']);
    t = 1000;
    expect(traffic.flush()[0]).toMatchObject({ requests: 1, scheduled: 1, completed: 0 });
  });

  it('fleetLoad sums running and queued jobs of online agents', () => {
    expect(
      fleetLoad([
        { online: true, runningJobs: 2, queuedJobs: 1 },
        { online: false, runningJobs: 5, queuedJobs: 5 },
        { online: true, runningJobs: 1, queuedJobs: 0 },
      ]),
    ).toEqual({ running: 3, queued: 1 });
  });
});
