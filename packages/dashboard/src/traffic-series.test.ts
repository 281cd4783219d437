import { describe, expect, it } from '@jest/globals';
import { point } from './test-rows.js';
import { trafficSeries, trafficTotals } from './traffic-series.js';

describe('traffic series', () => {
  it('splits points into chart columns, TTFT gaps kept as null', () => {
    const s = trafficSeries([point(1, { requests: 2, ttftP50: 40, ttftP95: 90 }), point(2)]);
    expect(s.xs).toEqual([1, 2]);
    expect(s.requests).toEqual([2, 0]);
    expect(s.ttftP50).toEqual([40, null]);
  });

  it('totals the window and the last minute; the latest TTFT is the last second that had one', () => {
    const points = [
      ...Array.from({ length: 100 }, (_, i) => point(i, { requests: 1, tokens: 10 })),
      point(100, { ttftP50: 30, ttftP95: 80, busy: 2, errors: 1, completed: 3 }),
      point(101, { running: 4 }),
    ];
    const t = trafficTotals(points);
    expect(t).toMatchObject({ requests: 100, tokens: 1000, busy: 2, errors: 1, completed: 3, lastTtftP50: 30, lastTtftP95: 80, running: 4 });
    expect(t.requestsPerSecondLastMinute).toBeCloseTo(58 / 60);
    expect(t.tokensPerSecondLastMinute).toBeCloseTo(580 / 60);
    expect(trafficTotals([])).toMatchObject({ requests: 0, lastTtftP50: null, requestsPerSecondLastMinute: 0 });
  });
});
