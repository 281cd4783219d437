import { describe, expect, it } from '@jest/globals';
import { AgentRegistration, HealthUpdate } from '@titancompute/protocol';
import { createAgentRegistry } from '../registry/agent-registry.js';
import { createFleetTracker } from './fleet-tracker.js';

const registration = (agentId: string, extra: Partial<AgentRegistration> = {}): AgentRegistration =>
  AgentRegistration.fromPartial({
    agentId,
    endpoint: `10.0.0.1:${5000 + agentId.length}`,
    httpEndpoint: '10.0.0.1:6000',
    totalVramMb: 0,
    totalRamMb: 16_000,
    maxJobs: 4,
    maxQueue: 8,
    supportedModels: ['tiny', 'another'],
    engine: 'llama-cpp',
    agentCredential: 'secret-credential-that-must-never-show-up',
    capabilities: { token: 'capability-value-never-shown' },
    ...extra,
  });

describe('fleet tracker', () => {
  it('rows carry what the Fleet page shows and never the credential or capabilities', () => {
    const t = 1000;
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 5000, now: () => t });
    registry.register(
      registration('gpu-1', {
        totalVramMb: 81_920,
        gpus: [{ index: 0, uuid: 'GPU-x', name: 'H100', memoryTotalMb: 81_920, memoryUsedMb: 20_480, memoryFreeMb: 61_440, utilizationPercent: 37.26 }],
      }),
    );
    registry.register(registration('cpu-1'));
    const fleet = createFleetTracker({ list: () => registry.list(), now: () => t });
    const { rows, full, removed } = fleet.update();
    expect(full).toBe(false);
    expect(removed).toEqual([]);
    const gpu = rows.find((r) => r.id === 'gpu-1')!;
    expect(gpu).toMatchObject({
      state: 'healthy',
      breaker: 'closed',
      gone: false,
      engine: 'llama-cpp',
      models: ['another', 'tiny'],
      cpuOnly: false,
      maxJobs: 4,
      maxQueue: 8,
      tokensPerSecond: null,
      gpus: [{ index: 0, name: 'H100', memoryTotalMb: 81_920, memoryUsedMb: 20_480, utilizationPercent: 37.3, temperatureC: null }],
    });
    expect(rows.find((r) => r.id === 'cpu-1')).toMatchObject({ cpuOnly: true, totalRamMb: 16_000, gpus: [] });
    const json = JSON.stringify(rows);
    expect(json).not.toContain('secret-credential');
    expect(json).not.toContain('capability-value');
  });

  it('answers only the rows that changed, and keeps an evicted agent offline for goneTtlMs', () => {
    let t = 1000;
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 5000, now: () => t });
    const a = registry.register(registration('a'));
    registry.register(registration('b'));
    const fleet = createFleetTracker({ list: () => registry.list(), now: () => t, goneTtlMs: 60_000 });
    expect(fleet.update().rows.map((r) => r.id)).toEqual(['a', 'b']);
    expect(fleet.update().rows).toEqual([]); // nothing moved

    t += 1000;
    registry.applyHealth(HealthUpdate.fromPartial({ agentId: 'a', freeRamMb: 1000, totalRamMb: 16_000, runningJobs: 2 }), a.streamId ?? 1);
    const changed = fleet.update();
    expect(changed.rows.map((r) => r.id)).toEqual(['a']);
    expect(changed.rows[0]).toMatchObject({ runningJobs: 2, freeRamMb: 1000, state: 'degraded' });

    // The stream closes (killed): offline at once.
    registry.streamClosed('a', a.streamId ?? 1, true);
    expect(fleet.update().rows).toEqual([expect.objectContaining({ id: 'a', state: 'offline', gone: false })]);

    // Silent past the heartbeat timeout: the registry forgets it, the dashboard keeps it, offline and gone.
    t += 6000;
    registry.applyHealth(HealthUpdate.fromPartial({ agentId: 'b', freeRamMb: 16_000, totalRamMb: 16_000 }), 2);
    expect(registry.sweep().map((r) => r.agentId)).toEqual(['a']);
    const evicted = fleet.update();
    expect(evicted.rows).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: 'a', state: 'offline', gone: true, runningJobs: 0 }), expect.objectContaining({ id: 'b' })]),
    );
    expect(fleet.snapshot()).toMatchObject({ full: true, removed: [] });
    expect(
      fleet
        .snapshot()
        .rows.map((r) => r.id)
        .sort(),
    ).toEqual(['a', 'b']);

    t += 59_000;
    expect(fleet.update().removed).toEqual([]);
    t += 1000;
    expect(fleet.update().removed).toEqual(['a']);
    expect(fleet.snapshot().rows.map((r) => r.id)).toEqual(['b']);

    // It comes back: a fresh row again.
    registry.register(registration('a'));
    expect(fleet.update().rows).toEqual([expect.objectContaining({ id: 'a', gone: false, state: 'healthy' })]);
  });

  it('diffs a thousand agents in a few milliseconds', () => {
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 5000 });
    for (let i = 0; i < 1000; i += 1) {
      registry.register(
        registration(`agent-${i}`, {
          totalVramMb: 8 * 81_920,
          gpus: Array.from({ length: 8 }, (_, index) => ({
            index,
            uuid: `u${index}`,
            name: 'H100',
            memoryTotalMb: 81_920,
            memoryUsedMb: 1000,
            memoryFreeMb: 80_920,
          })),
        }),
      );
    }
    const fleet = createFleetTracker({ list: () => registry.list() });
    expect(fleet.update().rows).toHaveLength(1000);
    const started = performance.now();
    for (let i = 0; i < 10; i += 1) fleet.update();
    const perUpdate = (performance.now() - started) / 10;
    // Generous for a loaded 2-core CI machine; typically ~5 ms.
    expect(perUpdate).toBeLessThan(100);
    expect(JSON.stringify(fleet.snapshot()).length).toBeLessThan(2_000_000);
  });
});
