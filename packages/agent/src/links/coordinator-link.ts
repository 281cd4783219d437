import { createClientFactory, Metadata, type Channel } from 'nice-grpc';
import {
  CoordinatorServiceDefinition,
  createClientCredentials,
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
import { parseCoordinatorAddresses, resolveCoordinatorTargets, systemLookupAll, type CoordinatorTarget, type LookupAll } from './coordinator-addresses.js';
import { createRegistration, REGISTER_CALL_TIMEOUT_MS } from './coordinator-registration.js';
import { createJobReportLedger } from './job-reports.js';

/**
 * Longest a RegisterAgent call may take when other coordinators are listed: a coordinator that
 * does not answer (a host that drops packets) is left for the next one this soon.
 */
export const FAILOVER_REGISTER_TIMEOUT_MS = 3000;

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
  /**
   * `host:port` of the coordinator, or several separated by commas (`a:50051,b:50051,c:50051`:
   * replicas of one cluster), or a host name that resolves to several addresses (each one a
   * replica; resolved again on every reconnection). The agent keeps one health stream to one of
   * them, its home, and moves to the next when that stream or coordinator dies.
   */
  address: string;
  /** Resolves a host name to every address (default: `dns.lookup(name, { all: true })`). */
  lookup?: LookupAll;
  /**
   * Longest wait for the ack of a sent update before the stream counts as dead (a coordinator
   * that hangs, or a host gone without closing the connection) and the link moves on. Default:
   * three health intervals, at least 5 s.
   */
  ackTimeoutMs?: number;
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
  /** Fetches the public keys of the home coordinator (or of the one being dialled, or the last home). */
  getPublicKey(): Promise<PublicKeyResponse>;
  /** `host:port` of the coordinator this agent is registered with and streams to (its home); undefined while it has none. */
  readonly home: string | undefined;
  /** The coordinator entries configured (`address`, split at its commas). */
  readonly addresses: readonly string[];
  /** Resolves after the first successful registration. */
  readonly registered: Promise<void>;
  /** Latest RTT measured on the health stream, ms. */
  readonly rttMs: number;
  /** Sends a draining update now and waits for its ack (up to `timeoutMs`). */
  announceDraining(timeoutMs?: number): Promise<void>;
  /** DeregisterAgent (at the home coordinator), then closes the stream and stops reconnecting. */
  stop(reason: string): Promise<void>;
}

/** One coordinator the link dials: its channel and client. */
interface Connection {
  address: string;
  channel: Channel;
  client: CoordinatorServiceClient;
}

/**
 * Creates a {@link CoordinatorLink}: RegisterAgent with the join token, one long-lived
 * ReportHealth stream (an update every interval and promptly on job changes; RTT from
 * `echo_timestamp`; `reregister` acks answered by registering again), reconnecting and
 * re-registering when the stream breaks (coordinator restart). With several coordinators
 * (`address` a list, or a name with several addresses) the agent has one home at a time: when
 * its stream or registration fails it tries the next address at once (the same credential
 * registers it there), and backs off (capped exponential, see `backoffDelay`) only after every
 * address failed in a row. Finished jobs and refused tokens ride on every update until
 * acknowledged, by whichever coordinator is home (see `createJobReportLedger`).
 */
export function createCoordinatorLink(options: CoordinatorLinkOptions): CoordinatorLink {
  const { logger } = options;
  const entries = parseCoordinatorAddresses(options.address);
  const lookup = options.lookup ?? systemLookupAll;
  const initial = options.backoffInitialMs ?? 250;
  const cap = options.backoffMaxMs ?? 10_000;
  let intervalMs = options.heartbeatIntervalMs ?? AGENT_DEFAULTS.heartbeatIntervalMs;
  // Retries are never further apart than one health interval, so a restarted coordinator sees
  // every agent again within about two intervals. grpc-js backs off its own reconnects up to
  // 120 s by default: bound them the same way.
  const retryCap = () => Math.max(initial, Math.min(cap, intervalMs));
  const ackTimeout = () => options.ackTimeoutMs ?? Math.max(5000, 3 * intervalMs);
  // Unreadable TLS files fail here, at start, as they did with one channel made up front.
  if (options.tls) createClientCredentials(options.tls);
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  const connections = new Map<string, Connection>();
  const connect = (target: CoordinatorTarget): Connection => {
    let c = connections.get(target.address);
    if (!c) {
      // A name expanded into its addresses: certificates are still checked against the name.
      const tls = options.tls && target.serverName && !options.tls.serverName ? { ...options.tls, serverName: target.serverName } : options.tls;
      const channel = createTitanChannel(target.address, {
        ...(tls ? { tls } : {}),
        channelOptions: { 'grpc.initial_reconnect_backoff_ms': initial, 'grpc.max_reconnect_backoff_ms': retryCap() },
      });
      c = { address: target.address, channel, client: factory.create(CoordinatorServiceDefinition, channel) };
      connections.set(target.address, c);
    }
    return c;
  };
  /** Closes the channels of addresses no longer listed (a name's records changed). */
  const prune = (targets: readonly CoordinatorTarget[]) => {
    for (const [address, c] of connections) {
      if (c === current || c === lastHome || targets.some((t) => t.address === address)) continue;
      c.channel.close();
      connections.delete(address);
    }
  };
  /** The coordinator being dialled, registered with or streamed to (undefined between attempts). */
  let current: Connection | undefined;
  /** The home: registered there, its health stream up or being opened. */
  let home: Connection | undefined;
  /** The latest home, and since when it is lost (for the one log line of a move). */
  let lastHome: Connection | undefined;
  let lostAt = 0;
  const auth = () => ({ metadata: Metadata({ authorization: `Bearer ${options.joinToken}` }) });
  const stopController = new AbortController();
  const reports = createJobReportLedger();
  const { registerOn, registered } = createRegistration({
    credential: options.credential,
    registration: options.registration,
    auth,
    stopSignal: stopController.signal,
    applyInterval: (seconds) => {
      if (seconds > 0) intervalMs = seconds * 1000;
      return intervalMs;
    },
    onRegistered: options.onRegistered,
    logger,
  });
  /** `c` is home now: said once per move (a re-registration with the same home says nothing more). */
  const becomeHome = (c: Connection) => {
    if (lastHome && lastHome !== c) {
      logger.warn({ from: lastHome.address, to: c.address, afterMs: Date.now() - lostAt }, 'moved to another coordinator (home changed)');
    }
    home = c;
    lastHome = c;
  };
  const leaveHome = () => {
    if (home) lostAt = Date.now();
    home = undefined;
  };
  let rttMs = 0;
  let queue: PushQueue<DeepPartial<HealthUpdate>> | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let debounce: NodeJS.Timeout | undefined;
  /** The update a flush asked for, sent on this turn of the event loop, and who waits for it to leave. */
  let flushing: { immediate: NodeJS.Immediate; sent: Promise<void>; resolve: () => void } | undefined;
  let draining = false;
  let loop: Promise<void> | undefined;
  /** Since when the stream waits for an ack of a sent update (undefined: every update is acked). */
  let waitingAckSince: number | undefined;
  /** Ends the open stream's call. */
  let streamAbort: AbortController | undefined;
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
    // A coordinator that stopped acking (hung, or a host gone without closing the connection):
    // end this stream, so the link moves on (to the next coordinator, when there is one).
    if (waitingAckSince !== undefined && Date.now() - waitingAckSince > ackTimeout()) {
      logger.warn({ coordinator: current?.address, ackTimeoutMs: ackTimeout() }, 'no ack on the health stream in time; reconnecting');
      streamAbort?.abort(new Error('no ack on the health stream in time'));
      return;
    }
    // started_job_ids go once (a reconnect re-sends active_job_ids); rejected_job_ids and
    // finished jobs ride on every update until acked, on this stream or the next one.
    const s = { ...options.snapshot(), startedJobIds: options.takeStarted?.() ?? [] };
    const { timestamp, completedJobs, rejectedJobIds } = reports.stamp(options.takeCompleted(), options.takeRejected?.() ?? []);
    const prefixCache = prefixCacheChange();
    waitingAckSince ??= Date.now();
    queue.push({
      agentId: options.agentId,
      ...s,
      rejectedJobIds,
      draining: s.draining || draining,
      rttMs,
      timestamp,
      completedJobs,
      ...(prefixCache ? { prefixCache } : {}),
    });
    scheduleHeartbeat();
  };
  const scheduleHeartbeat = () => {
    clearTimeout(heartbeat);
    heartbeat = setTimeout(sendUpdate, intervalMs);
  };

  /** Takes one ack of the health stream: RTT, acknowledged reports, a request to register again. */
  const onAck = async (c: Connection, ack: HealthAck): Promise<void> => {
    const echo = Number(ack.echoTimestamp);
    if (echo > 0) {
      rttMs = Math.max(0, Date.now() - echo);
      reports.ack(echo);
      waitingAckSince = echo >= reports.lastSentTs ? undefined : Date.now();
    }
    if (ack.reregister) {
      logger.info({ coordinator: c.address }, 'coordinator does not know this agent; registering again');
      await registerOn(c);
      // The coordinator forgot this agent: it hears what the cache holds again.
      sentPrefixVersion = undefined;
      sendUpdate();
    }
  };

  /**
   * One ReportHealth stream to `c`, from its first update until it breaks or the link stops.
   * Sets `state.acked` once the coordinator acked an update on it.
   */
  const streamOnce = async (c: Connection, state: { acked: boolean }): Promise<void> => {
    queue = createPushQueue<DeepPartial<HealthUpdate>>();
    const q = queue;
    const callAbort = new AbortController();
    streamAbort = callAbort;
    const onStop = () => callAbort.abort();
    stopController.signal.addEventListener('abort', onStop, { once: true });
    sentPrefixVersion = undefined;
    waitingAckSince = undefined;
    sendUpdate();
    try {
      for await (const ack of c.client.reportHealth(withCredentialFirst(q, options.credential), { ...auth(), signal: callAbort.signal })) {
        state.acked = true;
        await onAck(c, ack);
      }
      if (!stopController.signal.aborted) logger.warn({ coordinator: c.address }, 'coordinator closed the health stream; reconnecting');
    } finally {
      q.end();
      if (streamAbort === callAbort) streamAbort = undefined;
      stopController.signal.removeEventListener('abort', onStop);
      clearTimeout(heartbeat);
      clearTimeout(debounce);
      debounce = undefined;
    }
  };

  /**
   * Registers and keeps a health stream up until the link stops: on the next coordinator at once
   * after a failure while another one was not tried yet, with backoff once every one failed in a
   * row. The addresses are resolved again before each attempt.
   */
  const run = async () => {
    /** Rounds (every address tried) failed in a row: the backoff's exponent. */
    let rounds = 0;
    /** Addresses tried in this round. */
    let tried = 0;
    /** Failed attempts since the last stream that was acked (for the log level). */
    let failures = 0;
    /** The address tried last: the next attempt starts after it. */
    let after: string | undefined;
    while (!stopController.signal.aborted) {
      const targets = await resolveCoordinatorTargets(entries, lookup);
      if (stopController.signal.aborted) return;
      prune(targets);
      const at = after === undefined ? -1 : targets.findIndex((t) => t.address === after);
      const target = targets[(at + 1) % targets.length] ?? targets[0];
      /* c8 ignore next */
      if (!target) return;
      const c = connect(target);
      current = c;
      const state = { acked: false };
      let registeredHere = false;
      try {
        await registerOn(c, targets.length > 1 ? FAILOVER_REGISTER_TIMEOUT_MS : REGISTER_CALL_TIMEOUT_MS);
        registeredHere = true;
        becomeHome(c);
        await streamOnce(c, state);
      } catch (err) {
        if (stopController.signal.aborted) return;
        const level = failures === 0 || failures % 10 === 0 ? 'warn' : 'debug';
        logger[level](
          { coordinator: c.address, err: (err as Error).message, ...(targets.length > 1 ? { coordinators: targets.map((t) => t.address) } : {}) },
          registeredHere ? 'health stream to the coordinator failed; reconnecting' : 'cannot register with the coordinator; retrying',
        );
      }
      leaveHome();
      current = undefined;
      if (stopController.signal.aborted) return;
      after = c.address;
      if (state.acked) {
        rounds = 0;
        tried = 0;
        failures = 0;
      } else {
        failures++;
      }
      // Another address not tried in this round: go there now (the failover bound is this fast).
      if (++tried < targets.length) continue;
      tried = 0;
      try {
        await delay(backoffDelay(rounds++, initial, retryCap()), stopController.signal);
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
    get home() {
      return home?.address;
    },
    addresses: entries,
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
    async getPublicKey() {
      // From the coordinator this agent talks to now: after a move, the new home's keys.
      const c = home ?? current ?? lastHome ?? connect({ address: entries[0] ?? options.address, serverName: undefined });
      return c.client.getPublicKey({}, { signal: AbortSignal.timeout(5000) });
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
      // `current`: a registration still waiting for its answer may already be recorded there.
      const c = home ?? lastHome ?? current;
      if (c) {
        try {
          await c.client.deregisterAgent(
            { agentId: options.agentId, reason, agentCredential: options.credential },
            { ...auth(), signal: AbortSignal.timeout(3000) },
          );
          logger.info({ reason, coordinator: c.address }, 'deregistered from the coordinator');
        } catch (err) {
          logger.warn(
            { err: (err as Error).message, coordinator: c.address },
            'deregistration failed (the coordinator will drop this agent when the stream closes)',
          );
        }
      }
      stopController.abort();
      queue?.end();
      clearTimeout(heartbeat);
      clearTimeout(debounce);
      await loop?.catch(() => undefined);
      for (const conn of connections.values()) conn.channel.close();
      connections.clear();
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
