import { z } from 'zod';
import { CHAT_ROLES } from '../engines/engine.js';
import { parseGenerationParameters } from '../engines/parameters.js';
import { RequestValidationError } from '../errors.js';
import type { EmbeddingsJobRequest, GenerationJobRequest, RequestLimits } from './job-runner.js';

/** A zod issue path as a request field: `messages[1].role`, `max_tokens`. */
function fieldOf(path: readonly PropertyKey[]): string {
  const [head, ...rest] = path;
  return rest.reduce<string>(
    (acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : `${acc}.${String(seg)}`),
    String(head ?? 'request').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
  );
}

/** Throws the first issue of a failed parse as a {@link RequestValidationError} naming the field. */
function throwFirstIssue(error: z.ZodError): never {
  const issue = error.issues[0];
  const field = fieldOf(issue?.path ?? []);
  throw new RequestValidationError(`${field}: ${issue?.message ?? 'invalid'}`, field);
}

const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * The checks of a generation request's fields for these limits: the schema (which names what is
 * wrong) and the same checks in plain code (every request runs them on the hot path). Exported
 * for the property test that holds the two to each other.
 */
export function generationRequestChecks(limits: RequestLimits): { schema: z.ZodType; passes: (request: GenerationJobRequest) => boolean } {
  const schema = z.object({
    model: z.string().max(256, 'model is too long'),
    prompt: z.string().refine((p) => utf8Bytes(p) <= limits.maxPromptBytes, `prompt is larger than ${limits.maxPromptBytes} bytes`),
    messages: z
      .array(z.object({ role: z.enum(CHAT_ROLES, { message: `role must be one of ${CHAT_ROLES.join(', ')}` }), content: z.string() }))
      .refine(
        (ms) => ms.reduce((n, m) => n + utf8Bytes(m.content), 0) <= limits.maxPromptBytes,
        `messages' contents are larger than ${limits.maxPromptBytes} bytes in total`,
      ),
    maxTokens: z.number().int().min(0, 'max_tokens must be ≥ 0').max(limits.maxTokensLimit, `max_tokens must be ≤ ${limits.maxTokensLimit}`),
    temperature: z
      .number()
      .refine(Number.isFinite, 'temperature must be a number')
      .pipe(z.number().min(0, 'temperature must be ≥ 0').max(2, 'temperature must be ≤ 2')),
  });
  const roles: ReadonlySet<unknown> = new Set(CHAT_ROLES);
  /** The schema's checks in plain code (every request runs them on the hot path); false sends the request through the schema. */
  const passes = (r: GenerationJobRequest): boolean => {
    if (typeof r.model !== 'string' || r.model.length > 256 || typeof r.prompt !== 'string' || utf8Bytes(r.prompt) > limits.maxPromptBytes) return false;
    if (!Array.isArray(r.messages)) return false;
    let bytes = 0;
    for (const m of r.messages as readonly unknown[]) {
      if (typeof m !== 'object' || m === null || Array.isArray(m)) return false;
      const { role, content } = m as { role?: unknown; content?: unknown };
      if (!roles.has(role) || typeof content !== 'string') return false;
      bytes += utf8Bytes(content);
    }
    const { maxTokens, temperature } = r;
    return (
      bytes <= limits.maxPromptBytes &&
      Number.isSafeInteger(maxTokens) &&
      maxTokens >= 0 &&
      maxTokens <= limits.maxTokensLimit &&
      typeof temperature === 'number' &&
      Number.isFinite(temperature) &&
      temperature >= 0 &&
      temperature <= 2
    );
  };
  return { schema, passes };
}

/**
 * Builds, once per runner, the validator of generation requests for these limits: throws
 * {@link RequestValidationError} naming the field (`prompt`, `messages[1].role`, `max_tokens`, …).
 */
export function createGenerationValidator(limits: RequestLimits): (request: GenerationJobRequest) => void {
  const { schema, passes } = generationRequestChecks(limits);
  return (request) => {
    if (!passes(request)) {
      const parsed = schema.safeParse(request);
      if (!parsed.success) throwFirstIssue(parsed.error);
    }
    if (request.prompt === '' && request.messages.length === 0) {
      throw new RequestValidationError('prompt: prompt must not be empty (send the prompt or messages given to RequestInference again)', 'prompt');
    }
    if (request.prompt !== '' && request.messages.length > 0) {
      throw new RequestValidationError('messages: send either prompt or messages, not both', 'messages');
    }
    parseGenerationParameters(request.options);
  };
}

/** Builds the validator of embeddings requests for these limits (throws {@link RequestValidationError} naming the field). */
export function createEmbeddingsValidator(limits: RequestLimits): (request: EmbeddingsJobRequest) => void {
  const schema = z.object({
    model: z.string().max(256, 'model is too long'),
    input: z
      .array(z.string().min(1, 'must not be empty'))
      .min(1, 'input must not be empty')
      .refine((xs) => xs.reduce((n, x) => n + utf8Bytes(x), 0) <= limits.maxPromptBytes, `input is larger than ${limits.maxPromptBytes} bytes in total`),
  });
  return (request) => {
    const parsed = schema.safeParse(request);
    if (!parsed.success) throwFirstIssue(parsed.error);
  };
}
