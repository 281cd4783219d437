import { createHash } from 'node:crypto';
import { canonicalMessagesJson, type SessionTokenChatMessage } from './session-token.js';

/**
 * The prefix-block contract of prefix-aware routing, shared by the coordinator (which hashes each
 * incoming prompt) and agents (which report the blocks their engine's KV cache holds): a prompt is
 * cut into fixed-size blocks of characters and each block's hash covers the whole prefix up to its
 * end (a hash chain), so two prompts share their first `n` block hashes exactly when they share
 * their first `n` blocks of text.
 *
 * @packageDocumentation
 */

/** Characters per block. 256 characters are about 64 tokens of English text. */
export const PREFIX_BLOCK_CHARS = 256;

/** Most blocks hashed per prompt (the first 64 blocks: about 16 K characters). */
export const PREFIX_MAX_BLOCKS = 64;

/**
 * Most block hashes an agent reports in one `HealthUpdate.prefix_cache` (the coordinator refuses
 * more): enough for 4 context sequences of {@link PREFIX_MAX_BLOCKS} blocks each.
 */
export const MAX_REPORTED_PREFIX_BLOCKS = 256;

/** A prefix-block hash as {@link prefixBlockHashes} writes it: 16 lowercase hex digits. */
export const PREFIX_BLOCK_HASH_PATTERN = /^[0-9a-f]{16}$/;

/** Options of {@link prefixBlockHashes}. */
export interface PrefixBlockOptions {
  /** Default {@link PREFIX_BLOCK_CHARS}. */
  blockChars?: number;
  /** Default {@link PREFIX_MAX_BLOCKS}. */
  maxBlocks?: number;
}

/**
 * The chained hashes of the whole blocks of `text` (a trailing partial block is not hashed: it is
 * not a prefix two prompts are likely to share): `h[i]` = first 16 hex digits of
 * SHA-256(`h[i-1]` + block `i`).
 *
 * @example
 * ```ts
 * const a = prefixBlockHashes(system + 'Question one');
 * const b = prefixBlockHashes(system + 'Question two');
 * // a and b agree on the blocks that lie wholly inside `system`
 * ```
 */
export function prefixBlockHashes(text: string, options: PrefixBlockOptions = {}): string[] {
  const size = options.blockChars ?? PREFIX_BLOCK_CHARS;
  const blocks = Math.min(Math.floor(text.length / size), options.maxBlocks ?? PREFIX_MAX_BLOCKS);
  const hashes: string[] = [];
  let previous = '';
  for (let i = 0; i < blocks; i += 1) {
    previous = createHash('sha256')
      .update(previous)
      .update(text.slice(i * size, (i + 1) * size))
      .digest('hex')
      .slice(0, 16);
    hashes.push(previous);
  }
  return hashes;
}

/**
 * The text whose blocks are hashed for a request: the prompt, or for a chat the canonical JSON of
 * its messages (see {@link canonicalMessagesJson}), whose prefix a longer conversation keeps.
 *
 * @example
 * ```ts
 * prefixText('', [{ role: 'system', content: 'You are…' }, { role: 'user', content: 'Hi' }]);
 * ```
 */
export function prefixText(prompt: string, messages?: readonly SessionTokenChatMessage[]): string {
  if (!messages || messages.length === 0) return prompt;
  const json = canonicalMessagesJson(messages);
  // Without the closing bracket, a conversation's text is a prefix of its continuation's.
  return json.slice(0, -1);
}
