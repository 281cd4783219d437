import { percentile } from './stats.mjs';

/**
 * A closed-loop load: `count` unary calls, `concurrency` in flight, worker w using
 * `clients[w % clients.length]`; each call's latency from send to answer. Failed calls count as
 * errors (the first one is logged) and their latency is kept.
 * @param {{ clients: unknown[], count: number, concurrency: number, call: (client: any, i: number) => Promise<unknown>, log: (...args: unknown[]) => void }} options
 * @returns {Promise<{ rps: number, p50: number, p99: number, errors: number }>}
 */
export async function runUnaryLoad({ clients, count, concurrency, call, log }) {
  const latencies = new Float64Array(count);
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      const client = clients[worker % clients.length];
      while (next < count) {
        const i = next++;
        const t0 = performance.now();
        try {
          await call(client, i);
        } catch (e) {
          errors++;
          if (errors === 1) log('request error:', e.message);
        }
        latencies[i] = performance.now() - t0;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { rps: count / seconds, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), errors };
}
