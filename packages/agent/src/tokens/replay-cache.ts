/**
 * Remembers token ids (jti) until they expire, so each is accepted once. Bounded: when full
 * even after dropping expired entries, `claim` refuses (never forgets a live jti early).
 */
export interface ReplayCache {
  /** Records `jti` valid until `expiresAtMs`; false when it was already used (or the cache is full: see `full`). */
  claim(jti: string, expiresAtMs: number): 'ok' | 'replayed' | 'full';
  /** Number of remembered ids. */
  readonly size: number;
}

/** Creates a {@link ReplayCache} holding at most `maxEntries` live ids. */
export function createReplayCache(options: { maxEntries?: number; now?: () => number } = {}): ReplayCache {
  const maxEntries = options.maxEntries ?? 100_000;
  const now = options.now ?? Date.now;
  const seen = new Map<string, number>();
  let nextPrune = 0;
  const prune = () => {
    const t = now();
    for (const [jti, exp] of seen) if (exp <= t) seen.delete(jti);
    nextPrune = t + 1000;
  };
  return {
    get size() {
      return seen.size;
    },
    claim(jti, expiresAtMs) {
      const exp = seen.get(jti);
      if (exp !== undefined && exp > now()) return 'replayed';
      if (seen.size >= maxEntries || now() >= nextPrune) prune();
      if (seen.size >= maxEntries) return 'full';
      seen.set(jti, expiresAtMs);
      return 'ok';
    },
  };
}
