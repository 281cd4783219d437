import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ClientTlsOptions } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import type { ApiKeys } from '../keys/api-keys.js';
import type { AgentRegistry } from '../registry/agent-registry.js';
import { sendError } from '../http/http-errors.js';
import { findDashboardAssets } from './dashboard-assets.js';
import { createDashboardSessions, type DashboardCredential, type DashboardSessionsOptions } from './dashboard-sessions.js';
import { createViewerSet, type SseMessage } from './dashboard-stream.js';
import type { DashboardSnapshot, HelloMessage, InstancesMessage, KeysMessage, SessionInfo } from './dashboard-wire.js';
import { createFleetTracker } from './fleet-tracker.js';
import { createInstanceFeed, type InstanceFeed } from './instance-feed.js';
import { createKeyUsageTracker } from './key-usage.js';
import type { TrafficRecorder } from './traffic-recorder.js';

/** Where the dashboard's API lives on the coordinator's HTTP port (the app itself is at `/`). */
export const DASHBOARD_API_PREFIX = '/dashboard/api';

/** Options of {@link createDashboard}. */
export interface DashboardOptions {
  registry: AgentRegistry;
  /** The auth mode (the dashboard needs the admin credential while it is `keys`) and the keys' usage. */
  keys: Pick<ApiKeys, 'mode' | 'list'>;
  /** The admin credential. */
  adminToken: string;
  /** The coordinator's traffic (fed by its metrics sink and job outcomes). */
  traffic: TrafficRecorder;
  /** The registry's heartbeat timeout (shown: how soon a silent agent goes). */
  heartbeatTimeoutMs: number;
  logger: Logger;
  /** `host:port` of an instance manager whose instances and events the Instances page shows. */
  instanceManager?: string | undefined;
  /** TLS of the calls to it. */
  instanceManagerTls?: ClientTlsOptions | undefined;
  /** The built app; default: `@titancompute/dashboard`'s `dist` (none when it is not built: `/` answers 503). */
  assetsDir?: string | undefined;
  /** Unix ms the coordinator started. Default: now. */
  startedAtMs?: number;
  /** How often the fleet and traffic are pushed. Default 1 s. */
  tickMs?: number;
  /** How often the keys' usage is read. Default 2 s. */
  keysIntervalMs?: number;
  /** How long an evicted agent's row stays (offline). Default 5 min. */
  goneTtlMs?: number;
  /** Session lifetimes. */
  sessions?: Pick<DashboardSessionsOptions, 'idleTtlMs' | 'maxTtlMs'>;
}

/**
 * The fleet dashboard on the coordinator's HTTP port: the app at `/` (static, built into
 * `@titancompute/dashboard`), and under {@link DASHBOARD_API_PREFIX}: `GET session`,
 * `POST login` / `POST logout`, `GET snapshot` (JSON) and `GET stream` (server-sent events:
 * `hello`, `fleet`, `traffic`, `instances`, `instance-event` with the instance manager's
 * sequence as its id, `instance-gap`, `keys`). Read-only. While the auth mode is `keys` every
 * route but `session` and `login` needs the admin credential: a session cookie from `login`,
 * or `Authorization: Bearer <admin token>`.
 */
export interface Dashboard {
  /** Adds the routes (and the static app) to the HTTP server. */
  register(app: FastifyInstance): void;
  /** Starts the timers and the instance manager's subscription. */
  start(): void;
  /** Ends every stream, the timers and the subscription. Idempotent. */
  stop(): Promise<void>;
  /** Open event streams. */
  readonly viewers: number;
  /** Runs one tick now (the timer does it every `tickMs`). */
  tick(): void;
  /** Reads the keys' usage now (the timer does it every `keysIntervalMs`). */
  sampleKeys(): Promise<void>;
}

interface ViewerContext {
  credential: DashboardCredential | undefined;
}

/** Content-Security-Policy of the app: everything from this origin, nothing inline but styles set by script. */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' data:; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/**
 * Creates the {@link Dashboard}; `register` it on the HTTP server, then `start` it.
 *
 * @example
 * ```ts
 * const dashboard = createDashboard({ registry, keys, adminToken, traffic, heartbeatTimeoutMs: 30_000, logger });
 * dashboard.register(http);
 * dashboard.start();
 * ```
 */
export function createDashboard(options: DashboardOptions): Dashboard {
  const { registry, keys, traffic, logger } = options;
  const startedAtMs = options.startedAtMs ?? Date.now();
  const sessions = createDashboardSessions({ adminToken: options.adminToken, ...options.sessions });
  const viewers = createViewerSet<ViewerContext>();
  const fleet = createFleetTracker({ list: () => registry.list(), goneTtlMs: options.goneTtlMs });
  const usage = createKeyUsageTracker({ list: () => keys.list(), held: (clientId) => registry.clientHeld(clientId) });
  const feed: InstanceFeed | undefined = options.instanceManager
    ? createInstanceFeed({ address: options.instanceManager, tls: options.instanceManagerTls, logger })
    : undefined;
  const notConfigured: InstancesMessage = { configured: false, address: null, connected: false, error: null, instances: [], updatedAtMs: null };
  let keysMessage: KeysMessage = { authMode: keys.mode(), keys: [] };
  let keysJson = '';
  let tickTimer: NodeJS.Timeout | undefined;
  let keysTimer: NodeJS.Timeout | undefined;
  let sampling: Promise<void> | undefined;
  let stopped = false;

  const authRequired = () => keys.mode() === 'keys';
  const hello = (): HelloMessage => ({
    authMode: keys.mode(),
    heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    trafficWindowSeconds: traffic.windowSeconds,
    startedAtMs,
    instanceManager: options.instanceManager ?? null,
  });

  /** Ends the streams of viewers that may no longer read (auth turned on, session expired). */
  const enforceAuth = () => {
    if (viewers.size === 0 || !authRequired()) return;
    for (const viewer of viewers.list()) {
      const credential = viewer.context.credential;
      if (!credential || !sessions.stillValid(credential)) viewer.close();
    }
  };

  /** Reads the registry; open streams get what changed. */
  const syncFleet = () => {
    const changes = fleet.update();
    if (changes.rows.length > 0 || changes.removed.length > 0) viewers.broadcast({ event: 'fleet', data: changes });
  };

  const tick = () => {
    const points = traffic.flush();
    // Nobody watching: no fleet work (the next viewer's snapshot reads the registry afresh).
    if (viewers.size === 0) return;
    enforceAuth();
    syncFleet();
    if (points.length > 0) viewers.broadcast({ event: 'traffic', data: { full: false, points } });
  };

  const sampleKeys = () =>
    (sampling ??= (async () => {
      try {
        const next: KeysMessage = { authMode: keys.mode(), keys: await usage.sample() };
        const json = JSON.stringify(next);
        keysMessage = next;
        if (json === keysJson) return;
        keysJson = json;
        viewers.broadcast({ event: 'keys', data: next });
      } catch (err) {
        logger.warn({ err }, 'dashboard: could not read the API keys');
      }
    })().finally(() => (sampling = undefined)));

  feed?.subscribe((update) => {
    if (update.kind === 'event') viewers.broadcast({ event: 'instance-event', data: update.event, id: update.event.sequence });
    else if (update.kind === 'gap') viewers.broadcast({ event: 'instance-gap', data: update.gap });
    else viewers.broadcast({ event: 'instances', data: update.instances });
  });

  /** Answers 401 unless the request may read the dashboard; returns its credential (undefined with auth off). */
  const admit = (req: FastifyRequest, reply: FastifyReply): { ok: boolean; credential: DashboardCredential | undefined } => {
    const credential = sessions.authenticate(req.headers);
    if (credential || !authRequired()) return { ok: true, credential };
    sendError(reply, 401, 'unauthorized', 'the dashboard needs the admin credential: log in with the admin token (the file admin-token in the data dir)');
    return { ok: false, credential };
  };

  /** Everything now (the fleet read afresh; streams already open get the change first). */
  const snapshot = (): DashboardSnapshot => {
    syncFleet();
    return {
      hello: hello(),
      fleet: fleet.snapshot().rows,
      traffic: traffic.history(),
      instances: feed?.instances() ?? notConfigured,
      instanceEvents: feed?.eventsAfter(undefined).events ?? [],
      keys: keysMessage,
    };
  };

  const parseLastEventId = (value: string | string[] | undefined): number | undefined => {
    const raw = Array.isArray(value) ? value[0] : value;
    if (raw === undefined || !/^\d{1,15}$/.test(raw.trim())) return undefined;
    return Number(raw.trim());
  };

  return {
    get viewers() {
      return viewers.size;
    },
    tick,
    sampleKeys,
    register(app) {
      const assetsDir =
        options.assetsDir === undefined ? findDashboardAssets() : existsSync(join(options.assetsDir, 'index.html')) ? options.assetsDir : undefined;
      if (assetsDir) {
        void app.register(fastifyStatic, {
          root: assetsDir,
          prefix: '/',
          // One route per built file (found now): every other path keeps the API's own 404/405.
          wildcard: false,
          index: ['index.html'],
          cacheControl: false,
          setHeaders(res, path) {
            const hashed = /[\\/]assets[\\/]/.test(path);
            res.setHeader('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache');
            res.setHeader('x-content-type-options', 'nosniff');
            res.setHeader('referrer-policy', 'no-referrer');
            if (path.endsWith('.html')) {
              res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
              res.setHeader('x-frame-options', 'DENY');
            }
          },
        });
      } else {
        app.get('/', async (_req, reply) =>
          reply
            .code(503)
            .type('text/plain; charset=utf-8')
            .send('The dashboard is not built: run `pnpm build` (it builds packages/dashboard). The APIs on this port work without it.\n'),
        );
      }

      app.get(`${DASHBOARD_API_PREFIX}/session`, async (req): Promise<SessionInfo> => {
        const required = authRequired();
        return { authRequired: required, authenticated: !required || sessions.authenticate(req.headers) !== undefined };
      });

      app.post(`${DASHBOARD_API_PREFIX}/login`, async (req, reply) => {
        let token: unknown;
        try {
          token = (JSON.parse(typeof req.body === 'string' ? req.body : '') as { token?: unknown }).token;
        } catch {
          return sendError(reply, 400, 'invalid_json', 'request body must be a JSON object such as {"token":"…"}');
        }
        if (typeof token !== 'string' || token.trim() === '') return sendError(reply, 400, 'invalid_argument', 'token: the admin token is required');
        let id: string;
        try {
          id = sessions.login(token);
        } catch {
          logger.warn({ ip: req.ip }, 'dashboard: login with a wrong admin token');
          return sendError(reply, 401, 'unauthorized', 'invalid admin token');
        }
        return reply.code(204).header('set-cookie', sessions.cookie(id)).header('cache-control', 'no-store').send();
      });

      app.post(`${DASHBOARD_API_PREFIX}/logout`, async (req, reply) => {
        const credential = sessions.authenticate(req.headers);
        if (credential?.kind === 'session') sessions.logout(credential.id);
        return reply.code(204).header('set-cookie', sessions.clearCookie()).send();
      });

      app.get(`${DASHBOARD_API_PREFIX}/snapshot`, async (req, reply) => {
        if (!admit(req, reply).ok) return reply;
        return reply.header('cache-control', 'no-store').send(snapshot());
      });

      // `Last-Event-ID` (the browser's own reconnect) or `?last_event_id=` (a new EventSource): instance events after it.
      app.get<{ Querystring: { last_event_id?: string } }>(`${DASHBOARD_API_PREFIX}/stream`, async (req, reply) => {
        const { ok, credential } = admit(req, reply);
        if (!ok) return reply;
        // Shutting down: the browser retries (and finds the coordinator back, or not).
        if (stopped) return reply.code(503).header('retry-after', '2').send();
        // Before the stream opens, so that no live event can come between the replay and the buffer.
        const resumed = await feed?.resume(parseLastEventId(req.headers['last-event-id'] ?? req.query.last_event_id));
        if (stopped) return reply.code(503).header('retry-after', '2').send();
        reply.hijack();
        const now = snapshot();
        const viewer = viewers.open(reply.raw, { credential }, () => feed?.setWatched(viewers.size > 0));
        feed?.setWatched(true);
        const send = (message: SseMessage) => viewer.send(message);
        send({ event: 'hello', data: now.hello });
        send({ event: 'fleet', data: { full: true, rows: now.fleet, removed: [], at: Date.now() } });
        send({ event: 'traffic', data: { full: true, points: now.traffic } });
        send({ event: 'instances', data: now.instances });
        if (resumed) {
          if (resumed.gap) send({ event: 'instance-gap', data: resumed.gap });
          for (const event of resumed.events) send({ event: 'instance-event', data: event, id: event.sequence });
        }
        send({ event: 'keys', data: now.keys });
      });

      // Streams never end on their own: end them before the server waits for its connections.
      app.addHook('preClose', async () => viewers.closeAll());
    },
    start() {
      if (tickTimer || stopped) return;
      tickTimer = setInterval(tick, options.tickMs ?? 1000);
      tickTimer.unref();
      keysTimer = setInterval(() => void sampleKeys(), options.keysIntervalMs ?? 2000);
      keysTimer.unref();
      void sampleKeys();
      feed?.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (tickTimer) clearInterval(tickTimer);
      if (keysTimer) clearInterval(keysTimer);
      viewers.closeAll();
      await Promise.allSettled([feed?.stop(), sampling]);
    },
  };
}
