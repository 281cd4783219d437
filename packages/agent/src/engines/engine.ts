/** Names of the built-in engines (`--engine`). */
export const ENGINE_NAMES = ['llama-cpp', 'ollama', 'openai'] as const;
/** A built-in engine name. */
export type EngineName = (typeof ENGINE_NAMES)[number];

/** One generation asked of an engine. Limits are already validated and defaulted. */
export interface GenerateRequest {
  model: string;
  prompt: string;
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
  /** Releases the engine's resources. */
  close(): Promise<void>;
}
