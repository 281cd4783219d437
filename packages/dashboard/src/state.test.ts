import { describe, expect, it } from '@jest/globals';
import { applyFleet, applyInstanceEvent, applyInstanceGap, applyTraffic, initialState, MAX_FEED_EVENTS } from './state.js';
import { point, row } from './test-rows.js';
import type { InstanceEventWire } from './wire.js';

const event = (sequence: number, instanceId = `i-${sequence}`): InstanceEventWire => ({
  sequence,
  type: 'ADDED',
  instanceId,
  instanceType: 'INFERENCE_AGENT',
  relatedInstanceId: '',
  service: null,
  removalReason: '',
  timestampMs: sequence * 1000,
});

describe('dashboard state', () => {
  it('fleet: a full message replaces the rows, a delta changes only its rows and keeps the others as they were', () => {
    const a = row('a');
    const b = row('b');
    let s = applyFleet(initialState(), { full: true, rows: [a, b], removed: [], at: 1 });
    expect([...s.fleet.keys()]).toEqual(['a', 'b']);
    const a2 = row('a', { state: 'offline' });
    s = applyFleet(s, { full: false, rows: [a2], removed: [], at: 2 });
    expect(s.fleet.get('a')).toBe(a2);
    expect(s.fleet.get('b')).toBe(b); // same object: its table row is not rendered again
    s = applyFleet(s, { full: false, rows: [], removed: ['b'], at: 3 });
    expect([...s.fleet.keys()]).toEqual(['a']);
    s = applyFleet(s, { full: true, rows: [row('c')], removed: [], at: 4 });
    expect([...s.fleet.keys()]).toEqual(['c']);
    expect(s.fleetVersion).toBe(4);
  });

  it('traffic: appends new seconds once, keeps the window, and a full message starts over', () => {
    let s = applyTraffic(initialState(), { full: true, points: [point(1), point(2)] }, 3);
    s = applyTraffic(s, { full: false, points: [point(2, { requests: 9 }), point(3), point(4)] }, 3);
    expect(s.traffic.map((p) => p.t)).toEqual([2, 3, 4]);
    expect(s.traffic[0]!.requests).toBe(0);
    const same = applyTraffic(s, { full: false, points: [point(4)] }, 3);
    expect(same).toBe(s);
    s = applyTraffic(s, { full: true, points: [point(10)] }, 3);
    expect(s.traffic.map((p) => p.t)).toEqual([10]);
  });

  it('instance events: a replay after a reconnect never repeats one; a gap is a marker and sequences may restart', () => {
    let s = initialState();
    for (const e of [event(1), event(2), event(3)]) s = applyInstanceEvent(s, e);
    // The stream reconnected and replayed from #2.
    for (const e of [event(2), event(3), event(4)]) s = applyInstanceEvent(s, e);
    expect(s.feed.map((f) => (f.kind === 'event' ? f.event.sequence : 'gap'))).toEqual([1, 2, 3, 4]);
    expect(s.lastSequence).toBe(4);
    s = applyInstanceGap(s, { afterSequence: 4, reason: 'the instance manager restarted' }, 5000);
    s = applyInstanceEvent(s, event(1, 'fresh'));
    expect(s.feed.map((f) => (f.kind === 'event' ? f.event.instanceId : 'gap'))).toEqual(['i-1', 'i-2', 'i-3', 'i-4', 'gap', 'fresh']);
    expect(s.lastSequence).toBe(1);
  });

  it('instance events: the feed keeps the newest MAX_FEED_EVENTS', () => {
    let s = initialState();
    for (let i = 1; i <= MAX_FEED_EVENTS + 10; i += 1) s = applyInstanceEvent(s, event(i));
    expect(s.feed).toHaveLength(MAX_FEED_EVENTS);
    expect(s.feed[0]).toMatchObject({ kind: 'event', event: { sequence: 11 } });
  });
});
