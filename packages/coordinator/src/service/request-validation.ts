import { z } from 'zod';
import { parseGenerationParameterMap } from '@titancompute/protocol';
import { InvalidRequestError } from '../errors.js';

/** Documented defaults of v1. */
export const DEFAULT_MAX_TOKENS = 100;
/** Default temperature when the request leaves it unset. */
export const DEFAULT_TEMPERATURE = 0.7;
/** Parameter that states the free memory (MB) a job needs on the agent. */
export const REQUIRED_MEMORY_PARAMETER = 'required_memory_mb';

/** Chat roles a request's messages may carry. */
export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;
/** Most chat messages one request may carry. */
export const MAX_CHAT_MESSAGES = 1024;

/** One chat turn of a request (the proto's `ChatMessage`). */
export interface ChatMessageInput {
  /** One of {@link CHAT_ROLES}. */
  role: string;
  content: string;
}

/** Limits applied to every inference request. */
export interface RequestLimits {
  /** Largest max_tokens accepted. Default 4096. */
  maxTokensLimit: number;
  /** Largest prompt in UTF-8 bytes, and largest total of the chat messages' contents. Default 32 KiB. */
  maxPromptBytes: number;
  /** Models clients may ask for; empty = any model some agent serves. */
  allowedModels: ReadonlySet<string>;
}

/** An inference request as it arrives (gRPC or REST), before defaults. */
export interface InferenceInput {
  clientId: string;
  model: string;
  /** The prompt; empty when the request carries `messages` instead. */
  prompt: string;
  /** A chat conversation instead of a prompt (exactly one of the two). Absent = none. */
  messages?: readonly ChatMessageInput[] | undefined;
  /** 0 or absent → 100. */
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  /** True when `temperature` was set on purpose (0 then means greedy). */
  temperatureSet?: boolean | undefined;
  parameters?: Record<string, string> | undefined;
  excludeAgentIds?: readonly string[] | undefined;
  /**
   * The raw `authorization` header (REST, OpenAI routes) or gRPC metadata value, e.g.
   * `Bearer tk-…`. With API keys in force the router authenticates it and `clientId` becomes the
   * key's name; in auth mode `none` it is ignored.
   */
  authorization?: string | undefined;
}

/** A validated request with defaults applied. */
export interface ValidatedInference {
  clientId: string;
  model: string;
  /** Empty when the request is a chat (`messages` not empty). */
  prompt: string;
  /** The chat messages; empty for a prompt request. */
  messages: ChatMessageInput[];
  maxTokens: number;
  temperature: number;
  parameters: Record<string, string>;
  excludeAgentIds: ReadonlySet<string>;
  requiredMemoryMb: number | undefined;
}

const FIELD_NAMES: Record<string, string> = {
  clientId: 'client_id',
  model: 'model',
  prompt: 'prompt',
  messages: 'messages',
  maxTokens: 'max_tokens',
  temperature: 'temperature',
  parameters: 'parameters',
  excludeAgentIds: 'exclude_agent_ids',
};

const MAX_PARAMETERS = 64;

function schemaFor(limits: RequestLimits) {
  return z.object({
    clientId: z.string().trim().min(1, 'is required').max(256, 'must be at most 256 characters'),
    model: z.string().trim().min(1, 'is required').max(256, 'must be at most 256 characters'),
    prompt: z.string().refine((p) => Buffer.byteLength(p, 'utf8') <= limits.maxPromptBytes, `must be at most ${limits.maxPromptBytes} bytes`),
    messages: z
      .array(
        z.object({
          role: z.enum(CHAT_ROLES, { message: `must be one of ${CHAT_ROLES.join(', ')}` }),
          content: z.string(),
        }),
      )
      .max(MAX_CHAT_MESSAGES, `must have at most ${MAX_CHAT_MESSAGES} messages`)
      .refine(
        (ms) => ms.reduce((n, m) => n + Buffer.byteLength(m.content, 'utf8'), 0) <= limits.maxPromptBytes,
        `contents must total at most ${limits.maxPromptBytes} bytes`,
      ),
    maxTokens: z
      .number()
      .int('must be an integer')
      .refine((n) => n === 0 || (n >= 1 && n <= limits.maxTokensLimit), `must be from 1 to ${limits.maxTokensLimit}`),
    temperature: z.number().refine((t) => Number.isFinite(t) && t >= 0 && t <= 2, 'must be from 0 to 2'),
    parameters: z
      .record(z.string().max(128, 'keys must be at most 128 characters'), z.string().max(4096, 'values must be at most 4096 characters'))
      .refine((p) => Object.keys(p).length <= MAX_PARAMETERS, `must have at most ${MAX_PARAMETERS} entries`),
    excludeAgentIds: z.array(z.string()).max(1024, 'must list at most 1024 agents'),
  });
}

/**
 * Validates an inference request and applies defaults (max_tokens 100; temperature 0.7 when
 * unset — 0 counts as unset unless `temperatureSet`). A request carries exactly one of a
 * non-empty `prompt` or non-empty `messages` (roles system, user, assistant; contents totalling
 * at most `maxPromptBytes`). Throws {@link InvalidRequestError}
 * naming the first bad field by its path (`client_id`, `model`, `prompt`, `messages`,
 * `messages[i].role`, `messages[i].content`, `max_tokens`,
 * `temperature`, `parameters`, `parameters.<key>`, `exclude_agent_ids[i]`).
 *
 * @example
 * ```ts
 * const validate = createRequestValidator({ maxTokensLimit: 4096, maxPromptBytes: 32_768, allowedModels: new Set() });
 * const req = validate({ clientId: 'c', model: 'm', prompt: 'hi' }); // req.maxTokens === 100
 * ```
 */
export function createRequestValidator(limits: RequestLimits): (input: InferenceInput) => ValidatedInference {
  const schema = schemaFor(limits);
  return (input) => {
    const parsed = schema.safeParse({
      clientId: input.clientId,
      model: input.model,
      prompt: input.prompt,
      messages: input.messages ?? [],
      maxTokens: input.maxTokens ?? 0,
      temperature: input.temperature ?? 0,
      parameters: input.parameters ?? {},
      excludeAgentIds: input.excludeAgentIds ?? [],
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const key = String(issue?.path[0] ?? 'request');
      // The full path, e.g. `parameters.top_p` or `exclude_agent_ids[2]`, not just the top-level field.
      const field = (issue?.path ?? [])
        .slice(1)
        .reduce<string>((acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : `${acc}.${String(seg)}`), FIELD_NAMES[key] ?? key);
      // A bad record key reports "Invalid key in record"; its own issue says what is wrong.
      const cause = issue?.code === 'invalid_key' ? (issue.issues[0] ?? issue) : issue;
      const message = cause?.code === 'invalid_type' ? `must be a ${String((cause as { expected?: unknown }).expected)}` : (cause?.message ?? 'is invalid');
      throw new InvalidRequestError(field, message);
    }
    const v = parsed.data;
    if (v.prompt === '' && v.messages.length === 0) throw new InvalidRequestError('prompt', 'is required (or send messages)');
    if (v.prompt !== '' && v.messages.length > 0)
      throw new InvalidRequestError('messages', 'must be empty when prompt is set (send either prompt or messages)');
    if (limits.allowedModels.size > 0 && !limits.allowedModels.has(v.model)) {
      throw new InvalidRequestError('model', `"${v.model}" is not allowed here (allowed: ${[...limits.allowedModels].join(', ')})`);
    }
    // The generation parameters engines act on, by the protocol's one schema: a value the agent
    // would refuse is refused here, before a slot is reserved or a token signed.
    const generation = parseGenerationParameterMap(v.parameters);
    if (!generation.ok) throw new InvalidRequestError(`parameters.${generation.key}`, generation.message);
    let requiredMemoryMb: number | undefined;
    const rawRequired = v.parameters[REQUIRED_MEMORY_PARAMETER];
    if (rawRequired !== undefined) {
      if (!/^\d+$/.test(rawRequired.trim())) {
        throw new InvalidRequestError(`parameters.${REQUIRED_MEMORY_PARAMETER}`, 'must be a non-negative integer (MB)');
      }
      requiredMemoryMb = Number(rawRequired.trim());
    }
    // float32 on the wire: 0.7 arrives as 0.699999988; keep six decimals.
    const temperature = Math.round(v.temperature * 1e6) / 1e6;
    const temperatureSet = input.temperatureSet ?? false;
    return {
      clientId: v.clientId,
      model: v.model,
      prompt: v.prompt,
      messages: v.messages.map((m) => ({ role: m.role, content: m.content })),
      maxTokens: v.maxTokens === 0 ? DEFAULT_MAX_TOKENS : v.maxTokens,
      temperature: !temperatureSet && temperature === 0 ? DEFAULT_TEMPERATURE : temperature,
      parameters: v.parameters,
      excludeAgentIds: new Set(v.excludeAgentIds),
      requiredMemoryMb,
    };
  };
}
