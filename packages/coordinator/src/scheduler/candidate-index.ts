import type { AgentRecord } from '../registry/agent-record.js';

/** Options of {@link createCandidateIndex}. */
export interface CandidateIndexOptions {
  /** The scheduler's score of an agent (the scheduler's `score`, penalty included). */
  score(agent: AgentRecord): number;
}

/** The best agent for a model and its score. */
export interface IndexedCandidate {
  readonly agent: AgentRecord;
  readonly score: number;
}

/**
 * The agents that can take a job now, per model, ordered by the scheduler's score (highest
 * first, ties to the smallest agent id), so a plain request is scheduled in O(1) instead of
 * scoring every agent that serves its model. It is kept up to date by {@link CandidateIndex.update}
 * on every change of an agent (the registry's `watch`); an agent whose breaker is open waits
 * outside and comes back when its open duration has passed (checked on every `best`).
 *
 * It answers what the scheduler's full scan (`select`) answers for a request without
 * exclusions, memory requirement or prefix affinity: the available, not full agent with the
 * highest score (scores that differ by less than the scan's 1e-9 tie epsilon but are not equal
 * are ordered by score here, by id there). Requests with any of those, or for which no agent is
 * eligible (busy or none), take the full scan, which also says which agents block.
 */
export interface CandidateIndex {
  /** Re-scores an agent after a change (health, reservation, breaker, endpoint check, registration). */
  update(agent: AgentRecord): void;
  /** Forgets an agent (evicted). */
  remove(agent: AgentRecord): void;
  /** The best eligible agent serving `model`, or undefined when none is eligible. */
  best(model: string): IndexedCandidate | undefined;
  /**
   * The `k` best eligible agents serving `model`, best first (fewer when fewer are eligible): the
   * shared reservations try them in turn. O(2^k) for the small k it is meant for.
   */
  top(model: string, k: number): IndexedCandidate[];
  /** Agents eligible now, over all models (each counted once). */
  readonly size: number;
}

interface Entry {
  readonly agent: AgentRecord;
  score: number;
  /** Models whose heaps hold this entry. */
  models: readonly string[];
}

/** `a` goes before `b`: higher score, then smaller agent id (the scan's tie-break). */
const before = (a: Entry, b: Entry) => a.score > b.score || (a.score === b.score && a.agent.agentId < b.agent.agentId);

/** A binary max-heap of entries with their positions, so an entry can move or leave in O(log n). */
class EntryHeap {
  private readonly items: Entry[] = [];
  private readonly positions = new Map<Entry, number>();

  get top(): Entry | undefined {
    return this.items[0];
  }

  get size(): number {
    return this.items.length;
  }

  /** The `k` first entries in order: they lie within the heap's first `k` levels. */
  firstK(k: number): Entry[] {
    const levels = this.items.slice(0, Math.min(this.items.length, 2 ** k - 1));
    return levels.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0)).slice(0, k);
  }

  /** Inserts `entry`, or moves it after its score changed. */
  upsert(entry: Entry): void {
    const at = this.positions.get(entry);
    if (at === undefined) {
      this.items.push(entry);
      this.positions.set(entry, this.items.length - 1);
      this.up(this.items.length - 1);
    } else {
      this.down(this.up(at));
    }
  }

  delete(entry: Entry): void {
    const at = this.positions.get(entry);
    if (at === undefined) return;
    this.positions.delete(entry);
    const last = this.items.pop()!;
    if (at === this.items.length) return;
    this.items[at] = last;
    this.positions.set(last, at);
    this.down(this.up(at));
  }

  private swap(i: number, j: number): void {
    const a = this.items[i]!;
    const b = this.items[j]!;
    this.items[i] = b;
    this.items[j] = a;
    this.positions.set(b, i);
    this.positions.set(a, j);
  }

  private up(i: number): number {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(this.items[i]!, this.items[parent]!)) break;
      this.swap(i, parent);
      i = parent;
    }
    return i;
  }

  private down(i: number): number {
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let first = i;
      if (left < this.items.length && before(this.items[left]!, this.items[first]!)) first = left;
      if (right < this.items.length && before(this.items[right]!, this.items[first]!)) first = right;
      if (first === i) return i;
      this.swap(i, first);
      i = first;
    }
  }
}

/** Schedulable as far as the scan is concerned: available and with a free slot. */
const eligible = (agent: AgentRecord) => agent.available && agent.runningJobs + agent.queuedJobs + agent.reservedJobs < agent.maxJobs;

/** Kept out only by an open breaker: it may come back by itself when the open duration passes. */
const waitsOnBreaker = (agent: AgentRecord) =>
  agent.online && !agent.deregistered && !agent.draining && agent.endpointCheck === 'verified' && !agent.breaker.closed;

/**
 * Creates a {@link CandidateIndex} over the scheduler's score.
 *
 * @example
 * ```ts
 * const index = createCandidateIndex({ score: (a) => scheduler.score(a) });
 * registry.watch((agent, removed) => (removed ? index.remove(agent) : index.update(agent)));
 * const best = index.best('llama3'); // undefined: take scheduler.select's full scan
 * ```
 */
export function createCandidateIndex(options: CandidateIndexOptions): CandidateIndex {
  const heaps = new Map<string, EntryHeap>();
  const entries = new Map<AgentRecord, Entry>();
  const waiting = new Set<AgentRecord>();

  const leaveHeaps = (entry: Entry) => {
    for (const model of entry.models) {
      const heap = heaps.get(model);
      if (!heap) continue;
      heap.delete(entry);
      if (heap.size === 0) heaps.delete(model);
    }
    entry.models = [];
  };

  const remove = (agent: AgentRecord) => {
    waiting.delete(agent);
    const entry = entries.get(agent);
    if (!entry) return;
    leaveHeaps(entry);
    entries.delete(agent);
  };

  const update = (agent: AgentRecord) => {
    if (!eligible(agent)) {
      remove(agent);
      if (!agent.available && waitsOnBreaker(agent)) waiting.add(agent);
      return;
    }
    waiting.delete(agent);
    let entry = entries.get(agent);
    if (!entry) entries.set(agent, (entry = { agent, score: 0, models: [] }));
    entry.score = options.score(agent);
    const models = [...agent.supportedModels];
    // The models it serves may have changed (a re-registration): leave the heaps of the others.
    if (entry.models.length !== models.length || entry.models.some((m) => !agent.supportedModels.has(m))) leaveHeaps(entry);
    entry.models = models;
    for (const model of models) {
      let heap = heaps.get(model);
      if (!heap) heaps.set(model, (heap = new EntryHeap()));
      heap.upsert(entry);
    }
  };

  return {
    update,
    remove,
    best(model) {
      // An open breaker turns half-open with time, not with an event: look at those few first.
      if (waiting.size > 0) for (const agent of [...waiting]) if (agent.available) update(agent);
      const top = heaps.get(model)?.top;
      return top === undefined ? undefined : { agent: top.agent, score: top.score };
    },
    top(model, k) {
      if (waiting.size > 0) for (const agent of [...waiting]) if (agent.available) update(agent);
      return (heaps.get(model)?.firstK(k) ?? []).map((entry) => ({ agent: entry.agent, score: entry.score }));
    },
    get size() {
      return entries.size;
    },
  };
}
