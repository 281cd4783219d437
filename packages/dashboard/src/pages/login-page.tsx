/** The login form: the admin token, exchanged for a short-lived session cookie (the token is never stored by the page). */
import { useState } from 'preact/hooks';
import type { Connection } from '../live.js';

export function LoginPage({ connection }: { connection: Connection }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    const failure = await connection.login(token);
    setBusy(false);
    if (failure) setError(failure);
    else setToken('');
  };
  return (
    <div class="login">
      <form class="card login-card" onSubmit={submit}>
        <h2>Log in</h2>
        <p class="muted">
          API keys are on, so the dashboard needs the coordinator's admin token (the file <code>admin-token</code> in its data directory, or{' '}
          <code>TITAN_ADMIN_TOKEN</code>).
        </p>
        <label>
          Admin token
          <input
            type="password"
            name="token"
            autocomplete="current-password"
            value={token}
            onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)}
            required
          />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </div>
  );
}
