import { z } from 'zod';
import { OpenAiRequestError } from '../errors.js';

/**
 * The OpenAI-compatible request contract shared by the coordinator (which schedules and signs a
 * session token for a request) and the agent (which serves the same `/v1/*` routes and verifies
 * that the token was signed for the very request it receives). Both read a request body with the
 * parsers below, so the prompt, messages, limits and parameters they bind cannot drift apart.
 *
 * @packageDocumentation
 */

/** The key of the parameter that marks an embeddings grant (`parameters.task = "embeddings"`). */
export const OPENAI_TASK_PARAMETER = 'task';
/** Value of {@link OPENAI_TASK_PARAMETER} on an embeddings grant. */
export const OPENAI_EMBEDDINGS_TASK = 'embeddings';
/** OpenAI's default temperature, applied when a request leaves it out. */
export const OPENAI_DEFAULT_TEMPERATURE = 1;
/** Most stop sequences a request may carry (OpenAI allows 4; engines take up to 16). */
export const OPENAI_MAX_STOP_SEQUENCES = 16;
/** Most inputs one embeddings request may carry. */
export const OPENAI_MAX_EMBEDDING_INPUTS = 256;

/** A chat turn as the engines take it (`developer` is read as `system`). */
export interface OpenAiChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * A completion or chat request read from an OpenAI body, in the terms of an inference request.
 * The coordinator signs a token for `prompt` or `messages`, `maxTokens`, `temperature` and
 * `parameters`; the agent binds the same values when it verifies that token.
 */
export interface OpenAiGenerationRequest {
  /** `chat` for `/v1/chat/completions`, `completion` for `/v1/completions`. */
  kind: 'chat' | 'completion';
  model: string;
  /** The prompt of a completion; empty for a chat. */
  prompt: string;
  /** The conversation of a chat; empty for a completion. */
  messages: OpenAiChatMessage[];
  /** `max_completion_tokens` or `max_tokens`; undefined = the server's default. */
  maxTokens: number | undefined;
  /** Defaults to OpenAI's 1. */
  temperature: number;
  /** Engine parameters: `top_p`, `seed`, `stop` (a JSON array), `presence_penalty`, `frequency_penalty`. */
  parameters: Record<string, string>;
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with usage and no choices. */
  includeUsage: boolean;
  /** OpenAI's `user`, when given (the cluster identifies callers by API key instead). */
  user: string | undefined;
}

/** An embeddings request read from an OpenAI body. */
export interface OpenAiEmbeddingsRequest {
  model: string;
  /** The inputs, in order (a single string input is a list of one). */
  input: string[];
  encodingFormat: 'float' | 'base64';
  user: string | undefined;
}

const CHAT_ROLES = ['system', 'developer', 'user', 'assistant'] as const;

const textPart = z.object({ type: z.literal('text'), text: z.string() });

const messageSchema = z.object({
  role: z.string(),
  content: z.union([z.string(), z.array(z.unknown()), z.null()]).optional(),
  name: z.string().optional(),
  tool_calls: z.unknown().optional(),
  function_call: z.unknown().optional(),
});

const num = (field: string, min: number, max: number) =>
  z
    .number({ error: `${field} must be a number` })
    .min(min, `${field} must be ≥ ${min}`)
    .max(max, `${field} must be ≤ ${max}`)
    .nullish();

const commonSchema = {
  model: z.string({ error: 'model must be a string' }).trim().min(1, 'model is required'),
  max_tokens: z.number({ error: 'max_tokens must be an integer' }).int('max_tokens must be an integer').min(1, 'max_tokens must be ≥ 1').nullish(),
  temperature: num('temperature', 0, 2),
  top_p: num('top_p', 0, 1),
  presence_penalty: num('presence_penalty', -2, 2),
  frequency_penalty: num('frequency_penalty', -2, 2),
  seed: z
    .number({ error: 'seed must be an integer' })
    .int('seed must be an integer')
    .min(0, 'seed must be ≥ 0')
    .max(2 ** 32 - 1, 'seed must be < 2^32')
    .nullish(),
  stop: z
    .union([z.string(), z.array(z.string({ error: 'stop must be a string or an array of strings' }))], {
      error: 'stop must be a string or an array of strings',
    })
    .nullish(),
  stream: z.boolean({ error: 'stream must be a boolean' }).nullish(),
  stream_options: z
    .object({ include_usage: z.boolean({ error: 'stream_options.include_usage must be a boolean' }).optional() })
    .passthrough()
    .nullish(),
  n: z.number({ error: 'n must be an integer' }).int('n must be an integer').nullish(),
  logprobs: z.unknown().optional(),
  user: z.string({ error: 'user must be a string' }).nullish(),
};

const chatSchema = z
  .object({
    ...commonSchema,
    messages: z.array(messageSchema, { error: 'messages must be an array of messages' }).min(1, 'messages must not be empty'),
    max_completion_tokens: z
      .number({ error: 'max_completion_tokens must be an integer' })
      .int('max_completion_tokens must be an integer')
      .min(1, 'max_completion_tokens must be ≥ 1')
      .nullish(),
    top_logprobs: z.unknown().optional(),
    tools: z.unknown().optional(),
    tool_choice: z.unknown().optional(),
    functions: z.unknown().optional(),
    function_call: z.unknown().optional(),
    response_format: z.unknown().optional(),
    logit_bias: z.unknown().optional(),
    audio: z.unknown().optional(),
    modalities: z.unknown().optional(),
    prediction: z.unknown().optional(),
  })
  .passthrough();

const completionSchema = z
  .object({
    ...commonSchema,
    prompt: z.unknown(),
    echo: z.boolean({ error: 'echo must be a boolean' }).nullish(),
    best_of: z.number({ error: 'best_of must be an integer' }).int().nullish(),
    suffix: z.string({ error: 'suffix must be a string' }).nullish(),
    logit_bias: z.unknown().optional(),
  })
  .passthrough();

const embeddingsSchema = z
  .object({
    model: commonSchema.model,
    input: z.unknown(),
    encoding_format: z.enum(['float', 'base64'], { error: 'encoding_format must be "float" or "base64"' }).nullish(),
    dimensions: z.number({ error: 'dimensions must be an integer' }).int().nullish(),
    user: commonSchema.user,
  })
  .passthrough();

/** `messages[1].content`: a zod issue path as OpenAI names params. */
function paramOf(path: readonly PropertyKey[]): string | null {
  if (path.length === 0) return null;
  return path.reduce<string>((acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : acc ? `${acc}.${String(seg)}` : String(seg)), '');
}

/** Parses `body` with `schema`, turning the first issue into an {@link OpenAiRequestError}. */
function parseWith<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new OpenAiRequestError('the request body must be a JSON object', null, 'invalid_json');
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const param = paramOf(issue?.path ?? []);
  const message = issue?.message ?? 'invalid request';
  // zod's own wording for a missing field ("Invalid input: expected …") is replaced by a plain one.
  const value = (issue?.path ?? []).reduce<unknown>(
    (v, seg) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[seg] : undefined),
    body,
  );
  if (issue?.code === 'invalid_type' && value === undefined && param) throw new OpenAiRequestError(`${param} is required`, param, 'missing_required_parameter');
  throw new OpenAiRequestError(param && !message.startsWith(param.split(/[.[]/)[0] ?? '') ? `${param}: ${message}` : message, param, 'invalid_value');
}

const unsupported = (param: string, what: string) =>
  new OpenAiRequestError(`${param} is not supported by this server: ${what}`, param, 'unsupported_parameter');

const isSet = (v: unknown) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);

/** Refuses what OpenAI accepts but no engine here does (never silently ignored). */
function refuseUnsupported(body: Record<string, unknown>): void {
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw unsupported('n', 'only n = 1 (one choice per request)');
  if (body.logprobs === true || (typeof body.logprobs === 'number' && body.logprobs > 0)) throw unsupported('logprobs', 'log probabilities are not returned');
  if (isSet(body.top_logprobs) && body.top_logprobs !== 0) throw unsupported('top_logprobs', 'log probabilities are not returned');
  for (const field of ['tools', 'functions']) if (isSet(body[field])) throw unsupported(field, 'tool and function calling');
  for (const field of ['tool_choice', 'function_call']) if (isSet(body[field]) && body[field] !== 'none') throw unsupported(field, 'tool and function calling');
  if (isSet(body.response_format)) {
    const type = (body.response_format as { type?: unknown }).type;
    if (type !== 'text') throw unsupported('response_format', 'only {"type": "text"}');
  }
  if (isSet(body.logit_bias) && Object.keys(body.logit_bias as object).length > 0) throw unsupported('logit_bias', 'token biases');
  for (const field of ['audio', 'prediction']) if (isSet(body[field])) throw unsupported(field, 'text generation only');
  if (isSet(body.modalities) && JSON.stringify(body.modalities) !== '["text"]') throw unsupported('modalities', 'only ["text"]');
  if (body.echo === true) throw unsupported('echo', 'the prompt is not echoed');
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== 1) throw unsupported('best_of', 'only best_of = 1');
  if (isSet(body.suffix)) throw unsupported('suffix', 'insertion (suffix) completions');
}

/** A message's content as one string: a string, or the concatenated text of its `text` parts. */
function contentText(content: unknown, param: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  const parts = content as unknown[];
  let text = '';
  parts.forEach((part, i) => {
    const p = textPart.safeParse(part);
    if (!p.success) {
      const type = typeof part === 'object' && part !== null ? (part as { type?: unknown }).type : undefined;
      throw new OpenAiRequestError(
        `${param}[${i}]: only text content parts are supported${type ? ` (got type ${JSON.stringify(type)})` : ''}`,
        `${param}[${i}]`,
        'unsupported_content',
      );
    }
    text += p.data.text;
  });
  return text;
}

/** The engine parameters of a request's sampling fields, as strings (`stop` as a JSON array). */
function samplingParameters(body: z.output<typeof chatSchema> | z.output<typeof completionSchema>): Record<string, string> {
  const parameters: Record<string, string> = {};
  if (body.top_p != null) parameters.top_p = String(body.top_p);
  if (body.seed != null) parameters.seed = String(body.seed);
  if (body.presence_penalty != null) parameters.presence_penalty = String(body.presence_penalty);
  if (body.frequency_penalty != null) parameters.frequency_penalty = String(body.frequency_penalty);
  if (body.stop != null) {
    const stops = typeof body.stop === 'string' ? [body.stop] : body.stop;
    if (stops.length > OPENAI_MAX_STOP_SEQUENCES) throw new OpenAiRequestError(`stop: at most ${OPENAI_MAX_STOP_SEQUENCES} sequences`, 'stop', 'invalid_value');
    if (stops.some((s) => s === '')) throw new OpenAiRequestError('stop: sequences must not be empty', 'stop', 'invalid_value');
    if (stops.length > 0) parameters.stop = JSON.stringify(stops);
  }
  return parameters;
}

function commonFields(body: z.output<typeof chatSchema> | z.output<typeof completionSchema>) {
  const stream = body.stream === true;
  if (!stream && body.stream_options != null) {
    throw new OpenAiRequestError('stream_options is only allowed when stream is true', 'stream_options', 'invalid_value');
  }
  return {
    model: body.model,
    temperature: body.temperature ?? OPENAI_DEFAULT_TEMPERATURE,
    parameters: samplingParameters(body),
    stream,
    includeUsage: stream && body.stream_options?.include_usage === true,
    user: body.user ?? undefined,
  };
}

/**
 * Reads a `POST /v1/chat/completions` body. Message contents may be strings or arrays of text
 * parts; `developer` turns are read as `system`. Throws {@link OpenAiRequestError} naming the
 * field for anything invalid or unsupported (n > 1, tools, logprobs, response formats other than
 * text, non-text content, tool messages).
 *
 * @example
 * ```ts
 * const req = parseChatCompletionRequest({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 });
 * req.messages; // [{ role: 'user', content: 'Hi' }]
 * ```
 */
export function parseChatCompletionRequest(body: unknown): OpenAiGenerationRequest {
  const parsed = parseWith(chatSchema, body);
  refuseUnsupported(parsed);
  const messages = parsed.messages.map((m, i): OpenAiChatMessage => {
    if (!(CHAT_ROLES as readonly string[]).includes(m.role)) {
      throw new OpenAiRequestError(
        `messages[${i}].role: ${JSON.stringify(m.role)} is not supported (use ${CHAT_ROLES.join(', ')}; tool messages need tool calling, which this server does not do)`,
        `messages[${i}].role`,
        'unsupported_value',
      );
    }
    if (isSet(m.tool_calls) || isSet(m.function_call)) throw unsupported(`messages[${i}].tool_calls`, 'tool and function calling');
    const role = m.role === 'developer' ? 'system' : (m.role as OpenAiChatMessage['role']);
    return { role, content: contentText(m.content, `messages[${i}].content`) };
  });
  if (parsed.max_tokens != null && parsed.max_completion_tokens != null && parsed.max_tokens !== parsed.max_completion_tokens) {
    throw new OpenAiRequestError('max_tokens and max_completion_tokens differ; send one of them', 'max_completion_tokens', 'invalid_value');
  }
  return { kind: 'chat', prompt: '', messages, maxTokens: parsed.max_completion_tokens ?? parsed.max_tokens ?? undefined, ...commonFields(parsed) };
}

/**
 * Reads a `POST /v1/completions` body. `prompt` is a string or an array of exactly one string
 * (batches of prompts and token arrays are refused with 400).
 *
 * @example
 * ```ts
 * parseCompletionRequest({ model: 'tiny', prompt: 'Once upon a time', stop: ['\n'] }).parameters; // { stop: '["\\n"]' }
 * ```
 */
export function parseCompletionRequest(body: unknown): OpenAiGenerationRequest {
  const parsed = parseWith(completionSchema, body);
  refuseUnsupported(parsed);
  let prompt: string;
  if (typeof parsed.prompt === 'string') prompt = parsed.prompt;
  else if (Array.isArray(parsed.prompt) && parsed.prompt.length === 1 && typeof parsed.prompt[0] === 'string') prompt = parsed.prompt[0];
  else if (parsed.prompt === undefined || parsed.prompt === null) throw new OpenAiRequestError('prompt is required', 'prompt', 'missing_required_parameter');
  else if (Array.isArray(parsed.prompt) && parsed.prompt.every((p) => typeof p === 'string'))
    throw unsupported('prompt', 'one prompt per request (send a string)');
  else throw new OpenAiRequestError('prompt must be a string (token arrays are not supported)', 'prompt', 'invalid_value');
  if (prompt === '') throw new OpenAiRequestError('prompt must not be empty', 'prompt', 'invalid_value');
  return { kind: 'completion', prompt, messages: [], maxTokens: parsed.max_tokens ?? undefined, ...commonFields(parsed) };
}

/**
 * Reads a `POST /v1/embeddings` body: `input` is a string or an array of strings (token arrays
 * are refused), `encoding_format` `float` (default) or `base64`; `dimensions` is refused.
 *
 * @example
 * ```ts
 * parseEmbeddingsRequest({ model: 'tiny', input: ['a', 'b'] }).input; // ['a', 'b']
 * ```
 */
export function parseEmbeddingsRequest(body: unknown): OpenAiEmbeddingsRequest {
  const parsed = parseWith(embeddingsSchema, body);
  if (parsed.dimensions != null) throw unsupported('dimensions', "embeddings have the model's own size");
  let input: string[];
  if (typeof parsed.input === 'string') input = [parsed.input];
  else if (Array.isArray(parsed.input) && parsed.input.length > 0 && parsed.input.every((s) => typeof s === 'string')) input = parsed.input as string[];
  else if (parsed.input === undefined || parsed.input === null) throw new OpenAiRequestError('input is required', 'input', 'missing_required_parameter');
  else throw new OpenAiRequestError('input must be a string or a non-empty array of strings (token arrays are not supported)', 'input', 'invalid_value');
  if (input.length > OPENAI_MAX_EMBEDDING_INPUTS)
    throw new OpenAiRequestError(`input: at most ${OPENAI_MAX_EMBEDDING_INPUTS} inputs per request`, 'input', 'invalid_value');
  const empty = input.indexOf('');
  if (empty >= 0) throw new OpenAiRequestError(`input[${empty}] must not be empty`, `input[${empty}]`, 'invalid_value');
  return { model: parsed.model, input, encodingFormat: parsed.encoding_format ?? 'float', user: parsed.user ?? undefined };
}

/**
 * What an embeddings grant binds, in the terms of an inference request: the prompt is the
 * inputs' JSON array and the parameters mark the task, so a token signed for embeddings
 * verifies only for the same inputs (and says it is an embeddings job).
 *
 * @example
 * ```ts
 * embeddingsGrantInput(['a', 'b']); // { prompt: '["a","b"]', parameters: { task: 'embeddings' } }
 * ```
 */
export function embeddingsGrantInput(input: readonly string[]): { prompt: string; parameters: Record<string, string> } {
  return { prompt: JSON.stringify(input), parameters: { [OPENAI_TASK_PARAMETER]: OPENAI_EMBEDDINGS_TASK } };
}
