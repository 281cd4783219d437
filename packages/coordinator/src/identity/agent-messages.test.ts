import { describe, expect, it } from '@jest/globals';
import { AgentRegistration } from '@titancompute/protocol';
import { InvalidRequestError } from '../errors.js';
import { validateRegistration } from './agent-messages.js';

const registration = (over: Partial<AgentRegistration>) =>
  AgentRegistration.fromPartial({
    agentId: 'gpu-1',
    endpoint: '10.0.0.5:50052',
    maxJobs: 4,
    supportedModels: ['tiny'],
    agentCredential: 'c'.repeat(43),
    ...over,
  });

describe('RegisterAgent validation of http_endpoint', () => {
  it('takes none, or another port of the agent’s own host', () => {
    expect(() => validateRegistration(registration({ httpEndpoint: '' }))).not.toThrow();
    expect(() => validateRegistration(registration({ httpEndpoint: '10.0.0.5:50062' }))).not.toThrow();
    expect(() => validateRegistration(registration({ endpoint: '[::1]:50052', httpEndpoint: '[::1]:50062' }))).not.toThrow();
  });

  it('refuses an address on another host: the coordinator relays OpenAI requests there', () => {
    for (const httpEndpoint of ['10.0.0.6:50062', 'metadata.internal:80', '127.0.0.1:8080']) {
      const err = (() => {
        try {
          validateRegistration(registration({ httpEndpoint }));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect((err as InvalidRequestError).field).toBe('http_endpoint');
      expect((err as Error).message).toContain('same host as endpoint');
    }
  });

  it('refuses a malformed address', () => {
    expect(() => validateRegistration(registration({ httpEndpoint: 'not an endpoint' }))).toThrow(/http_endpoint/);
  });
});
