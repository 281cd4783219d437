/** Fleet: every agent with its state, engine, models, memory, slots, queue and throughput; sortable, filterable, windowed. */
import { memo } from 'preact/compat';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Bar } from '../components/bar.js';
import { DEFAULT_FLEET_QUERY, type FleetQuery, type FleetSortKey, type FleetStateFilter, summarizeFleet, viewFleet } from '../fleet-view.js';
import { formatAgo, formatCount, formatMb, formatMs, fraction } from '../format.js';
import { useNow, useSelect } from '../hooks.js';
import type { Store } from '../live.js';
import type { FleetRow } from '../wire.js';

/** Fixed row height (px): the table renders only the rows in view. */
const ROW_HEIGHT = 56;
/** Rows rendered above and below the visible ones. */
const OVERSCAN = 8;

const COLUMNS: { key: FleetSortKey | null; label: string; className?: string }[] = [
  { key: 'id', label: 'Agent' },
  { key: 'state', label: 'State' },
  { key: 'engine', label: 'Engine · models' },
  { key: 'memory', label: 'Memory · utilisation', className: 'col-memory' },
  { key: 'slots', label: 'Slots' },
  { key: 'queue', label: 'Queue', className: 'num' },
  { key: 'tokens', label: 'Tokens/s', className: 'num' },
  { key: 'rtt', label: 'RTT', className: 'num' },
  { key: 'heartbeat', label: 'Heartbeat', className: 'num' },
];

const STATE_CHIPS: { value: FleetStateFilter; label: string }[] = [
  { value: 'all', label: 'All' },
  { value: 'healthy', label: 'Healthy' },
  { value: 'degraded', label: 'Degraded' },
  { value: 'draining', label: 'Draining' },
  { value: 'offline', label: 'Offline' },
  { value: 'unverified', label: 'Unverified' },
  { value: 'breaker-open', label: 'Circuit open' },
];

function MemoryCell({ row }: { row: FleetRow }) {
  if (row.cpuOnly || row.gpus.length === 0) {
    const total = row.cpuOnly ? row.totalRamMb : row.totalVramMb;
    const free = row.cpuOnly ? row.freeRamMb : row.freeVramMb;
    const used = Math.max(0, total - free);
    return (
      <div class="mem-cpu">
        <Bar
          value={fraction(used, total)}
          label={`${formatMb(used)} / ${formatMb(total)} ${row.cpuOnly ? 'RAM' : 'VRAM'}`}
          title={`${row.cpuOnly ? 'RAM' : 'VRAM'} used`}
        />
        <Bar kind="util" value={row.cpuPercent / 100} label={`CPU ${Math.round(row.cpuPercent)} %`} title="CPU utilisation" />
      </div>
    );
  }
  return (
    <div class="gpus">
      {row.gpus.map((g) => (
        <div
          class="gpu"
          key={g.index}
          title={`GPU ${g.index} ${g.name}: ${formatMb(g.memoryUsedMb)} / ${formatMb(g.memoryTotalMb)}, ${g.utilizationPercent === null ? 'utilisation unknown' : `${Math.round(g.utilizationPercent)} % busy`}${g.temperatureC === null ? '' : `, ${Math.round(g.temperatureC)} °C`}`}
        >
          <span class="gpu-name">GPU{g.index}</span>
          <Bar value={fraction(g.memoryUsedMb, g.memoryTotalMb)} />
          <Bar kind="util" value={(g.utilizationPercent ?? 0) / 100} />
        </div>
      ))}
    </div>
  );
}

const FleetRowView = memo(function FleetRowView({ row, now }: { row: FleetRow; now: number }) {
  const used = row.runningJobs + row.reservedJobs;
  const free = Math.max(0, row.maxJobs - used);
  return (
    <tr data-agent-id={row.id} class={`row-${row.state}${row.gone ? ' row-gone' : ''}`} style={{ height: `${ROW_HEIGHT}px` }}>
      <td>
        <div class="agent-id">{row.id}</div>
        <div class="sub">{row.endpoint}</div>
      </td>
      <td data-field="state">
        <span class={`badge state-${row.state}`} data-state={row.state}>
          {row.state}
        </span>
        {row.breaker === 'open' && <span class="badge breaker-open">circuit open</span>}
        {row.breaker === 'half-open' && row.state !== 'half-open' && <span class="badge breaker-half">probing</span>}
        {row.gone && <div class="sub">evicted</div>}
      </td>
      <td>
        <div>{row.engine || '–'}</div>
        <div class="sub models" title={row.models.join(', ')}>
          {row.models.slice(0, 2).join(', ')}
          {row.models.length > 2 ? ` +${row.models.length - 2}` : ''}
        </div>
      </td>
      <td class="col-memory">
        <MemoryCell row={row} />
      </td>
      <td data-field="slots">
        <Bar
          kind="slots"
          value={fraction(used, row.maxJobs)}
          label={`${used} used · ${free} free`}
          title={`${row.runningJobs} running, ${row.reservedJobs} reserved of ${row.maxJobs}`}
        />
      </td>
      <td class="num" data-field="queue">
        {row.queuedJobs}
        <span class="sub"> / {row.maxQueue}</span>
      </td>
      <td class="num" data-field="tokens">
        {row.tokensPerSecond === null ? '–' : formatCount(row.tokensPerSecond)}
      </td>
      <td class="num">{formatMs(row.rttMs)}</td>
      <td class="num" title={new Date(row.lastHeartbeatMs).toLocaleString()}>
        {formatAgo(row.lastHeartbeatMs, now)}
      </td>
    </tr>
  );
});

/** The rows in view of a scrolling box, by a fixed row height. */
function useWindow(count: number) {
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(800);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const start = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const end = Math.min(count, Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
  return { box, start, end, onScroll: (e: Event) => setScrollTop((e.currentTarget as HTMLDivElement).scrollTop) };
}

export function FleetPage({ store }: { store: Store }) {
  const fleet = useSelect(store, (s) => s.fleet);
  const heartbeatTimeoutMs = useSelect(store, (s) => s.hello?.heartbeatTimeoutMs ?? 0);
  const now = useNow(1000);
  const [query, setQuery] = useState<FleetQuery>(DEFAULT_FLEET_QUERY);
  const rows = useMemo(() => viewFleet(fleet.values(), query), [fleet, query]);
  const summary = useMemo(() => summarizeFleet(fleet.values()), [fleet]);
  const win = useWindow(rows.length);

  const sortBy = (key: FleetSortKey) => setQuery((q) => ({ ...q, sort: key, descending: q.sort === key ? !q.descending : key !== 'id' && key !== 'engine' }));

  return (
    <div class="page page-fleet">
      <div class="tiles">
        <div class="tile" data-testid="fleet-agents">
          <div class="tile-value">{summary.agents}</div>
          <div class="tile-label">agents</div>
        </div>
        <div class="tile tile-healthy">
          <div class="tile-value">{summary.healthy}</div>
          <div class="tile-label">healthy</div>
        </div>
        <div class="tile tile-degraded">
          <div class="tile-value">{summary.degraded}</div>
          <div class="tile-label">degraded</div>
        </div>
        <div class="tile tile-draining">
          <div class="tile-value">{summary.draining}</div>
          <div class="tile-label">draining</div>
        </div>
        <div class="tile tile-offline">
          <div class="tile-value">{summary.offline}</div>
          <div class="tile-label">offline</div>
        </div>
        <div class="tile tile-offline">
          <div class="tile-value">{summary.breakerOpen}</div>
          <div class="tile-label">circuit open</div>
        </div>
        <div class="tile">
          <div class="tile-value">
            {summary.slotsUsed}
            <span class="tile-of"> / {summary.slotsTotal}</span>
          </div>
          <div class="tile-label">slots in use</div>
        </div>
        <div class="tile">
          <div class="tile-value">{summary.queued}</div>
          <div class="tile-label">queued</div>
        </div>
      </div>

      <div class="toolbar">
        <input
          type="search"
          class="filter"
          placeholder="Filter by agent, endpoint, engine, model, GPU…"
          aria-label="Filter agents"
          value={query.text}
          onInput={(e) => setQuery((q) => ({ ...q, text: (e.currentTarget as HTMLInputElement).value }))}
        />
        <fieldset class="chips">
          <legend class="sr-only">State</legend>
          {STATE_CHIPS.map((chip) => (
            <button
              type="button"
              key={chip.value}
              class={`chip${query.state === chip.value ? ' chip-on' : ''}`}
              onClick={() => setQuery((q) => ({ ...q, state: chip.value }))}
            >
              {chip.label}
            </button>
          ))}
        </fieldset>
        <span class="muted" data-testid="fleet-shown">
          {rows.length === fleet.size ? `${rows.length} agents` : `${rows.length} of ${fleet.size} agents`}
          {heartbeatTimeoutMs > 0 ? ` · evicted after ${formatMs(heartbeatTimeoutMs)} of silence` : ''}
        </span>
      </div>

      <div class="table-scroll" ref={win.box} onScroll={win.onScroll}>
        <table class="fleet" data-testid="fleet-table">
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th key={c.label} class={c.className} aria-sort={c.key && query.sort === c.key ? (query.descending ? 'descending' : 'ascending') : undefined}>
                  {c.key ? (
                    <button type="button" class="sort" onClick={() => sortBy(c.key as FleetSortKey)}>
                      {c.label}
                      {query.sort === c.key ? (query.descending ? ' ▾' : ' ▴') : ''}
                    </button>
                  ) : (
                    c.label
                  )}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {win.start > 0 && <tr class="spacer" style={{ height: `${win.start * ROW_HEIGHT}px` }} />}
            {rows.slice(win.start, win.end).map((row) => (
              <FleetRowView key={row.id} row={row} now={now} />
            ))}
            {win.end < rows.length && <tr class="spacer" style={{ height: `${(rows.length - win.end) * ROW_HEIGHT}px` }} />}
          </tbody>
        </table>
        {fleet.size === 0 && (
          <p class="empty">
            No agents have registered yet. Start one with <code>titan-agent --coordinator HOST:PORT</code>.
          </p>
        )}
      </div>
    </div>
  );
}
