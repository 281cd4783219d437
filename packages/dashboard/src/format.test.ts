import { describe, expect, it } from '@jest/globals';
import { formatAgo, formatCount, formatMb, formatMs, fraction } from './format.js';

describe('format', () => {
  it('memory, counts, durations and ages read well', () => {
    expect(formatMb(512)).toBe('512 MB');
    expect(formatMb(1536)).toBe('1.5 GB');
    expect(formatMb(81_920)).toBe('80 GB');
    expect(formatMb(0)).toBe('0 MB');
    expect(formatCount(12)).toBe('12');
    expect(formatCount(12.34)).toBe('12.3');
    expect(formatCount(45_600)).toBe('45.6k');
    expect(formatCount(3_400_000)).toBe('3.4M');
    expect(formatMs(42.4)).toBe('42 ms');
    expect(formatMs(1300)).toBe('1.3 s');
    expect(formatMs(null)).toBe('–');
    expect(formatAgo(10_000, 13_000)).toBe('3 s ago');
    expect(formatAgo(0, 13_000)).toBe('never');
    expect(formatAgo(0 + 1, 7_200_001)).toBe('2 h ago');
    expect(fraction(5, 10)).toBe(0.5);
    expect(fraction(5, 0)).toBe(0);
    expect(fraction(50, 10)).toBe(1);
  });
});
