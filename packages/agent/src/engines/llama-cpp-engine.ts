import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { EngineError } from '../errors.js';
import { createPushQueue } from '../util/push-queue.js';
import { DEFAULT_MODEL_PATH } from './default-model.js';
import type { Engine, EngineChunk, GenerateRequest } from './engine.js';
import { parseGenerationParameters } from './parameters.js';

/**
 * Default llama.cpp thread count: every core but one, at least one. llama.cpp's threads keep
 * their cores busy while they generate; the one left over runs the agent's event loop (token
 * checks, gRPC writes). Measured on 2 cores with the bundled model (bench/agent.bench.mjs):
 * 1 thread generated about 6× the tokens/s of 2 threads, which starved the event loop.
 */
export function defaultLlamaThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

/** Options of {@link createLlamaCppEngine}. */
export interface LlamaCppEngineOptions {
  /** GGUF file. Default: the bundled `llama-2-tiny-random.gguf`. */
  modelPath?: string;
  /** Names this engine answers to. Default: the file's basename without `.gguf`. */
  modelNames?: readonly string[];
  /** CPU threads for evaluation. Default {@link defaultLlamaThreads}. */
  threads?: number;
  /** Concurrent generations (context sequences). Default 4. */
  sequences?: number;
  /** Context size per sequence, in tokens. Default min(2048, the model's training context). */
  contextSize?: number;
  /** `auto` (default) uses a GPU build when one works, else CPU; `false` forces CPU. */
  gpu?: 'auto' | false;
}

/** Model name a GGUF path is served under by default: its basename without `.gguf`. */
export function modelNameFromPath(modelPath: string): string {
  return basename(modelPath).replace(/\.gguf$/i, '');
}

/**
 * The embedded llama.cpp engine (node-llama-cpp): loads one GGUF model once, with one context
 * holding a sequence per concurrent job, and streams tokens with cancellation.
 *
 * @example
 * ```ts
 * const engine = createLlamaCppEngine({ threads: 2, sequences: 4 });
 * await engine.load();
 * for await (const chunk of engine.generate({ model: engine.models[0]!, prompt: 'Hi', maxTokens: 8, temperature: 0.7, parameters: {}, signal })) {
 *   process.stdout.write(chunk.text);
 * }
 * ```
 */
export function createLlamaCppEngine(options: LlamaCppEngineOptions = {}): Engine {
  const modelPath = options.modelPath ?? DEFAULT_MODEL_PATH;
  const models = options.modelNames?.length ? [...options.modelNames] : [modelNameFromPath(modelPath)];
  const sequenceCount = Math.max(1, options.sequences ?? 4);
  let llama: Llama | undefined;
  let model: LlamaModel | undefined;
  let context: LlamaContext | undefined;
  const free: LlamaContextSequence[] = [];
  const waiters: ((seq: LlamaContextSequence) => void)[] = [];
  let LlamaCompletionClass: typeof import('node-llama-cpp').LlamaCompletion | undefined;

  const takeSequence = (): Promise<LlamaContextSequence> => {
    const seq = free.pop();
    if (seq) return Promise.resolve(seq);
    return new Promise((resolve) => waiters.push(resolve));
  };
  const giveSequence = (seq: LlamaContextSequence) => {
    const next = waiters.shift();
    if (next) next(seq);
    else free.push(seq);
  };

  return {
    name: 'llama-cpp',
    models,
    async load() {
      if (model) return;
      try {
        const lib = await import('node-llama-cpp');
        LlamaCompletionClass = lib.LlamaCompletion;
        llama = await lib.getLlama({ gpu: options.gpu ?? 'auto', build: 'never', logLevel: lib.LlamaLogLevel.error, progressLogs: false });
        model = await llama.loadModel({ modelPath });
        const contextSize = options.contextSize ?? Math.min(2048, model.trainContextSize);
        context = await model.createContext({ threads: options.threads ?? defaultLlamaThreads(), sequences: sequenceCount, contextSize });
        for (let i = 0; i < sequenceCount; i++) free.push(context.getSequence());
      } catch (cause) {
        throw new EngineError(`cannot load GGUF model ${modelPath}: ${(cause as Error).message}`, 'engine_error', { modelPath }, { cause });
      }
    },
    async *generate(request: GenerateRequest): AsyncGenerator<EngineChunk> {
      if (!model || !context || !LlamaCompletionClass) throw new EngineError('llama-cpp engine is not loaded', 'unavailable');
      if (!models.includes(request.model))
        throw new EngineError(`model ${request.model} is not served by this engine`, 'model_not_found', { model: request.model });
      const params = parseGenerationParameters(request.parameters);
      const promptTokens = model.tokenize(request.prompt).length;
      const seq = await takeSequence();
      const stop = new AbortController();
      const onAbort = () => stop.abort();
      request.signal.addEventListener('abort', onAbort, { once: true });
      const queue = createPushQueue<EngineChunk>(() => stop.abort());
      const completion = new LlamaCompletionClass({ contextSequence: seq, autoDisposeSequence: false });
      let pendingTokens = 0;
      const done = (async () => {
        try {
          await seq.clearHistory();
          const result = await completion.generateCompletionWithMeta(request.prompt, {
            maxTokens: request.maxTokens,
            temperature: request.temperature,
            ...(params.topK !== undefined ? { topK: params.topK } : {}),
            ...(params.topP !== undefined ? { topP: params.topP } : {}),
            ...(params.minP !== undefined ? { minP: params.minP } : {}),
            ...(params.seed !== undefined ? { seed: params.seed } : {}),
            ...(params.repeatPenalty !== undefined || params.presencePenalty !== undefined || params.frequencyPenalty !== undefined
              ? {
                  repeatPenalty: {
                    ...(params.repeatPenalty !== undefined ? { penalty: params.repeatPenalty } : {}),
                    ...(params.presencePenalty !== undefined ? { presencePenalty: params.presencePenalty } : {}),
                    ...(params.frequencyPenalty !== undefined ? { frequencyPenalty: params.frequencyPenalty } : {}),
                  },
                }
              : {}),
            ...(params.stop?.length ? { customStopTriggers: params.stop } : {}),
            signal: stop.signal,
            stopOnAbortSignal: true,
            onToken: (tokens) => {
              pendingTokens += tokens.length;
            },
            onTextChunk: (text) => {
              queue.push({ text, tokens: pendingTokens, promptTokens });
              pendingTokens = 0;
            },
          });
          const reason = result.metadata.stopReason;
          queue.push({
            text: '',
            tokens: pendingTokens,
            promptTokens,
            ...(reason === 'maxTokens' ? { finishReason: 'length' as const } : reason === 'abort' ? {} : { finishReason: 'stop' as const }),
          });
          queue.end();
        } catch (cause) {
          queue.fail(new EngineError(`llama.cpp generation failed: ${(cause as Error).message}`, 'engine_error', {}, { cause }));
        } finally {
          // The sequence goes back to the pool when llama.cpp is done with it, even if the
          // consumer stopped pulling chunks.
          request.signal.removeEventListener('abort', onAbort);
          completion.dispose();
          giveSequence(seq);
        }
      })();
      try {
        yield* queue;
      } finally {
        stop.abort();
        await done;
      }
    },
    async close() {
      await context?.dispose();
      await model?.dispose();
      await llama?.dispose();
      context = undefined;
      model = undefined;
      llama = undefined;
    },
  };
}
