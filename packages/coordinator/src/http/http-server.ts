import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from '@titancompute/server-kit';
import { z } from 'zod';
import { AgentsBusyError, InvalidRequestError, NoAgentAvailableError } from '../errors.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import type { InferenceGrant } from '../service/request-router.js';
import type { InferenceInput } from '../service/request-validation.js';

/** Dependencies of {@link createHttpServer}. */
export interface HttpServerOptions {
  registry: AgentRegistry;
  metrics: CoordinatorMetricsSink;
  route: (input: InferenceInput) => Promise<InferenceGrant>;
  logger: Logger;
}

/** v1 error codes plus `invalid_argument` and `agents_busy`. */
export type HttpErrorCode =
  | 'invalid_json'
  | 'missing_client_id'
  | 'missing_model'
  | 'missing_prompt'
  | 'invalid_argument'
  | 'no_agents'
  | 'agents_busy'
  | 'token_generation_failed'
  | 'not_found';

function sendError(reply: FastifyReply, status: number, error: HttpErrorCode, message: string): FastifyReply {
  return reply.code(status).send({ error, code: status, message });
}

const bodySchema = z.object({
  client_id: z.unknown().optional(),
  model: z.unknown().optional(),
  prompt: z.unknown().optional(),
  max_tokens: z.number({ error: 'max_tokens: must be a number' }).optional(),
  temperature: z.number({ error: 'temperature: must be a number' }).optional(),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]), { error: 'parameters: must be an object of strings' }).optional(),
  exclude_agent_ids: z.array(z.string(), { error: 'exclude_agent_ids: must be an array of strings' }).optional(),
});

const isBlank = (v: unknown) => v === undefined || v === null || (typeof v === 'string' && v.trim() === '');

/**
 * The v1 REST API on fastify: `POST /api/v1/inference/request`, `GET /api/v1/health`,
 * `GET /api/v1/status[?include_agents=true]`, plus `GET /metrics` (Prometheus).
 * Errors are `{error, code, message}` with v1's codes.
 */
export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const { registry, metrics } = options;
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });

  // Parse bodies ourselves so malformed JSON becomes v1's `invalid_json`.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    const status = err.statusCode ?? 500;
    if (status === 413) return sendError(reply, 413, 'invalid_argument', 'request body too large');
    if (status >= 500) options.logger.error({ err }, 'http handler failed');
    return sendError(reply, status, status >= 500 ? 'token_generation_failed' : 'invalid_argument', err.message);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, 'not_found', `no route ${req.method} ${req.url}`));

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
      return sendError(reply, 400, 'invalid_argument', parsed.error.issues[0]?.message ?? 'invalid request');
    }
    const body = parsed.data;
    if (isBlank(body.client_id)) {
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
      if (typeof body[field] !== 'string') {
        metrics.decision('invalid');
        return sendError(reply, 400, 'invalid_argument', `${field}: must be a string`);
      }
    }
    try {
      const grant = await options.route({
        clientId: body.client_id as string,
        model: body.model as string,
        prompt: body.prompt as string,
        maxTokens: body.max_tokens,
        temperature: body.temperature,
        temperatureSet: body.temperature !== undefined,
        parameters: body.parameters ? Object.fromEntries(Object.entries(body.parameters).map(([k, v]) => [k, String(v)])) : undefined,
        excludeAgentIds: body.exclude_agent_ids,
      });
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
      if (err instanceof InvalidRequestError) return sendError(reply, 400, 'invalid_argument', err.message);
      if (err instanceof NoAgentAvailableError) return sendError(reply, 503, 'no_agents', err.message);
      if (err instanceof AgentsBusyError) {
        reply.header('Retry-After', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
        reply.header('retry-after-ms', String(err.retryAfterMs));
        return sendError(reply, 429, 'agents_busy', err.message);
      }
      options.logger.error({ err }, 'token generation failed');
      return sendError(reply, 500, 'token_generation_failed', 'could not generate a session token');
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
