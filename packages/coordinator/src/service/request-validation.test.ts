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

describe('request validation of chat messages', () => {
  const chat = { clientId: 'c', model: 'm', prompt: '' };
  const fieldOf = (input: Parameters<typeof validate>[0]): string => {
    try {
      validate(input);
    } catch (err) {
      if (err instanceof InvalidRequestError) return err.message;
      throw err;
    }
    throw new Error('accepted');
  };

  it('accepts messages instead of a prompt, in order, and keeps the prompt empty', () => {
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
      { role: 'user', content: '' },
    ];
    expect(validate({ ...chat, messages })).toMatchObject({ prompt: '', messages, maxTokens: 100 });
    expect(validate(base)).toMatchObject({ prompt: 'p', messages: [] });
  });

  it('requires exactly one of prompt or messages', () => {
    expect(fieldOf({ ...chat })).toBe('prompt: is required (or send messages)');
    expect(fieldOf({ ...chat, messages: [] })).toBe('prompt: is required (or send messages)');
    expect(fieldOf({ ...base, messages: [{ role: 'user', content: 'hi' }] })).toBe(
      'messages: must be empty when prompt is set (send either prompt or messages)',
    );
  });

  it('names the message whose role is not system, user or assistant (tool included)', () => {
    const messages = [
      { role: 'user', content: 'hi' },
      { role: 'tool', content: '{}' },
    ];
    expect(fieldOf({ ...chat, messages })).toBe('messages[1].role: must be one of system, user, assistant');
    expect(fieldOf({ ...chat, messages: [{ role: 'User', content: 'hi' }] })).toBe('messages[0].role: must be one of system, user, assistant');
    expect(fieldOf({ ...chat, messages: [{ role: 'user', content: 5 as never }] })).toBe('messages[0].content: must be a string');
  });

  it('limits the contents to maxPromptBytes in total (UTF-8 bytes), like the prompt', () => {
    const half = 'é'.repeat(256); // 512 bytes
    expect(
      validate({
        ...chat,
        messages: [
          { role: 'user', content: half },
          { role: 'assistant', content: half },
        ],
      }).messages,
    ).toHaveLength(2);
    expect(
      fieldOf({
        ...chat,
        messages: [
          { role: 'user', content: half },
          { role: 'assistant', content: `${half}x` },
        ],
      }),
    ).toBe('messages: contents must total at most 1024 bytes');
    const many = Array.from({ length: 1025 }, () => ({ role: 'user', content: '' }));
    expect(fieldOf({ ...chat, messages: many })).toBe('messages: must have at most 1024 messages');
  });
});

describe('request validation of generation parameters (the protocol schema the agent applies too)', () => {
  it('refuses a value the agent would refuse, naming parameters.<key>, before any grant', () => {
    const topP = errorOf({ top_p: '7' });
    expect(topP.field).toBe('parameters.top_p');
    expect(topP.message).toMatch(/^parameters\.top_p: .*<=1.*\(got "7"\)$/);
    expect(errorOf({ top_k: '2.5' }).field).toBe('parameters.top_k');
    expect(errorOf({ stop: '[1, 2]' }).field).toBe('parameters.stop');
    expect(errorOf({ seed: '-1' }).field).toBe('parameters.seed');
  });

  it('accepts valid values, empty values and keys it does not know (engine-specific ones pass through)', () => {
    const v = validate({ ...base, parameters: { top_p: '0.9', top_k: '', stop: '["\\n"]', api: 'chat' } });
    expect(v.parameters).toEqual({ top_p: '0.9', top_k: '', stop: '["\\n"]', api: 'chat' });
  });
});
