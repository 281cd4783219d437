import { describe, expect, it } from '@jest/globals';
import { findAncestor, MAX_ANCESTOR_DEPTH } from './ancestors.js';

type Node = { parentId: string | null; live: boolean };

/** a ← b ← c ← d (d's parent is c, …); b is dead. */
const chain = new Map<string, Node>([
  ['a', { parentId: null, live: true }],
  ['b', { parentId: 'a', live: false }],
  ['c', { parentId: 'b', live: true }],
  ['d', { parentId: 'c', live: true }],
]);

describe('findAncestor (the registry’s one walk up a parent chain)', () => {
  it('returns the nearest matching ancestor, with sync and async lookups alike', async () => {
    const dead = (_: string, n: Node | undefined) => !n?.live;
    expect(await findAncestor('c', (id) => chain.get(id), dead)).toBe('b');
    expect(await findAncestor('c', async (id) => chain.get(id), dead)).toBe('b');
    expect(await findAncestor('a', (id) => chain.get(id), dead)).toBeUndefined();
    expect(await findAncestor(null, (id) => chain.get(id), dead)).toBeUndefined();
  });

  it('matches by id before the chain ends (cycle check), and hands an unknown id to the predicate as undefined', async () => {
    expect(
      await findAncestor(
        'c',
        (id) => chain.get(id),
        (id) => id === 'a',
      ),
    ).toBe('a');
    expect(
      await findAncestor(
        'c',
        (id) => chain.get(id),
        (id) => id === 'd',
      ),
    ).toBeUndefined();
    const partial = new Map([['c', { parentId: 'gone', live: true }]]);
    expect(
      await findAncestor(
        'c',
        (id) => partial.get(id),
        (_, n) => n === undefined,
      ),
    ).toBe('gone');
    expect(
      await findAncestor(
        'c',
        (id) => partial.get(id),
        () => false,
      ),
    ).toBeUndefined();
  });

  it('ends on a parent cycle in storage after MAX_ANCESTOR_DEPTH steps instead of looping forever', async () => {
    const loop = new Map([
      ['x', { parentId: 'y' }],
      ['y', { parentId: 'x' }],
    ]);
    let lookups = 0;
    const lookup = (id: string) => {
      lookups += 1;
      return loop.get(id);
    };
    const found = await findAncestor('x', lookup, () => false);
    expect(found).toBeUndefined();
    expect(lookups).toBe(MAX_ANCESTOR_DEPTH);
  });
});
