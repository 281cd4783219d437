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

function fail(field: string, message: string): never {
  throw new InvalidArgumentError(`${field}: ${message}`, field);
}

/**
 * Checks a {@link GenerateRequest} before anything is sent, so mistakes surface at once as
 * {@link InvalidArgumentError} naming the field. Limits the server knows better (max_tokens
 * ceiling, prompt size, allowed models) are left to the coordinator.
 */
export function validateGenerateRequest(request: GenerateRequest, defaultMaxAttempts: number): ValidatedRequest {
  if (typeof request !== 'object' || request === null) fail('request', 'must be an object');
  if (typeof request.model !== 'string' || request.model.trim() === '') fail('model', 'must be a non-empty string');
  if (typeof request.prompt !== 'string' || request.prompt === '') fail('prompt', 'must be a non-empty string');
  const { maxTokens, temperature } = request;
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 1)) fail('maxTokens', 'must be an integer >= 1');
  if (temperature !== undefined && (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0 || temperature > 2)) {
    fail('temperature', 'must be a number between 0 and 2');
  }
  const parameters: Record<string, string> = {};
  for (const [key, value] of Object.entries(request.parameters ?? {})) {
    if (key === '') fail('parameters', 'keys must be non-empty');
    if (!['string', 'number', 'boolean'].includes(typeof value)) fail(`parameters.${key}`, 'must be a string, number or boolean');
    parameters[key] = String(value);
  }
  const maxAttempts = request.maxAttempts ?? defaultMaxAttempts;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) fail('maxAttempts', 'must be an integer >= 1');
  if (request.signal !== undefined && !(request.signal instanceof AbortSignal)) fail('signal', 'must be an AbortSignal');
  return {
    model: request.model,
    prompt: request.prompt,
    maxTokens: maxTokens ?? 0,
    temperature: temperature ?? 0,
    temperatureSet: temperature !== undefined,
    parameters,
    signal: request.signal,
    maxAttempts,
  };
}
