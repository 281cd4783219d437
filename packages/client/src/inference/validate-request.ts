import { z } from 'zod';
import { InvalidArgumentError } from '../errors.js';
import type { ChatMessage, ChatRequest, GenerateRequest } from '../types.js';

/** A {@link GenerateRequest} after validation, ready for the wire. */
export interface ValidatedRequest {
  model: string;
  /** Empty for a chat. */
  prompt: string;
  /** The chat messages; empty for a prompt. */
  messages: ChatMessage[];
  /** 0 = let the coordinator apply its default. */
  maxTokens: number;
  temperature: number;
  temperatureSet: boolean;
  parameters: Record<string, string>;
  signal: AbortSignal | undefined;
  maxAttempts: number;
}

const modelField = z.string({ error: 'must be a non-empty string' }).refine((m) => m.trim() !== '', 'must be a non-empty string');

const commonFields = {
  maxTokens: z.number({ error: 'must be an integer >= 1' }).int('must be an integer >= 1').min(1, 'must be an integer >= 1').optional(),
  temperature: z
    .number({ error: 'must be a number between 0 and 2' })
    .min(0, 'must be a number between 0 and 2')
    .max(2, 'must be a number between 0 and 2')
    .optional(),
  parameters: z
    .record(z.string().min(1, 'keys must be non-empty'), z.union([z.string(), z.number(), z.boolean()], { error: 'must be a string, number or boolean' }))
    .optional(),
  maxAttempts: z.number({ error: 'must be an integer >= 1' }).int('must be an integer >= 1').min(1, 'must be an integer >= 1').optional(),
  signal: z.instanceof(AbortSignal, { error: 'must be an AbortSignal' }).optional(),
};

const generateRequestSchema = z.object(
  {
    model: modelField,
    prompt: z.string({ error: 'must be a non-empty string' }).min(1, 'must be a non-empty string'),
    ...commonFields,
  },
  { error: 'must be an object' },
);

const chatRequestSchema = z.object(
  {
    model: modelField,
    messages: z
      .array(
        z.object(
          {
            role: z.enum(['system', 'user', 'assistant'], { error: 'must be system, user or assistant' }),
            content: z.string({ error: 'must be a string' }),
          },
          { error: 'must be an object with role and content' },
        ),
        { error: 'must be an array of messages' },
      )
      .min(1, 'must have at least one message'),
    ...commonFields,
  },
  { error: 'must be an object' },
);

/** Throws the first issue as an {@link InvalidArgumentError} naming its path (`messages[1].role`, `parameters.top_k`). */
function invalid(error: z.ZodError): never {
  const issue = error.issues[0]!;
  const path = issue.path.map(String);
  // A bad parameter key is reported on `parameters`, a bad value on `parameters.<key>`.
  const field =
    path.length === 0
      ? 'request'
      : issue.code === 'too_small' && path[0] === 'parameters'
        ? 'parameters'
        : issue.path.reduce<string>((acc, seg, i) => (typeof seg === 'number' ? `${acc}[${seg}]` : i === 0 ? String(seg) : `${acc}.${String(seg)}`), '');
  throw new InvalidArgumentError(`${field}: ${issue.message}`, field);
}

/**
 * Checks a {@link GenerateRequest} before anything is sent, so mistakes surface at once as
 * {@link InvalidArgumentError} naming the field. Limits the server knows better (max_tokens
 * ceiling, prompt size, allowed models) are left to the coordinator.
 */
export function validateGenerateRequest(request: GenerateRequest, defaultMaxAttempts: number): ValidatedRequest {
  const parsed = generateRequestSchema.safeParse({ maxAttempts: defaultMaxAttempts, ...request });
  if (!parsed.success) invalid(parsed.error);
  return finish({ ...parsed.data, messages: [] }, defaultMaxAttempts);
}

/**
 * Checks a {@link ChatRequest} like {@link validateGenerateRequest}: at least one message, roles
 * system, user or assistant, string contents; {@link InvalidArgumentError} names the path.
 */
export function validateChatRequest(request: ChatRequest, defaultMaxAttempts: number): ValidatedRequest {
  const parsed = chatRequestSchema.safeParse({ maxAttempts: defaultMaxAttempts, ...request });
  if (!parsed.success) invalid(parsed.error);
  return finish({ ...parsed.data, prompt: '' }, defaultMaxAttempts);
}

function finish(
  data: Omit<z.infer<typeof generateRequestSchema>, 'prompt'> & { prompt: string; messages: ChatMessage[] },
  defaultMaxAttempts: number,
): ValidatedRequest {
  const { model, prompt, messages, maxTokens, temperature, parameters, maxAttempts, signal } = data;
  return {
    model,
    prompt,
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    maxTokens: maxTokens ?? 0,
    temperature: temperature ?? 0,
    temperatureSet: temperature !== undefined,
    parameters: Object.fromEntries(Object.entries(parameters ?? {}).map(([k, v]) => [k, String(v)])),
    signal,
    maxAttempts: maxAttempts ?? defaultMaxAttempts,
  };
}
