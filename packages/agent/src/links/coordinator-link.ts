import { createClientFactory, Metadata, type Channel } from 'nice-grpc';
import {
  CoordinatorServiceDefinition,
  createProtoVersionClientMiddleware,
  createTitanChannel,
  type AgentRegistration,
  type ClientTlsOptions,
  type CoordinatorServiceClient,
  type DeepPartial,
  type HealthAck,
  type HealthUpdate,
  type JobOutcome,
  type PrefixCacheReport,
  type PublicKeyResponse,
} from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { AGENT_DEFAULTS } from '../config.js';
import type { PrefixCacheState } from '../engines/engine.js';
import { backoffDelay, delay } from '../util/abort.js';
import { createPushQueue, type PushQueue } from '../util/push-queue.js';
import { createRegistration } from './coordinator-registration.js';
import { createJobReportLedger } from './job-reports.js';

/** What the link reports in each health update (besides RTT and timestamps). */
export interface HealthSnapshot {
  freeVramMb: number;
  freeRamMb: number;
  totalRamMb: number;
  runningJobs: number;
  queuedJobs: number;
  cpuPercent: number;
  gpus: HealthUpdate['gpus'];
  activeJobIds: string[];
  draining: boolean;
}

export { MAX_UNACKED_OUTCOMES } from './job-reports.js';

/** Options of {@link createCoordinatorLink}. */
export interface CoordinatorLinkOptions {
  /** `host:port` of the coordinator. */
  address: string;
  joinToken: string;
  /**
   * This agent's own credential (see `loadAgentCredential`): sent on RegisterAgent, on the first
   * HealthUpdate of every stream (it binds the stream) and on DeregisterAgent, so no other
   * holder of the join token can act for this agent id.
   */
  credential: string;
  /** This agent's id (in every update and in DeregisterAgent). */
  agentId: string;
  tls?: ClientTlsOptions | undefined;
  /** The registration to send (sent again on every re-registration). */
  registration: () => DeepPartial<AgentRegistration>;
  /** Current state for a health update. */
  snapshot: () => HealthSnapshot;
  /** Jobs finished since the previous call. */
  takeCompleted: () => JobOutcome[];
  /** Ids of jobs accepted since the previous call (`started_job_ids`). */
  takeStarted?: () => string[];
  /** Ids of jobs whose verified token was refused before they started (`rejected_job_ids`). */
  takeRejected?: () => string[];
  /**
   * What the engine's prefix cache holds (`Engine.prefixCache`), sent as `prefix_cache` on an
   * update when its version differs from the last one sent on this stream (a new stream, or a
   * registration the coordinator asked for, sends it again). Absent: never sent.
   */
  prefixCache?: () => PrefixCacheState | undefined;
  /** How long {@link CoordinatorLink.nudge} waits to coalesce job changes into one update. Default 2 ms. */
  jobReportDelayMs?: number;
  /** Interval used until (and unless) the coordinator says otherwise. Default `AGENT_DEFAULTS.heartbeatIntervalMs` (2000 ms). */
  heartbeatIntervalMs?: number;
  /** Backoff of registration retries: first delay and cap. Defaults 250 ms and 10 s. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Called after every successful registration (refetch keys: the coordinator may have restarted). */
  onRegistered?: () => void;
  logger: Logger;
}

/** The agent's side of the coordinator protocol. */
export interface CoordinatorLink {
  /** Registers (retrying with backoff until it succeeds) and keeps the health stream up. */
  start(): void;
  /** Sends a health update within `jobReportDelayMs` (coalescing job changes): e.g. jobs started. */
  nudge(): void;
  /**
   * Sends a health update on this turn of the event loop: a job ended or a token was refused,
   * and the coordinator must see the slot free before the client hears about it (and asks
   * again). Jobs that end in the same turn (streams that started together end together) share
   * one update.
   */
  flush(): void;
  /**
   * Resolves once the coordinator acked every update sent so far, and the one a pending
   * {@link CoordinatorLink.flush} sends (it has applied them), or after `timeoutMs` (default 250)
   * from that send, or at once without a stream.
   */
  whenAcked(timeoutMs?: number): Promise<void>;
  /** Fetches the coordinator's public keys. */
  getPublicKey(): Promise<PublicKeyResponse>;
  /** Resolves after the first successful registration. */
  readonly registered: Promise<void>;
  /** Latest RTT measured on the health stream, ms. */
  readonly rttMs: number;
  /** Sends a draining update now and waits for its ack (up to `timeoutMs`). */
  announceDraining(timeoutMs?: number): Promise<void>;
  /** DeregisterAgent, then closes the stream and stops reconnecting. */
  stop(reason: string): Promise<void>;
}

/**
 * Creates a {@link CoordinatorLink}: RegisterAgent with the join token (retried with capped
 * exponential backoff, see `createRegistration`), one long-lived ReportHealth stream (an update
 * every interval and promptly on job changes; RTT from `echo_timestamp`; `reregister` acks
 * answered by registering again), reconnecting and re-registering when the stream breaks
 * (coordinator restart). Finished jobs ride on every update until acknowledged (see
 * `createJobReportLedger`).
 */
export function createCoordinatorLink(options: CoordinatorLinkOptions): CoordinatorLink {
  const { logger } = options;
  const initial = options.backoffInitialMs ?? 250;
  const cap = options.backoffMaxMs ?? 10_000;
  let intervalMs = options.heartbeatIntervalMs ?? AGENT_DEFAULTS.heartbeatIntervalMs;
  // Retries are never further apart than one health interval, so a restarted coordinator sees
  // every agent again within about two intervals. grpc-js backs off its own reconnects up to
  // 120 s by default: bound them the same way.
  const retryCap = () => Math.max(initial, Math.min(cap, intervalMs));
  const channel: Channel = createTitanChannel(options.address, {
    ...(options.tls ? { tls: options.tls } : {}),
    channelOptions: { 'grpc.initial_reconnect_backoff_ms': initial, 'grpc.max_reconnect_backoff_ms': retryCap() },
  });
  const client: CoordinatorServiceClient = createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
  const auth = () => ({ metadata: Metadata({ authorization: `Bearer ${options.joinToken}` }) });
  const stopController = new AbortController();
  const reports = createJobReportLedger();
  const { register, registered } = createRegistration({
    client,
    address: options.address,
    credential: options.credential,
    registration: options.registration,
    auth,
    stopSignal: stopController.signal,
    backoffInitialMs: initial,
    retryCapMs: retryCap,
    applyInterval: (seconds) => {
      if (seconds > 0) intervalMs = seconds * 1000;
      return intervalMs;
    },
    onRegistered: options.onRegistered,
    logger,
  });
  let rttMs = 0;
  let queue: PushQueue<DeepPartial<HealthUpdate>> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let debounce: NodeJS.Timeout | undefined;
  /** The update a flush asked for, sent on this turn of the event loop, and who waits for it to leave. */
  let flushing: { immediate: NodeJS.Immediate; sent: Promise<void>; resolve: () => void } | undefined;
  let draining = false;
  let loop: Promise<void> | undefined;
  /** Version of the prefix-cache state last sent on the current stream (undefined: none yet). */
  let sentPrefixVersion: number | undefined;
  /** The prefix-cache report for the next update: only when it changed since the last one sent. */
  const prefixCacheChange = (): PrefixCacheReport | undefined => {
    const cache = options.prefixCache?.();
    if (!cache || cache.version === sentPrefixVersion) return undefined;
    sentPrefixVersion = cache.version;
    const { blockHashes, usedCells, totalCells, usedSequences, totalSequences } = cache;
    return { blockHashes, usedCells, totalCells, usedSequences, totalSequences };
  };
  const streamOpen = () => queue !== undefined && !queue.closed;

  /** Sends a health update on the open stream now (and schedules the next one an interval later). */
  const sendUpdate = () => {
    clearTimeout(debounce);
    debounce = undefined;
    // This update carries what a pending flush was for.
    const flushed = flushing;
    flushing = undefined;
    if (flushed) {
      clearImmediate(flushed.immediate);
      flushed.resolve();
    }
    if (!queue || queue.closed) return;
    // started_job_ids and rejected_job_ids go once; a reconnect re-sends active_job_ids, and an
    // unreported rejection only means the slot waits for the coordinator's claim window.
    const s = { ...options.snapshot(), startedJobIds: options.takeStarted?.() ?? [], rejectedJobIds: options.takeRejected?.() ?? [] };
    const { timestamp, completedJobs } = reports.stamp(options.takeCompleted());
    const prefixCache = prefixCacheChange();
    queue.push({ agentId: options.agentId, ...s, draining: s.draining || draining, rttMs, timestamp, completedJobs, ...(prefixCache ? { prefixCache } : {}) });
    scheduleHeartbeat();
  };
  const scheduleHeartbeat = () => {
    clearTimeout(heartbeat);
    heartbeat = setTimeout(sendUpdate, intervalMs);
  };

  /** Takes one ack of the health stream: RTT, acknowledged reports, a request to register again. */
  const onAck = async (ack: HealthAck): Promise<void> => {
    const echo = Number(ack.echoTimestamp);
    if (echo > 0) {
      rttMs = Math.max(0, Date.now() - echo);
      reports.ack(echo);
    }
    if (ack.reregister) {
      logger.info('coordinator does not know this agent; registering again');
      await register();
      // The coordinator forgot this agent: it hears what the cache holds again.
      sentPrefixVersion = undefined;
      sendUpdate();
    }
  };

  /** One ReportHealth stream, from its first update until it breaks or the link stops. */
  const streamOnce = async (): Promise<void> => {
    queue = createPushQueue<DeepPartial<HealthUpdate>>();
    const q = queue;
    const callAbort = new AbortController();
    const onStop = () => callAbort.abort();
    stopController.signal.addEventListener('abort', onStop, { once: true });
    sentPrefixVersion = undefined;
    sendUpdate();
    try {
      for await (const ack of client.reportHealth(withCredentialFirst(q, options.credential), { ...auth(), signal: callAbort.signal })) {
        await onAck(ack);
      }
      if (!stopController.signal.aborted) logger.warn('coordinator closed the health stream; reconnecting');
    } finally {
      q.end();
      stopController.signal.removeEventListener('abort', onStop);
      clearTimeout(heartbeat);
      clearTimeout(debounce);
      debounce = undefined;
    }
  };

  /** Registers and keeps a health stream up, with backoff between broken streams, until the link stops. */
  const run = async () => {
    let failures = 0;
    while (!stopController.signal.aborted) {
      try {
        await register();
        failures = 0;
        await streamOnce();
      } catch (err) {
        if (stopController.signal.aborted) return;
        logger.warn({ err: (err as Error).message }, 'health stream to the coordinator failed; reconnecting');
      }
      if (stopController.signal.aborted) return;
      try {
        await delay(backoffDelay(failures++, initial, retryCap()), stopController.signal);
      } catch {
        return;
      }
    }
  };

  return {
    registered,
    get rttMs() {
      return rttMs;
    },
    start() {
      loop ??= run();
    },
    nudge() {
      if (debounce || !streamOpen()) return;
      debounce = setTimeout(sendUpdate, options.jobReportDelayMs ?? 2);
    },
    flush() {
      if (flushing || !streamOpen()) return;
      let resolve!: () => void;
      const sent = new Promise<void>((r) => (resolve = r));
      flushing = { immediate: setImmediate(sendUpdate), sent, resolve };
    },
    whenAcked(timeoutMs = 250) {
      if (!streamOpen()) return Promise.resolve();
      if (flushing) return flushing.sent.then(() => reports.whenAllAcked(timeoutMs));
      return reports.whenAllAcked(timeoutMs);
    },
    getPublicKey() {
      return client.getPublicKey({}, { signal: AbortSignal.timeout(5000) });
    },
    async announceDraining(timeoutMs = 2000) {
      draining = true;
      if (!streamOpen()) return;
      sendUpdate();
      const acked = reports.ackOf(reports.lastSentTs);
      await Promise.race([acked, delay(timeoutMs).catch(() => undefined)]);
    },
    async stop(reason) {
      draining = true;
      if (streamOpen()) sendUpdate();
      try {
        await client.deregisterAgent(
          { agentId: options.agentId, reason, agentCredential: options.credential },
          { ...auth(), signal: AbortSignal.timeout(3000) },
        );
        logger.info({ reason }, 'deregistered from the coordinator');
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'deregistration failed (the coordinator will drop this agent when the stream closes)');
      }
      stopController.abort();
      queue?.end();
      clearTimeout(heartbeat);
      clearTimeout(debounce);
      await loop?.catch(() => undefined);
      channel.close();
    },
  };
}

/** The updates of one health stream, the first one carrying the agent's credential (it binds the stream). */
async function* withCredentialFirst(updates: AsyncIterable<DeepPartial<HealthUpdate>>, credential: string): AsyncGenerator<DeepPartial<HealthUpdate>> {
  let first = true;
  for await (const update of updates) {
    yield first ? { ...update, agentCredential: credential } : update;
    first = false;
  }
}
