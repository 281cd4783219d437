import { describe, expect, it } from '@jest/globals';
import { buildInstanceTree, countNodes, type TreeNode } from './instance-tree.js';
import type { InstanceNode } from './wire.js';

const node = (id: string, parentId = ''): InstanceNode => ({
  id,
  type: 'INFERENCE_AGENT',
  hostname: '',
  address: '',
  parentId,
  childIds: [],
  healthy: true,
  lastHealthCheckMs: 0,
  createdAtMs: 0,
  services: [],
});

const shape = (forest: TreeNode[]): unknown => forest.map((n) => (n.children.length ? { [n.instance.id]: shape(n.children) } : n.instance.id));

describe('instance tree', () => {
  it('nests children under their parents, ordered by id; orphans of a dead parent are roots', () => {
    const forest = buildInstanceTree([node('agent-2', 'coord'), node('coord'), node('agent-1', 'coord'), node('proc', 'agent-1'), node('orphan', 'gone')]);
    expect(shape(forest)).toEqual([{ coord: [{ 'agent-1': ['proc'] }, 'agent-2'] }, 'orphan']);
    expect(countNodes(forest)).toBe(5);
  });

  it('shows every instance once even if the data had a cycle', () => {
    const forest = buildInstanceTree([node('a', 'b'), node('b', 'a'), node('self', 'self')]);
    expect(countNodes(forest)).toBe(3);
  });
});
