import { z } from 'zod';
import { EngineError } from '../errors.js';
import type { EmbedRequest, EmbedResult, Engine, EngineChunk, GenerateRequest } from './engine.js';
import { DEFAULT_HTTP_TIMEOUTS, fetchJson, fetchStream, type HttpTimeouts } from './http-stream.js';
import { parseGenerationParameters } from './parameters.js';

/** The Ollama URL used when none is given (v1's OLLAMA_HOST default). */
export const DEFAULT_OLLAMA_HOST = 'http://localhost:11434';

/** Options of {@link createOllamaEngine}. */
export interface OllamaEngineOptions {
  /** Ollama base URL. Default `http://localhost:11434` (v1's OLLAMA_HOST). */
  host?: string;
  /** Models to serve. Default: every model `/api/tags` lists. */
  models?: readonly string[];
  /** Models to `/api/pull` at load when Ollama does not have them (PRELOAD_MODELS). */
  preloadModels?: readonly string[];
  /** Deadlines of a generation. Default idle 60 s, total 10 min. */
  timeouts?: Partial<HttpTimeouts>;
  /** Deadline of one `/api/pull`. Default 30 min. */
  pullTimeoutMs?: number;
}

interface OllamaLine {
  response?: string;
  /** `/api/chat` lines carry the text here instead of `response`. */
  message?: { role?: string; content?: string };
  done?: boolean;
  done_reason?: string;
  prompt_eval_count?: number;
  error?: string;
}

/** The fields of an `/api/embed` answer the engine reads: one vector per input, and the tokens evaluated. */
const embedResponseSchema = z.object({
  embeddings: z.array(z.array(z.number())),
  prompt_eval_count: z.number().int().nonnegative().optional(),
});

/** Normalises a host (`localhost:11434`, `http://h:11434/`) into a base URL. */
function baseUrl(host: string): string {
  const withScheme = /^https?:\/\//.test(host) ? host : `http://${host}`;
  return withScheme.replace(/\/+$/, '');
}

/**
 * An engine backed by an Ollama server: `/api/generate` (prompts) or `/api/chat` (chat
 * messages, templated by Ollama with the model's own template) streaming NDJSON, `/api/tags`
 * to list models, `/api/pull` for preloads, and `/api/embed` for `embed` (all inputs in one
 * call; Ollama truncates an input longer than the model's context, its default; the tokens
 * are Ollama's `prompt_eval_count`, 0 when it sends none). Upstream errors map as for
 * generations: HTTP 404 (unknown model) is `model_not_found`, others `engine_error`.
 *
 * @example
 * ```ts
 * const engine = createOllamaEngine({ host: 'http://localhost:11434', preloadModels: ['llama3.2:1b'] });
 * await engine.load();
 * ```
 */
export function createOllamaEngine(options: OllamaEngineOptions = {}): Engine & Required<Pick<Engine, 'embed'>> {
  const base = baseUrl(options.host ?? DEFAULT_OLLAMA_HOST);
  const timeouts: HttpTimeouts = {
    idleTimeoutMs: options.timeouts?.idleTimeoutMs ?? DEFAULT_HTTP_TIMEOUTS.idleTimeoutMs,
    requestTimeoutMs: options.timeouts?.requestTimeoutMs ?? DEFAULT_HTTP_TIMEOUTS.requestTimeoutMs,
  };
  let models: string[] = [...(options.models ?? [])];
  return {
    name: 'ollama',
    get models() {
      return models;
    },
    async load() {
      const tags = await fetchJson<{ models?: { name?: string; model?: string }[] }>(`${base}/api/tags`, { method: 'GET' }, timeouts.idleTimeoutMs);
      const available = new Set<string>();
      for (const m of tags.models ?? []) {
        for (const name of [m.name, m.model]) {
          if (!name) continue;
          available.add(name);
          if (name.endsWith(':latest')) available.add(name.slice(0, -':latest'.length));
        }
      }
      for (const wanted of options.preloadModels ?? []) {
        if (available.has(wanted)) continue;
        const pulled = await fetchJson<{ status?: string; error?: string }>(
          `${base}/api/pull`,
          { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: wanted, stream: false }) },
          options.pullTimeoutMs ?? 1_800_000,
        );
        if (pulled.error) throw new EngineError(`ollama could not pull ${wanted}: ${pulled.error}`, 'engine_error', { model: wanted });
        available.add(wanted);
      }
      if (models.length === 0) models = [...available];
    },
    async *generate(request: GenerateRequest): AsyncGenerator<EngineChunk> {
      const p = parseGenerationParameters(request.parameters);
      const chat = request.messages !== undefined && request.messages.length > 0;
      const body = {
        model: request.model,
        ...(chat ? { messages: request.messages?.map((m) => ({ role: m.role, content: m.content })) } : { prompt: request.prompt }),
        stream: true,
        options: {
          num_predict: request.maxTokens,
          temperature: request.temperature,
          ...(p.topP !== undefined ? { top_p: p.topP } : {}),
          ...(p.topK !== undefined ? { top_k: p.topK } : {}),
          ...(p.minP !== undefined ? { min_p: p.minP } : {}),
          ...(p.seed !== undefined ? { seed: p.seed } : {}),
          ...(p.repeatPenalty !== undefined ? { repeat_penalty: p.repeatPenalty } : {}),
          ...(p.presencePenalty !== undefined ? { presence_penalty: p.presencePenalty } : {}),
          ...(p.frequencyPenalty !== undefined ? { frequency_penalty: p.frequencyPenalty } : {}),
          ...(p.stop ? { stop: p.stop } : {}),
        },
      };
      const res = await fetchStream(
        `${base}${chat ? '/api/chat' : '/api/generate'}`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
        timeouts,
        request.signal,
      );
      try {
        for await (const line of res.lines()) {
          if (line.trim() === '') continue;
          let parsed: OllamaLine;
          try {
            parsed = JSON.parse(line) as OllamaLine;
          } catch (cause) {
            throw new EngineError(`ollama sent a line that is not JSON: ${line.slice(0, 100)}`, 'engine_error', {}, { cause });
          }
          if (parsed.error) throw new EngineError(`ollama failed mid-stream: ${parsed.error}`, 'engine_error', { model: request.model });
          const text = chat ? parsed.message?.content : parsed.response;
          if (text) yield { text, tokens: 1 };
          if (parsed.done) {
            yield {
              text: '',
              tokens: 0,
              finishReason: parsed.done_reason === 'length' ? 'length' : 'stop',
              ...(parsed.prompt_eval_count !== undefined ? { promptTokens: parsed.prompt_eval_count } : {}),
            };
            return;
          }
        }
        if (!request.signal.aborted) throw new EngineError('ollama closed the stream before done', 'engine_error', { model: request.model });
      } finally {
        res.abort();
      }
    },
    async embed(request: EmbedRequest): Promise<EmbedResult> {
      const answer = await fetchJson<unknown>(
        `${base}/api/embed`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: request.model, input: request.input }) },
        timeouts,
        request.signal,
      );
      const parsed = embedResponseSchema.safeParse(answer);
      if (!parsed.success)
        throw new EngineError(`ollama sent an invalid /api/embed answer: ${z.prettifyError(parsed.error).replace(/\n\s*/g, ' ')}`, 'engine_error', {
          model: request.model,
        });
      const { embeddings, prompt_eval_count: promptTokens = 0 } = parsed.data;
      if (embeddings.length !== request.input.length) {
        throw new EngineError(`ollama sent ${embeddings.length} embeddings for ${request.input.length} inputs`, 'engine_error', {
          model: request.model,
        });
      }
      return { embeddings, promptTokens };
    },
    async close() {
      /* nothing held */
    },
  };
}
