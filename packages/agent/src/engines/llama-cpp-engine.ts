import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import type { ChatHistoryItem, ChatWrapper, Llama, LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import { EngineError } from '../errors.js';
import { createPushQueue } from '../util/push-queue.js';
import { DEFAULT_MODEL_PATH } from './default-model.js';
import type { Engine, EngineChatMessage, EngineChunk, GenerateRequest } from './engine.js';
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

/** The embedded llama.cpp engine: an {@link Engine} that also says which chat template it applies. */
export interface LlamaCppEngine extends Engine {
  /**
   * Name of the node-llama-cpp chat wrapper resolved from the GGUF's metadata (its Jinja chat
   * template or architecture; `General` when it has neither) and applied to chat messages.
   * Undefined before `load`.
   */
  readonly chatWrapperName: string | undefined;
}

/**
 * node-llama-cpp's chat history of chat messages: system and user turns as they are, assistant
 * turns as model responses. A new (empty) model response is appended unless the last turn is
 * the assistant's, which is then continued.
 */
export function chatHistoryOf(messages: readonly EngineChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === 'assistant' ? { type: 'model', response: [m.content] } : { type: m.role, text: m.content },
  );
  if (messages.at(-1)?.role !== 'assistant') history.push({ type: 'model', response: [] });
  return history;
}

/** Model name a GGUF path is served under by default: its basename without `.gguf`. */
export function modelNameFromPath(modelPath: string): string {
  return basename(modelPath).replace(/\.gguf$/i, '');
}

/**
 * The embedded llama.cpp engine (node-llama-cpp): loads one GGUF model once, with one context
 * holding a sequence per concurrent job, and streams tokens with cancellation. A prompt is
 * completed as is (`LlamaCompletion`); chat messages go through `LlamaChat` with the chat
 * wrapper `resolveChatWrapper` picks from the GGUF's metadata (the model's own template).
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
export function createLlamaCppEngine(options: LlamaCppEngineOptions = {}): LlamaCppEngine {
  const modelPath = options.modelPath ?? DEFAULT_MODEL_PATH;
  const models = options.modelNames?.length ? [...options.modelNames] : [modelNameFromPath(modelPath)];
  const sequenceCount = Math.max(1, options.sequences ?? 4);
  let llama: Llama | undefined;
  let model: LlamaModel | undefined;
  let context: LlamaContext | undefined;
  const free: LlamaContextSequence[] = [];
  const waiters: ((seq: LlamaContextSequence) => void)[] = [];
  let LlamaCompletionClass: typeof import('node-llama-cpp').LlamaCompletion | undefined;
  let LlamaChatClass: typeof import('node-llama-cpp').LlamaChat | undefined;
  let chatWrapper: ChatWrapper | undefined;

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
    get chatWrapperName() {
      return chatWrapper?.wrapperName;
    },
    async load() {
      if (model) return;
      try {
        const lib = await import('node-llama-cpp');
        LlamaCompletionClass = lib.LlamaCompletion;
        LlamaChatClass = lib.LlamaChat;
        llama = await lib.getLlama({ gpu: options.gpu ?? 'auto', build: 'never', logLevel: lib.LlamaLogLevel.error, progressLogs: false });
        model = await llama.loadModel({ modelPath });
        chatWrapper = lib.resolveChatWrapper(model);
        const contextSize = options.contextSize ?? Math.min(2048, model.trainContextSize);
        context = await model.createContext({ threads: options.threads ?? defaultLlamaThreads(), sequences: sequenceCount, contextSize });
        for (let i = 0; i < sequenceCount; i++) free.push(context.getSequence());
      } catch (cause) {
        throw new EngineError(`cannot load GGUF model ${modelPath}: ${(cause as Error).message}`, 'engine_error', { modelPath }, { cause });
      }
    },
    async *generate(request: GenerateRequest): AsyncGenerator<EngineChunk> {
      if (!model || !context || !LlamaCompletionClass || !LlamaChatClass || !chatWrapper)
        throw new EngineError('llama-cpp engine is not loaded', 'unavailable');
      if (!models.includes(request.model))
        throw new EngineError(`model ${request.model} is not served by this engine`, 'model_not_found', { model: request.model });
      const params = parseGenerationParameters(request.parameters);
      const history = request.messages !== undefined && request.messages.length > 0 ? chatHistoryOf(request.messages) : undefined;
      // For chat: the tokens of the templated conversation, which is what the model evaluates.
      const promptTokens = history
        ? chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer).length
        : model.tokenize(request.prompt).length;
      const seq = await takeSequence();
      const stop = new AbortController();
      const onAbort = () => stop.abort();
      request.signal.addEventListener('abort', onAbort, { once: true });
      const queue = createPushQueue<EngineChunk>(() => stop.abort());
      const completion = history
        ? new LlamaChatClass({ contextSequence: seq, chatWrapper, autoDisposeSequence: false })
        : new LlamaCompletionClass({ contextSequence: seq, autoDisposeSequence: false });
      let pendingTokens = 0;
      const done = (async () => {
        try {
          await seq.clearHistory();
          const generation = {
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
            onToken: (tokens: readonly unknown[]) => {
              pendingTokens += tokens.length;
            },
            onTextChunk: (text: string) => {
              queue.push({ text, tokens: pendingTokens, promptTokens });
              pendingTokens = 0;
            },
          };
          const result =
            completion instanceof LlamaChatClass
              ? await completion.generateResponse(history ?? [], generation)
              : await completion.generateCompletionWithMeta(request.prompt, generation);
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
