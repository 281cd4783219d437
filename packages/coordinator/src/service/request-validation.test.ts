import { describe, expect, it } from '@jest/globals';
import { InvalidRequestError } from '../errors.js';
import { createRequestValidator } from './request-validation.js';

const validate = createRequestValidator({ maxTokensLimit: 4096, maxPromptBytes: 1024, allowedModels: new Set() });
const base = { clientId: 'c', model: 'm', prompt: 'p' };

function errorOf(parameters: Record<string, string>): InvalidRequestError {
  try {
    validate({ ...base, parameters });
  } catch (err) {
    if (err instanceof InvalidRequestError) return err;
    throw err;
  }
  throw new Error('accepted');
}

describe('request validation of nested parameters', () => {
  it('names the parameter whose value is too long', () => {
    const err = errorOf({ top_p: 'x'.repeat(5000) });
    expect(err.field).toBe('parameters.top_p');
    expect(err.message).toBe('parameters.top_p: values must be at most 4096 characters');
  });

  it('names the parameter whose key is too long, with the key rule', () => {
    const key = 'k'.repeat(200);
    const err = errorOf({ [key]: 'v' });
    expect(err.field).toBe(`parameters.${key}`);
    expect(err.message).toBe(`parameters.${key}: keys must be at most 128 characters`);
  });

  it('names the list entry of a bad exclude_agent_ids', () => {
    expect(() => validate({ ...base, excludeAgentIds: ['a', 7 as never] })).toThrow('exclude_agent_ids[1]: must be a string');
  });
});
