import { describe, expect, it } from '@jest/globals';
import { CircuitBreaker } from './circuit-breaker.js';
import { createScheduler, type SchedulableAgent } from './scheduler.js';

function agent(id: string, over: Partial<SchedulableAgent> = {}): SchedulableAgent {
  return {
    agentId: id,
    supportedModels: new Set(['m']),
    maxJobs: 4,
    runningJobs: 0,
    queuedJobs: 0,
    reservedJobs: 0,
    totalVramMb: 24_000,
    freeVramMb: 24_000,
    totalRamMb: 64_000,
    freeRamMb: 64_000,
    rttMs: 5,
    tokensPerSecond: undefined,
    available: true,
    penalized: false,
    ...over,
  };
}

describe('scheduler', () => {
  const scheduler = createScheduler();

  it('schedules CPU-only agents, judging them by free RAM', () => {
    const cpu = agent('cpu', { totalVramMb: 0, freeVramMb: 0, totalRamMb: 32_000, freeRamMb: 30_000 });
    const d = scheduler.select([cpu], { model: 'm' });
    expect(d.outcome).toBe('scheduled');
    expect(scheduler.score(cpu)).toBeGreaterThan(0.8);
    const needs = scheduler.select([cpu], { model: 'm', requiredMemoryMb: 31_000 });
    expect(needs.outcome).toBe('no_agent');
  });

  it('counts reservations in the load term and the slot filter', () => {
    const a = agent('a', { reservedJobs: 2 });
    const b = agent('b', { reservedJobs: 1 });
    const d = scheduler.select([a, b], { model: 'm' });
    expect(d.outcome === 'scheduled' && d.agent.agentId).toBe('b');
    const full = agent('full', { runningJobs: 2, queuedJobs: 1, reservedJobs: 1 });
    expect(scheduler.select([full], { model: 'm' }).outcome).toBe('busy');
  });

  it('breaks ties by the smallest agent id, whatever the order', () => {
    const ids = ['c', 'a', 'b'];
    const d1 = scheduler.select(
      ids.map((id) => agent(id)),
      { model: 'm' },
    );
    const d2 = scheduler.select(
      [...ids].reverse().map((id) => agent(id)),
      { model: 'm' },
    );
    expect(d1.outcome === 'scheduled' && d1.agent.agentId).toBe('a');
    expect(d2.outcome === 'scheduled' && d2.agent.agentId).toBe('a');
  });

  it('applies hard filters: model, availability, exclusions; says no_agent vs busy', () => {
    expect(scheduler.select([agent('a', { supportedModels: new Set() })], { model: 'm' }).outcome).toBe('no_agent');
    expect(scheduler.select([agent('a', { available: false })], { model: 'm' }).outcome).toBe('no_agent');
    expect(scheduler.select([agent('a')], { model: 'm', excludeAgentIds: new Set(['a']) }).outcome).toBe('no_agent');
    expect(scheduler.select([], { model: 'm' }).outcome).toBe('no_agent');
  });

  it('uses every term: RTT, measured tokens/s and free memory each move the choice', () => {
    const near = agent('z-near', { rttMs: 5 });
    const far = agent('a-far', { rttMs: 400 });
    let d = scheduler.select([far, near], { model: 'm' });
    expect(d.outcome === 'scheduled' && d.agent.agentId).toBe('z-near');
    const fast = agent('z-fast', { tokensPerSecond: 90 });
    const slow = agent('a-slow', { tokensPerSecond: 10 });
    d = scheduler.select([slow, fast], { model: 'm' });
    expect(d.outcome === 'scheduled' && d.agent.agentId).toBe('z-fast');
    const roomy = agent('z-roomy', { freeVramMb: 20_000 });
    const tight = agent('a-tight', { freeVramMb: 4_000 });
    d = scheduler.select([tight, roomy], { model: 'm' });
    expect(d.outcome === 'scheduled' && d.agent.agentId).toBe('z-roomy');
  });

  it('scores penalized (degraded or half-open) agents lower but still uses them', () => {
    const degraded = agent('a', { penalized: true });
    const healthy = agent('b', { runningJobs: 2 });
    const d = scheduler.select([degraded, healthy], { model: 'm' });
    expect(d.outcome === 'scheduled' && d.agent.agentId).toBe('b');
    const only = scheduler.select([degraded], { model: 'm' });
    expect(only.outcome === 'scheduled' && only.agent.agentId).toBe('a');
  });

  it('honours configured weights', () => {
    const rttOnly = createScheduler({ weights: { memory: 0, load: 0, rtt: 1, performance: 0 } });
    expect(rttOnly.score(agent('a', { rttMs: 250 }))).toBeCloseTo(0.5);
  });
});

describe('circuit breaker', () => {
  it('opens after the failure threshold, half-opens after the open duration, closes after successes', () => {
    const b = new CircuitBreaker({ failureThreshold: 3, openDurationMs: 1000, successThreshold: 2 });
    b.recordFailure(0);
    b.recordFailure(1);
    expect(b.state(2)).toBe('closed');
    b.recordFailure(3);
    expect(b.state(4)).toBe('open');
    expect(b.allows(500)).toBe(false);
    expect(b.state(1003)).toBe('half-open');
    b.recordSuccess(1004);
    expect(b.state(1005)).toBe('half-open');
    b.recordSuccess(1006);
    expect(b.state(1007)).toBe('closed');
  });

  it('re-opens on a failure while half-open, and a success resets the failure count', () => {
    const b = new CircuitBreaker({ failureThreshold: 2, openDurationMs: 10, successThreshold: 1 });
    b.recordFailure(0);
    b.recordSuccess(1);
    b.recordFailure(2);
    expect(b.state(3)).toBe('closed');
    b.recordFailure(4);
    expect(b.state(5)).toBe('open');
    expect(b.state(20)).toBe('half-open');
    b.recordFailure(21);
    expect(b.state(22)).toBe('open');
  });
});
