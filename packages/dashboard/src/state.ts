/**
 * The dashboard's state and how each server-sent event changes it (pure functions: the store in
 * `live.ts` applies them, the tests call them directly). Every change returns new objects for
 * what changed and keeps the others, so unchanged fleet rows keep their identity and are not
 * rendered again.
 */
import type {
  FleetMessage,
  FleetRow,
  HelloMessage,
  InstanceEventWire,
  InstanceGapMessage,
  InstancesMessage,
  KeysMessage,
  TrafficMessage,
  TrafficPoint,
} from './wire.js';

/** Events kept in the Instances page's feed. */
export const MAX_FEED_EVENTS = 500;

/** A line of the instance event feed: an event, or a note that events were lost. */
export type FeedEntry = { kind: 'event'; event: InstanceEventWire } | { kind: 'gap'; gap: InstanceGapMessage; atMs: number };

/** Where the live connection stands. */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'login' | 'error';

/** Everything the pages show. */
export interface DashboardState {
  connection: ConnectionState;
  /** Why the connection is not live. */
  connectionError: string | null;
  /** Whether this browser logged in with a session (shows "log out"). */
  session: boolean;
  hello: HelloMessage | null;
  /** Agent id → row. */
  fleet: ReadonlyMap<string, FleetRow>;
  /** Bumped on every fleet change. */
  fleetVersion: number;
  traffic: readonly TrafficPoint[];
  instances: InstancesMessage | null;
  /** Newest last. */
  feed: readonly FeedEntry[];
  /** Highest instance event sequence seen. */
  lastSequence: number;
  keys: KeysMessage | null;
}

/** The state before anything arrived. */
export function initialState(): DashboardState {
  return {
    connection: 'connecting',
    connectionError: null,
    session: false,
    hello: null,
    fleet: new Map(),
    fleetVersion: 0,
    traffic: [],
    instances: null,
    feed: [],
    lastSequence: 0,
    keys: null,
  };
}

/** Applies a `fleet` event: all rows (`full`) or the changed ones and the removed ids. */
export function applyFleet(state: DashboardState, message: FleetMessage): DashboardState {
  const fleet = message.full ? new Map<string, FleetRow>() : new Map(state.fleet);
  for (const row of message.rows) fleet.set(row.id, row);
  for (const id of message.removed) fleet.delete(id);
  return { ...state, fleet, fleetVersion: state.fleetVersion + 1 };
}

/** Applies a `traffic` event: the whole window (`full`) or new seconds, keeping `windowSeconds`. */
export function applyTraffic(state: DashboardState, message: TrafficMessage, windowSeconds: number): DashboardState {
  // Seconds are in order; a reconnect's `full` replaces everything; a second already here is not added twice.
  const last = message.full ? undefined : state.traffic.at(-1)?.t;
  const fresh = last === undefined ? message.points : message.points.filter((p) => p.t > last);
  if (!message.full && fresh.length === 0) return state;
  const merged = message.full ? message.points.slice() : [...state.traffic, ...fresh];
  const traffic = merged.length > windowSeconds ? merged.slice(merged.length - windowSeconds) : merged;
  return { ...state, traffic };
}

/** Applies an `instance-event`: appended once (a replay after a reconnect never repeats one). */
export function applyInstanceEvent(state: DashboardState, event: InstanceEventWire): DashboardState {
  if (event.sequence <= state.lastSequence && state.feed.some((e) => e.kind === 'event' && e.event.sequence === event.sequence)) return state;
  const feed = [...state.feed, { kind: 'event' as const, event }];
  return {
    ...state,
    feed: feed.length > MAX_FEED_EVENTS ? feed.slice(feed.length - MAX_FEED_EVENTS) : feed,
    lastSequence: Math.max(state.lastSequence, event.sequence),
  };
}

/** Applies an `instance-gap`: a marker in the feed; sequences may restart after it. */
export function applyInstanceGap(state: DashboardState, gap: InstanceGapMessage, atMs: number): DashboardState {
  const feed = [...state.feed, { kind: 'gap' as const, gap, atMs }];
  return { ...state, feed: feed.length > MAX_FEED_EVENTS ? feed.slice(feed.length - MAX_FEED_EVENTS) : feed, lastSequence: 0 };
}

/** Applies `instances`. */
export function applyInstances(state: DashboardState, instances: InstancesMessage): DashboardState {
  return { ...state, instances };
}

/** Applies `keys`. */
export function applyKeys(state: DashboardState, keys: KeysMessage): DashboardState {
  return { ...state, keys };
}

/** Applies `hello` (the first event of every stream). */
export function applyHello(state: DashboardState, hello: HelloMessage): DashboardState {
  return { ...state, hello, connection: 'live', connectionError: null };
}
