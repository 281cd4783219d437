import { describe, expect, it } from '@jest/globals';
import { DEFAULT_FLEET_QUERY, memoryUsed, summarizeFleet, viewFleet } from './fleet-view.js';
import { row } from './test-rows.js';

const gpuRow = row('gpu-1', {
  cpuOnly: false,
  totalVramMb: 80_000,
  freeVramMb: 20_000,
  engine: 'ollama',
  models: ['llama3'],
  gpus: [{ index: 0, name: 'NVIDIA H100', memoryTotalMb: 80_000, memoryUsedMb: 60_000, utilizationPercent: 90, temperatureC: 60 }],
  tokensPerSecond: 120,
  runningJobs: 3,
});
const rows = [
  row('b', { state: 'offline', breaker: 'open' }),
  gpuRow,
  row('a', { state: 'degraded', freeRamMb: 100, queuedJobs: 5 }),
  row('c', { state: 'draining', tokensPerSecond: 40 }),
];

describe('fleet view', () => {
  it('sorts by id by default, and by any column either way (ties by id)', () => {
    expect(viewFleet(rows, DEFAULT_FLEET_QUERY).map((r) => r.id)).toEqual(['a', 'b', 'c', 'gpu-1']);
    expect(viewFleet(rows, { ...DEFAULT_FLEET_QUERY, sort: 'state' }).map((r) => r.id)).toEqual(['b', 'c', 'a', 'gpu-1']);
    expect(viewFleet(rows, { ...DEFAULT_FLEET_QUERY, sort: 'tokens', descending: true }).map((r) => r.id)).toEqual(['gpu-1', 'c', 'a', 'b']);
    expect(viewFleet(rows, { ...DEFAULT_FLEET_QUERY, sort: 'memory', descending: true }).map((r) => r.id)[0]).toBe('a');
    expect(viewFleet(rows, { ...DEFAULT_FLEET_QUERY, sort: 'queue', descending: true }).map((r) => r.id)[0]).toBe('a');
    expect(viewFleet(rows, { ...DEFAULT_FLEET_QUERY, sort: 'slots', descending: true }).map((r) => r.id)[0]).toBe('gpu-1');
  });

  it('filters by words over id, endpoint, engine, models and GPU names, and by state chips', () => {
    const text = (t: string) => viewFleet(rows, { ...DEFAULT_FLEET_QUERY, text: t }).map((r) => r.id);
    expect(text('h100')).toEqual(['gpu-1']);
    expect(text('OLLAMA llama3')).toEqual(['gpu-1']);
    expect(text('circuit-open')).toEqual(['b']);
    expect(text('nothing-matches')).toEqual([]);
    const state = (s: Parameters<typeof viewFleet>[1]['state']) => viewFleet(rows, { ...DEFAULT_FLEET_QUERY, state: s }).map((r) => r.id);
    expect(state('offline')).toEqual(['b']);
    expect(state('breaker-open')).toEqual(['b']);
    expect(state('degraded')).toEqual(['a']);
    expect(state('draining')).toEqual(['c']);
    expect(state('all')).toHaveLength(4);
  });

  it('memory counts VRAM on GPU agents and RAM on CPU-only ones; totals skip offline and draining slots', () => {
    expect(memoryUsed(gpuRow)).toBeCloseTo(0.75);
    expect(memoryUsed(row('x', { totalRamMb: 1000, freeRamMb: 250 }))).toBeCloseTo(0.75);
    expect(summarizeFleet(rows)).toEqual({
      agents: 4,
      healthy: 1,
      degraded: 1,
      draining: 1,
      offline: 1,
      unverified: 0,
      breakerOpen: 1,
      slotsUsed: 3,
      slotsTotal: 8,
      queued: 5,
    });
  });

  it('sorts and filters a thousand agents quickly', () => {
    const many = Array.from({ length: 1000 }, (_, i) => row(`agent-${String(i).padStart(4, '0')}`, { tokensPerSecond: i % 97, models: [`m-${i % 7}`] }));
    const started = performance.now();
    for (let i = 0; i < 20; i += 1) viewFleet(many, { text: 'm-3', state: 'all', sort: 'tokens', descending: true });
    expect((performance.now() - started) / 20).toBeLessThan(50);
    expect(viewFleet(many, { text: 'm-3', state: 'all', sort: 'id', descending: false })).toHaveLength(143);
  });
});
