import type { Context } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  embeddingsGrantInput,
  modelList,
  OpenAiRequestError,
  openAiError,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingsRequest,
  TRACE_ATTRIBUTES,
  traceHeaders,
  type OpenAiModel,
} from '@titancompute/protocol';
import { recordServerOutcome, startHttpServerSpan, type Logger } from '@titancompute/server-kit';
import { AgentUnreachableError } from '../errors.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRecord } from '../registry/agent-record.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import type { InferenceGrant } from '../service/request-router.js';
import type { InferenceInput } from '../service/request-validation.js';
import { createAgentRelay, type AgentRelay } from './agent-relay.js';
import { sendOpenAiError } from './openai-errors.js';

/** How the OpenAI routes carry tokens (`--openai-mode`). */
export const OPENAI_MODES = ['relay', 'redirect'] as const;
/** `relay`: the coordinator relays the agent's stream; `redirect`: 307 to the agent's own route. */
export type OpenAiMode = (typeof OPENAI_MODES)[number];

/** Dependencies of {@link registerOpenAiRoutes}. */
export interface OpenAiRoutesOptions {
  registry: AgentRegistry;
  metrics: CoordinatorMetricsSink;
  /** Routes a request; `traceContext` parents its scheduling and signing spans. */
  route: (input: InferenceInput, traceContext?: Context) => Promise<InferenceGrant>;
  logger: Logger;
  /** Default `relay`. */
  mode?: OpenAiMode;
  /** Max tokens granted when a request sets neither `max_tokens` nor `max_completion_tokens` (the coordinator's limit). */
  defaultMaxTokens: number;
  /** The relay used in `relay` mode (its owner closes it). Default: one created, and closed with the server, with its defaults. */
  relay?: AgentRelay;
  /**
   * Authenticates a caller of `GET /v1/models` as inference requests are (API key in
   * `Authorization`): undefined when auth is off, the key (whose `models` allow-list filters the
   * list) otherwise; throws the key error (401). Default: no authentication.
   */
  authenticate?: (authorization: string | undefined) => Promise<{ readonly models: readonly string[] } | undefined>;
  /**
   * Agents tried for one request in relay mode when an agent cannot be reached before it
   * answers (each failure is excluded on the next try). Default 3.
   */
  relayAttempts?: number;
}

/** The capability an agent registers when its engine can embed. */
export const EMBEDDINGS_CAPABILITY = 'embeddings';

/** Which `/v1/*` route a request is for. */
type OpenAiRoute = '/v1/chat/completions' | '/v1/completions' | '/v1/embeddings';

/** The body as a JSON value; a body that is not JSON is a 400 in OpenAI's shape. */
function readJson(req: FastifyRequest): unknown {
  const raw = typeof req.body === 'string' ? req.body : '';
  try {
    return JSON.parse(raw);
  } catch {
    throw new OpenAiRequestError('the request body must be JSON (Content-Type: application/json)', null, 'invalid_json');
  }
}

/** Agents that serve `model` and can take OpenAI requests (an HTTP endpoint; for embeddings, the capability). */
function servesOpenAi(record: AgentRecord, embeddings: boolean): boolean {
  return record.httpEndpoint !== '' && (!embeddings || record.capabilities[EMBEDDINGS_CAPABILITY] === 'true');
}

/**
 * Registers the OpenAI-compatible API on the coordinator's HTTP server: `GET /v1/models`,
 * `GET /v1/models/:model`, `POST /v1/chat/completions`, `POST /v1/completions` and
 * `POST /v1/embeddings`. Each request is read with the shared parsers of
 * `@titancompute/protocol`, scheduled and authorised through the same request router as gRPC
 * and v1 REST (API key, quotas, one signed session token), then carried per `mode`:
 *
 * - `relay`: the agent's own `/v1/*` answer is relayed as it streams; a client that disconnects
 *   cancels the generation on the agent; an agent unreachable before it answered is replaced by
 *   another (before any byte reached the client).
 * - `redirect`: `307` to `http://<agent>/v1/…?session_token=…`; the client sends the same body
 *   there and streams from the agent directly (zero-proxy).
 *
 * Errors are OpenAI's shape and statuses (see `openai-errors.ts`); an unknown model is 404.
 */
export function registerOpenAiRoutes(app: FastifyInstance, options: OpenAiRoutesOptions): { close(): unknown } {
  const { registry, logger } = options;
  const mode = options.mode ?? 'relay';
  const relay = options.relay ?? createAgentRelay();
  const ownRelay = options.relay === undefined;
  const attempts = Math.max(1, options.relayAttempts ?? 3);

  /** Every model some routable (healthy or degraded) agent that takes OpenAI requests serves, with its agents. */
  function models(): (OpenAiModel & { agents: number; engines: string[] })[] {
    const byModel = new Map<string, { agents: number; engines: Set<string> }>();
    for (const record of registry.list()) {
      const state = record.state();
      // Routable agents: a busy machine marks a healthy agent degraded, and it still takes work.
      if ((state !== 'healthy' && state !== 'degraded') || record.httpEndpoint === '') continue;
      for (const model of record.supportedModels) {
        let entry = byModel.get(model);
        if (!entry) byModel.set(model, (entry = { agents: 0, engines: new Set() }));
        entry.agents += 1;
        if (record.engine) entry.engines.add(record.engine);
      }
    }
    return [...byModel]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, e]) => ({ id, object: 'model', created: 0, owned_by: 'titancompute', agents: e.agents, engines: [...e.engines].sort() }));
  }

  /**
   * Agents to keep out of a request's scheduling: those serving the model that cannot take this
   * route. Throws 404 when no agent serves the model at all, 400 when none of them can embed.
   */
  function unsuitableAgents(model: string, embeddings: boolean): string[] {
    const all = [...registry.candidates(model)];
    if (all.length === 0) {
      const err = new OpenAiRequestError(`the model "${model}" does not exist or no agent serves it`, 'model', 'model_not_found');
      throw Object.assign(err, { status: 404 });
    }
    const unsuitable = all.filter((r) => !servesOpenAi(r, embeddings)).map((r) => r.agentId);
    if (embeddings && unsuitable.length === all.length) {
      throw new OpenAiRequestError(`the model "${model}" cannot embed: none of its agents' engines serves embeddings`, 'model', 'model_not_supported');
    }
    return unsuitable;
  }

  /**
   * Schedules `input`, then relays to or redirects the client to the chosen agent. Traced as a
   * SERVER span, a child of the request's `traceparent`: scheduling and signing below it, and in
   * relay mode the agent's own span (its `traceparent` is sent along).
   */
  async function carry(req: FastifyRequest, reply: FastifyReply, path: OpenAiRoute, input: InferenceInput): Promise<FastifyReply | undefined> {
    const { span, context: traceContext } = startHttpServerSpan('POST', path, req.headers, {
      [TRACE_ATTRIBUTES.genAiRequestModel]: input.model,
      [TRACE_ATTRIBUTES.clientId]: input.clientId,
    });
    const traced = span.isRecording();
    let failure: unknown;
    const excluded = [...(input.excludeAgentIds ?? [])];
    const client = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) client.abort();
    };
    reply.raw.once('close', onClose);
    try {
      for (let attempt = 1; ; attempt += 1) {
        const grant = await options.route({ ...input, excludeAgentIds: excluded }, traceContext);
        if (traced) span.setAttributes({ [TRACE_ATTRIBUTES.agentId]: grant.agentId, [TRACE_ATTRIBUTES.jobId]: grant.jobId });
        const agent = registry.get(grant.agentId);
        if (!agent || agent.httpEndpoint === '') throw new AgentUnreachableError(`agent ${grant.agentId} has no HTTP endpoint`, { agentId: grant.agentId });
        const headers = { 'x-titan-agent-id': grant.agentId, 'x-titan-job-id': grant.jobId, ...grant.rateLimitHeaders };
        if (mode === 'redirect') {
          const location = `http://${agent.httpEndpoint}${path}?session_token=${encodeURIComponent(grant.sessionToken)}`;
          return reply.code(307).headers(headers).header('location', location).header('cache-control', 'no-store').send();
        }
        let upstream: Awaited<ReturnType<AgentRelay['send']>>;
        try {
          upstream = await relay.send({
            httpEndpoint: agent.httpEndpoint,
            path,
            body: req.body as string,
            sessionToken: grant.sessionToken,
            signal: client.signal,
            traceHeaders: traceHeaders(traceContext),
          });
        } catch (err) {
          if (client.signal.aborted) return undefined;
          if (!(err instanceof AgentUnreachableError) || attempt >= attempts) throw err;
          logger.warn({ agentId: grant.agentId, err: err.message, attempt }, 'agent unreachable for a relayed OpenAI request; trying another');
          excluded.push(grant.agentId);
          continue;
        }
        reply.hijack();
        await relay.pipe(upstream, reply.raw, headers);
        return undefined;
      }
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      reply.raw.off('close', onClose);
      if (traced) {
        recordServerOutcome(span, failure, client.signal);
        // An error is answered by the route's handler after this (its status is not known here).
        if (failure === undefined) span.setAttribute(TRACE_ATTRIBUTES.httpResponseStatusCode, reply.raw.statusCode);
      }
      span.end();
    }
  }

  /** Runs a route's handler, answering anything it throws in OpenAI's shape. */
  const handle =
    (fn: (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>) =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
      options.metrics.request('http');
      try {
        return await fn(req, reply);
      } catch (err) {
        if (reply.sent || reply.raw.headersSent) {
          logger.warn({ err }, 'openai request failed after the answer started');
          reply.raw.destroy();
          return undefined;
        }
        const status = (err as { status?: unknown }).status;
        if (err instanceof OpenAiRequestError && status === 404)
          return reply.code(404).send(openAiError(404, err.message, { param: err.param, code: err.code }));
        return sendOpenAiError(reply, err, logger);
      }
    };

  const clientIdOf = (req: FastifyRequest, user: string | undefined) => user ?? `openai@${req.ip}`;

  const generation = (path: '/v1/chat/completions' | '/v1/completions', parse: typeof parseChatCompletionRequest) =>
    handle(async (req, reply) => {
      const body = parse(readJson(req));
      const excludeAgentIds = unsuitableAgents(body.model, false);
      return carry(req, reply, path, {
        clientId: clientIdOf(req, body.user),
        model: body.model,
        prompt: body.prompt,
        messages: body.messages.length > 0 ? body.messages : undefined,
        maxTokens: body.maxTokens ?? options.defaultMaxTokens,
        temperature: body.temperature,
        temperatureSet: true,
        parameters: body.parameters,
        excludeAgentIds,
        authorization: req.headers.authorization,
      });
    });

  app.post('/v1/chat/completions', generation('/v1/chat/completions', parseChatCompletionRequest));
  app.post('/v1/completions', generation('/v1/completions', parseCompletionRequest));
  app.post(
    '/v1/embeddings',
    handle(async (req, reply) => {
      const body = parseEmbeddingsRequest(readJson(req));
      const excludeAgentIds = unsuitableAgents(body.model, true);
      const grantInput = embeddingsGrantInput(body.input);
      return carry(req, reply, '/v1/embeddings', {
        clientId: clientIdOf(req, body.user),
        model: body.model,
        prompt: grantInput.prompt,
        maxTokens: 1,
        temperature: 0,
        temperatureSet: true,
        parameters: grantInput.parameters,
        excludeAgentIds,
        authorization: req.headers.authorization,
      });
    }),
  );
  /** The models the caller may see: all, or its key's allow-list (a bad key is 401, as for inference). */
  async function visibleModels(req: FastifyRequest) {
    const key = await options.authenticate?.(req.headers.authorization);
    const all = models();
    return key && key.models.length > 0 ? all.filter((m) => key.models.includes(m.id)) : all;
  }

  app.get(
    '/v1/models',
    handle(async (req) => modelList(await visibleModels(req)) as never),
  );
  app.get<{ Params: { model: string } }>(
    '/v1/models/:model',
    handle(async (req, reply) => {
      const model = (await visibleModels(req)).find((m) => m.id === (req.params as { model: string }).model);
      if (!model)
        return reply.code(404).send(
          openAiError(404, `the model "${(req.params as { model: string }).model}" does not exist or no agent serves it`, {
            param: 'model',
            code: 'model_not_found',
          }),
        );
      return model as never;
    }),
  );

  return { close: () => ownRelay && relay.close() };
}
