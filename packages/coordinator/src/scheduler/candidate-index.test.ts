import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import type { AgentRegistration, HealthUpdate } from '@titancompute/protocol';
import type { AgentRecord, EndpointCheck } from '../registry/agent-record.js';
import { createAgentRegistry } from '../registry/agent-registry.js';
import { createCandidateIndex } from './candidate-index.js';
import { createScheduler } from './scheduler.js';

const MODELS = ['m1', 'm2', 'm3'] as const;
const AGENTS = 6;

const registration = (i: number, maxJobs: number, models: readonly string[], vramMb: number): AgentRegistration => ({
  agentId: `agent-${i}`,
  endpoint: `127.0.0.1:${50_000 + i}`,
  httpEndpoint: '',
  agentCredential: 'c'.repeat(43),
  totalVramMb: vramMb,
  totalRamMb: 64_000,
  maxJobs,
  maxQueue: 0,
  supportedModels: [...models],
  engine: 'fake',
  capabilities: {},
  gpus: [],
});

const health = (i: number, patch: Partial<HealthUpdate>): HealthUpdate => ({
  agentId: `agent-${i}`,
  agentCredential: '',
  freeVramMb: 10_000,
  freeRamMb: 32_000,
  runningJobs: 0,
  queuedJobs: 0,
  cpuPercent: 10,
  rttMs: 5,
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

type Op =
  | { op: 'register'; agent: number; maxJobs: number; models: string[]; vramMb: number }
  | {
      op: 'health';
      agent: number;
      freeVramMb: number;
      running: number;
      queued: number;
      cpu: number;
      rtt: number;
      draining: boolean;
      outcome: 'none' | 'ok' | 'failed';
      tps: number;
    }
  | { op: 'reserve'; agent: number; job: number; client: number }
  | { op: 'release'; job: number }
  | { op: 'reject'; agent: number; job: number }
  | { op: 'start'; agent: number; job: number }
  | { op: 'closeStream'; agent: number; dropped: boolean }
  | { op: 'deregister'; agent: number }
  | { op: 'endpoint'; agent: number; check: EndpointCheck }
  | { op: 'advance'; ms: number }
  | { op: 'sweep' };

const agentIx = fc.integer({ min: 0, max: AGENTS - 1 });
const job = fc.integer({ min: 0, max: 40 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('register' as const),
    agent: agentIx,
    maxJobs: fc.integer({ min: 1, max: 4 }),
    models: fc.subarray([...MODELS], { minLength: 1 }),
    vramMb: fc.constantFrom(0, 8_000, 24_000),
  }),
  fc.record({
    op: fc.constant('health' as const),
    agent: agentIx,
    freeVramMb: fc.integer({ min: 0, max: 24_000 }),
    running: fc.integer({ min: 0, max: 4 }),
    queued: fc.integer({ min: 0, max: 2 }),
    cpu: fc.constantFrom(10, 95),
    rtt: fc.integer({ min: 0, max: 600 }),
    draining: fc.boolean(),
    outcome: fc.constantFrom('none' as const, 'ok' as const, 'failed' as const),
    tps: fc.integer({ min: 1, max: 200 }),
  }),
  fc.record({ op: fc.constant('reserve' as const), agent: agentIx, job, client: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ op: fc.constant('release' as const), job }),
  fc.record({ op: fc.constant('reject' as const), agent: agentIx, job }),
  fc.record({ op: fc.constant('start' as const), agent: agentIx, job }),
  fc.record({ op: fc.constant('closeStream' as const), agent: agentIx, dropped: fc.boolean() }),
  fc.record({ op: fc.constant('deregister' as const), agent: agentIx }),
  fc.record({ op: fc.constant('endpoint' as const), agent: agentIx, check: fc.constantFrom<EndpointCheck>('verified', 'pending', 'unreachable') }),
  fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 4_000 }) }),
  fc.record({ op: fc.constant('sweep' as const) }),
);

describe('candidate index', () => {
  it('always names the agent a full scan finds best (available, with a free slot, highest score, smallest id on a tie)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        let now = 1_000_000;
        const registry = createAgentRegistry({
          heartbeatTimeoutMs: 10_000,
          claimWindowMs: 3_000,
          breaker: { failureThreshold: 2, openDurationMs: 2_000, successThreshold: 1 },
          now: () => now,
        });
        const scheduler = createScheduler();
        const index = createCandidateIndex({ score: (a) => scheduler.score(a) });
        registry.watch((record, removed) => (removed ? index.remove(record) : index.update(record)));
        const jobAgent = new Map<number, AgentRecord>();
        const record = (i: number) => registry.get(`agent-${i}`);

        const check = () => {
          for (const model of MODELS) {
            const scan = scheduler.select(registry.candidates(model), { model });
            const found = index.best(model);
            // Brute force: every eligible agent serving the model, by exact score then id.
            const eligible = [...registry.candidates(model)].filter((a) => a.available && a.runningJobs + a.queuedJobs + a.reservedJobs < a.maxJobs);
            if (scan.outcome !== 'scheduled') {
              expect(found).toBeUndefined();
              expect(eligible).toEqual([]);
              continue;
            }
            const best = eligible.reduce((b, a) => {
              const sa = scheduler.score(a);
              const sb = scheduler.score(b);
              return sa > sb || (sa === sb && a.agentId < b.agentId) ? a : b;
            });
            expect(found?.agent.agentId).toBe(best.agentId);
            expect(found?.score).toBe(scheduler.score(best));
            // The scan agrees up to its 1e-9 tie epsilon.
            expect(Math.abs(found!.score - scan.score)).toBeLessThanOrEqual(1e-9);
          }
        };

        for (const o of ops) {
          switch (o.op) {
            case 'register':
              registry.register(registration(o.agent, o.maxJobs, o.models, o.vramMb));
              registry.applyHealth(health(o.agent, { freeVramMb: Math.min(o.vramMb, 6_000) }), o.agent);
              break;
            case 'health': {
              const completedJobs =
                o.outcome === 'none'
                  ? []
                  : [
                      {
                        jobId: `done-${now}`,
                        error: o.outcome === 'ok' ? '' : 'boom',
                        tokensPerSecond: o.tps,
                        tokensGenerated: 1,
                        promptTokens: 1,
                        timeToFirstTokenMs: 1,
                      },
                    ];
              registry.applyHealth(
                health(o.agent, {
                  freeVramMb: o.freeVramMb,
                  runningJobs: o.running,
                  queuedJobs: o.queued,
                  cpuPercent: o.cpu,
                  rttMs: o.rtt,
                  draining: o.draining,
                  completedJobs: completedJobs as HealthUpdate['completedJobs'],
                }),
                o.agent,
              );
              break;
            }
            case 'reserve': {
              const r = record(o.agent);
              if (r) {
                registry.reserve(r, `job-${o.job}`, `client-${o.client}`);
                jobAgent.set(o.job, r);
              }
              break;
            }
            case 'release': {
              const r = jobAgent.get(o.job);
              if (r) registry.release(r, `job-${o.job}`, 'failed');
              break;
            }
            case 'reject':
              if (record(o.agent)) registry.applyHealth(health(o.agent, { rejectedJobIds: [`job-${o.job}`] }), o.agent);
              break;
            case 'start':
              if (record(o.agent)) registry.applyHealth(health(o.agent, { startedJobIds: [`job-${o.job}`], activeJobIds: [`job-${o.job}`] }), o.agent);
              break;
            case 'closeStream':
              registry.streamClosed(`agent-${o.agent}`, o.agent, o.dropped);
              break;
            case 'deregister':
              registry.deregister(`agent-${o.agent}`);
              break;
            case 'endpoint': {
              const r = record(o.agent);
              if (r) r.endpointCheck = o.check;
              break;
            }
            case 'advance':
              now += o.ms;
              registry.expireReservations();
              break;
            case 'sweep':
              registry.sweep();
              break;
          }
          check();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('brings back an agent whose breaker turned half-open with time, with no event', () => {
    let now = 0;
    const registry = createAgentRegistry({ heartbeatTimeoutMs: 60_000, breaker: { failureThreshold: 1, openDurationMs: 1_000 }, now: () => now });
    const scheduler = createScheduler();
    const index = createCandidateIndex({ score: (a) => scheduler.score(a) });
    registry.watch((record, removed) => (removed ? index.remove(record) : index.update(record)));
    registry.register(registration(0, 2, ['m1'], 24_000));
    registry.applyHealth(health(0, {}), 1);
    expect(index.best('m1')?.agent.agentId).toBe('agent-0');
    registry.streamClosed('agent-0', 1, true); // dropped: the breaker opens
    registry.applyHealth(health(0, {}), 2); // back online, breaker still open
    expect(index.best('m1')).toBeUndefined();
    now += 1_000;
    expect(index.best('m1')?.agent.agentId).toBe('agent-0');
    expect(index.size).toBe(1);
  });
});
