/**
 * The live connection: one EventSource on `dashboard/api/stream` (relative, so the app also
 * works behind a path prefix), its events applied to the store, reconnection (the browser's
 * own, which resends the last instance event's sequence as `Last-Event-ID`; after an HTTP error
 * a new EventSource with `?last_event_id=`), and the login when the coordinator wants the admin
 * credential.
 */
import {
  applyFleet,
  applyHello,
  applyInstanceEvent,
  applyInstanceGap,
  applyInstances,
  applyKeys,
  applyTraffic,
  type DashboardState,
  initialState,
} from './state.js';
import type { FleetMessage, HelloMessage, InstanceEventWire, InstanceGapMessage, InstancesMessage, KeysMessage, SessionInfo, TrafficMessage } from './wire.js';

const API = 'dashboard/api';
/** Wait before a new EventSource after the old one failed for good (e.g. the coordinator restarted). */
const REOPEN_DELAY_MS = 2000;

/** The app's state with change notification (batched to one per animation frame). */
export interface Store {
  get(): DashboardState;
  update(change: (state: DashboardState) => DashboardState): void;
  subscribe(listener: () => void): () => void;
}

/** Creates a {@link Store}. */
export function createStore(): Store {
  let state = initialState();
  const listeners = new Set<() => void>();
  let scheduled = false;
  const notify = () => {
    scheduled = false;
    for (const listener of listeners) listener();
  };
  return {
    get: () => state,
    update(change) {
      state = change(state);
      if (scheduled) return;
      scheduled = true;
      if (typeof requestAnimationFrame === 'function' && document.visibilityState === 'visible') requestAnimationFrame(notify);
      else setTimeout(notify, 50);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** The connection's controls. */
export interface Connection {
  /** Logs in with the admin token; resolves with an error message, or null when it worked. */
  login(token: string): Promise<string | null>;
  /** Ends the session and shows the login form. */
  logout(): Promise<void>;
  close(): void;
}

async function readSession(): Promise<SessionInfo> {
  const res = await fetch(`${API}/session`, { credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw new Error(`session: HTTP ${res.status}`);
  return (await res.json()) as SessionInfo;
}

/** Connects the store to the coordinator. */
export function connect(store: Store): Connection {
  let source: EventSource | undefined;
  let reopenTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const set = (patch: Partial<DashboardState>) => store.update((s) => ({ ...s, ...patch }));

  const on = <T>(es: EventSource, event: string, apply: (state: DashboardState, data: T) => DashboardState) =>
    es.addEventListener(event, (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as T;
      store.update((s) => apply(s, data));
    });

  const open = () => {
    if (closed) return;
    const last = store.get().lastSequence;
    const es = new EventSource(last > 0 ? `${API}/stream?last_event_id=${last}` : `${API}/stream`);
    source = es;
    on<HelloMessage>(es, 'hello', applyHello);
    on<FleetMessage>(es, 'fleet', applyFleet);
    on<TrafficMessage>(es, 'traffic', (s, m) => applyTraffic(s, m, s.hello?.trafficWindowSeconds ?? 900));
    on<InstancesMessage>(es, 'instances', applyInstances);
    on<InstanceEventWire>(es, 'instance-event', applyInstanceEvent);
    on<InstanceGapMessage>(es, 'instance-gap', (s, gap) => applyInstanceGap(s, gap, Date.now()));
    on<KeysMessage>(es, 'keys', applyKeys);
    es.onerror = () => {
      if (es !== source) return;
      if (es.readyState === EventSource.CONNECTING) {
        // The browser retries by itself, sending Last-Event-ID.
        set({ connection: 'reconnecting', connectionError: 'connection lost; reconnecting…' });
        return;
      }
      // Closed for good (an HTTP error such as 401): find out why, then log in or retry.
      es.close();
      source = undefined;
      void start(true);
    };
  };

  const start = async (afterError: boolean) => {
    if (closed) return;
    try {
      const session = await readSession();
      if (session.authRequired && !session.authenticated) {
        // Auth turned on (or the session ended): nothing read before stays in the page.
        store.update(() => ({ ...initialState(), connection: 'login' }));
        return;
      }
      set({ session: session.authRequired });
      if (afterError) {
        set({ connection: 'reconnecting', connectionError: 'the stream was refused; retrying…' });
        reopenTimer = setTimeout(open, REOPEN_DELAY_MS);
      } else {
        open();
      }
    } catch (err) {
      set({ connection: 'reconnecting', connectionError: `coordinator unreachable (${(err as Error).message}); retrying…` });
      reopenTimer = setTimeout(() => void start(false), REOPEN_DELAY_MS);
    }
  };

  void start(false);

  return {
    async login(token) {
      const res = await fetch(`${API}/login`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      if (res.status === 204) {
        set({ connection: 'connecting', session: true });
        open();
        return null;
      }
      const body = (await res.json().catch(() => ({}))) as { message?: string };
      return body.message ?? `login failed (HTTP ${res.status})`;
    },
    async logout() {
      source?.close();
      source = undefined;
      await fetch(`${API}/logout`, { method: 'POST', credentials: 'same-origin' }).catch(() => undefined);
      store.update(() => ({ ...initialState(), connection: 'login' }));
      void start(false);
    },
    close() {
      closed = true;
      if (reopenTimer) clearTimeout(reopenTimer);
      source?.close();
    },
  };
}
