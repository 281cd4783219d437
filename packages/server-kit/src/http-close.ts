import type { Server } from 'node:http';

/** What {@link closeHttpServer} needs of an HTTP app (a fastify instance fits). */
export interface ClosableHttpApp {
  close(): PromiseLike<unknown>;
  readonly server: Pick<Server, 'closeAllConnections'>;
}

/** Default grace of {@link closeHttpServer}: 2 s. */
export const DEFAULT_HTTP_CLOSE_GRACE_MS = 2000;

/** Options of {@link closeHttpServer}. */
export interface CloseHttpServerOptions {
  /** Longest wait for answers still being written before every connection is closed. Default {@link DEFAULT_HTTP_CLOSE_GRACE_MS}. */
  graceMs?: number;
  /**
   * Whether answers the server knows of are still being written (e.g. relayed streams); once it
   * says false, every connection left (idle, half-closed by its client) is closed at once instead
   * of at the end of the grace. Default: none known, so only the grace applies.
   */
  busy?: () => boolean;
}

/**
 * Closes an HTTP server: no new connections, idle ones closed at once, and once the answers in
 * progress are done (see `busy`) or after `graceMs`, every one still open — an answer still
 * streaming, a client's half-closed socket, an idle pre-opened one — so a close never waits on a
 * peer's timeout. Call it once the work is drained or cut.
 *
 * @example
 * ```ts
 * await closeHttpServer(app); // fastify: app.close(), then closeAllConnections() after 2 s
 * await closeHttpServer(app, { graceMs: 10_000, busy: () => relays.size > 0 });
 * ```
 */
export async function closeHttpServer(app: ClosableHttpApp, options: CloseHttpServerOptions | number = {}): Promise<void> {
  const { graceMs = DEFAULT_HTTP_CLOSE_GRACE_MS, busy } = typeof options === 'number' ? { graceMs: options } : options;
  const deadline = Date.now() + graceMs;
  const timer = setInterval(
    () => {
      if (Date.now() >= deadline || (busy && !busy())) {
        clearInterval(timer);
        app.server.closeAllConnections();
      }
    },
    busy ? Math.min(50, Math.max(1, graceMs)) : Math.max(1, graceMs),
  );
  try {
    await app.close();
  } finally {
    clearInterval(timer);
  }
}
