import { MAX_REPORTED_PREFIX_BLOCKS } from '@titancompute/protocol';

/**
 * Fewest leading tokens a free sequence must share with a new prompt to be picked for them: every
 * prompt shares its BOS token (and a chat its template's preamble) with every other, which is not
 * worth evicting a warm prefix for.
 */
export const MIN_REUSED_TOKENS = 16;

/** The prompt a pooled sequence holds (what the agent reports to the coordinator). */
export interface HeldPrompt {
  /** The prompt text, or a chat's canonical messages prefix (see the protocol's `prefixText`). */
  text: string;
  /** Chained prefix-block hashes of `text` (the protocol's `prefixBlockHashes`). */
  blockHashes: readonly string[];
}

/** A sequence handed to one generation by {@link SequencePool.take}; it is that generation's alone until released. */
export interface SequenceLease<S> {
  readonly sequence: S;
  /** Leading tokens of the prompt the sequence already held when taken (capped one short of the prompt). */
  readonly reusedTokens: number;
  /**
   * Gives the sequence back. `held`: what it holds now (the prompt it was taken for, when that
   * was evaluated); undefined when its contents are unknown (a failed generation): it then
   * reports nothing and is the first taken for an unrelated prompt.
   */
  release(held: HeldPrompt | undefined): void;
}

/** A snapshot of a {@link SequencePool}. */
export interface SequencePoolState {
  /** Bumped whenever a sequence is taken or released (what the pool holds may have changed). */
  readonly version: number;
  /**
   * Block hashes of the prompts the sequences hold, most recently used sequence first,
   * deduplicated, at most {@link MAX_REPORTED_PREFIX_BLOCKS}.
   */
  readonly blockHashes: string[];
  /** Sequences holding a prompt (the busy ones included). */
  readonly usedSequences: number;
  /** Sequences taken by running generations. */
  readonly busySequences: number;
}

/**
 * A fixed set of context sequences, each used by one generation at a time, picked to reuse what
 * their KV cache already holds: {@link SequencePool.take} waits for a free sequence (first come,
 * first served) and, among the free ones, takes the one whose tokens share the longest prefix
 * with the new prompt's (at least {@link MIN_REUSED_TOKENS}); ties and no match go to the least
 * recently used one (an empty one first). Engines then evaluate only the suffix the sequence
 * does not hold.
 */
export interface SequencePool<S, T> {
  take(tokens: readonly T[], held: HeldPrompt): Promise<SequenceLease<S>>;
  /** Number of sequences. */
  readonly size: number;
  state(): SequencePoolState;
}

/** Leading elements `a` and `b` share. */
export function commonPrefixLength<T>(a: readonly T[], b: readonly T[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i += 1;
  return i;
}

interface Entry<S> {
  sequence: S;
  busy: boolean;
  /** Recency: the pool's clock at its last release (0: never used, or contents unknown). */
  lastUsed: number;
  held: HeldPrompt | undefined;
}

/**
 * Creates a {@link SequencePool} over `sequences`; `tokensOf` reads the tokens a sequence's KV
 * cache holds now (node-llama-cpp's `LlamaContextSequence.contextTokens`).
 *
 * @example
 * ```ts
 * const pool = createSequencePool(sequences, (s) => s.contextTokens);
 * const lease = await pool.take(promptTokens, { text: prompt, blockHashes: prefixBlockHashes(prompt) });
 * try { await generate(lease.sequence); } finally { lease.release({ text: prompt, blockHashes }); }
 * ```
 */
export function createSequencePool<S, T>(sequences: readonly S[], tokensOf: (sequence: S) => readonly T[]): SequencePool<S, T> {
  const entries: Entry<S>[] = sequences.map((sequence) => ({ sequence, busy: false, lastUsed: 0, held: undefined }));
  const waiters: { tokens: readonly T[]; held: HeldPrompt; resolve: (lease: SequenceLease<S>) => void }[] = [];
  let clock = 0;
  let version = 0;

  const lease = (entry: Entry<S>, tokens: readonly T[], held: HeldPrompt): SequenceLease<S> => {
    entry.busy = true;
    // From now on the sequence holds (the evaluated part of) this prompt.
    entry.held = held;
    version += 1;
    const reusedTokens = Math.min(commonPrefixLength(tokensOf(entry.sequence), tokens), Math.max(0, tokens.length - 1));
    let released = false;
    return {
      sequence: entry.sequence,
      reusedTokens,
      release(now) {
        if (released) return;
        released = true;
        entry.busy = false;
        entry.held = now;
        entry.lastUsed = now ? ++clock : 0;
        version += 1;
        const next = waiters.shift();
        if (next) next.resolve(lease(entry, next.tokens, next.held));
      },
    };
  };

  /** The free entry to take for `tokens`, or undefined when all are busy. */
  const pick = (tokens: readonly T[]): Entry<S> | undefined => {
    let best: Entry<S> | undefined;
    let bestReuse = -1;
    for (const entry of entries) {
      if (entry.busy) continue;
      const shared = commonPrefixLength(tokensOf(entry.sequence), tokens);
      const reuse = shared >= MIN_REUSED_TOKENS ? shared : 0;
      if (reuse > bestReuse || (reuse === bestReuse && best !== undefined && entry.lastUsed < best.lastUsed)) {
        best = entry;
        bestReuse = reuse;
      }
    }
    return best;
  };

  return {
    size: entries.length,
    take(tokens, held) {
      // Waiters go first: a free sequence with waiters is handed over on release, never left free.
      const entry = waiters.length === 0 ? pick(tokens) : undefined;
      if (entry) return Promise.resolve(lease(entry, tokens, held));
      return new Promise((resolve) => waiters.push({ tokens, held, resolve }));
    },
    state() {
      const byRecency = [...entries].sort((a, b) => Number(b.busy) - Number(a.busy) || b.lastUsed - a.lastUsed);
      const hashes = new Set<string>();
      for (const entry of byRecency) {
        for (const h of entry.held?.blockHashes ?? []) {
          if (hashes.size >= MAX_REPORTED_PREFIX_BLOCKS) break;
          hashes.add(h);
        }
      }
      return {
        version,
        blockHashes: [...hashes],
        usedSequences: entries.filter((e) => e.busy || tokensOf(e.sequence).length > 0).length,
        busySequences: entries.filter((e) => e.busy).length,
      };
    },
  };
}
