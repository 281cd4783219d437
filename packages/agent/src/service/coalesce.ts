import type { GenerationPiece, GenerationStats } from '../engines/run-generation.js';

/** Pieces merged into one message: text, index of the first token, token count. */
export interface Batch {
  text: string;
  tokenIndex: number;
  tokens: number;
}

/**
 * Pulls generation pieces as fast as the engine makes them and yields what piled up while the
 * previous message was being written as one batch: one message per token while the client
 * keeps up, fewer, larger messages when it does not (the engine never waits on the network).
 * Pieces without text are folded into the next batch. Returns the generation's stats.
 *
 * @example
 * ```ts
 * const batches = coalesce(runGeneration(engine, request));
 * for (let r = await batches.next(); !r.done; r = await batches.next()) send(r.value);
 * ```
 */
export async function* coalesce(gen: AsyncGenerator<GenerationPiece, GenerationStats>): AsyncGenerator<Batch, GenerationStats> {
  let stats: GenerationStats | undefined;
  const pending: GenerationPiece[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: { error: unknown } | undefined;
  const pump = (async () => {
    try {
      for (;;) {
        const r = await gen.next();
        if (r.done) {
          stats = r.value;
          break;
        }
        pending.push(r.value);
        wake?.();
      }
    } catch (error) {
      failure = { error };
    } finally {
      finished = true;
      wake?.();
    }
  })();
  try {
    for (;;) {
      // Sleep until there is text to send (pieces without text wait for the next one) or the end.
      while (!finished && !pending.some((p) => p.text !== '')) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      const text = pending.map((p) => p.text).join('');
      if (text === '') break; // finished, nothing left to send
      const tokenIndex = pending[0]!.tokenIndex;
      const tokens = pending.reduce((n, p) => n + p.tokens, 0);
      pending.length = 0;
      yield { text, tokenIndex, tokens };
    }
    if (failure) throw failure.error;
    if (!stats) throw new Error('generation ended without stats');
    return stats;
  } finally {
    await pump;
  }
}
