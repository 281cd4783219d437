import { type GenerationParameters, KNOWN_GENERATION_PARAMETERS, parseGenerationParameterMap } from '@titancompute/protocol';
import { RequestValidationError } from '../errors.js';

export type { GenerationParameters };

/** Keys of the parameters map the agent acts on (others are ignored, except engine-specific ones such as `api`). */
export const KNOWN_PARAMETERS = KNOWN_GENERATION_PARAMETERS;

/**
 * Parses and validates the parameters map (`StreamRequest.options`) with the protocol's one
 * schema (the coordinator checks the same before it grants). `stop` is a JSON array of strings
 * or one literal stop string. Throws {@link RequestValidationError} naming `options.<key>`.
 *
 * @example
 * ```ts
 * parseGenerationParameters({ top_k: '40', stop: '["\\n\\n"]' }); // { topK: 40, stop: ['\n\n'] }
 * ```
 */
export function parseGenerationParameters(raw: Record<string, string>): GenerationParameters {
  const parsed = parseGenerationParameterMap(raw);
  if (!parsed.ok) throw new RequestValidationError(`options.${parsed.key} is invalid: ${parsed.message}`, `options.${parsed.key}`);
  return parsed.value;
}
