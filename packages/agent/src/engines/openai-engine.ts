import { EngineError } from '../errors.js';
import type { Engine, EngineChunk, GenerateRequest } from './engine.js';
import { DEFAULT_HTTP_TIMEOUTS, fetchJson, fetchStream, sseEvents, type HttpTimeouts } from './http-stream.js';
import { parseGenerationParameters } from './parameters.js';

/** Which OpenAI endpoint a generation uses. */
export type OpenAiApi = 'completions' | 'chat';

/** The endpoint used when neither the engine options nor the request name one. */
export const DEFAULT_OPENAI_API: OpenAiApi = 'completions';

/** Options of {@link createOpenAiEngine}. */
export interface OpenAiEngineOptions {
  /** Server base URL, with or without `/v1` (e.g. `http://localhost:8000`). */
  url: string;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string;
  /** Default endpoint; a request's `api` parameter (`chat` | `completions`) overrides it. Default `completions`. */
  api?: OpenAiApi;
  /** Models to serve. Default: every model `/v1/models` lists. */
  models?: readonly string[];
  /** Deadlines of a generation. Default idle 60 s, total 10 min. */
  timeouts?: Partial<HttpTimeouts>;
}

interface OpenAiChunk {
  choices?: { text?: string; delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number } | null;
  error?: { message?: string } | string;
}

/**
 * An engine backed by any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio):
 * streaming SSE `/v1/completions` or `/v1/chat/completions`, `/v1/models` to list models.
 * Chat messages always go to `/v1/chat/completions` as they are (the server applies the
 * model's template); a prompt goes to the endpoint `api` names.
 *
 * @example
 * ```ts
 * const engine = createOpenAiEngine({ url: 'http://localhost:8000', api: 'chat' });
 * await engine.load();
 * ```
 */
export function createOpenAiEngine(options: OpenAiEngineOptions): Engine {
  const base = `${options.url.replace(/\/+$/, '').replace(/\/v1$/, '')}/v1`;
  const timeouts: HttpTimeouts = {
    idleTimeoutMs: options.timeouts?.idleTimeoutMs ?? DEFAULT_HTTP_TIMEOUTS.idleTimeoutMs,
    requestTimeoutMs: options.timeouts?.requestTimeoutMs ?? DEFAULT_HTTP_TIMEOUTS.requestTimeoutMs,
  };
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}) };
  let models: string[] = [...(options.models ?? [])];
  return {
    name: 'openai',
    get models() {
      return models;
    },
    async load() {
      const list = await fetchJson<{ data?: { id?: string }[] }>(`${base}/models`, { method: 'GET', headers }, timeouts.idleTimeoutMs);
      if (models.length === 0) models = (list.data ?? []).map((m) => m.id).filter((id): id is string => Boolean(id));
    },
    async *generate(request: GenerateRequest): AsyncGenerator<EngineChunk> {
      const p = parseGenerationParameters(request.parameters);
      const apiParam = request.parameters.api;
      if (apiParam !== undefined && apiParam !== 'chat' && apiParam !== 'completions') {
        throw new EngineError('options.api is invalid: expected chat or completions', 'invalid_parameters', { field: 'options.api' });
      }
      const messages = request.messages !== undefined && request.messages.length > 0 ? request.messages : undefined;
      if (messages && apiParam === 'completions') {
        throw new EngineError('options.api is completions but the request has chat messages: use chat (or leave api unset)', 'invalid_parameters', {
          field: 'options.api',
        });
      }
      const api: OpenAiApi = messages ? 'chat' : (apiParam ?? options.api ?? DEFAULT_OPENAI_API);
      const body = {
        model: request.model,
        ...(api === 'chat'
          ? { messages: messages ? messages.map((m) => ({ role: m.role, content: m.content })) : [{ role: 'user', content: request.prompt }] }
          : { prompt: request.prompt }),
        max_tokens: request.maxTokens,
        temperature: request.temperature,
        stream: true,
        ...(p.topP !== undefined ? { top_p: p.topP } : {}),
        ...(p.topK !== undefined ? { top_k: p.topK } : {}),
        ...(p.minP !== undefined ? { min_p: p.minP } : {}),
        ...(p.seed !== undefined ? { seed: p.seed } : {}),
        ...(p.repeatPenalty !== undefined ? { repetition_penalty: p.repeatPenalty } : {}),
        ...(p.presencePenalty !== undefined ? { presence_penalty: p.presencePenalty } : {}),
        ...(p.frequencyPenalty !== undefined ? { frequency_penalty: p.frequencyPenalty } : {}),
        ...(p.stop ? { stop: p.stop } : {}),
      };
      const path = api === 'chat' ? '/chat/completions' : '/completions';
      const res = await fetchStream(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) }, timeouts, request.signal);
      try {
        for await (const ev of sseEvents(res.lines())) {
          if (ev.data.trim() === '[DONE]') return;
          let parsed: OpenAiChunk;
          try {
            parsed = JSON.parse(ev.data) as OpenAiChunk;
          } catch (cause) {
            throw new EngineError(`OpenAI-compatible server sent an event that is not JSON: ${ev.data.slice(0, 100)}`, 'engine_error', {}, { cause });
          }
          if (ev.event === 'error' || parsed.error) {
            const msg = typeof parsed.error === 'string' ? parsed.error : (parsed.error?.message ?? ev.data);
            throw new EngineError(`OpenAI-compatible server failed mid-stream: ${msg}`, 'engine_error', { model: request.model });
          }
          const choice = parsed.choices?.[0];
          const text = (api === 'chat' ? choice?.delta?.content : choice?.text) ?? '';
          const finish = choice?.finish_reason;
          const promptTokens = parsed.usage?.prompt_tokens;
          if (text !== '' || finish || promptTokens !== undefined) {
            yield {
              text,
              tokens: text === '' ? 0 : 1,
              ...(finish ? { finishReason: finish === 'length' ? ('length' as const) : ('stop' as const) } : {}),
              ...(promptTokens !== undefined ? { promptTokens } : {}),
            };
          }
        }
        if (!request.signal.aborted)
          throw new EngineError('OpenAI-compatible server closed the stream without [DONE]', 'engine_error', { model: request.model });
      } finally {
        res.abort();
      }
    },
    async close() {
      /* nothing held */
    },
  };
}
