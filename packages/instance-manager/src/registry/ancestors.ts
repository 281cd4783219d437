/**
 * Most ancestors one walk visits: a guard that ends the walk should storage ever hold a parent
 * cycle (the registry never writes one).
 */
export const MAX_ANCESTOR_DEPTH = 10_000;

/**
 * The registry's one walk up a parent chain. Starting at `parentId` (an instance's parent), it
 * looks each ancestor up, nearest first, and returns the first ancestor id for which
 * `matches(id, record)` is true (`record` is undefined when `lookup` knows no such id). The walk
 * ends, returning undefined, at an ancestor without a parent, at one `lookup` does not know, or
 * after {@link MAX_ANCESTOR_DEPTH} steps.
 *
 * @example
 * ```ts
 * // The first ancestor that is not live, if any:
 * const dead = await findAncestor(rec.parentId, (id) => store.getInstance(id), (_, p) => !p || !isLive(p));
 * ```
 */
export async function findAncestor<R extends { parentId: string | null }>(
  parentId: string | null,
  lookup: (id: string) => R | undefined | Promise<R | undefined>,
  matches: (id: string, record: R | undefined) => boolean,
): Promise<string | undefined> {
  let cursor = parentId;
  for (let depth = 0; cursor && depth < MAX_ANCESTOR_DEPTH; depth++) {
    const record = await lookup(cursor);
    if (matches(cursor, record)) return cursor;
    cursor = record?.parentId ?? null;
  }
  return undefined;
}
