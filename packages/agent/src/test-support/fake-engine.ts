import type { Engine, EngineChunk, GenerateRequest } from '../engines/engine.js';

/** An engine that emits `tok<i> ` every `tokenDelayMs` (for timing-independent capacity tests). */
export function createFakeEngine(options: { models?: string[]; tokenDelayMs?: number } = {}): Engine & { calls: GenerateRequest[] } {
  const calls: GenerateRequest[] = [];
  return {
    name: 'fake',
    models: options.models ?? ['fake-model'],
    calls,
    async load() {},
    async *generate(request): AsyncGenerator<EngineChunk> {
      calls.push(request);
      for (let i = 0; i < request.maxTokens; i++) {
        if (request.signal.aborted) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, options.tokenDelayMs ?? 5);
          request.signal.addEventListener(
            'abort',
            () => {
              clearTimeout(t);
              resolve();
            },
            { once: true },
          );
        });
        if (request.signal.aborted) return;
        yield { text: `tok${i} `, tokens: 1 };
      }
      yield { text: '', tokens: 0, finishReason: 'length' };
    },
    async close() {},
  };
}
