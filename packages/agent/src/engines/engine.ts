/** Names of the built-in engines (`--engine`). */
export const ENGINE_NAMES = ['llama-cpp', 'ollama', 'openai'] as const;
/** A built-in engine name. */
export type EngineName = (typeof ENGINE_NAMES)[number];

/** Chat roles an engine accepts (the coordinator and the agent refuse any other). */
export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;
/** A chat role: `system`, `user` or `assistant`. */
export type ChatRole = (typeof CHAT_ROLES)[number];

/** One turn of a chat conversation. */
export interface EngineChatMessage {
  role: ChatRole;
  content: string;
}

/** One generation asked of an engine. Limits are already validated and defaulted. */
export interface GenerateRequest {
  model: string;
  /** The raw prompt, used as is (no chat template); empty when `messages` are given. */
  prompt: string;
  /**
   * A chat conversation instead of `prompt` (non-empty when given). The engine applies the
   * model's own chat template: llama-cpp the chat wrapper resolved from the GGUF metadata,
   * Ollama `/api/chat`, OpenAI-compatible servers `/v1/chat/completions`. A last `assistant`
   * turn is continued; otherwise a new assistant reply is generated.
   */
  messages?: readonly EngineChatMessage[] | undefined;
  /** Upper bound on generated tokens (≥ 1). */
  maxTokens: number;
  /** 0 means greedy. */
  temperature: number;
  /** Engine parameters (top_p, top_k, seed, repeat_penalty, stop, …), already validated. */
  parameters: Record<string, string>;
  /** Aborted on client cancellation, deadline or shutdown: the engine must stop promptly. */
  signal: AbortSignal;
}

/** A piece of generated text and how many tokens it holds. */
export interface EngineChunk {
  text: string;
  tokens: number;
  /** Set (usually on the last chunk) when the engine knows why it stopped. */
  finishReason?: 'stop' | 'length';
  /** Prompt size in tokens, when the engine knows it. */
  promptTokens?: number;
}

/** One embeddings request asked of an engine (`POST /v1/embeddings`). */
export interface EmbedRequest {
  model: string;
  /** The texts to embed, in order (non-empty, each non-empty). */
  input: readonly string[];
  /** Aborted on client cancellation or shutdown. */
  signal: AbortSignal;
}

/** The vectors of an {@link EmbedRequest}, one per input, in order, and the tokens they took. */
export interface EmbedResult {
  embeddings: number[][];
  /** Tokens of all inputs together, as the engine counted them. */
  promptTokens: number;
}

/** Prompt tokens one model looked up in an engine's prefix cache, and those found there (since load). */
export interface PrefixCacheCounts {
  model: string;
  /** Prompt tokens of the generations (as the engine evaluates them: BOS and chat template included). */
  queryTokens: number;
  /** Of those, the tokens the engine's KV cache already held (not evaluated again). */
  hitTokens: number;
}

/**
 * What an engine's prefix (KV) cache holds now, reported to the coordinator on the health stream
 * when `version` changed (`HealthUpdate.prefix_cache`, for precise prefix-aware routing).
 */
export interface PrefixCacheState {
  /** Changes whenever what the cache holds may have changed (a generation started or ended). */
  version: number;
  /**
   * Chained prefix-block hashes (the protocol's `prefixBlockHashes`) of the prompt text the cache
   * holds, at most `MAX_REPORTED_PREFIX_BLOCKS`.
   */
  blockHashes: string[];
  /** KV cache cells (tokens) in use, and in all. */
  usedCells: number;
  totalCells: number;
  /** Context sequences holding a prompt, and in all. */
  usedSequences: number;
  totalSequences: number;
  /** Per served model. */
  counts: PrefixCacheCounts[];
}

/**
 * An inference backend. Stats (tokens, time to first token, tokens/s, finish reason) are
 * measured in one place by {@link runGeneration}, not by engines.
 */
export interface Engine {
  /** `llama-cpp`, `ollama`, `openai`, or a custom name. */
  readonly name: string;
  /** Model names this engine serves (valid after `load`). */
  readonly models: readonly string[];
  /** Loads models / checks the backend. Called once before serving. */
  load(): Promise<void>;
  /** Streams a generation; stops when `request.signal` aborts or the consumer stops iterating. */
  generate(request: GenerateRequest): AsyncIterable<EngineChunk>;
  /**
   * Embeds texts, when the engine can (llama-cpp, Ollama, OpenAI-compatible servers that serve
   * `/v1/embeddings`); absent otherwise, and the agent answers 400 naming the model.
   */
  embed?(request: EmbedRequest): Promise<EmbedResult>;
  /**
   * What the engine's own prefix cache holds (llama-cpp); absent for engines whose server caches
   * prefixes out of the agent's sight (Ollama, OpenAI-compatible servers such as vLLM), and
   * undefined before `load`.
   */
  prefixCache?(): PrefixCacheState | undefined;
  /** Releases the engine's resources. */
  close(): Promise<void>;
}
