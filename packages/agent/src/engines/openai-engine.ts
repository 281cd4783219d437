import { z } from 'zod';
import { EngineError } from '../errors.js';
import type { EmbedRequest, EmbedResult, Engine, EngineChunk, GenerateRequest } from './engine.js';
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

/** The fields of a `/v1/embeddings` answer the engine reads: the vectors (with their input's index) and the prompt tokens. */
const embeddingsResponseSchema = z.object({
  data: z.array(z.object({ index: z.number().int().nonnegative().optional(), embedding: z.array(z.number()) })),
  usage: z.object({ prompt_tokens: z.number().int().nonnegative().optional() }).nullish(),
});

/**
 * Whether an HTTP error from `/v1/embeddings` means the model (or the server) cannot embed:
 * vLLM's 400 "The model does not support Embeddings API", a 404 that names embeddings or is a
 * bare "Not Found" (no such route), and 501 (llama.cpp's server without `--embeddings`). A 404
 * about the model ("The model `x` does not exist") is not: that model is unknown.
 */
function meansCannotEmbed(status: number, message: string): boolean {
  if (status === 501) return true;
  if (status !== 400 && status !== 404) return false;
  return /embed/i.test(message) || (status === 404 && /^\s*not found\s*$/i.test(message));
}

/**
 * An engine backed by any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio):
 * streaming SSE `/v1/completions` or `/v1/chat/completions`, `/v1/models` to list models.
 * Chat messages always go to `/v1/chat/completions` as they are (the server applies the
 * model's template); a prompt goes to the endpoint `api` names. `embed` POSTs all inputs to
 * `/v1/embeddings` in one call (vectors put back in input order by `index`, tokens from
 * `usage.prompt_tokens`, 0 without it); an answer saying the model cannot embed (HTTP 400 or
 * 404 about embeddings, a bare 404 "Not Found", any 501) is `invalid_parameters` whose message
 * names the model, other errors map as for generations.
 *
 * @example
 * ```ts
 * const engine = createOpenAiEngine({ url: 'http://localhost:8000', api: 'chat' });
 * await engine.load();
 * ```
 */
export function createOpenAiEngine(options: OpenAiEngineOptions): Engine & Required<Pick<Engine, 'embed'>> {
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
    async embed(request: EmbedRequest): Promise<EmbedResult> {
      let answer: unknown;
      try {
        answer = await fetchJson<unknown>(
          `${base}/embeddings`,
          { method: 'POST', headers, body: JSON.stringify({ model: request.model, input: request.input }) },
          timeouts,
          request.signal,
        );
      } catch (err) {
        const status = err instanceof EngineError ? err.context.status : undefined;
        const upstream = err instanceof EngineError ? err.context.upstreamMessage : undefined;
        if (typeof status === 'number' && typeof upstream === 'string' && meansCannotEmbed(status, upstream)) {
          throw new EngineError(
            `model ${request.model} cannot embed: the OpenAI-compatible server answered HTTP ${status}: ${upstream}`,
            'invalid_parameters',
            { model: request.model, field: 'model', status },
            { cause: err },
          );
        }
        throw err;
      }
      const parsed = embeddingsResponseSchema.safeParse(answer);
      if (!parsed.success) {
        throw new EngineError(
          `OpenAI-compatible server sent an invalid /v1/embeddings answer: ${z.prettifyError(parsed.error).replace(/\n\s*/g, ' ')}`,
          'engine_error',
          { model: request.model },
        );
      }
      const { data, usage } = parsed.data;
      // One vector per input, each input's once, put in input order by index.
      const slots: (number[] | undefined)[] = request.input.map(() => undefined);
      let complete = data.length === slots.length;
      for (const [position, item] of data.entries()) {
        const at = item.index ?? position;
        if (at >= slots.length || slots[at] !== undefined) complete = false;
        else slots[at] = item.embedding;
      }
      const embeddings = slots.filter((v): v is number[] => v !== undefined);
      if (!complete || embeddings.length !== slots.length) {
        throw new EngineError(
          `OpenAI-compatible server sent ${data.length} embeddings (indexes ${data.map((d, i) => d.index ?? i).join(', ')}) for ${request.input.length} inputs`,
          'engine_error',
          { model: request.model },
        );
      }
      return { embeddings, promptTokens: usage?.prompt_tokens ?? 0 };
    },
    async close() {
      /* nothing held */
    },
  };
}
