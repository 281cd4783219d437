import type { GenerationPiece, GenerationStats } from '../engines/run-generation.js';

/** Pieces merged into one message: text, index of the first token, token count. */
export interface Batch {
  text: string;
  tokenIndex: number;
  tokens: number;
}

/** Resolves on the event loop's next check phase (after the callbacks already scheduled with setImmediate). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Pulls generation pieces as fast as the engine makes them and yields what piled up while the
 * previous message was being written as one batch: one message per token while the client
 * keeps up, fewer, larger messages when it does not (the engine never waits on the network).
 * Pieces without text are folded into the next batch. Returns the generation's stats.
 *
 * After the first batch (which goes out at once: time to first token), a batch is taken on the
 * event loop's next turn after its first piece arrived, not within the piece's own microtasks:
 * an engine that schedules its next step on the loop (node-llama-cpp dispatches the next decode
 * with setImmediate) starts it before the transport spends its time on this piece, so encoding
 * and writing overlap with the engine's evaluation instead of delaying it.
 *
 * @example
 * ```ts
 * const batches = coalesce(runGeneration(engine, request));
 * for (let r = await batches.next(); !r.done; r = await batches.next()) send(r.value);
 * ```
 */
export async function* coalesce(gen: AsyncGenerator<GenerationPiece, GenerationStats>): AsyncGenerator<Batch, GenerationStats> {
  let stats: GenerationStats | undefined;
  // The pending batch: its text, token count, the index of its first token, and whether it holds any piece.
  let text = '';
  let tokens = 0;
  let tokenIndex = 0;
  let pieces = false;
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
        const piece = r.value;
        if (!pieces) {
          pieces = true;
          tokenIndex = piece.tokenIndex;
        }
        text += piece.text;
        tokens += piece.tokens;
        if (text !== '') wake?.();
      }
    } catch (error) {
      failure = { error };
    } finally {
      finished = true;
      wake?.();
    }
  })();
  try {
    for (let first = true; ; first = false) {
      // Sleep until there is text to send (pieces without text wait for the next one) or the end.
      while (!finished && text === '') await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      if (text === '') break; // finished, nothing left to send
      if (!first) await nextTurn();
      const batch: Batch = { text, tokenIndex, tokens };
      text = '';
      tokens = 0;
      pieces = false;
      yield batch;
    }
    if (failure) throw failure.error;
    if (!stats) throw new Error('generation ended without stats');
    return stats;
  } finally {
    await pump;
  }
}
