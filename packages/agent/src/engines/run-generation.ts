import type { Engine, GenerateRequest } from './engine.js';

/** Why a generation ended. */
export type FinishReason = 'stop' | 'length' | 'cancelled';

/** Stats of a finished generation, measured the same way for every engine. */
export interface GenerationStats {
  tokensGenerated: number;
  /** From the call to the first generated text, in ms (0 when nothing was generated). */
  timeToFirstTokenMs: number;
  /** tokensGenerated / total generation time (from the call to the end). */
  tokensPerSecond: number;
  finishReason: FinishReason;
  promptTokens: number;
  durationMs: number;
}

/** A streamed piece: the text and the index of its first token. */
export interface GenerationPiece {
  text: string;
  tokens: number;
  tokenIndex: number;
}

/** Called once per streamed piece after the first: the time since the previous piece and the piece's tokens. */
export type InterTokenObserver = (seconds: number, tokens: number) => void;

/**
 * Runs an engine generation, enforcing `maxTokens` and measuring the stats in one place.
 * Yields pieces as they come; returns the stats as the generator's return value. `interToken`,
 * when given, hears the gap before every piece after the first (metrics). Aborting
 * `request.signal` ends the generation with finishReason `cancelled`; engine errors propagate.
 *
 * @example
 * ```ts
 * import { createLlamaCppEngine, runGeneration } from '@titancompute/agent';
 *
 * const engine = createLlamaCppEngine({ threads: 2 }); // the bundled llama-2-tiny-random model
 * await engine.load();
 * const gen = runGeneration(engine, {
 *   model: engine.models[0]!, prompt: 'Once upon a time', maxTokens: 16, temperature: 0.7, parameters: {},
 *   signal: AbortSignal.timeout(30_000),
 * });
 * for (let r = await gen.next(); ; r = await gen.next()) {
 *   if (r.done) { console.log(`\n${r.value.tokensGenerated} tokens, ${r.value.finishReason}`); break; }
 *   process.stdout.write(r.value.text);
 * }
 * await engine.close();
 * ```
 */
export async function* runGeneration(
  engine: Engine,
  request: GenerateRequest,
  interToken?: InterTokenObserver,
): AsyncGenerator<GenerationPiece, GenerationStats> {
  const started = performance.now();
  let firstAt: number | undefined;
  let lastAt = 0;
  let tokens = 0;
  let promptTokens = 0;
  let finish: FinishReason | undefined;
  const inner = new AbortController();
  const onAbort = () => inner.abort(request.signal.reason);
  if (request.signal.aborted) inner.abort(request.signal.reason);
  else request.signal.addEventListener('abort', onAbort, { once: true });
  try {
    try {
      for await (const chunk of engine.generate({ ...request, signal: inner.signal })) {
        if (chunk.promptTokens !== undefined) promptTokens = chunk.promptTokens;
        if (chunk.finishReason) finish = chunk.finishReason;
        if (chunk.tokens <= 0 && chunk.text === '') continue;
        const now = performance.now();
        firstAt ??= now;
        const tokenIndex = tokens;
        const count = Math.max(chunk.tokens, chunk.text === '' ? 0 : 1);
        const room = request.maxTokens - tokens;
        tokens += Math.min(count, room);
        if (interToken && tokenIndex > 0 && count > 0) interToken((now - lastAt) / 1000, Math.min(count, room));
        lastAt = now;
        yield { text: chunk.text, tokens: Math.min(count, room), tokenIndex };
        if (tokens >= request.maxTokens) {
          finish = 'length';
          break;
        }
      }
    } catch (err) {
      if (!request.signal.aborted) throw err;
    }
    if (request.signal.aborted) finish = 'cancelled';
  } finally {
    request.signal.removeEventListener('abort', onAbort);
    inner.abort();
  }
  const end = performance.now();
  const durationMs = end - started;
  return {
    tokensGenerated: tokens,
    timeToFirstTokenMs: firstAt === undefined ? 0 : firstAt - started,
    tokensPerSecond: durationMs > 0 ? (tokens * 1000) / durationMs : 0,
    finishReason: finish ?? (tokens >= request.maxTokens ? 'length' : 'stop'),
    promptTokens,
    durationMs,
  };
}
