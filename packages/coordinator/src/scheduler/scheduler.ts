/**
 * What the scheduler needs to know about an agent. The registry builds these from
 * registrations, health updates and its own reservations; simulations build them directly.
 */
export interface SchedulableAgent {
  readonly agentId: string;
  /** Models the agent serves; an empty set serves nothing. */
  readonly supportedModels: ReadonlySet<string>;
  readonly maxJobs: number;
  readonly runningJobs: number;
  readonly queuedJobs: number;
  /** Jobs this coordinator handed to the agent that the agent has not reported yet. */
  readonly reservedJobs: number;
  /** Sum over GPUs; 0 for a CPU-only agent (judged by RAM). */
  readonly totalVramMb: number;
  readonly freeVramMb: number;
  readonly totalRamMb: number;
  readonly freeRamMb: number;
  /** Round trip the agent measured on its health stream. */
  readonly rttMs: number;
  /** Moving average of tokens/s the agent reported; undefined without history. */
  readonly tokensPerSecond: number | undefined;
  /** Draining, offline, deregistered or breaker open: never chosen. */
  readonly available: boolean;
  /** Degraded or breaker half-open: still chosen, but scored lower. */
  readonly penalized: boolean;
}

/** Weights of the score terms. They need not sum to 1. */
export interface SchedulerWeights {
  /** Free memory fraction (VRAM for GPU agents, RAM for CPU-only agents). Default 0.40. */
  memory: number;
  /** 1 − (running + queued + reserved) / max_jobs. Default 0.30. */
  load: number;
  /** 1 − min(rtt / 500 ms, 1). Default 0.20. */
  rtt: number;
  /** tokens/s / 100, capped at 1; 0.5 without history. Default 0.10. */
  performance: number;
  /**
   * Prefix affinity: the share of the request's prompt prefix the agent's KV cache is expected to
   * hold (the prefill it saves), 0–1, counted only while the agent's load is under
   * {@link SchedulerOptions.prefixLoadCap}. Used only when a request carries an affinity. Default 1.0:
   * a full match outweighs every other term, so a conversation stays where its prefix is warm.
   */
  prefix: number;
}

/** Default weights, v1's. */
export const DEFAULT_WEIGHTS: SchedulerWeights = { memory: 0.4, load: 0.3, rtt: 0.2, performance: 0.1, prefix: 1.0 };

/** Default {@link SchedulerOptions.prefixLoadCap}. */
export const DEFAULT_PREFIX_LOAD_CAP = 0.9;

/** Options of {@link createScheduler}. */
export interface SchedulerOptions {
  weights?: Partial<SchedulerWeights>;
  /** Multiplier of a penalized (degraded or half-open) agent's score. Default 0.5. */
  penaltyFactor?: number;
  /**
   * Load — (running + queued + reserved) / max_jobs — at or above which an agent's prefix affinity
   * no longer counts: a hot prefix spills to the next best agent (which then warms up) instead of
   * piling onto one. Default {@link DEFAULT_PREFIX_LOAD_CAP}.
   */
  prefixLoadCap?: number;
}

/** What is being scheduled. */
export interface ScheduleRequest {
  model: string;
  /** Free memory (MB) the job needs on the agent, when known; VRAM on GPU agents, RAM on CPU-only agents. */
  requiredMemoryMb?: number | undefined;
  /** Agents never to choose (client failover). */
  excludeAgentIds?: ReadonlySet<string> | undefined;
  /**
   * Prefix affinity of an agent for this request: the share (0–1) of the prompt's prefix blocks it
   * is expected to hold in its KV cache (see `prefix-affinity.ts`). Absent: load-only scoring.
   */
  affinity?: ((agent: SchedulableAgent) => number) | undefined;
}

/** The scheduler's answer. */
export type ScheduleDecision<A extends SchedulableAgent = SchedulableAgent> =
  | { readonly outcome: 'scheduled'; readonly agent: A; readonly score: number }
  | { readonly outcome: 'no_agent' }
  /** `blocking`: the agents that would serve the request but have no free slot. */
  | { readonly outcome: 'busy'; readonly blocking: readonly A[] };

/** The answer of {@link Scheduler.rank}. */
export type RankDecision<A extends SchedulableAgent = SchedulableAgent> =
  | { readonly outcome: 'scheduled'; readonly agents: readonly A[] }
  | { readonly outcome: 'no_agent' }
  | { readonly outcome: 'busy'; readonly blocking: readonly A[] };

/** A scheduler: hard filters, weighted score, deterministic tie-break. */
export interface Scheduler {
  readonly weights: Readonly<SchedulerWeights>;
  /**
   * Picks the best agent: `no_agent` when none serves the model (or all are unavailable,
   * excluded or lack memory), `busy` when every one that would serve it has no free slot.
   */
  select<A extends SchedulableAgent>(agents: Iterable<A>, request: ScheduleRequest): ScheduleDecision<A>;
  /** The weighted score of an agent (penalty included); `affinity` adds the prefix term. */
  score(agent: SchedulableAgent, affinity?: number): number;
  /**
   * Like {@link Scheduler.select}, but `scheduled` names up to `limit` agents, best first (same
   * filters, score and tie-break): the shared reservations try them in turn.
   */
  rank<A extends SchedulableAgent>(agents: Iterable<A>, request: ScheduleRequest, limit: number): RankDecision<A>;
}

const RTT_CEILING_MS = 500;
const TIE_EPSILON = 1e-9;

/** Whether the agent is CPU-only (judged by RAM). */
export function isCpuOnly(agent: Pick<SchedulableAgent, 'totalVramMb'>): boolean {
  return agent.totalVramMb <= 0;
}

/** Free memory (MB) that counts for the agent: VRAM on GPU agents, RAM on CPU-only agents. */
export function freeMemoryMb(agent: Pick<SchedulableAgent, 'totalVramMb' | 'freeVramMb' | 'freeRamMb'>): number {
  return isCpuOnly(agent) ? agent.freeRamMb : agent.freeVramMb;
}

/**
 * Creates the scheduler. It is pure: it reads the agents it is given and holds no state, so
 * the same input always gives the same choice; ties go to the smallest agent id.
 *
 * @example
 * ```ts
 * const scheduler = createScheduler({ weights: { rtt: 0.3 } });
 * const decision = scheduler.select(agents, { model: 'llama-2-tiny-random' });
 * if (decision.outcome === 'scheduled') console.log(decision.agent.agentId);
 * ```
 */
export function createScheduler(options: SchedulerOptions = {}): Scheduler {
  const weights: SchedulerWeights = { ...DEFAULT_WEIGHTS, ...options.weights };
  const penalty = options.penaltyFactor ?? 0.5;
  const prefixLoadCap = options.prefixLoadCap ?? DEFAULT_PREFIX_LOAD_CAP;

  const score = (agent: SchedulableAgent, affinity = 0): number => {
    const total = isCpuOnly(agent) ? agent.totalRamMb : agent.totalVramMb;
    const memory = total > 0 ? clamp01(freeMemoryMb(agent) / total) : 0;
    const used = agent.runningJobs + agent.queuedJobs + agent.reservedJobs;
    const load = agent.maxJobs > 0 ? clamp01(1 - used / agent.maxJobs) : 0;
    const rtt = 1 - Math.min(Math.max(agent.rttMs, 0) / RTT_CEILING_MS, 1);
    const perf = agent.tokensPerSecond === undefined ? 0.5 : Math.min(Math.max(agent.tokensPerSecond, 0) / 100, 1);
    let s = weights.memory * memory + weights.load * load + weights.rtt * rtt + weights.performance * perf;
    if (affinity > 0 && agent.maxJobs > 0 && used / agent.maxJobs < prefixLoadCap) s += weights.prefix * clamp01(affinity);
    return agent.penalized ? s * penalty : s;
  };

  /** `a` (score `sa`) goes before `b`: a higher score beyond the tie epsilon, else the smaller id. */
  const ahead = (a: SchedulableAgent, sa: number, b: SchedulableAgent, sb: number) =>
    sa > sb + TIE_EPSILON || (Math.abs(sa - sb) <= TIE_EPSILON && a.agentId < b.agentId);

  /**
   * The best `limit` eligible agents with their scores, best first (ties: the smaller id), and
   * the eligible agents skipped because they are full.
   */
  const best = <A extends SchedulableAgent>(agents: Iterable<A>, request: ScheduleRequest, limit: number) => {
    const top: { agent: A; score: number }[] = [];
    const full: A[] = [];
    for (const agent of agents) {
      if (!agent.available || !agent.supportedModels.has(request.model)) continue;
      if (request.excludeAgentIds?.has(agent.agentId)) continue;
      if (request.requiredMemoryMb !== undefined && freeMemoryMb(agent) < request.requiredMemoryMb) continue;
      if (agent.runningJobs + agent.queuedJobs + agent.reservedJobs >= agent.maxJobs) {
        full.push(agent);
        continue;
      }
      const s = score(agent, request.affinity?.(agent));
      // Insertion into the short sorted list.
      let at = top.length;
      while (at > 0 && ahead(agent, s, top[at - 1]!.agent, top[at - 1]!.score)) at--;
      if (at < limit) {
        top.splice(at, 0, { agent, score: s });
        if (top.length > limit) top.pop();
      }
    }
    return { top, full };
  };

  return {
    weights,
    score,
    rank<A extends SchedulableAgent>(agents: Iterable<A>, request: ScheduleRequest, limit: number): RankDecision<A> {
      const { top, full } = best(agents, request, limit);
      if (top.length > 0) return { outcome: 'scheduled', agents: top.map((b) => b.agent) };
      return full.length > 0 ? { outcome: 'busy', blocking: full } : { outcome: 'no_agent' };
    },
    select<A extends SchedulableAgent>(agents: Iterable<A>, request: ScheduleRequest): ScheduleDecision<A> {
      const { top, full } = best(agents, request, 1);
      const [first] = top;
      if (first !== undefined) return { outcome: 'scheduled', agent: first.agent, score: first.score };
      return full.length > 0 ? { outcome: 'busy', blocking: full } : { outcome: 'no_agent' };
    },
  };
}

function clamp01(x: number): number {
  return x < 0 ? 0 : Math.min(x, 1);
}
