import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import { prefixBlockHashes, prefixText } from '@titancompute/protocol';
import type { ChatHistoryItem, ChatWrapper, Llama, LlamaContext, LlamaContextSequence, LlamaEmbeddingContext, LlamaModel, Token } from 'node-llama-cpp';
import { EngineError } from '../errors.js';
import { createPushQueue } from '../util/push-queue.js';
import { DEFAULT_MODEL_PATH } from './default-model.js';
import type { EmbedRequest, EmbedResult, Engine, EngineChatMessage, EngineChunk, GenerateRequest, PrefixCacheCounts, PrefixCacheState } from './engine.js';
import { parseGenerationParameters } from './parameters.js';
import { commonPrefixLength, createSequencePool, type HeldPrompt, type SequencePool } from './sequence-pool.js';
import { createStopMatcher } from './stop-sequences.js';

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
  /**
   * Concurrent generations (context sequences). Default 4. Each sequence keeps the KV cache of
   * its last prompt, and a new prompt goes to the free sequence sharing its longest token prefix
   * (else the least recently used one), so a shared prefix is evaluated once per sequence.
   */
  sequences?: number;
  /**
   * Context size per sequence, in tokens, and of the embedding context (the longest input
   * `embed` takes is one token less). Default min(2048, the model's training context).
   */
  contextSize?: number;
  /** `auto` (default) uses a GPU build when one works, else CPU; `false` forces CPU. */
  gpu?: 'auto' | false;
}

/** The embedded llama.cpp engine: an {@link Engine} that also says which chat template it applies. */
export interface LlamaCppEngine extends Engine {
  /**
   * Embeds each input with the model (node-llama-cpp's `LlamaEmbeddingContext`, one vector per
   * input, of the model's embedding size). The embedding context is a second llama.cpp context
   * (one sequence, the engine's context size and threads) created on the first call and reused;
   * inputs go through it one at a time, so concurrent requests take turns while generations
   * keep their own context. `promptTokens` counts the tokens evaluated (the model's tokenizer,
   * with the BOS/EOS tokens the model adds). An input longer than the context is
   * `invalid_parameters` naming `input[i]`; an aborted signal rejects with its reason before
   * the next input.
   */
  embed(request: EmbedRequest): Promise<EmbedResult>;
  /**
   * Name of the node-llama-cpp chat wrapper resolved from the GGUF's metadata (its Jinja chat
   * template or architecture; `General` when it has neither) and applied to chat messages.
   * Undefined before `load`.
   */
  readonly chatWrapperName: string | undefined;
  /**
   * What the sequences' KV caches hold: the prefix-block hashes of the prompt text each sequence
   * holds (most recently used first, at most 256), cells (tokens) in use of all sequences'
   * contexts, and per model the prompt tokens looked up and found (measured from llama.cpp's
   * token meter: tokens of the prompt not evaluated). Undefined before `load`.
   */
  prefixCache(): PrefixCacheState | undefined;
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
 * Prefixes stay warm: a generation takes the free sequence whose KV cache shares the longest
 * token prefix with its prompt (see `sequence-pool.ts`; none: the least recently used), and
 * node-llama-cpp evaluates only the tokens after that prefix; `prefixCache()` says what the
 * sequences hold. `embed` uses a separate embedding context, created on first use and disposed by `close`.
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
  let sequences: LlamaContextSequence[] = [];
  let pool: SequencePool<LlamaContextSequence, Token> | undefined;
  const counts = new Map<string, PrefixCacheCounts>();
  let LlamaCompletionClass: typeof import('node-llama-cpp').LlamaCompletion | undefined;
  let LlamaChatClass: typeof import('node-llama-cpp').LlamaChat | undefined;
  let chatWrapper: ChatWrapper | undefined;
  let contextSize = 0;
  let embeddingContext: Promise<LlamaEmbeddingContext> | undefined;
  /** Tail of the chain embedding inputs one at a time through the embedding context. */
  let embeddingTurn: Promise<unknown> = Promise.resolve();

  /** Counts a generation's prompt tokens, and those its sequence already held, for `model`. */
  const countPrefix = (modelName: string, queryTokens: number, hitTokens: number) => {
    let c = counts.get(modelName);
    if (!c) counts.set(modelName, (c = { model: modelName, queryTokens: 0, hitTokens: 0 }));
    c.queryTokens += queryTokens;
    c.hitTokens += hitTokens;
  };

  /** The embedding context, created once on first use (a failed creation is retried next time). */
  const getEmbeddingContext = (loaded: LlamaModel): Promise<LlamaEmbeddingContext> => {
    if (!embeddingContext) {
      // batchSize = contextSize: an input that fits the context is evaluated in one batch, which
      // models with non-causal attention (BERT-style embedding models) require.
      const creating = loaded.createEmbeddingContext({ contextSize, batchSize: contextSize, threads: options.threads ?? defaultLlamaThreads() });
      embeddingContext = creating;
      creating.catch(() => {
        if (embeddingContext === creating) embeddingContext = undefined;
      });
    }
    return embeddingContext;
  };
  /** Runs `work` after every embedding queued before it (one input at a time through the context). */
  const inEmbeddingTurn = <T>(work: () => Promise<T>): Promise<T> => {
    const run = embeddingTurn.then(work);
    embeddingTurn = run.catch(() => undefined);
    return run;
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
        contextSize = options.contextSize ?? Math.min(2048, model.trainContextSize);
        context = await model.createContext({ threads: options.threads ?? defaultLlamaThreads(), sequences: sequenceCount, contextSize });
        const loadedContext = context;
        sequences = Array.from({ length: sequenceCount }, () => loadedContext.getSequence());
        pool = createSequencePool<LlamaContextSequence, Token>(sequences, (seq) => seq.contextTokens);
      } catch (cause) {
        throw new EngineError(`cannot load GGUF model ${modelPath}: ${(cause as Error).message}`, 'engine_error', { modelPath }, { cause });
      }
    },
    async *generate(request: GenerateRequest): AsyncGenerator<EngineChunk> {
      if (!model || !context || !pool || !LlamaCompletionClass || !LlamaChatClass || !chatWrapper)
        throw new EngineError('llama-cpp engine is not loaded', 'unavailable');
      if (!models.includes(request.model))
        throw new EngineError(`model ${request.model} is not served by this engine`, 'model_not_found', { model: request.model });
      const params = parseGenerationParameters(request.parameters);
      const history = request.messages !== undefined && request.messages.length > 0 ? chatHistoryOf(request.messages) : undefined;
      // The tokens the model evaluates: for chat those of the templated conversation, for a prompt
      // the prompt's after the BOS token LlamaCompletion prepends.
      const tokens = history
        ? chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer)
        : completionTokens(model, request.prompt);
      const promptTokens = history ? tokens.length : model.tokenize(request.prompt).length;
      // What the coordinator hashes for this request: what the sequence holds once it is evaluated.
      const text = prefixText(request.prompt, request.messages);
      const held: HeldPrompt = { text, blockHashes: prefixBlockHashes(text) };
      const lease = await pool.take(tokens, held);
      const seq = lease.sequence;
      // llama.cpp's token meter of this sequence (only this generation uses it until release):
      // prompt tokens decoded without logits count as input, the prompt's last one and every
      // generated token fed back as output.
      const inputBefore = seq.tokenMeter.usedInputTokens;
      const outputBefore = seq.tokenMeter.usedOutputTokens;
      const stop = new AbortController();
      const onAbort = () => stop.abort();
      request.signal.addEventListener('abort', onAbort, { once: true });
      const queue = createPushQueue<EngineChunk>(() => stop.abort());
      const completion = history
        ? new LlamaChatClass({ contextSequence: seq, chatWrapper, autoDisposeSequence: false })
        : new LlamaCompletionClass({ contextSequence: seq, autoDisposeSequence: false });
      // Stop strings are found on the exact text stream (node-llama-cpp's customStopTriggers let
      // out the part of a token before a stop string detokenized on its own, losing its leading
      // space, and miss stop strings starting inside a multi-byte token).
      const stopMatcher = createStopMatcher(params.stop ?? []);
      let pendingTokens = 0;
      /** Tokens already pushed in chunks. */
      let pushedTokens = 0;
      /** Text the stop matcher let out that waits for a token to go with it. */
      let pendingText = '';
      /**
       * Pushes the pending text with its tokens. While the matcher holds text back, one token
       * stays pending to go out with it (runGeneration counts text without tokens as one token).
       */
      const release = () => {
        const keep = stopMatcher.held === '' ? 0 : 1;
        if (pendingText === '' || pendingTokens <= keep) return;
        queue.push({ text: pendingText, tokens: pendingTokens - keep, promptTokens });
        pushedTokens += pendingTokens - keep;
        pendingText = '';
        pendingTokens = keep;
      };
      /**
       * The last chunk: whatever text and tokens are still pending, and why the generation ended.
       * Ended by max tokens, the model generated exactly that many, even when node-llama-cpp
       * dropped the last ones without text or an onToken call (seen with the bundled model: a
       * token it held back, e.g. one that starts a multi-byte character or a stop trigger, when
       * the limit came). They were generated, so they count (usage, billing, finish_reason).
       */
      const finish = (finishReason: 'stop' | 'length' | undefined) => {
        const tokens = finishReason === 'length' && !stopMatcher.stopped ? Math.max(pendingTokens, request.maxTokens - pushedTokens) : pendingTokens;
        queue.push({ text: pendingText, tokens, promptTokens, ...(finishReason ? { finishReason } : {}) });
        queue.end();
      };
      const done = (async () => {
        try {
          // No clearHistory: LlamaCompletion and LlamaChat keep the sequence's tokens that match
          // the new input's start and evaluate only the rest.
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
            signal: stop.signal,
            stopOnAbortSignal: true,
            onToken: (tokens: readonly unknown[]) => {
              if (!stopMatcher.stopped) pendingTokens += tokens.length;
            },
            onTextChunk: (text: string) => {
              if (stopMatcher.stopped) return;
              const step = stopMatcher.push(text);
              pendingText += step.emit;
              // A stop string: the text ends before it, and generation stops at once (the last
              // chunk, with every token generated so far, goes out when llama.cpp returns).
              if (step.stopped) stop.abort();
              else release();
            },
          };
          const result =
            completion instanceof LlamaChatClass
              ? await completion.generateResponse(history ?? [], generation)
              : await completion.generateCompletionWithMeta(request.prompt, generation);
          const reason = result.metadata.stopReason;
          // Unless a stop string ended it (then flush is a no-op), the text ended otherwise (max
          // tokens, end of generation, cancellation): the held-back tail comes out, cut before a
          // stop string it may hold.
          pendingText += stopMatcher.flush().emit;
          finish(stopMatcher.stopped ? 'stop' : reason === 'maxTokens' ? 'length' : reason === 'abort' ? undefined : 'stop');
        } catch (cause) {
          // node-llama-cpp may throw the abort reason when aborted before any token was kept.
          if (stopMatcher.stopped && cause === stop.signal.reason) finish('stop');
          else queue.fail(new EngineError(`llama.cpp generation failed: ${(cause as Error).message}`, 'engine_error', {}, { cause }));
        } finally {
          // The sequence goes back to the pool when llama.cpp is done with it, even if the
          // consumer stopped pulling chunks.
          request.signal.removeEventListener('abort', onAbort);
          completion.dispose();
          // A prompt evaluated to its end (its last token decoded with logits): its tokens not
          // evaluated were found in the sequence's cache.
          if (seq.tokenMeter.usedOutputTokens > outputBefore) {
            const evaluated = seq.tokenMeter.usedInputTokens - inputBefore + 1;
            countPrefix(request.model, tokens.length, Math.max(0, tokens.length - evaluated));
          }
          // The sequence holds the prompt only if llama.cpp got through it (not on an early failure).
          lease.release(commonPrefixLength(seq.contextTokens, tokens) >= tokens.length - 1 ? held : undefined);
        }
      })();
      try {
        yield* queue;
      } finally {
        stop.abort();
        await done;
      }
    },
    async embed(request: EmbedRequest): Promise<EmbedResult> {
      const loaded = model;
      if (!loaded) throw new EngineError('llama-cpp engine is not loaded', 'unavailable');
      if (!models.includes(request.model))
        throw new EngineError(`model ${request.model} is not served by this engine`, 'model_not_found', { model: request.model });
      request.signal.throwIfAborted();
      let embedder: LlamaEmbeddingContext;
      try {
        embedder = await getEmbeddingContext(loaded);
      } catch (cause) {
        throw new EngineError(
          `llama.cpp cannot embed with model ${request.model}: ${(cause as Error).message}`,
          'engine_error',
          { model: request.model },
          { cause },
        );
      }
      // Every input is measured before any is evaluated: one too long fails the request at once.
      let promptTokens = 0;
      for (const [i, text] of request.input.entries()) {
        const length = embedder.calculateInputLength(text);
        if (length >= contextSize) {
          throw new EngineError(`input[${i}] is ${length} tokens; model ${request.model} embeds at most ${contextSize - 1}`, 'invalid_parameters', {
            model: request.model,
            field: `input[${i}]`,
          });
        }
        promptTokens += length;
      }
      const embeddings: number[][] = [];
      for (const text of request.input) {
        const vector = await inEmbeddingTurn(async () => {
          request.signal.throwIfAborted();
          try {
            return [...(await embedder.getEmbeddingFor(text)).vector];
          } catch (cause) {
            throw new EngineError(`llama.cpp embedding failed: ${(cause as Error).message}`, 'engine_error', { model: request.model }, { cause });
          }
        });
        embeddings.push(vector);
      }
      return { embeddings, promptTokens };
    },
    prefixCache() {
      if (!pool || !context) return undefined;
      const state = pool.state();
      let usedCells = 0;
      for (const seq of sequences) usedCells += seq.nextTokenIndex;
      return {
        version: state.version,
        blockHashes: state.blockHashes,
        usedCells,
        totalCells: contextSize * sequences.length,
        usedSequences: state.usedSequences,
        totalSequences: pool.size,
        counts: [...counts.values()].map((c) => ({ ...c })),
      };
    },
    async close() {
      const embedder = embeddingContext;
      embeddingContext = undefined;
      await (await embedder?.catch(() => undefined))?.dispose();
      await context?.dispose();
      await model?.dispose();
      await llama?.dispose();
      context = undefined;
      model = undefined;
      llama = undefined;
      pool = undefined;
      sequences = [];
    },
  };
}

/** The tokens LlamaCompletion evaluates for `prompt`: the model's BOS token (when it prepends one), then the prompt's. */
function completionTokens(model: LlamaModel, prompt: string): Token[] {
  const bos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
  return bos === null ? model.tokenize(prompt) : [bos, ...model.tokenize(prompt, false, 'trimLeadingSpace')];
}
