import type { Context } from '@opentelemetry/api';
import { ServerError, Status, type CallContext } from 'nice-grpc-common';
import {
  SERVICE_NAMES,
  TRACE_ATTRIBUTES,
  type AgentStatus,
  type CoordinatorServiceImplementation,
  type HealthAck,
  type HealthUpdate,
} from '@titancompute/protocol';
import { startRpcServerSpan, type Logger } from '@titancompute/server-kit';
import { AgentIdentityError, InvalidRequestError } from '../errors.js';
import { validateCredential, validateDeregistration, validateHealthUpdate, validateRegistration } from '../identity/agent-messages.js';
import type { EndpointVerifier } from '../identity/endpoint-verifier.js';
import type { GrantLedger } from '../identity/grant-ledger.js';
import { hashCredential, type IdentityStore } from '../identity/identity-store.js';
import { checkJoinToken } from '../join-token.js';
import type { CoordinatorMetricsSink } from '../metrics.js';
import type { AgentRecord } from '../registry/agent-record.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import type { FleetStore, SharedGrant } from '../registry/fleet-store.js';
import { TOKEN_ALGORITHM, type Keyring } from '../tokens/keyring.js';
import type { InferenceGrant } from './request-router.js';
import type { InferenceInput } from './request-validation.js';
import { untilAborted } from './until-aborted.js';

/** Dependencies of {@link createCoordinatorService}. */
export interface CoordinatorServiceOptions {
  registry: AgentRegistry;
  keyring: Keyring;
  metrics: CoordinatorMetricsSink;
  /** Routes a request; `traceContext` parents its scheduling and signing spans. */
  route: (input: InferenceInput, traceContext?: Context) => Promise<InferenceGrant>;
  joinToken: string;
  issuer: string;
  heartbeatIntervalMs: number;
  /** Start time (ms) for uptime. */
  startedAt: number;
  /** Aborted on shutdown: health streams end on it. */
  shutdownSignal: AbortSignal;
  logger: Logger;
  /** Agent id → credential bindings: every RegisterAgent, health stream and DeregisterAgent must match. */
  identities: IdentityStore;
  /** Jobs granted per agent: only their outcomes count (breaker, tokens/s, metrics). */
  grants: GrantLedger;
  /**
   * Checks a new or changed endpoint before the agent is scheduled. Absent: endpoints are
   * trusted as registered (tests only; the coordinator always verifies by default).
   */
  endpoints?: EndpointVerifier | undefined;
  /**
   * The fleet shared by coordinator replicas (`--store postgres`): registrations, health snapshots,
   * stream ends and deregistrations of agents homed here are written to it; outcomes of jobs another
   * replica granted are looked up in it. Absent: a single node.
   */
  fleet?: FleetStore | undefined;
  /** A job another replica granted whose outcome is reported here (shared fleet): e.g. charge its key. */
  onSharedGrant?: ((grant: SharedGrant) => void) | undefined;
}

/** Formats a duration like Go: "3s", "2m3s", "1h2m3s". */
export function formatUptime(ms: number): string {
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** The AgentStatus message of a record. */
export function agentStatusOf(r: AgentRecord): AgentStatus {
  return {
    agentId: r.agentId,
    status: r.state(),
    freeVramMb: r.freeVramMb,
    runningJobs: r.runningJobs,
    lastHeartbeat: r.lastHeartbeatMs,
    endpoint: r.endpoint,
    totalVramMb: r.totalVramMb,
    totalRamMb: r.totalRamMb,
    freeRamMb: r.freeRamMb,
    queuedJobs: r.queuedJobs,
    maxJobs: r.maxJobs,
    rttMs: r.rttMs,
    supportedModels: [...r.supportedModels],
    tokensPerSecond: r.tokensPerSecond ?? 0,
    reservedJobs: r.reservedJobs,
    breakerState: r.breakerState(),
    gpus: r.gpus,
    cpuPercent: r.cpuPercent,
  };
}

let nextStreamId = 1;

/**
 * The CoordinatorService handlers (gRPC): inference routing, agent registration with the join
 * token, one long-lived health stream per agent, status and public keys.
 */
export function createCoordinatorService(options: CoordinatorServiceOptions): CoordinatorServiceImplementation {
  const { registry, keyring, metrics, logger } = options;
  const heartbeatIntervalSeconds = Math.max(1, Math.ceil(options.heartbeatIntervalMs / 1000));
  const requireJoinToken = (context: CallContext) => checkJoinToken(context.metadata.get('authorization'), options.joinToken);
  /** Verifies the record's endpoint in the background and remembers it once verified. */
  const checkEndpoint = (record: AgentRecord) => {
    const { agentId, endpoint } = record;
    void options
      .endpoints!.verify(record)
      .then((outcome) => {
        if (outcome === 'verified') options.identities.rememberVerifiedEndpoint(agentId, endpoint);
        options.fleet?.snapshotChanged(record);
      })
      .catch((err: unknown) => logger.warn({ err, agentId }, 'agent endpoint check failed'));
  };

  /** Learns the grants (any replica's) of the completed jobs this replica did not grant itself. */
  const adoptSharedGrants = async (agentId: string, update: HealthUpdate) => {
    const unknown = update.completedJobs.filter((o) => !options.grants.has(agentId, o.jobId)).map((o) => o.jobId);
    if (unknown.length === 0) return;
    try {
      for (const grant of await options.fleet!.grantsOf(agentId, unknown)) {
        options.grants.grant(grant.agentId, grant.jobId, grant.tokenExpiresAtMs);
        options.onSharedGrant?.(grant);
      }
    } catch (err) {
      // Those outcomes then do not count (breaker, throughput, usage): the stream goes on.
      logger.warn({ err, agentId, jobIds: unknown }, 'could not look up the grants of reported jobs in the shared fleet');
    }
  };

  return {
    // Errors declare their status (busy ones also their `retry-after-ms` trailer): server-kit maps them.
    async requestInference(request, context) {
      metrics.request('grpc');
      // A child of the caller's span when it sent `traceparent`; the no-op span when tracing is off.
      const call = startRpcServerSpan(SERVICE_NAMES.coordinator, 'RequestInference', context.metadata, {
        [TRACE_ATTRIBUTES.genAiRequestModel]: request.model,
        [TRACE_ATTRIBUTES.clientId]: request.clientId,
      });
      try {
        // Checked by the router when API keys are in force (metadata `authorization: Bearer tk-…`).
        const grant = await options.route(
          {
            authorization: context.metadata.get('authorization'),
            clientId: request.clientId,
            model: request.model,
            prompt: request.prompt,
            messages: request.messages,
            maxTokens: request.maxTokens,
            temperature: request.temperature,
            temperatureSet: request.temperatureSet,
            parameters: request.parameters,
            excludeAgentIds: request.excludeAgentIds,
          },
          call.context,
        );
        // The key's x-ratelimit-* values, as response headers (REST sends them as HTTP headers).
        for (const [name, value] of Object.entries(grant.rateLimitHeaders ?? {})) context.header.set(name, value);
        if (call.span.isRecording()) call.span.setAttributes({ [TRACE_ATTRIBUTES.agentId]: grant.agentId, [TRACE_ATTRIBUTES.jobId]: grant.jobId });
        call.end();
        return grant;
      } catch (err) {
        call.end(err, context.signal);
        throw err;
      }
    },

    async registerAgent(request, context) {
      requireJoinToken(context);
      validateRegistration(request);
      // The join token only admits; the credential proves which agent this is (first use binds).
      const identity = options.identities.bindOrVerify(request.agentId, hashCredential(request.agentCredential));
      const before = registry.get(request.agentId);
      // A pending check is kept only when it is this replica's own (with a shared fleet, another replica's copy may say pending).
      const keepCheck =
        before !== undefined &&
        before.endpoint === request.endpoint &&
        (options.fleet ? before.endpointCheck === 'verified' : before.endpointCheck !== 'unreachable');
      // Verified before (e.g. by this coordinator before a restart) from this very endpoint.
      const knownEndpoint = !keepCheck && options.identities.verifiedEndpoint(request.agentId) === request.endpoint;
      const record = registry.register(request);
      if (knownEndpoint) record.endpointCheck = 'verified';
      const checking = options.endpoints !== undefined && !keepCheck && !knownEndpoint;
      if (checking) checkEndpoint(record);
      // Every replica learns of it (and of its endpoint check) through the shared fleet.
      await options.fleet?.registered(record);
      logger.info(
        {
          agentId: record.agentId,
          endpoint: record.endpoint,
          identity,
          endpointCheck: record.endpointCheck,
          models: request.supportedModels,
          maxJobs: record.maxJobs,
          totalVramMb: record.totalVramMb,
          totalRamMb: record.totalRamMb,
        },
        'agent registered',
      );
      const message = checking
        ? `agent ${record.agentId} registered; routed once the coordinator reaches ${record.endpoint} (grpc health SERVING, GetStatus with this agent_id)`
        : `agent ${record.agentId} registered`;
      return { status: 'registered', message, heartbeatIntervalSeconds };
    },

    async *reportHealth(requests, context) {
      requireJoinToken(context);
      const streamId = nextStreamId++;
      // The first update binds the stream to its agent_id, proven by the agent's credential.
      let bound: { agentId: string; digest: Buffer } | undefined;
      // Set once this stream has spoken for its agent (so its end takes the agent offline).
      let agentId: string | undefined;
      let dropped = false;
      try {
        for await (const update of untilAborted<HealthUpdate>(requests, [context.signal, options.shutdownSignal])) {
          // Out-of-range values end the stream with INVALID_ARGUMENT before anything is stored.
          validateHealthUpdate(update);
          if (!bound) {
            bound = { agentId: update.agentId, digest: hashCredential(validateCredential(update.agentCredential)) };
          } else if (update.agentId !== bound.agentId) {
            throw new InvalidRequestError('agent_id', `this health stream speaks for "${bound.agentId}" (bound by its first update), not "${update.agentId}"`);
          }
          const ack: HealthAck = { agentId: update.agentId, status: 'ok', message: '', reregister: false, echoTimestamp: update.timestamp };
          // Checked on every update (from memory; SQLite is asked at most every 50 ms): a binding released by `forget-agent` is seen within 50 ms.
          if (!options.identities.verify(bound.agentId, bound.digest)) {
            ack.status = 'unknown';
            ack.message = 'unknown agent: register again';
            ack.reregister = true;
            yield ack;
            continue;
          }
          // Outcomes of jobs another replica granted to this agent: learn those grants first.
          if (options.fleet && update.completedJobs.length > 0) await adoptSharedGrants(bound.agentId, update);
          // Only outcomes of jobs this coordinator granted to this agent count, each once.
          for (const jobId of update.activeJobIds) options.grants.touch(bound.agentId, jobId);
          const completedJobs = update.completedJobs.filter((outcome) => options.grants.complete(bound!.agentId, outcome.jobId));
          agentId = bound.agentId;
          const result = registry.applyHealth(completedJobs.length === update.completedJobs.length ? update : { ...update, completedJobs }, streamId);
          if (result.known) {
            // Shared fleet: written at the next flush; at once (and acked after) when jobs changed.
            const written = options.fleet?.healthApplied(result.record, update);
            if (written) await written;
          }
          if (!result.known) {
            ack.status = 'unknown';
            ack.message = 'unknown agent: register again';
            ack.reregister = true;
          } else if (result.deregistered) {
            ack.status = 'deregistered';
            ack.message = 'agent deregistered';
          } else if (result.record.draining) {
            ack.status = 'draining';
          } else if (result.record.endpointCheck !== 'verified') {
            if (options.endpoints?.recheckDue(result.record)) checkEndpoint(result.record);
            ack.status = 'unverified';
            ack.message = `not routed: the coordinator has not reached ${result.record.endpoint} yet`;
          }
          yield ack;
        }
        dropped = context.signal.aborted && !options.shutdownSignal.aborted;
      } catch (err) {
        // A refused update (bad value, wrong agent) is not a dropped connection.
        dropped = !options.shutdownSignal.aborted && !(err instanceof InvalidRequestError || err instanceof AgentIdentityError);
        if (!(err instanceof Error && (err.name === 'AbortError' || context.signal.aborted))) throw err;
      } finally {
        if (agentId !== undefined) {
          registry.streamClosed(agentId, streamId, dropped);
          const record = registry.get(agentId);
          if (record && record.streamId === undefined) options.fleet?.streamClosed(record);
          logger.info({ agentId, dropped }, 'health stream closed; agent offline');
        }
      }
    },

    async querySystemStatus(request) {
      const records = registry.list();
      const uptimeMs = Date.now() - options.startedAt;
      return {
        totalAgents: records.length,
        healthyAgents: records.filter((r) => r.state() === 'healthy').length,
        totalJobs: metrics.scheduledTotal(),
        uptime: formatUptime(uptimeMs),
        uptimeSeconds: uptimeMs / 1000,
        agents: request.includeAgents ? records.map(agentStatusOf) : [],
        ...(request.includeMetrics ? { metrics: metrics.snapshot() } : {}),
      };
    },

    async getPublicKey() {
      const keys = keyring.publishedKeys();
      const current = keyring.current();
      return {
        publicKeyPem: current.publicKeyPem,
        algorithm: TOKEN_ALGORITHM,
        issuer: options.issuer,
        keyId: current.kid,
        keys,
      };
    },

    async deregisterAgent(request, context) {
      requireJoinToken(context);
      validateDeregistration(request);
      // Only the agent itself may take its id offline (PERMISSION_DENIED for anyone else).
      if (!options.identities.verify(request.agentId, hashCredential(request.agentCredential))) {
        throw new ServerError(Status.NOT_FOUND, `agent ${request.agentId} is not registered`);
      }
      const known = registry.deregister(request.agentId);
      if (!known) throw new ServerError(Status.NOT_FOUND, `agent ${request.agentId} is not registered`);
      const record = registry.get(request.agentId);
      if (record) await options.fleet?.deregistered(record);
      logger.info({ agentId: request.agentId, reason: request.reason }, 'agent deregistered');
      return { status: 'deregistered', message: `agent ${request.agentId} deregistered` };
    },
  };
}
