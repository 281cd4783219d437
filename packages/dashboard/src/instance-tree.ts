/** The Instances page's tree: instances by parent (pure: no DOM). */
import type { InstanceNode } from './wire.js';

/** An instance with its children, ordered by id. */
export interface TreeNode {
  instance: InstanceNode;
  children: TreeNode[];
}

/**
 * Builds the forest: roots are instances without a parent, or whose parent is not live (the
 * instance manager kills children with their parent, so that is brief). A cycle cannot come
 * from the instance manager, but one would not hang this: each instance appears once.
 */
export function buildInstanceTree(instances: readonly InstanceNode[]): TreeNode[] {
  const byId = new Map(instances.map((i) => [i.id, i]));
  const children = new Map<string, InstanceNode[]>();
  const roots: InstanceNode[] = [];
  for (const instance of instances) {
    if (instance.parentId && byId.has(instance.parentId) && instance.parentId !== instance.id) {
      let list = children.get(instance.parentId);
      if (!list) children.set(instance.parentId, (list = []));
      list.push(instance);
    } else {
      roots.push(instance);
    }
  }
  const placed = new Set<string>();
  const build = (instance: InstanceNode): TreeNode => {
    placed.add(instance.id);
    const kids = (children.get(instance.id) ?? []).filter((c) => !placed.has(c.id)).sort((a, b) => a.id.localeCompare(b.id));
    return { instance, children: kids.map(build) };
  };
  const forest = roots.sort((a, b) => a.id.localeCompare(b.id)).map(build);
  // Anything left belongs to a cycle: show it as a root rather than not at all.
  for (const instance of instances) if (!placed.has(instance.id)) forest.push(build(instance));
  return forest;
}

/** Number of nodes in a forest. */
export function countNodes(forest: readonly TreeNode[]): number {
  return forest.reduce((n, node) => n + 1 + countNodes(node.children), 0);
}
