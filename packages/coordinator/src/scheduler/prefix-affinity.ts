/** How the scheduler uses prompt prefixes (`--prefix-routing`). */
export const PREFIX_ROUTING_MODES = ['off', 'approximate', 'precise'] as const;
/**
 * `off`: load only. `approximate`: remember which prefix blocks were sent to which agent (no
 * agent reports needed). `precise`: use the blocks each agent reports its engine's KV cache holds
 * (`HealthUpdate.prefix_cache`): a report replaces what was known of the agent, so evicted
 * prefixes are forgotten; what was granted to it since counts until its next report (an agent
 * reports when its cache changes, within milliseconds of a job starting). Agents that never
 * report (Ollama, OpenAI-compatible engines such as vLLM: they cache out of the agent's sight)
 * are learned from grants, as in `approximate`.
 */
export type PrefixRoutingMode = (typeof PREFIX_ROUTING_MODES)[number];

/** Default {@link PrefixAffinityOptions.maxBlocksPerAgent}. */
export const DEFAULT_MAX_PREFIX_BLOCKS_PER_AGENT = 8192;

/** Options of {@link createPrefixAffinity}. */
export interface PrefixAffinityOptions {
  mode: PrefixRoutingMode;
  /**
   * Block hashes remembered per agent in approximate mode (least recently sent forgotten first),
   * and kept from one agent's report in precise mode. Default {@link DEFAULT_MAX_PREFIX_BLOCKS_PER_AGENT}
   * (with 256-character blocks, about 2 M characters of prompts per agent).
   */
  maxBlocksPerAgent?: number;
}

/** Where each prompt prefix is likely to be in an engine's KV cache, per agent. */
export interface PrefixAffinity {
  readonly mode: PrefixRoutingMode;
  /**
   * How many leading blocks of `hashes` (chained prefix-block hashes, see the protocol's
   * `prefixBlockHashes`) the agent holds: the longest `i` whose hash it has (a chained hash
   * stands for its whole prefix). 0 in mode `off`.
   */
  matchedBlocks(agentId: string, hashes: readonly string[]): number;
  /** Whether any agent holds any of these blocks (when none does, affinity cannot change a choice). */
  anyHolds(hashes: readonly string[]): boolean;
  /**
   * A request with these blocks was granted to the agent (approximate mode learns from it; precise
   * mode too, until the agent's next report replaces it).
   */
  recordGrant(agentId: string, hashes: readonly string[]): void;
  /**
   * The agent reported the blocks its cache holds now (precise mode: replaces what was known, and
   * marks the agent as reporting; ignored in the other modes).
   */
  applyReport(agentId: string, hashes: readonly string[]): void;
  /** Whether the agent reports its cache (precise mode: it sent a report since it joined). */
  reporting(agentId: string): boolean;
  /** The agent left: forget it. */
  forget(agentId: string): void;
  /** Blocks known for an agent (tests, status). */
  size(agentId: string): number;
}

/**
 * Creates the prefix-affinity index the scheduler scores against.
 *
 * @example
 * ```ts
 * const affinity = createPrefixAffinity({ mode: 'approximate' });
 * affinity.recordGrant('gpu-1', prefixBlockHashes(prompt));
 * affinity.matchedBlocks('gpu-1', prefixBlockHashes(prompt + ' and more')); // the shared blocks
 * ```
 */
export function createPrefixAffinity(options: PrefixAffinityOptions): PrefixAffinity {
  const { mode } = options;
  const cap = Math.max(1, options.maxBlocksPerAgent ?? DEFAULT_MAX_PREFIX_BLOCKS_PER_AGENT);
  // Per agent, a Map used as an LRU: insertion order = recency (re-inserted when sent again).
  const known = new Map<string, Map<string, true>>();
  // Block hash → how many agents hold it.
  const holders = new Map<string, number>();
  // Agents that sent a report (precise mode).
  const reporters = new Set<string>();
  const held = (h: string) => holders.set(h, (holders.get(h) ?? 0) + 1);
  const dropped = (h: string) => {
    const n = (holders.get(h) ?? 1) - 1;
    if (n <= 0) holders.delete(h);
    else holders.set(h, n);
  };
  const blocksOf = (agentId: string) => {
    let blocks = known.get(agentId);
    if (!blocks) known.set(agentId, (blocks = new Map()));
    return blocks;
  };
  const dropBlocks = (agentId: string) => {
    for (const h of known.get(agentId)?.keys() ?? []) dropped(h);
    known.delete(agentId);
  };
  const forget = (agentId: string) => {
    dropBlocks(agentId);
    reporters.delete(agentId);
  };
  return {
    mode,
    matchedBlocks(agentId, hashes) {
      if (mode === 'off') return 0;
      const blocks = known.get(agentId);
      if (!blocks || blocks.size === 0) return 0;
      for (let i = hashes.length - 1; i >= 0; i -= 1) if (blocks.has(hashes[i]!)) return i + 1;
      return 0;
    },
    anyHolds(hashes) {
      return mode !== 'off' && hashes.some((h) => holders.has(h));
    },
    recordGrant(agentId, hashes) {
      if (mode === 'off' || hashes.length === 0) return;
      const blocks = blocksOf(agentId);
      for (const h of hashes) {
        if (!blocks.delete(h)) held(h);
        blocks.set(h, true);
      }
      for (const oldest of blocks.keys()) {
        if (blocks.size <= cap) break;
        blocks.delete(oldest);
        dropped(oldest);
      }
    },
    applyReport(agentId, hashes) {
      if (mode !== 'precise') return;
      dropBlocks(agentId);
      reporters.add(agentId);
      const blocks = new Map(hashes.slice(0, cap).map((h) => [h, true] as const));
      for (const h of blocks.keys()) held(h);
      known.set(agentId, blocks);
    },
    forget,
    reporting(agentId) {
      return reporters.has(agentId);
    },
    size(agentId) {
      return known.get(agentId)?.size ?? 0;
    },
  };
}
