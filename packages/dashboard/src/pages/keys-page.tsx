/** Keys: each API key's usage against its quotas (never a secret: names, prefixes and numbers only). */
import { Bar } from '../components/bar.js';
import { formatAgo, formatCount, fraction } from '../format.js';
import { useNow, useSelect } from '../hooks.js';
import type { Store } from '../live.js';

function Quota({ used, limit, unit }: { used: number; limit: number; unit: string }) {
  if (limit <= 0) {
    return (
      <span class="unlimited">
        {formatCount(used)} {unit} <span class="sub">· no limit</span>
      </span>
    );
  }
  return <Bar kind="quota" value={fraction(used, limit)} label={`${formatCount(used)} / ${formatCount(limit)} ${unit}`} />;
}

export function KeysPage({ store }: { store: Store }) {
  const keys = useSelect(store, (s) => s.keys);
  const now = useNow(1000);
  if (!keys || keys.keys.length === 0) {
    return (
      <div class="page page-keys">
        <p class="empty">
          No API keys yet: requests need none (auth mode <code>{keys?.authMode ?? 'none'}</code>). Create one with{' '}
          <code>titan keys create --name NAME --rpm 60</code>; under <code>--auth auto</code> the first key turns authentication on, and this page then shows
          each key's usage against its quotas.
        </p>
      </div>
    );
  }
  return (
    <div class="page page-keys">
      <p class="muted">
        Auth mode <code>{keys.authMode}</code> · usage over the last minute is sampled every few seconds · budgets count the tokens agents reported.
      </p>
      <div class="table-scroll">
        <table class="keys" data-testid="keys-table">
          <thead>
            <tr>
              <th>Key</th>
              <th>Requests / min</th>
              <th>Tokens / min</th>
              <th>Concurrent</th>
              <th>Budget (tokens)</th>
              <th class="num">Requests</th>
              <th class="num">Last used</th>
              <th class="num">Expires</th>
            </tr>
          </thead>
          <tbody>
            {keys.keys.map((k) => (
              <tr key={k.id} data-key-name={k.name}>
                <td>
                  <div class="agent-id">{k.name}</div>
                  <div class="sub">
                    {k.prefix}… · {k.models.length > 0 ? k.models.join(', ') : 'every model'}
                  </div>
                </td>
                <td>
                  <Quota used={k.requestsLastMinute} limit={k.requestsPerMinute} unit="req" />
                </td>
                <td>
                  <Quota used={k.tokensLastMinute} limit={k.tokensPerMinute} unit="tok" />
                </td>
                <td>
                  <Quota used={k.concurrent} limit={k.maxConcurrent} unit="jobs" />
                </td>
                <td data-field="budget">
                  <Quota used={k.tokensUsed} limit={k.budgetTokens} unit="tok" />
                </td>
                <td class="num" data-field="requests">
                  {formatCount(k.requestsTotal)}
                </td>
                <td class="num">{formatAgo(k.lastUsedAtMs, now)}</td>
                <td class="num">{k.expiresAtMs === null ? 'never' : new Date(k.expiresAtMs).toLocaleDateString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
