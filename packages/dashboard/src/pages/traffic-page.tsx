/** Traffic: live charts of the last 15 minutes (requests/s, TTFT p50/p95, tokens/s, busy and errors, jobs). */
import { useMemo } from 'preact/hooks';
import { Chart } from '../components/chart.js';
import { formatCount, formatMs } from '../format.js';
import { useSelect } from '../hooks.js';
import type { Store } from '../live.js';
import { trafficSeries, trafficTotals } from '../traffic-series.js';

const COLORS = { blue: '#3b82f6', green: '#10b981', amber: '#f59e0b', red: '#ef4444', violet: '#8b5cf6', slate: '#64748b' };

export function TrafficPage({ store }: { store: Store }) {
  const points = useSelect(store, (s) => s.traffic);
  const windowSeconds = useSelect(store, (s) => s.hello?.trafficWindowSeconds ?? 900);
  const series = useMemo(() => trafficSeries(points), [points]);
  const totals = useMemo(() => trafficTotals(points), [points]);
  const end = points.at(-1)?.t ?? Math.floor(Date.now() / 1000);
  const range: [number, number] = [end - windowSeconds + 1, end];
  const minutes = Math.round(windowSeconds / 60);

  return (
    <div class="page page-traffic">
      <div class="tiles">
        <div class="tile">
          <div class="tile-value" data-testid="traffic-requests-total">
            {formatCount(totals.requests)}
          </div>
          <div class="tile-label">requests ({minutes} min)</div>
        </div>
        <div class="tile">
          <div class="tile-value">{totals.requestsPerSecondLastMinute.toFixed(2)}</div>
          <div class="tile-label">requests/s (last min)</div>
        </div>
        <div class="tile">
          <div class="tile-value" data-testid="traffic-tokens-total">
            {formatCount(totals.tokens)}
          </div>
          <div class="tile-label">tokens ({minutes} min)</div>
        </div>
        <div class="tile">
          <div class="tile-value">{formatCount(totals.tokensPerSecondLastMinute)}</div>
          <div class="tile-label">tokens/s (last min)</div>
        </div>
        <div class="tile">
          <div class="tile-value" data-testid="traffic-ttft">
            {formatMs(totals.lastTtftP50)}
            <span class="tile-of"> / {formatMs(totals.lastTtftP95)}</span>
          </div>
          <div class="tile-label">TTFT p50 / p95 (latest)</div>
        </div>
        <div class="tile tile-degraded">
          <div class="tile-value">{formatCount(totals.busy)}</div>
          <div class="tile-label">busy ({minutes} min)</div>
        </div>
        <div class="tile tile-offline">
          <div class="tile-value">{formatCount(totals.errors)}</div>
          <div class="tile-label">errors ({minutes} min)</div>
        </div>
        <div class="tile">
          <div class="tile-value">{totals.running}</div>
          <div class="tile-label">jobs running</div>
        </div>
      </div>
      <div class="charts">
        <Chart
          testId="chart-requests"
          title="Requests per second"
          unit="req/s"
          range={range}
          xs={series.xs}
          ys={[series.requests, series.scheduled]}
          series={[
            { label: 'requests', color: COLORS.blue, fill: true },
            { label: 'scheduled', color: COLORS.green },
          ]}
        />
        <Chart
          testId="chart-ttft"
          title="Time to first token"
          unit="ms"
          range={range}
          xs={series.xs}
          ys={[series.ttftP50, series.ttftP95]}
          series={[
            { label: 'p50', color: COLORS.violet },
            { label: 'p95', color: COLORS.amber },
          ]}
        />
        <Chart
          testId="chart-tokens"
          title="Tokens per second (by job end)"
          unit="tok/s"
          range={range}
          xs={series.xs}
          ys={[series.tokens]}
          series={[{ label: 'tokens', color: COLORS.green, fill: true }]}
        />
        <Chart
          testId="chart-busy-errors"
          title="Busy and error rates"
          unit="per s"
          range={range}
          xs={series.xs}
          ys={[series.busy, series.errors]}
          series={[
            { label: 'busy (429)', color: COLORS.amber, fill: true },
            { label: 'errors', color: COLORS.red, fill: true },
          ]}
        />
        <Chart
          testId="chart-jobs"
          title="Jobs on the fleet"
          unit="jobs"
          range={range}
          xs={series.xs}
          ys={[series.running, series.queued]}
          series={[
            { label: 'running', color: COLORS.blue },
            { label: 'queued', color: COLORS.slate },
          ]}
        />
      </div>
    </div>
  );
}
