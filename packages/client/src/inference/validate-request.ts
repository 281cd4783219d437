import { z } from 'zod';
import { InvalidArgumentError } from '../errors.js';
import type { GenerateRequest } from '../types.js';

/** A {@link GenerateRequest} after validation, ready for the wire. */
export interface ValidatedRequest {
  model: string;
  prompt: string;
  /** 0 = let the coordinator apply its default. */
  maxTokens: number;
  temperature: number;
  temperatureSet: boolean;
  parameters: Record<string, string>;
  signal: AbortSignal | undefined;
  maxAttempts: number;
}

const generateRequestSchema = z.object(
  {
    model: z.string({ error: 'must be a non-empty string' }).refine((m) => m.trim() !== '', 'must be a non-empty string'),
    prompt: z.string({ error: 'must be a non-empty string' }).min(1, 'must be a non-empty string'),
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
  },
  { error: 'must be an object' },
);

/**
 * Checks a {@link GenerateRequest} before anything is sent, so mistakes surface at once as
 * {@link InvalidArgumentError} naming the field. Limits the server knows better (max_tokens
 * ceiling, prompt size, allowed models) are left to the coordinator.
 */
export function validateGenerateRequest(request: GenerateRequest, defaultMaxAttempts: number): ValidatedRequest {
  const parsed = generateRequestSchema.safeParse({ maxAttempts: defaultMaxAttempts, ...request });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.map(String);
    // A bad parameter key is reported on `parameters`, a bad value on `parameters.<key>`.
    const field = path.length === 0 ? 'request' : issue.code === 'too_small' && path[0] === 'parameters' ? 'parameters' : path.join('.');
    throw new InvalidArgumentError(`${field}: ${issue.message}`, field);
  }
  const { model, prompt, maxTokens, temperature, parameters, maxAttempts, signal } = parsed.data;
  return {
    model,
    prompt,
    maxTokens: maxTokens ?? 0,
    temperature: temperature ?? 0,
    temperatureSet: temperature !== undefined,
    parameters: Object.fromEntries(Object.entries(parameters ?? {}).map(([k, v]) => [k, String(v)])),
    signal,
    maxAttempts: maxAttempts ?? defaultMaxAttempts,
  };
}
