import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { Status } from 'nice-grpc-common';
import {
  embeddingsResponse,
  modelList,
  OpenAiRequestError,
  openAiError,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingsRequest,
  TRACE_ATTRIBUTES,
  type OpenAiGenerationRequest,
} from '@titancompute/protocol';
import { recordServerOutcome, startHttpServerSpan, type Logger } from '@titancompute/server-kit';
import type { Engine } from '../engines/engine.js';
import { TokenError } from '../errors.js';
import type { AgentState, JobRunner, RequestLimits } from '../service/job-runner.js';
import { abandon, answerGeneration } from './generation-answer.js';
import { openAiErrorAnswer } from './openai-errors.js';

/** Dependencies and settings of {@link createAgentHttpServer}. */
export interface AgentHttpServerOptions {
  /** The agent's job pipeline (the same one gRPC StreamInference adapts). */
  runner: JobRunner;
  /** The models served (`GET /v1/models`) and the engine's name. */
  engine: Pick<Engine, 'name' | 'models'>;
  agentId: () => string;
  state: () => AgentState;
  /** The agent's request limits (the body limit follows the prompt limit). */
  limits: RequestLimits;
  logger: Logger;
  /**
   * Longest time a client may take to send a whole request (headers and body); a slower one gets
   * 408 and its connection is closed. Streaming answers are not limited by it.
   * Default {@link DEFAULT_AGENT_HTTP_REQUEST_TIMEOUT_MS} (30 s).
   */
  requestTimeoutMs?: number;
  /** Longest time a client may take to send the request headers. Default 10 s, never more than `requestTimeoutMs`. */
  headersTimeoutMs?: number;
  /** Served at `GET /metrics` (Prometheus text) when given: the agent's metrics on this port. */
  metrics?: Registry;
  /** The home coordinator's `host:port` now (in `GET /health` as `coordinator`; null while there is none). */
  coordinator?: () => string | undefined;
}

/** Default of {@link AgentHttpServerOptions.requestTimeoutMs}. */
export const DEFAULT_AGENT_HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** Default of {@link AgentHttpServerOptions.headersTimeoutMs}. */
export const DEFAULT_AGENT_HTTP_HEADERS_TIMEOUT_MS = 10_000;

/** The query parameter that carries a session token on a redirected request (`?session_token=…`). */
export const SESSION_TOKEN_QUERY_PARAMETER = 'session_token';

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/**
 * The request's session token: the `session_token` query parameter (the coordinator's 307
 * redirect puts it there), else `Authorization: Bearer <token>` (the coordinator's relay). The
 * query wins: a client redirected across origins may still send its own API key as a bearer.
 * None is 401.
 */
export function sessionTokenOf(request: FastifyRequest): string {
  const query = (request.query as Record<string, unknown> | undefined)?.[SESSION_TOKEN_QUERY_PARAMETER];
  if (typeof query === 'string' && query !== '') return query;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
  if (bearer) return bearer;
  throw new TokenError(
    `a session token is required: ?${SESSION_TOKEN_QUERY_PARAMETER}=<token> or Authorization: Bearer <token> (ask the coordinator for one)`,
    Status.UNAUTHENTICATED,
    { field: SESSION_TOKEN_QUERY_PARAMETER },
  );
}

/** The body as JSON (parsed here, so any content type is read and bad JSON is OpenAI's 400). */
function jsonBody(raw: unknown): unknown {
  try {
    return JSON.parse(typeof raw === 'string' ? raw : '');
  } catch {
    throw new OpenAiRequestError('the request body is not valid JSON', null, 'invalid_json');
  }
}

/** A signal aborted when the client closes the connection before the answer is complete. */
function clientGone(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
  };
  res.once('close', onClose);
  if (request.raw.socket.destroyed) onClose();
  return controller.signal;
}

/**
 * The agent's OpenAI-compatible HTTP server (fastify): `POST /v1/chat/completions`,
 * `POST /v1/completions`, `POST /v1/embeddings` — each authenticated by a session token the
 * coordinator signed for that very body (see {@link sessionTokenOf}) and run by the same
 * {@link JobRunner} as gRPC StreamInference — and, without a token, `GET /v1/models` (this
 * agent's models), `GET /v1/models/:model`, `GET /health` and, with `metrics`, `GET /metrics`. Answers and errors are shaped as
 * OpenAI's (`{"error": {"message", "type", "param", "code"}}` with its statuses). A client
 * that closes the connection cancels its job.
 *
 * @example
 * ```ts
 * const app = createAgentHttpServer({ runner, engine, agentId: () => 'gpu-1', state: () => 'healthy', limits, logger });
 * await app.listen({ host: '0.0.0.0', port: 50062 });
 * // curl -N "http://gpu-1:50062/v1/chat/completions?session_token=$T" -d '{"model":"m","messages":[…],"stream":true}'
 * await app.close();
 * ```
 */
export function createAgentHttpServer(options: AgentHttpServerOptions): FastifyInstance {
  const { runner, engine, logger } = options;
  const requestTimeout = options.requestTimeoutMs ?? DEFAULT_AGENT_HTTP_REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(options.headersTimeoutMs ?? DEFAULT_AGENT_HTTP_HEADERS_TIMEOUT_MS, requestTimeout);
  const startedAt = Math.floor(Date.now() / 1000);
  const app = Fastify({
    logger: false,
    // JSON escapes may take up to 6 bytes per prompt byte; never less than 1 MiB.
    bodyLimit: Math.max(1024 * 1024, 8 * options.limits.maxPromptBytes),
    requestTimeout,
    // Node checks these timeouts every `connectionsCheckingInterval` (30 s by default): check often enough.
    http: { headersTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))) },
    // While closing, requests still get the agent's own answer (503 draining, in OpenAI's shape).
    return503OnClosing: false,
  });

  /** Answers `err` in OpenAI's shape, unless the client is gone or the answer already started. */
  const sendError = (reply: FastifyReply, err: unknown, signal: AbortSignal): FastifyReply => {
    if (reply.sent) return reply;
    if (signal.aborted) return abandon(reply);
    const answer = openAiErrorAnswer(err, logger);
    return reply.code(answer.status).headers(answer.headers).send(answer.body);
  };

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    const status = err.statusCode ?? 500;
    if (status === 413) return reply.code(413).send(openAiError(413, 'the request body is too large', { code: 'request_too_large' }));
    if (status >= 500) logger.error({ err }, 'http handler failed');
    return reply.code(status).send(openAiError(status, status >= 500 ? 'the agent failed to handle the request' : err.message));
  });
  app.setNotFoundHandler((req, reply) => {
    const url = req.url.split('?')[0] ?? req.url;
    const allowed = HTTP_METHODS.filter((method) => app.hasRoute({ method, url }));
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return reply.code(405).send(openAiError(405, `${req.method} is not allowed on ${url}; use ${allowed.join(' or ')}`, { code: 'method_not_allowed' }));
    }
    return reply.code(404).send(openAiError(404, `Unknown request URL: ${req.method} ${url}`, { code: 'unknown_url' }));
  });

  const generationRoute = (route: string, parse: (body: unknown) => OpenAiGenerationRequest) => async (req: FastifyRequest, reply: FastifyReply) => {
    const signal = clientGone(req, reply);
    // A child of the caller's `traceparent` (the coordinator's relay sends its own span's).
    const { span, context: traceContext } = startHttpServerSpan('POST', route, req.headers, { [TRACE_ATTRIBUTES.agentId]: options.agentId() });
    let failure: unknown;
    try {
      const sessionToken = sessionTokenOf(req);
      return await answerGeneration(reply, parse(jsonBody(req.body)), { runner, sessionToken, signal, logger, traceContext });
    } catch (err) {
      failure = err;
      return sendError(reply, err, signal);
    } finally {
      if (span.isRecording()) {
        recordServerOutcome(span, failure, signal);
        span.setAttribute(TRACE_ATTRIBUTES.httpResponseStatusCode, reply.raw.statusCode);
      }
      span.end();
    }
  };
  app.post('/v1/chat/completions', generationRoute('/v1/chat/completions', parseChatCompletionRequest));
  app.post('/v1/completions', generationRoute('/v1/completions', parseCompletionRequest));

  app.post('/v1/embeddings', async (req, reply) => {
    const signal = clientGone(req, reply);
    try {
      const sessionToken = sessionTokenOf(req);
      const body = parseEmbeddingsRequest(jsonBody(req.body));
      const result = await runner.embed({ sessionToken, model: body.model, input: body.input }, signal);
      if (signal.aborted) return abandon(reply);
      return reply.send(embeddingsResponse(result.grant.model, result.embeddings, body.encodingFormat, result.promptTokens));
    } catch (err) {
      return sendError(reply, err, signal);
    }
  });

  const model = (id: string) => ({ id, object: 'model' as const, created: startedAt, owned_by: 'titancompute' });
  app.get('/v1/models', async () => modelList(engine.models.map(model)));
  // A wildcard: model ids may hold slashes (meta-llama/Llama-3.1-8B).
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (req, reply) => {
    const id = req.params['*'];
    if (engine.models.includes(id)) return model(id);
    return reply.code(404).send(openAiError(404, `The model '${id}' is not served by this agent`, { param: 'model', code: 'model_not_found' }));
  });

  app.get('/health', async (_req, reply) => {
    const status = options.state();
    return reply.code(status === 'healthy' ? 200 : 503).send({
      status,
      agent_id: options.agentId(),
      engine: engine.name,
      models: [...engine.models],
      ...(options.coordinator ? { coordinator: options.coordinator() ?? null } : {}),
    });
  });

  const { metrics } = options;
  if (metrics) app.register(metricsRoute(metrics));

  return app;
}

/**
 * A fastify plugin serving `registry` at `GET /metrics` (Prometheus text format): on the agent's
 * HTTP server, or alone on its own listener (`--metrics-port`).
 */
export function metricsRoute(registry: Registry) {
  return async (app: FastifyInstance) => {
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', registry.contentType);
      return registry.metrics();
    });
  };
}
