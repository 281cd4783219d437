/** Instances: the instance manager's tree (parent → children) with health and last check, and its live event feed. */
import { useMemo } from 'preact/hooks';
import { formatAgo, formatClock } from '../format.js';
import { useNow, useSelect } from '../hooks.js';
import { buildInstanceTree, type TreeNode } from '../instance-tree.js';
import type { Store } from '../live.js';
import type { FeedEntry } from '../state.js';
import type { InstanceEventWire } from '../wire.js';

function NodeView({ node, now }: { node: TreeNode; now: number }) {
  const i = node.instance;
  return (
    <li data-instance-id={i.id}>
      <div class={`instance ${i.healthy ? 'instance-healthy' : 'instance-unhealthy'}`}>
        <span class="dot" title={i.healthy ? 'healthy' : 'unhealthy'} />
        <span class="instance-id">{i.id}</span>
        <span class="badge type">{i.type.toLowerCase().replace(/_/g, ' ')}</span>
        {(i.hostname || i.address) && <span class="sub">{[i.hostname, i.address].filter(Boolean).join(' · ')}</span>}
        {i.services.map((s) => (
          <span class="badge service" key={`${s.type}:${s.port}:${s.url}`} title={s.url}>
            {s.type.toLowerCase().replace(/_/g, ' ')}
            {s.port ? ` :${s.port}` : ''}
          </span>
        ))}
        <span class="sub last-check" data-field="last-check" title={new Date(i.lastHealthCheckMs).toLocaleString()}>
          checked {formatAgo(i.lastHealthCheckMs, now)}
        </span>
      </div>
      {node.children.length > 0 && (
        <ul>
          {node.children.map((child) => (
            <NodeView key={child.instance.id} node={child} now={now} />
          ))}
        </ul>
      )}
    </li>
  );
}

function describe(e: InstanceEventWire): string {
  switch (e.type) {
    case 'ADDED':
      return `${e.instanceId} added (${e.instanceType.toLowerCase().replace(/_/g, ' ')})`;
    case 'REMOVED':
      return `${e.instanceId} removed${e.removalReason ? ` — ${e.removalReason.toLowerCase().replace(/_/g, ' ')}` : ''}`;
    case 'CHILD_ADDED':
      return `${e.relatedInstanceId} became a child of ${e.instanceId}`;
    case 'PARENT_ADDED':
      return `${e.instanceId} got parent ${e.relatedInstanceId}`;
    case 'SERVICE_ADDED':
      return `${e.instanceId} added service ${e.service?.type.toLowerCase().replace(/_/g, ' ') ?? ''}${e.service?.port ? ` :${e.service.port}` : ''}`;
    default:
      return `${e.type.toLowerCase()} ${e.instanceId}`;
  }
}

function FeedLine({ entry }: { entry: FeedEntry }) {
  if (entry.kind === 'gap') {
    return (
      <li class="feed-gap">
        <span class="feed-time">{formatClock(entry.atMs)}</span> events lost after #{entry.gap.afterSequence}: {entry.gap.reason}
      </li>
    );
  }
  const e = entry.event;
  return (
    <li class={`feed-event feed-${e.type.toLowerCase()}`} data-sequence={e.sequence}>
      <span class="feed-time">{formatClock(e.timestampMs)}</span>
      <span class="feed-seq">#{e.sequence}</span>
      <span class="badge event-type">{e.type.toLowerCase().replace(/_/g, ' ')}</span>
      <span>{describe(e)}</span>
    </li>
  );
}

export function InstancesPage({ store }: { store: Store }) {
  const instances = useSelect(store, (s) => s.instances);
  const feed = useSelect(store, (s) => s.feed);
  const now = useNow(1000);
  const forest = useMemo(() => buildInstanceTree(instances?.instances ?? []), [instances]);
  const newestFirst = useMemo(() => feed.slice().reverse(), [feed]);

  if (instances && !instances.configured) {
    return (
      <div class="page page-instances">
        <p class="empty">
          This coordinator does not watch an instance manager. Start it with <code>--instance-manager HOST:PORT</code> (or <code>TITAN_INSTANCE_MANAGER</code>)
          to see its instances and events here.
        </p>
      </div>
    );
  }
  return (
    <div class="page page-instances">
      <div class="im-status">
        <span class={`dot ${instances?.connected ? 'dot-on' : 'dot-off'}`} />
        instance manager <code>{instances?.address ?? '…'}</code>
        {instances?.connected ? ` · ${instances.instances.length} live instances` : instances?.error ? ` · unreachable: ${instances.error}` : ' · connecting…'}
      </div>
      <div class="split">
        <section class="card tree-card">
          <h3>Instances</h3>
          {forest.length === 0 ? (
            <p class="empty">No live instances.</p>
          ) : (
            <ul class="tree" data-testid="instance-tree">
              {forest.map((node) => (
                <NodeView key={node.instance.id} node={node} now={now} />
              ))}
            </ul>
          )}
        </section>
        <section class="card feed-card">
          <h3>Events</h3>
          {newestFirst.length === 0 ? (
            <p class="empty">No events since the coordinator started watching.</p>
          ) : (
            <ol class="feed" data-testid="instance-feed">
              {newestFirst.map((entry) => (
                <FeedLine key={entry.kind === 'event' ? `e${entry.event.sequence}` : `g${entry.atMs}`} entry={entry} />
              ))}
            </ol>
          )}
        </section>
      </div>
    </div>
  );
}
