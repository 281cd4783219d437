/** The length of every API-key rate window: one minute. */
export const RATE_WINDOW_MS = 60_000;

interface WindowEvent {
  atMs: number;
  amount: number;
}

/**
 * A sliding-window counter: amounts added at times, summed over the last `windowMs`. Events are
 * kept in time order (a clock that never goes back), at most one per grant or charge within the
 * window, and dropped as they leave it.
 *
 * @example
 * ```ts
 * const requests = new SlidingWindow();
 * if (requests.used(now) < limit) requests.add(now, 1);
 * else retryAfter = requests.msUntilBelow(limit, now);
 * ```
 */
export class SlidingWindow {
  readonly #windowMs: number;
  #events: WindowEvent[] = [];
  #head = 0;
  #sum = 0;

  constructor(windowMs: number = RATE_WINDOW_MS) {
    this.#windowMs = windowMs;
  }

  /** Drops the events that left the window at `nowMs`. */
  #prune(nowMs: number): void {
    const cutoff = nowMs - this.#windowMs;
    while (this.#head < this.#events.length && this.#events[this.#head]!.atMs <= cutoff) {
      this.#sum -= this.#events[this.#head]!.amount;
      this.#head++;
    }
    if (this.#head > 64 && this.#head * 2 > this.#events.length) {
      this.#events = this.#events.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Adds `amount` at `atMs` (not before the last event's time); returns the event, for {@link SlidingWindow.remove}. */
  add(atMs: number, amount: number): object {
    const last = this.#events.at(-1);
    const event = { atMs: Math.max(atMs, last?.atMs ?? atMs), amount };
    this.#events.push(event);
    this.#sum += amount;
    return event;
  }

  /** Takes back an event {@link SlidingWindow.add} returned (a grant that failed after all). */
  remove(event: object): void {
    const i = this.#events.indexOf(event as WindowEvent, this.#head);
    if (i < 0) return;
    this.#sum -= (event as WindowEvent).amount;
    this.#events.splice(i, 1);
  }

  /** The sum over the window ending at `nowMs`. */
  used(nowMs: number): number {
    this.#prune(nowMs);
    return this.#sum;
  }

  /**
   * Milliseconds from `nowMs` until the sum drops below `limit` (at least 1), i.e. until the
   * window lets the next request through; 0 when it already is below.
   */
  msUntilBelow(limit: number, nowMs: number): number {
    this.#prune(nowMs);
    let sum = this.#sum;
    if (sum < limit) return 0;
    for (let i = this.#head; i < this.#events.length; i++) {
      const event = this.#events[i]!;
      sum -= event.amount;
      if (sum < limit) return Math.max(1, event.atMs + this.#windowMs - nowMs);
    }
    /* c8 ignore next */
    return this.#windowMs;
  }

  /** Milliseconds from `nowMs` until the window is empty (its newest event leaves it); 0 when empty. */
  msUntilEmpty(nowMs: number): number {
    this.#prune(nowMs);
    const last = this.#events.at(-1);
    return last === undefined || this.#head >= this.#events.length ? 0 : Math.max(1, last.atMs + this.#windowMs - nowMs);
  }

  /** Whether nothing is left in the window at `nowMs`. */
  isEmpty(nowMs: number): boolean {
    this.#prune(nowMs);
    return this.#head >= this.#events.length;
  }
}

/**
 * A duration the way OpenAI's `x-ratelimit-reset-*` headers write it: `250ms`, `1.5s`, `59s`,
 * `1m0s`, `6m30.5s`.
 */
export function formatResetDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole < 1000) return `${whole}ms`;
  const minutes = Math.floor(whole / 60_000);
  const seconds = (whole % 60_000) / 1000;
  const s = `${Number(seconds.toFixed(3))}s`;
  return minutes > 0 ? `${minutes}m${s}` : s;
}
