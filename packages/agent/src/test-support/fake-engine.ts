import type { EmbedRequest, EmbedResult, Engine, EngineChunk, GenerateRequest } from '../engines/engine.js';

/** Options of {@link createFakeEngine}. */
export interface FakeEngineOptions {
  models?: string[];
  /** Delay before each token. Default 5 ms. */
  tokenDelayMs?: number;
  /** Prompt tokens reported with the first chunk. Default none. */
  promptTokens?: number;
  /** Ends with finish reason `stop` after this many tokens (default: runs to max tokens, `length`). */
  stopAfter?: number;
  /** Throws an error after this many tokens. */
  failAfter?: number;
  /**
   * Gives the engine an `embed` returning, per input, a vector of this many numbers (its length
   * and char codes), one prompt token per whitespace-separated word. Default: no `embed`.
   */
  embedDimensions?: number;
}

/** A fake engine plus what it saw. */
export type FakeEngine = Engine & {
  calls: GenerateRequest[];
  embedCalls: EmbedRequest[];
  /** Generations that stopped because their signal aborted (not by finishing). */
  readonly abortedGenerations: number;
};

/** An engine that emits `tok<i> ` every `tokenDelayMs` (for timing-independent capacity tests). */
export function createFakeEngine(options: FakeEngineOptions = {}): FakeEngine {
  const calls: GenerateRequest[] = [];
  const embedCalls: EmbedRequest[] = [];
  let abortedGenerations = 0;
  const engine: FakeEngine = {
    name: 'fake',
    models: options.models ?? ['fake-model'],
    calls,
    embedCalls,
    get abortedGenerations() {
      return abortedGenerations;
    },
    async load() {},
    async *generate(request): AsyncGenerator<EngineChunk> {
      calls.push(request);
      for (let i = 0; i < request.maxTokens; i++) {
        if (options.stopAfter !== undefined && i >= options.stopAfter) {
          yield { text: '', tokens: 0, finishReason: 'stop' };
          return;
        }
        if (options.failAfter !== undefined && i >= options.failAfter) throw new Error('fake engine failure');
        if (request.signal.aborted) {
          abortedGenerations++;
          return;
        }
        await new Promise<void>((resolve) => {
          const onAbort = () => {
            clearTimeout(t);
            resolve();
          };
          const t = setTimeout(() => {
            request.signal.removeEventListener('abort', onAbort);
            resolve();
          }, options.tokenDelayMs ?? 5);
          request.signal.addEventListener('abort', onAbort, { once: true });
        });
        if (request.signal.aborted) {
          abortedGenerations++;
          return;
        }
        yield { text: `tok${i} `, tokens: 1, ...(i === 0 && options.promptTokens !== undefined ? { promptTokens: options.promptTokens } : {}) };
      }
      yield { text: '', tokens: 0, finishReason: 'length' };
    },
    async close() {},
  };
  const dimensions = options.embedDimensions;
  if (dimensions !== undefined) {
    engine.embed = async (request): Promise<EmbedResult> => {
      embedCalls.push(request);
      request.signal.throwIfAborted();
      return {
        embeddings: request.input.map((text) => Array.from({ length: dimensions }, (_, d) => (d === 0 ? text.length : (text.charCodeAt(d - 1) || 0) / 1000))),
        promptTokens: request.input.reduce((n, text) => n + text.split(/\s+/).filter(Boolean).length, 0),
      };
    };
  }
  return engine;
}
