import { describe, expect, it } from '@jest/globals';
import type { AgentRegistration, HealthUpdate } from '@titancompute/protocol';
import { createAgentRegistry, type AgentRegistry, type ReleaseReason } from './agent-registry.js';
import { fleetSnapshotOf } from './postgres-fleet-store.js';

const registration = (agentId: string, maxJobs: number): AgentRegistration => ({
  agentId,
  endpoint: '127.0.0.1:50052',
  httpEndpoint: '',
  agentCredential: 'c'.repeat(43),
  totalVramMb: 24_000,
  totalRamMb: 64_000,
  maxJobs,
  maxQueue: 0,
  supportedModels: ['m'],
  engine: 'fake',
  capabilities: {},
  gpus: [],
});

const health = (agentId: string, patch: Partial<HealthUpdate> = {}): HealthUpdate => ({
  agentId,
  agentCredential: '',
  freeVramMb: 20_000,
  freeRamMb: 48_000,
  runningJobs: 0,
  queuedJobs: 0,
  cpuPercent: 10,
  rttMs: 1,
  timestamp: 0,
  totalRamMb: 64_000,
  gpus: [],
  startedJobIds: [],
  activeJobIds: [],
  rejectedJobIds: [],
  completedJobs: [],
  draining: false,
  ...patch,
});

/** What fleetSlots() must equal: max_jobs over the agents that take work, counted the slow way. */
const countedSlots = (registry: AgentRegistry) => registry.list().reduce((n, r) => n + (r.online && !r.deregistered && !r.draining ? r.maxJobs : 0), 0);

describe('agent registry bookkeeping', () => {
  it('keeps fleetSlots equal to the sum over agents taking work through every change', () => {
    let now = 1_000_000;
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 10_000, now: () => now });
    const seen: number[] = [];
    const check = () => {
      expect(registry.fleetSlots()).toBe(countedSlots(registry));
      seen.push(registry.fleetSlots());
    };
    registry.register(registration('a', 4));
    registry.register(registration('b', 2));
    registry.register(registration('c', 8));
    check();
    registry.applyHealth(health('a', { draining: true }), 1);
    check();
    registry.applyHealth(health('a'), 1);
    registry.applyHealth(health('b'), 2);
    registry.streamClosed('b', 2, false);
    check();
    registry.register(registration('b', 5)); // back, with other capacity
    check();
    registry.deregister('c');
    check();
    registry.register(registration('c', 3));
    check();
    now += 5_000;
    registry.applyHealth(health('a'), 1);
    now += 6_000; // b and c silent for 11 s: evicted
    expect(registry.sweep().map((r) => r.agentId)).toEqual(['b', 'c']);
    check();
    expect(seen).toEqual([14, 10, 12, 17, 9, 12, 4]);
  });

  it('ends reservations when their claim window ends, in order, skipping those that ended otherwise', () => {
    let now = 0;
    const released: [string, ReleaseReason][] = [];
    const registry = createAgentRegistry({
      heartbeatTimeoutMs: 60_000,
      claimWindowMs: 1000,
      now: () => now,
      onReservationReleased: (_r, jobId, reason) => released.push([jobId, reason]),
    });
    const a = registry.register(registration('a', 100));
    const b = registry.register(registration('b', 100));
    registry.reserve(a, 'j1', 'x'); // until 1000
    now = 100;
    registry.reserve(b, 'j2', 'y'); // until 1100
    now = 200;
    registry.reserve(a, 'j3', 'x'); // until 1200
    registry.reserve(b, 'j4', 'x'); // until 1200
    expect([registry.clientReserved('x'), registry.clientReserved('y'), registry.clientHeld('x')]).toEqual([3, 1, 3]);
    expect(registry.clientEarliestExpiry('x')).toBe(1000);
    registry.release(a, 'j1', 'rejected');
    registry.applyHealth(health('b', { startedJobIds: ['j4'], activeJobIds: ['j4'] }), 1);
    expect([registry.clientReserved('x'), registry.clientHeld('x')]).toEqual([1, 2]);
    expect(registry.clientEarliestExpiry('x')).toBe(1200);
    now = 1100;
    registry.expireReservations();
    expect(released).toEqual([
      ['j1', 'rejected'],
      ['j4', 'started'],
      ['j2', 'expired'],
    ]);
    expect(registry.clientEarliestExpiry('y')).toBeUndefined();
    // Reserved again under the same job id: the new window counts, not the old one.
    registry.reserve(a, 'j3', 'y'); // until 2100
    expect([registry.clientReserved('x'), registry.clientReserved('y')]).toEqual([0, 1]);
    now = 1500;
    registry.expireReservations();
    expect(a.reservations.has('j3')).toBe(true);
    now = 2100;
    registry.expireReservations();
    expect(released.at(-1)).toEqual(['j3', 'expired']);
    expect([registry.reservedTotal(), registry.clientReserved('y'), registry.clientHeld('y'), registry.clientHeld('x')]).toEqual([0, 0, 0, 1]);
  });

  it('holds at most one claim window of reservations over thousands of grants, and none once it passed', () => {
    let now = 0;
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 60_000, claimWindowMs: 10, now: () => now });
    const records = Array.from({ length: 50 }, (_, i) => registry.register(registration(`a${i}`, 1_000_000)));
    for (let i = 0; i < 5000; i++) {
      now = i;
      registry.expireReservations();
      registry.reserve(records[i % records.length]!, `j${i}`, `c${i % 7}`);
      // At most one claim window's worth is held at any time.
      expect(registry.reservedTotal()).toBeLessThanOrEqual(11);
    }
    now = 10_000;
    registry.expireReservations();
    expect(registry.reservedTotal()).toBe(0);
    for (let c = 0; c < 7; c++) expect(registry.clientHeld(`c${c}`)).toBe(0);
  });
});

describe('a shared snapshot applied over this replica’s own endpoint check', () => {
  const viewOf = (record: Parameters<typeof fleetSnapshotOf>[0], patch: Partial<ReturnType<typeof fleetSnapshotOf>>) => ({
    agentId: record.agentId,
    snapshot: { ...fleetSnapshotOf(record), ...patch },
    homeReplica: 'replica-a',
    lastSeenMs: 1_000,
    reserved: 0,
    loadVersion: 1,
  });

  it('a stale "pending" (read back after the check passed) keeps the endpoint verified; a new endpoint or "unreachable" does not', () => {
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 10_000 });
    const record = registry.register(registration('a', 4));
    // This replica's registration wrote "pending"; its check then passed, before that write was read back.
    record.endpointCheck = 'pending';
    const written = viewOf(record, {});
    record.endpointCheck = 'verified';
    registry.applyShared(written);
    expect(registry.get('a')?.endpointCheck).toBe('verified');
    expect(registry.get('a')?.state()).not.toBe('unverified');

    registry.applyShared(viewOf(record, { endpointCheck: 'unreachable' }));
    expect(registry.get('a')?.endpointCheck).toBe('unreachable');
    record.endpointCheck = 'verified';
    const moved = viewOf(record, { endpointCheck: 'pending' });
    moved.snapshot = { ...moved.snapshot, registration: { ...moved.snapshot.registration, endpoint: '127.0.0.1:50099' } };
    registry.applyShared(moved);
    expect(registry.get('a')?.endpointCheck).toBe('pending');
  });
});
