/**
 * Summary statistics of the benchmarks, one copy. Convention, decided once: a percentile is asked
 * for by FRACTION, `percentile(xs, 0.99)` for p99 — never by percent.
 */

/**
 * The `q`-quantile of `values` by the nearest-rank rule every benchmark has always used:
 * `sorted[min(n - 1, floor(q * n))]` (p50 of [1, 2, 3, 4] is 3, p99 of 100 values is the largest).
 * Sorts a copy, so `values` may be unsorted (an array or a typed array).
 *
 * @param {ArrayLike<number>} values - The samples.
 * @param {number} q - A fraction in [0, 1]: 0.5 for the median rank, 0.99 for p99.
 * @returns {number} The sample at that rank, or NaN when there are no samples.
 * @throws {RangeError} When `q` is not within [0, 1] (e.g. 99 passed as a percent).
 */
export function percentile(values, q) {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`percentile: q must be a fraction in [0, 1] (0.99 for p99), got ${q}`);
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * The exact median: the middle sample, or the mean of the two middle ones for an even count
 * (unlike `percentile(values, 0.5)`, which picks the upper one).
 *
 * @param {ArrayLike<number>} values - The samples.
 * @returns {number} The median, or NaN when there are no samples.
 */
export function median(values) {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
