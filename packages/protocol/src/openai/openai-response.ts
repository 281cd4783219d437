/**
 * The OpenAI-compatible response contract: the objects, stream chunks, Server-Sent Events framing
 * and error bodies that the agent's and the coordinator's `/v1/*` routes send, shaped exactly as
 * OpenAI sends them so stock clients (the `openai` SDKs, LangChain, curl scripts) read them.
 *
 * @packageDocumentation
 */

/** Why a choice ended, as OpenAI names it. */
export type OpenAiFinishReason = 'stop' | 'length';

/** Token counts of a request (`usage`). */
export interface OpenAiUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** The `id` prefix of chat completions (`chatcmpl-…`) and completions (`cmpl-…`). */
export const OPENAI_ID_PREFIX = { chat: 'chatcmpl-', completion: 'cmpl-' } as const;

/** The content type of an event stream, with the headers OpenAI sends beside it. */
export const OPENAI_SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
} as const;

/** The last event of every stream. */
export const OPENAI_SSE_DONE = 'data: [DONE]\n\n';

/**
 * One Server-Sent Event carrying `value` as JSON: `data: {…}\n\n`.
 *
 * @example
 * ```ts
 * sseEvent({ a: 1 }); // 'data: {"a":1}\n\n'
 * ```
 */
export function sseEvent(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** Usage from the prompt and generated token counts. */
export function openAiUsage(promptTokens: number, completionTokens: number): OpenAiUsage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** Identity of one response: its id, creation time (unix seconds) and model; the same on every chunk of a stream. */
export interface OpenAiResponseIdentity {
  /** With its prefix (see {@link openAiResponseId}). */
  id: string;
  created: number;
  model: string;
}

/**
 * The identity of a response to a job: `chatcmpl-<jobId>` or `cmpl-<jobId>`, created now.
 *
 * @example
 * ```ts
 * openAiResponseId('chat', jobId, 'tiny'); // { id: 'chatcmpl-…', created: 1767…, model: 'tiny' }
 * ```
 */
export function openAiResponseId(kind: 'chat' | 'completion', jobId: string, model: string): OpenAiResponseIdentity {
  return { id: `${OPENAI_ID_PREFIX[kind]}${jobId}`, created: Math.floor(Date.now() / 1000), model };
}

/**
 * A `chat.completion.chunk`. The first chunk carries `delta.role`; content chunks carry
 * `delta.content`; the last choice chunk an empty delta and `finish_reason`. With
 * `include_usage`, every chunk has `usage: null` and one more chunk after the last carries the
 * usage and no choices.
 */
export function chatCompletionChunk(
  identity: OpenAiResponseIdentity,
  delta: { role?: 'assistant'; content?: string },
  finishReason: OpenAiFinishReason | null,
  includeUsage: boolean,
): Record<string, unknown> {
  return {
    ...identity,
    object: 'chat.completion.chunk',
    system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

/** A `text_completion` stream chunk (completions stream objects of the same type as the full response). */
export function completionChunk(
  identity: OpenAiResponseIdentity,
  text: string,
  finishReason: OpenAiFinishReason | null,
  includeUsage: boolean,
): Record<string, unknown> {
  return {
    ...identity,
    object: 'text_completion',
    system_fingerprint: null,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

/** The usage-only chunk that ends a stream asked with `stream_options.include_usage`. */
export function usageChunk(kind: 'chat' | 'completion', identity: OpenAiResponseIdentity, usage: OpenAiUsage): Record<string, unknown> {
  return { ...identity, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', system_fingerprint: null, choices: [], usage };
}

/** A whole (non-streaming) `chat.completion`. */
export function chatCompletion(
  identity: OpenAiResponseIdentity,
  content: string,
  finishReason: OpenAiFinishReason,
  usage: OpenAiUsage,
): Record<string, unknown> {
  return {
    ...identity,
    object: 'chat.completion',
    system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finishReason }],
    usage,
  };
}

/** A whole (non-streaming) `text_completion`. */
export function completion(identity: OpenAiResponseIdentity, text: string, finishReason: OpenAiFinishReason, usage: OpenAiUsage): Record<string, unknown> {
  return {
    ...identity,
    object: 'text_completion',
    system_fingerprint: null,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    usage,
  };
}

/**
 * An embeddings response (`object: "list"`). With `base64`, each vector is its float32
 * little-endian bytes in base64, as OpenAI sends them.
 */
export function embeddingsResponse(
  model: string,
  vectors: readonly (readonly number[])[],
  encoding: 'float' | 'base64',
  promptTokens: number,
): Record<string, unknown> {
  return {
    object: 'list',
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      embedding: encoding === 'base64' ? Buffer.from(Float32Array.from(v).buffer).toString('base64') : v,
    })),
    model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

/** A model of `GET /v1/models`. */
export interface OpenAiModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** `GET /v1/models`'s body: `{object: "list", data: [...]}`. Extra fields per model (e.g. the agents' count) are kept. */
export function modelList<M extends OpenAiModel>(models: readonly M[]): { object: 'list'; data: readonly M[] } {
  return { object: 'list', data: models };
}

/** OpenAI's error `type` for each status this cluster answers with. */
export const OPENAI_ERROR_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'invalid_request_error',
  405: 'invalid_request_error',
  408: 'timeout',
  413: 'invalid_request_error',
  429: 'rate_limit_exceeded',
  500: 'server_error',
  502: 'server_error',
  503: 'server_error',
  504: 'timeout',
};

/** An error body in OpenAI's shape. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/**
 * An error body in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`; `type`
 * follows the status (see {@link OPENAI_ERROR_TYPES}) unless given.
 *
 * @example
 * ```ts
 * openAiError(404, 'model "x" is not served by any agent', { param: 'model', code: 'model_not_found' });
 * ```
 */
export function openAiError(status: number, message: string, options: { param?: string | null; code?: string | null; type?: string } = {}): OpenAiErrorBody {
  return {
    error: {
      message,
      type: options.type ?? OPENAI_ERROR_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error'),
      param: options.param ?? null,
      code: options.code ?? null,
    },
  };
}
