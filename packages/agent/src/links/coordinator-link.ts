import { createClientFactory, Metadata, type Channel } from 'nice-grpc';
import {
  CoordinatorServiceDefinition,
  createProtoVersionClientMiddleware,
  createTitanChannel,
  type AgentRegistration,
  type ClientTlsOptions,
  type CoordinatorServiceClient,
  type DeepPartial,
  type HealthUpdate,
  type JobOutcome,
  type PublicKeyResponse,
} from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { backoffDelay, delay } from '../util/abort.js';
import { createPushQueue, type PushQueue } from '../util/push-queue.js';

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

/** Most finished jobs kept for re-sending until the coordinator acknowledges them (oldest dropped first). */
export const MAX_UNACKED_OUTCOMES = 1000;

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
  /** How long {@link CoordinatorLink.nudge} waits to coalesce job changes into one update. Default 2 ms. */
  jobReportDelayMs?: number;
  /** Interval used until (and unless) the coordinator says otherwise. Default 2000 ms. */
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
   * Sends a health update now: a job ended or a token was refused, and the coordinator must
   * see the slot free before the client hears about it (and asks again).
   */
  flush(): void;
  /**
   * Resolves once the coordinator acked every update sent so far (it has applied them), or
   * after `timeoutMs` (default 250), or at once without a stream.
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
 * exponential backoff), one long-lived ReportHealth stream (an update every interval and
 * promptly on job changes; RTT from `echo_timestamp`; `reregister` acks answered by
 * registering again), reconnecting and re-registering when the stream breaks (coordinator
 * restart).
 */
export function createCoordinatorLink(options: CoordinatorLinkOptions): CoordinatorLink {
  const { logger } = options;
  const initial = options.backoffInitialMs ?? 250;
  const cap = options.backoffMaxMs ?? 10_000;
  let intervalMs = options.heartbeatIntervalMs ?? 2000;
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
  let rttMs = 0;
  let lastSentTs = 0;
  let queue: PushQueue<DeepPartial<HealthUpdate>> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let debounce: NodeJS.Timeout | undefined;
  // Finished jobs not yet acknowledged, with the timestamp of the first update that carried
  // them; an ack echoing timestamp E covers every update up to E (one ordered stream).
  let unacked: { outcome: JobOutcome; sentTs: number }[] = [];
  let draining = false;
  const ackWaiters = new Map<number, () => void>();
  /** Highest update timestamp the coordinator acked, and who waits for one (see whenAcked). */
  let ackedTs = 0;
  let ackListeners: { ts: number; resolve: () => void }[] = [];
  let resolveRegistered!: () => void;
  const registered = new Promise<void>((resolve) => {
    resolveRegistered = resolve;
  });
  let loop: Promise<void> | undefined;

  const register = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      stopController.signal.throwIfAborted();
      try {
        const res = await client.registerAgent({ ...options.registration(), agentCredential: options.credential }, { ...auth(), signal: AbortSignal.any([stopController.signal, AbortSignal.timeout(10_000)]) });
        if (res.heartbeatIntervalSeconds > 0) intervalMs = res.heartbeatIntervalSeconds * 1000;
        logger.info({ coordinator: options.address, status: res.status, heartbeatIntervalMs: intervalMs }, 'registered with the coordinator');
        resolveRegistered();
        options.onRegistered?.();
        return;
      } catch (err) {
        if (stopController.signal.aborted) throw err;
        const wait = backoffDelay(attempt, initial, retryCap());
        const level = attempt === 0 || attempt % 10 === 0 ? 'warn' : 'debug';
        logger[level]({ coordinator: options.address, err: (err as Error).message, retryInMs: wait }, 'cannot register with the coordinator; retrying');
        await delay(wait, stopController.signal);
      }
    }
  };

  const sendUpdate = () => {
    clearTimeout(debounce);
    debounce = undefined;
    if (!queue || queue.closed) return;
    // started_job_ids and rejected_job_ids go once; a reconnect re-sends active_job_ids, and an
    // unreported rejection only means the slot waits for the coordinator's claim window.
    const s = { ...options.snapshot(), startedJobIds: options.takeStarted?.() ?? [], rejectedJobIds: options.takeRejected?.() ?? [] };
    const completed = options.takeCompleted();
    let ts = Date.now();
    if (ts <= lastSentTs) ts = lastSentTs + 1;
    lastSentTs = ts;
    for (const outcome of completed) unacked.push({ outcome, sentTs: ts });
    // A coordinator that never acks must not make every update (and this list) grow forever.
    if (unacked.length > MAX_UNACKED_OUTCOMES) unacked = unacked.slice(-MAX_UNACKED_OUTCOMES);
    queue.push({ agentId: options.agentId, ...s, draining: s.draining || draining, rttMs, timestamp: ts, completedJobs: unacked.map((u) => u.outcome) });
    scheduleHeartbeat();
  };
  const scheduleHeartbeat = () => {
    clearTimeout(heartbeat);
    heartbeat = setTimeout(sendUpdate, intervalMs);
  };

  const streamOnce = async (): Promise<void> => {
    queue = createPushQueue<DeepPartial<HealthUpdate>>();
    const q = queue;
    const callAbort = new AbortController();
    const onStop = () => callAbort.abort();
    stopController.signal.addEventListener('abort', onStop, { once: true });
    sendUpdate();
    try {
      for await (const ack of client.reportHealth(withCredentialFirst(q, options.credential), { ...auth(), signal: callAbort.signal })) {
        const echo = Number(ack.echoTimestamp);
        if (echo > 0) {
          rttMs = Math.max(0, Date.now() - echo);
          ackWaiters.get(echo)?.();
          ackWaiters.delete(echo);
          if (echo > ackedTs) ackedTs = echo;
          if (ackListeners.length > 0) {
            for (const l of ackListeners) if (l.ts <= echo) l.resolve();
            ackListeners = ackListeners.filter((l) => l.ts > echo);
          }
          // Not only when the ack is for the latest update: under steady load the next update is
          // always sent before the previous one's ack arrives (the list then grew without end).
          const covered = unacked.findIndex((u) => u.sentTs > echo);
          if (covered !== 0) unacked = covered === -1 ? [] : unacked.slice(covered);
        }
        if (ack.reregister) {
          logger.info('coordinator does not know this agent; registering again');
          await register();
          sendUpdate();
        }
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
      if (debounce || !queue || queue.closed) return;
      debounce = setTimeout(sendUpdate, options.jobReportDelayMs ?? 2);
    },
    flush() {
      if (!queue || queue.closed) return;
      sendUpdate();
    },
    whenAcked(timeoutMs = 250) {
      const ts = lastSentTs;
      if (!queue || queue.closed || ts <= ackedTs) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        ackListeners.push({ ts, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    getPublicKey() {
      return client.getPublicKey({}, { signal: AbortSignal.timeout(5000) });
    },
    async announceDraining(timeoutMs = 2000) {
      draining = true;
      if (!queue || queue.closed) return;
      const acked = new Promise<void>((resolve) => {
        sendUpdate();
        ackWaiters.set(lastSentTs, resolve);
      });
      await Promise.race([acked, delay(timeoutMs).catch(() => undefined)]);
    },
    async stop(reason) {
      draining = true;
      if (queue && !queue.closed) sendUpdate();
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
