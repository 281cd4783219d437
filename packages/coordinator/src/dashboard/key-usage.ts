import { apiKeyState, type ApiKeyRecord } from '../keys/api-key.js';
import type { KeyUsage } from './dashboard-wire.js';

/** The window of the "last minute" figures. */
const MINUTE_MS = 60_000;

/** Options of {@link createKeyUsageTracker}. */
export interface KeyUsageTrackerOptions {
  /** The active API keys now (with their persisted totals). */
  list: () => Promise<ApiKeyRecord[]>;
  /** Reservations plus running jobs a client id (a key's name) holds now. */
  held: (clientId: string) => number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/**
 * Usage of each API key against its limits, for the Keys page. Totals (`tokens_used`,
 * `requests_total`) come from the key store; the last minute's requests and tokens are the
 * differences of those totals between samples (so they lag by the sampling interval and start
 * counting when the coordinator starts), and concurrency is what the registry holds for the
 * key's client id now.
 */
export interface KeyUsageTracker {
  /** Reads the keys and returns their usage. */
  sample(): Promise<KeyUsage[]>;
}

interface Sample {
  t: number;
  requests: number;
  tokens: number;
}

/**
 * Creates a {@link KeyUsageTracker}.
 *
 * @example
 * ```ts
 * const usage = createKeyUsageTracker({ list: () => keys.list(), held: (id) => registry.clientHeld(id) });
 * console.log(await usage.sample());
 * ```
 */
export function createKeyUsageTracker(options: KeyUsageTrackerOptions): KeyUsageTracker {
  const now = options.now ?? Date.now;
  const samples = new Map<string, Sample[]>();

  return {
    async sample() {
      const keys = await options.list();
      const t = now();
      const seen = new Set<string>();
      const out: KeyUsage[] = [];
      for (const key of keys) {
        seen.add(key.id);
        let history = samples.get(key.id);
        if (!history) {
          // A key created within the last minute: all its usage is in that minute.
          samples.set(key.id, (history = key.createdAtMs > t - MINUTE_MS ? [{ t: key.createdAtMs, requests: 0, tokens: 0 }] : []));
        }
        history.push({ t, requests: key.requestsTotal, tokens: key.tokensUsed });
        // Keep one sample at or before a minute ago as the baseline, drop older ones.
        while (history.length > 1 && history[1]!.t <= t - MINUTE_MS) history.shift();
        const base = history[0]!;
        out.push({
          id: key.id,
          name: key.name,
          prefix: key.prefix,
          state: apiKeyState(key, t),
          requestsPerMinute: key.requestsPerMinute,
          tokensPerMinute: key.tokensPerMinute,
          maxConcurrent: key.maxConcurrent,
          budgetTokens: key.budgetTokens,
          models: [...key.models],
          tokensUsed: key.tokensUsed,
          requestsTotal: key.requestsTotal,
          concurrent: options.held(key.name),
          requestsLastMinute: Math.max(0, key.requestsTotal - base.requests),
          tokensLastMinute: Math.max(0, key.tokensUsed - base.tokens),
          lastUsedAtMs: key.lastUsedAtMs ?? null,
          expiresAtMs: key.expiresAtMs ?? null,
        });
      }
      for (const id of samples.keys()) if (!seen.has(id)) samples.delete(id);
      return out;
    },
  };
}
