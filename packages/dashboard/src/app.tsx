/** The shell: header, navigation (hash routes), connection state, and the page. */
import { useEffect, useState } from 'preact/hooks';
import { useHashRoute, useSelect } from './hooks.js';
import { connect, type Connection, type Store } from './live.js';
import { FleetPage } from './pages/fleet-page.js';
import { InstancesPage } from './pages/instances-page.js';
import { KeysPage } from './pages/keys-page.js';
import { LoginPage } from './pages/login-page.js';
import { TrafficPage } from './pages/traffic-page.js';

const PAGES = [
  { id: 'fleet', label: 'Fleet' },
  { id: 'traffic', label: 'Traffic' },
  { id: 'instances', label: 'Instances' },
  { id: 'keys', label: 'Keys' },
] as const;

export function App({ store }: { store: Store }) {
  const [connection, setConnection] = useState<Connection | null>(null);
  useEffect(() => {
    const c = connect(store);
    setConnection(c);
    return () => c.close();
  }, [store]);
  const page = useHashRoute(
    PAGES.map((p) => p.id),
    'fleet',
  );
  const state = useSelect(store, (s) => s.connection);
  const error = useSelect(store, (s) => s.connectionError);
  const session = useSelect(store, (s) => s.session);
  const authMode = useSelect(store, (s) => (s.connection === 'login' ? 'keys' : (s.keys?.authMode ?? s.hello?.authMode ?? null)));

  useEffect(() => {
    document.title = `${PAGES.find((p) => p.id === page)?.label ?? 'Fleet'} · TitanCompute`;
  }, [page]);

  return (
    <div class="shell">
      <header class="top">
        <div class="brand">
          <span class="logo" aria-hidden="true">
            ◆
          </span>
          TitanCompute
        </div>
        <nav>
          {PAGES.map((p) => (
            <a key={p.id} href={`#/${p.id}`} class={page === p.id ? 'active' : ''} aria-current={page === p.id ? 'page' : undefined}>
              {p.label}
            </a>
          ))}
        </nav>
        <div class="status">
          {authMode && <span class={`badge auth-${authMode}`}>{authMode === 'keys' ? 'auth on' : 'auth off'}</span>}
          <span class={`conn conn-${state}`} data-testid="connection" data-state={state} title={error ?? undefined}>
            <span class="dot" />
            {state === 'live' ? 'live' : state === 'login' ? 'locked' : state === 'connecting' ? 'connecting' : 'reconnecting'}
          </span>
          {session && connection && (
            <button type="button" class="link" onClick={() => void connection.logout()}>
              Log out
            </button>
          )}
        </div>
      </header>
      {error && state !== 'live' && state !== 'login' && <div class="banner">{error}</div>}
      <main>
        {state === 'login' && connection ? (
          <LoginPage connection={connection} />
        ) : page === 'traffic' ? (
          <TrafficPage store={store} />
        ) : page === 'instances' ? (
          <InstancesPage store={store} />
        ) : page === 'keys' ? (
          <KeysPage store={store} />
        ) : (
          <FleetPage store={store} />
        )}
      </main>
    </div>
  );
}
