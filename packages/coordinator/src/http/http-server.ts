import type { Context } from '@opentelemetry/api';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '@titancompute/server-kit';
import { z } from 'zod';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import type { InferenceGrant } from '../service/request-router.js';
import type { InferenceInput } from '../service/request-validation.js';
import { sendError, sendMappedError } from './http-errors.js';
import type { AgentRelay } from './agent-relay.js';
import { registerOpenAiRoutes, type OpenAiMode, type OpenAiRoutesOptions } from './openai-routes.js';
import { openAiError } from '@titancompute/protocol';

/** Dependencies of {@link createHttpServer}. */
export interface HttpServerOptions {
  registry: AgentRegistry;
  metrics: CoordinatorMetricsSink;
  /** Routes a request; `traceContext` parents its scheduling and signing spans. */
  route: (input: InferenceInput, traceContext?: Context) => Promise<InferenceGrant>;
  logger: Logger;
  /**
   * Longest time a client may take to send a whole request (headers and body); a slower one
   * gets 408 and its connection is closed, so slow-body clients cannot hold connections.
   * Default {@link DEFAULT_HTTP_REQUEST_TIMEOUT_MS} (30 s).
   */
  requestTimeoutMs?: number;
  /**
   * Longest time a client may take to send the request headers (408 and closed after).
   * Default {@link DEFAULT_HTTP_HEADERS_TIMEOUT_MS} (10 s), never more than `requestTimeoutMs`.
   */
  headersTimeoutMs?: number;
  /** How the OpenAI-compatible routes carry tokens: `relay` (default) or `redirect` (307 to the agent). */
  openAiMode?: OpenAiMode;
  /** Max tokens granted to an OpenAI request that sets none. Default 4096. */
  openAiDefaultMaxTokens?: number;
  /** Relay of the OpenAI routes in relay mode (its owner closes it). Default: one of the server's own. */
  openAiRelay?: AgentRelay;
  /** Authenticates callers of `GET /v1/models` (API keys); see `OpenAiRoutesOptions.authenticate`. Default: none. */
  openAiAuthenticate?: OpenAiRoutesOptions['authenticate'];
}

/** Default of {@link HttpServerOptions.requestTimeoutMs}. */
export const DEFAULT_HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** Default of {@link HttpServerOptions.headersTimeoutMs}. */
export const DEFAULT_HTTP_HEADERS_TIMEOUT_MS = 10_000;

const bodySchema = z.object({
  client_id: z.unknown().optional(),
  model: z.unknown().optional(),
  prompt: z.unknown().optional(),
  max_tokens: z.number({ error: 'must be a number' }).optional(),
  temperature: z.number({ error: 'must be a number' }).optional(),
  parameters: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean()], { error: 'must be a string, number or boolean' }), {
      error: 'must be an object of strings',
    })
    .optional(),
  exclude_agent_ids: z.array(z.string({ error: 'must be a string' }), { error: 'must be an array of strings' }).optional(),
});

/** `parameters.top_p: must be …`: the issue's message prefixed with its path (dots, `[i]` for indexes). */
function describeIssue(issue: z.core.$ZodIssue | undefined): string {
  if (!issue) return 'invalid request';
  const path = issue.path.reduce<string>((acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : acc ? `${acc}.${String(seg)}` : String(seg)), '');
  return path ? `${path}: ${issue.message}` : issue.message;
}

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const isBlank = (v: unknown) => v === undefined || v === null || (typeof v === 'string' && v.trim() === '');

/**
 * The v1 REST API on fastify: `POST /api/v1/inference/request`, `GET /api/v1/health`,
 * `GET /api/v1/status[?include_agents=true]`, plus `GET /metrics` (Prometheus) and the
 * OpenAI-compatible `/v1/*` API (see `openai-routes.ts`). v1 errors are `{error, code, message}`
 * with v1's codes; `/v1/*` errors are OpenAI's `{error: {message, type, param, code}}`.
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const { registry, metrics } = options;
  const requestTimeout = options.requestTimeoutMs ?? DEFAULT_HTTP_REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(options.headersTimeoutMs ?? DEFAULT_HTTP_HEADERS_TIMEOUT_MS, requestTimeout);
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    requestTimeout,
    // Node checks these timeouts every `connectionsCheckingInterval` (30 s by default, which
    // would let a stalled client stay up to twice the timeout): check often enough.
    http: { headersTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))) },
  });

  // Parse bodies ourselves so malformed JSON becomes v1's `invalid_json`.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  /** Paths of the OpenAI-compatible API answer errors in OpenAI's shape. */
  const isOpenAiPath = (url: string) => url === '/v1' || url.startsWith('/v1/');
  app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
    const status = err.statusCode ?? 500;
    if (isOpenAiPath(req.url)) {
      if (status >= 500) options.logger.error({ err }, 'http handler failed');
      const message = status === 413 ? 'request body too large' : status >= 500 ? 'the server failed to handle the request' : err.message;
      return reply.code(status).send(openAiError(status, message));
    }
    if (status === 413) return sendError(reply, 413, 'invalid_argument', 'request body too large');
    if (status >= 500) options.logger.error({ err }, 'http handler failed');
    return sendError(reply, status, status >= 500 ? 'token_generation_failed' : 'invalid_argument', err.message);
  });
  app.setNotFoundHandler((req, reply) => {
    // A known path asked with another method: 405 with the methods it takes.
    const url = req.url.split('?')[0] ?? req.url;
    const allowed = HTTP_METHODS.filter((method) => app.hasRoute({ method, url }));
    const openAi = isOpenAiPath(url);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      if (openAi)
        return reply.code(405).send(openAiError(405, `${req.method} is not allowed on ${url}; use ${allowed.join(' or ')}`, { code: 'method_not_allowed' }));
      return sendError(reply, 405, 'method_not_allowed', `${req.method} is not allowed on ${url}; use ${allowed.join(' or ')}`);
    }
    if (openAi) return reply.code(404).send(openAiError(404, `no route ${req.method} ${url}`, { code: 'unknown_url' }));
    return sendError(reply, 404, 'not_found', `no route ${req.method} ${req.url}`);
  });

  const openAi = registerOpenAiRoutes(app, {
    registry,
    metrics,
    route: options.route,
    logger: options.logger,
    mode: options.openAiMode,
    defaultMaxTokens: options.openAiDefaultMaxTokens ?? 4096,
    relay: options.openAiRelay,
    authenticate: options.openAiAuthenticate,
  });
  app.addHook('onClose', async () => openAi.close());

  app.post('/api/v1/inference/request', async (req, reply) => {
    metrics.request('http');
    let json: unknown;
    try {
      json = JSON.parse(typeof req.body === 'string' ? req.body : '');
    } catch {
      return sendError(reply, 400, 'invalid_json', 'request body must be a JSON object');
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      return sendError(reply, 400, 'invalid_json', 'request body must be a JSON object');
    }
    const parsed = bodySchema.safeParse(json);
    if (!parsed.success) {
      metrics.decision('invalid');
      return sendError(reply, 400, 'invalid_argument', describeIssue(parsed.error.issues[0]));
    }
    const body = parsed.data;
    // With an API key (Authorization: Bearer tk-…) the key's name is the client id.
    if (isBlank(body.client_id) && !req.headers.authorization) {
      metrics.decision('invalid');
      return sendError(reply, 400, 'missing_client_id', 'client_id is required');
    }
    if (isBlank(body.model)) {
      metrics.decision('invalid');
      return sendError(reply, 400, 'missing_model', 'model is required');
    }
    if (isBlank(body.prompt)) {
      metrics.decision('invalid');
      return sendError(reply, 400, 'missing_prompt', 'prompt is required');
    }
    for (const field of ['client_id', 'model', 'prompt'] as const) {
      if (!isBlank(body[field]) && typeof body[field] !== 'string') {
        metrics.decision('invalid');
        return sendError(reply, 400, 'invalid_argument', `${field}: must be a string`);
      }
    }
    try {
      const grant = await options.route({
        authorization: req.headers.authorization,
        clientId: typeof body.client_id === 'string' ? body.client_id : '',
        model: body.model as string,
        prompt: body.prompt as string,
        maxTokens: body.max_tokens,
        temperature: body.temperature,
        temperatureSet: body.temperature !== undefined,
        parameters: body.parameters ? Object.fromEntries(Object.entries(body.parameters).map(([k, v]) => [k, String(v)])) : undefined,
        excludeAgentIds: body.exclude_agent_ids,
      });
      for (const [name, value] of Object.entries(grant.rateLimitHeaders ?? {})) reply.header(name, value);
      return {
        agent_endpoint: grant.agentEndpoint,
        session_token: grant.sessionToken,
        expires_at: grant.expiresAt,
        job_id: grant.jobId,
        estimated_rtt_ms: grant.estimatedRttMs,
        agent_id: grant.agentId,
        max_tokens: grant.maxTokens,
        temperature: grant.temperature,
      };
    } catch (err) {
      return sendMappedError(reply, err, options.logger);
    }
  });

  app.get('/api/v1/health', async () => ({
    status: 'healthy',
    timestamp: Math.floor(Date.now() / 1000),
    service: 'titancompute-coordinator',
  }));

  app.get<{ Querystring: { include_agents?: string } }>('/api/v1/status', async (req) => {
    const records = registry.list();
    const includeAgents = ['true', '1', 'yes'].includes(String(req.query.include_agents ?? '').toLowerCase());
    return {
      total_agents: records.length,
      healthy_agents: records.filter((r) => r.state() === 'healthy').length,
      timestamp: Math.floor(Date.now() / 1000),
      ...(includeAgents
        ? {
            agents: records.map((r) => ({
              id: r.agentId,
              endpoint: r.endpoint,
              status: r.state(),
              total_vram_mb: r.totalVramMb,
              free_vram_mb: r.freeVramMb,
              total_ram_mb: r.totalRamMb,
              free_ram_mb: r.freeRamMb,
              running_jobs: r.runningJobs,
              queued_jobs: r.queuedJobs,
              max_jobs: r.maxJobs,
              rtt_ms: r.rttMs,
              last_heartbeat: r.lastHeartbeatMs,
              supported_models: [...r.supportedModels],
              reserved_jobs: r.reservedJobs,
              breaker_state: r.breakerState(),
              tokens_per_second: r.tokensPerSecond ?? 0,
            })),
          }
        : {}),
    };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.prometheus.contentType);
    return metrics.prometheus.metrics();
  });

  return app;
}
