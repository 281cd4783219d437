import { describe, expect, it } from '@jest/globals';
import { formatResetDuration, SlidingWindow } from './sliding-window.js';

describe('SlidingWindow', () => {
  it('sums what was added in the last minute and forgets what left it', () => {
    const w = new SlidingWindow(60_000);
    w.add(1000, 1);
    w.add(2000, 5);
    w.add(30_000, 2);
    expect(w.used(30_000)).toBe(8);
    expect(w.used(61_000)).toBe(7); // the event at 1000 left at 61 000 (exactly one window later)
    expect(w.used(62_000)).toBe(2);
    expect(w.used(90_000)).toBe(0);
    expect(w.isEmpty(90_000)).toBe(true);
  });

  it('says when the window lets the next request through: the time until the sum drops below the limit', () => {
    const w = new SlidingWindow(60_000);
    for (const t of [0, 10_000, 20_000]) w.add(t, 1);
    expect(w.msUntilBelow(4, 25_000)).toBe(0);
    expect(w.msUntilBelow(3, 25_000)).toBe(35_000); // the request at 0 leaves at 60 000
    expect(w.msUntilBelow(2, 25_000)).toBe(45_000); // two must leave: the second at 70 000
    const tokens = new SlidingWindow(60_000);
    tokens.add(0, 900);
    tokens.add(5000, 300);
    expect(tokens.msUntilBelow(1000, 6000)).toBe(54_000); // 1200 ≥ 1000 until the 900 leave
    expect(tokens.msUntilBelow(200, 6000)).toBe(59_000); // both must leave
  });

  it('says when it is empty again, and takes a grant back', () => {
    const w = new SlidingWindow(60_000);
    expect(w.msUntilEmpty(0)).toBe(0);
    w.add(0, 1);
    const second = w.add(10_000, 1);
    expect(w.msUntilEmpty(20_000)).toBe(50_000);
    w.remove(second);
    expect(w.used(20_000)).toBe(1);
    expect(w.msUntilEmpty(20_000)).toBe(40_000);
  });

  it('keeps its memory bounded over many windows', () => {
    const w = new SlidingWindow(1000);
    for (let t = 0; t < 100_000; t += 10) w.add(t, 1);
    expect(w.used(100_000)).toBe(99); // 100 events in (99 000, 100 000], the one at 99 000 left
  });
});

describe('formatResetDuration', () => {
  it("writes durations the way OpenAI's x-ratelimit-reset-* headers do", () => {
    expect(formatResetDuration(0)).toBe('0ms');
    expect(formatResetDuration(250)).toBe('250ms');
    expect(formatResetDuration(1500)).toBe('1.5s');
    expect(formatResetDuration(59_001)).toBe('59.001s');
    expect(formatResetDuration(60_000)).toBe('1m0s');
    expect(formatResetDuration(390_500)).toBe('6m30.5s');
  });
});
