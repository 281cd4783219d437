import { commonOptions, durationOption, intOption, listOption, numberOption, portOption, stringOption, requiredStringOption } from '@titancompute/server-kit';
import { DEFAULT_ISSUER } from './tokens/session-token.js';

/**
 * Every option of `titan-coordinator` (flags, environment variables, defaults): the common
 * service options plus the coordinator's own.
 */
export function coordinatorConfigSpec() {
  return {
    ...commonOptions({ service: 'coordinator', port: 50051, portEnv: ['COORDINATOR_PORT'] }),
    httpPort: portOption({
      flag: 'http-port',
      env: ['TITAN_HTTP_PORT', 'COORDINATOR_HTTP_PORT'],
      default: '8080',
      description: 'HTTP port of the v1 REST API and /metrics (0 picks a free port).',
    }),
    httpRequestTimeoutMs: durationOption({
      flag: 'http-request-timeout',
      env: ['TITAN_HTTP_REQUEST_TIMEOUT'],
      default: '30s',
      description: 'A REST client must send its whole request within this (headers within the lesser of this and 10s), or gets 408 and is disconnected.',
    }, 1),
    heartbeatTimeoutMs: durationOption({
      flag: 'heartbeat-timeout',
      env: ['TITAN_HEARTBEAT_TIMEOUT', 'HEARTBEAT_TIMEOUT'],
      default: '30s',
      description: 'An agent silent this long is evicted (within a second).',
    }, 100),
    heartbeatIntervalMs: durationOption({
      flag: 'heartbeat-interval',
      env: ['TITAN_HEARTBEAT_INTERVAL'],
      default: '2s',
      description: 'Health update interval agents are told to use (rounded up to whole seconds on the wire).',
    }, 100),
    tokenTtlMs: durationOption({
      flag: 'token-ttl',
      env: ['TITAN_TOKEN_TTL', 'TOKEN_TTL'],
      default: '5m',
      description: 'Lifetime of session tokens (how long an agent accepts one; the slot is held only for --claim-window).',
    }, 1000, 24 * 3_600_000),
    claimWindowMs: durationOption({
      flag: 'claim-window',
      env: ['TITAN_CLAIM_WINDOW'],
      default: '10s',
      description: 'How long a granted slot stays reserved unless the agent reports the job started (or rejected).',
    }, 100, 3_600_000),
    maxClientShare: numberOption({
      flag: 'max-client-share',
      env: ['TITAN_MAX_CLIENT_SHARE'],
      default: '0.5',
      description: "Share (0-1] of the fleet's slots one client_id may hold in reservations plus running jobs (at least 1 slot).",
    }, 0.01, 1),
    joinToken: stringOption({
      flag: 'join-token',
      env: ['TITAN_JOIN_TOKEN'],
      description: 'Secret agents must present to register. When unset, one is generated into <data-dir>/join-token (mode 0600) and reused.',
    }),
    issuer: requiredStringOption({
      flag: 'issuer',
      env: ['TITAN_ISSUER'],
      default: DEFAULT_ISSUER,
      description: 'Issuer (iss) of session tokens.',
    }),
    maxTokensLimit: intOption({ flag: 'max-tokens-limit', env: ['TITAN_MAX_TOKENS_LIMIT'], default: '4096', description: 'Largest max_tokens a request may ask for.' }, 1, 1_000_000),
    maxPromptBytes: intOption({ flag: 'max-prompt-bytes', env: ['TITAN_MAX_PROMPT_BYTES'], default: '32768', description: 'Largest prompt, in UTF-8 bytes.' }, 1, 16 * 1024 * 1024),
    allowedModels: listOption({
      flag: 'allowed-models',
      env: ['TITAN_ALLOWED_MODELS'],
      description: 'Comma-separated models clients may request (empty: any model some agent serves).',
    }),
    weightMemory: numberOption({ flag: 'weight-memory', env: ['TITAN_WEIGHT_MEMORY'], default: '0.4', description: 'Score weight of the free memory fraction.' }, 0, 100),
    weightLoad: numberOption({ flag: 'weight-load', env: ['TITAN_WEIGHT_LOAD'], default: '0.3', description: 'Score weight of the free slot fraction.' }, 0, 100),
    weightRtt: numberOption({ flag: 'weight-rtt', env: ['TITAN_WEIGHT_RTT'], default: '0.2', description: 'Score weight of the RTT term.' }, 0, 100),
    weightPerformance: numberOption({ flag: 'weight-performance', env: ['TITAN_WEIGHT_PERFORMANCE'], default: '0.1', description: 'Score weight of the tokens/s term.' }, 0, 100),
    breakerFailures: intOption({ flag: 'breaker-failures', env: ['TITAN_BREAKER_FAILURES'], default: '3', description: 'Consecutive failures (failed jobs, dropped health streams) that open an agent\'s circuit breaker.' }, 1, 1000),
    breakerOpenMs: durationOption({ flag: 'breaker-open-duration', env: ['TITAN_BREAKER_OPEN_DURATION'], default: '30s', description: 'How long an open breaker keeps an agent out before probing it (half-open).' }, 1),
    breakerSuccesses: intOption({ flag: 'breaker-successes', env: ['TITAN_BREAKER_SUCCESSES'], default: '2', description: 'Successes in half-open that close the breaker.' }, 1, 1000),
  };
}

/** The coordinator's parsed config. */
export type CoordinatorConfig = ReturnType<typeof coordinatorConfigSpec>;
