/** What a {@link StopMatcher} lets out after a piece of text. */
export interface StopMatchStep {
  /** Text that is now known to come before any stop string (possibly empty). */
  emit: string;
  /** True once a stop string was found: the text ends with `emit`, and nothing more comes out. */
  stopped: boolean;
}

/**
 * Finds stop strings (OpenAI's `stop`) in a text that arrives in pieces, on the exact text: a
 * stop string may start and end anywhere, inside a token or across pieces. The text that comes
 * out is the whole text cut before the first occurrence of any stop string, whatever the pieces
 * were: the stop string itself never comes out, nor anything after it.
 */
export interface StopMatcher {
  /**
   * Takes the next piece of text. Lets out everything that can no longer be part of a stop
   * string, and holds back only the tail that could still be the start of one, or that could
   * still begin a stop string starting before a complete one already seen (the earliest
   * occurrence wins). Once stopped or flushed, later pieces are ignored.
   */
  push(text: string): StopMatchStep;
  /**
   * The text ended (max tokens, end of generation): lets out the held-back tail, cut before a
   * stop string it holds (then `stopped` is true). Later pushes are ignored.
   */
  flush(): StopMatchStep;
  /** The tail held back, waiting for more text to decide. */
  readonly held: string;
  /** True once a stop string was found. */
  readonly stopped: boolean;
}

/**
 * Creates a {@link StopMatcher} for `stops` (empty strings are ignored; without any stop string
 * every piece comes out at once). Matching is on UTF-16 code units, so characters of any size
 * (and pieces split anywhere) match as they are written.
 *
 * @example
 * ```ts
 * const m = createStopMatcher(['\n\n', 'END']);
 * m.push('Hello E'); // { emit: 'Hello ', stopped: false } ('E' might start 'END')
 * m.push('ND more'); // { emit: '', stopped: true }
 * ```
 */
export function createStopMatcher(stops: readonly string[]): StopMatcher {
  const list = [...new Set(stops.filter((s) => s.length > 0))];
  const longest = list.reduce((n, s) => Math.max(n, s.length), 0);
  let buffer = '';
  let stopped = false;
  /** Stopped or flushed: nothing more comes out. */
  let ended = false;

  /** Index of the earliest complete stop string in the buffer, or -1. */
  const firstMatch = (): number => {
    let at = -1;
    for (const s of list) {
      const i = buffer.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    return at;
  };
  /** Index of the earliest tail of the buffer that is the start (not the whole) of a stop string; the buffer's length if none. */
  const firstPartial = (): number => {
    for (let i = Math.max(0, buffer.length - longest + 1); i < buffer.length; i++) {
      const tail = buffer.slice(i);
      if (list.some((s) => s.length > tail.length && s.startsWith(tail))) return i;
    }
    return buffer.length;
  };
  const stopAt = (at: number): StopMatchStep => {
    const emit = buffer.slice(0, at);
    buffer = '';
    stopped = true;
    ended = true;
    return { emit, stopped: true };
  };

  return {
    get held() {
      return buffer;
    },
    get stopped() {
      return stopped;
    },
    push(text) {
      if (ended) return { emit: '', stopped };
      buffer += text;
      const match = firstMatch();
      const partial = firstPartial();
      // A stop string that could still complete starting before the match would end the text earlier: wait for it.
      if (match >= 0 && match <= partial) return stopAt(match);
      const emit = buffer.slice(0, partial);
      buffer = buffer.slice(partial);
      return { emit, stopped: false };
    },
    flush() {
      if (ended) return { emit: '', stopped };
      const match = firstMatch();
      if (match >= 0) return stopAt(match);
      const emit = buffer;
      buffer = '';
      ended = true;
      return { emit, stopped: false };
    },
  };
}
