/**
 * What {@link withPooledClient} needs of a pool's client: node-postgres' `PoolClient` has it
 * (server-kit does not depend on `pg`; each store brings its own).
 */
export interface PooledClient {
  on(event: 'error', listener: (err: Error) => void): unknown;
  off(event: 'error', listener: (err: Error) => void): unknown;
  /** Back to the pool; with an error, the pool destroys the client instead of keeping it. */
  release(err?: Error | boolean): void;
}

/**
 * Runs `fn` with a client checked out of a pool and gives it back however `fn` ends.
 *
 * While a client is checked out, node-postgres emits its connection's failure (PostgreSQL
 * restarted, the backend terminated, the network cut) as an `error` event on the client, besides
 * failing the query in flight; with no listener, Node throws that event and the whole process
 * dies. Here the event is caught for the time of the checkout, `fn`'s query fails as usual, and
 * the broken client is destroyed on release rather than handed to the next caller.
 *
 * @example
 * ```ts
 * const rows = await withPooledClient(() => pool.connect(), async (client) => {
 *   await client.query('BEGIN');
 *   // …
 * });
 * ```
 */
export async function withPooledClient<C extends PooledClient, T>(connect: () => Promise<C>, fn: (client: C) => Promise<T>): Promise<T> {
  const client = await connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
