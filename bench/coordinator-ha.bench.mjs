#!/usr/bin/env node
/**
 * RequestInference throughput and latency of coordinators sharing one fleet on PostgreSQL
 * (`--store postgres`: every decision awaits its atomic reservation in the database), with 1 and 3
 * replicas, against the SQLite single node (reservations in memory), in the same run, with the
 * same agents and client concurrency. The agents (simulated, registered over gRPC by
 * `coordinator.bench.mjs --serve-agents`, heartbeating every 2 s) are homed on the first replica;
 * the others schedule them through the shared fleet. Also measures the shared store's cost per
 * decision: the time of the reservation statement (`fleet_reserve`, one round trip) alone.
 * Coordinators run as child processes (the built bin); the database is a fresh one on
 * TITAN_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test), dropped at the end.
 * Prints one markdown section.
 *
 * Env: COORDINATOR_HA_BENCH_AGENTS (default 100).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLog, importFromPackage, percentile, repoRoot, runUnaryLoad, startListeningChild } from './lib/index.mjs';

const protocol = await import('@titancompute/protocol');
const niceGrpc = await importFromPackage('coordinator', 'nice-grpc');
const pg = (await importFromPackage('coordinator', 'pg')).default;

const AGENTS = Number(process.env.COORDINATOR_HA_BENCH_AGENTS ?? 100);
/** Requests in flight, in total (split over the replicas). */
const CONCURRENCY = 12;
const WARMUP = 300;
const MEASURED = 3000;
const STATEMENTS = 2000;
const JOIN_TOKEN = 'bench-join-token';
const PG_URL = process.env.TITAN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const log = createLog();
const binPath = join(repoRoot, 'packages/coordinator/dist/bin.js');
const agentsBench = join(repoRoot, 'bench/coordinator.bench.mjs');
const prompt = 'Explain the difference between a process and a thread. '.repeat(4);
const makeRequest = (i) => ({ clientId: `client-${i % 50}`, model: 'bench-model', prompt, maxTokens: 128 });

const makeClient = (port) => {
  const channel = protocol.createTitanChannel(`127.0.0.1:${port}`);
  return {
    channel,
    client: niceGrpc.createClientFactory().use(protocol.createProtoVersionClientMiddleware()).create(protocol.CoordinatorServiceDefinition, channel),
  };
};

/** `count` requests, CONCURRENCY in flight, spread round-robin over `clients`. */
const load = (clients, count) => runUnaryLoad({ clients, count, concurrency: CONCURRENCY, call: (client, i) => client.requestInference(makeRequest(i)), log });

async function withDatabase(fn) {
  const name = `titan_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  try {
    return await fn(url.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

/** Starts `replicas` coordinators (`store` sqlite or postgres), registers the agents with the first, measures. */
async function scenario(label, replicas, store, url, secret) {
  const dirs = [];
  const procs = [];
  try {
    for (let i = 0; i < replicas; i++) {
      const dataDir = mkdtempSync(join(tmpdir(), 'titan-bench-ha-'));
      dirs.push(dataDir);
      const args = [binPath, '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--data-dir', dataDir, '--join-token', JOIN_TOKEN];
      args.push('--log-level', 'info', '--heartbeat-timeout', '60s', '--store', store);
      const env = store === 'postgres' ? { ...process.env, TITAN_POSTGRES_URL: url, TITAN_KEYRING_SECRET: secret } : process.env;
      procs.push(await startListeningChild(args, { env, timeoutMs: 60_000 }));
    }
    const clients = procs.map((p) => makeClient(p.port));
    log(`${label}: registering ${AGENTS} agents with the first replica…`);
    const agents = await startListeningChild([agentsBench, '--serve-agents', String(procs[0].port), String(AGENTS)], { timeoutMs: 120_000 });
    procs.push(agents);
    // Routable everywhere once checked by the first replica and copied by the others.
    for (const { client } of clients) {
      for (let i = 0; (await client.querySystemStatus({})).healthyAgents < AGENTS; i++) {
        if (i > 600) throw new Error(`${label}: agents not routable after 60 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await load(
      clients.map((c) => c.client),
      WARMUP,
    );
    log(`${label}: measuring…`);
    const result = await load(
      clients.map((c) => c.client),
      MEASURED,
    );
    for (const c of clients) c.channel.close();
    return { label, ...result };
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** The reservation statement alone (one round trip per decision) and its mirror, on a fleet of `AGENTS` rows. */
async function statementCost(url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`INSERT INTO fleet_agents (agent_id, snapshot, home_replica, last_seen_ms)
      SELECT 'stmt-' || g, '{}'::jsonb, 'bench', fleet_now_ms() FROM generate_series(1, ${AGENTS}) g`);
    await client.query(`INSERT INTO fleet_load (agent_id, max_jobs) SELECT 'stmt-' || g, 1000000 FROM generate_series(1, ${AGENTS}) g`);
    const reserve = new Float64Array(STATEMENTS);
    const release = new Float64Array(STATEMENTS);
    const limited = new Float64Array(STATEMENTS);
    for (let i = 0; i < STATEMENTS; i++) {
      const agents = [`stmt-${1 + (i % AGENTS)}`, `stmt-${1 + ((i + 1) % AGENTS)}`];
      const jobId = randomUUID();
      const t0 = performance.now();
      await client.query({
        name: 'reserve',
        text: 'SELECT outcome, agent_id, reserved, running, version, held FROM fleet_reserve($1, $2, $3, $4, $5, $6, $7, $8)',
        values: [agents, jobId, `client-${i % 50}`, null, Date.now() + 10_000, Date.now() + 300_000, 0, 'bench'],
      });
      reserve[i] = performance.now() - t0;
      const t1 = performance.now();
      await client.query({
        name: 'reserve',
        text: 'SELECT outcome, agent_id, reserved, running, version, held FROM fleet_reserve($1, $2, $3, $4, $5, $6, $7, $8)',
        values: [agents, `${jobId}-limited`, `client-${i % 50}`, null, Date.now() + 10_000, Date.now() + 300_000, 1_000_000, 'bench'],
      });
      limited[i] = performance.now() - t1;
      const t2 = performance.now();
      await client.query({
        name: 'release',
        text: `WITH gone AS (DELETE FROM fleet_jobs WHERE job_id = $1 RETURNING agent_id, state)
               UPDATE fleet_load l SET reserved = l.reserved - 1, version = l.version + 1 FROM gone
               WHERE l.agent_id = gone.agent_id AND gone.state = 'reserved' RETURNING l.agent_id, l.reserved, l.version`,
        values: [jobId],
      });
      release[i] = performance.now() - t2;
    }
    const us = (xs, q) => (percentile(xs, q) * 1000).toFixed(0);
    return { reserve: [us(reserve, 0.5), us(reserve, 0.99)], limited: [us(limited, 0.5), us(limited, 0.99)], release: [us(release, 0.5), us(release, 0.99)] };
  } finally {
    await client.end();
  }
}

const secret = randomBytes(32).toString('base64');
const rows = [];
rows.push(await scenario('SQLite, 1 node (in memory)', 1, 'sqlite', undefined, undefined));
let cost;
await withDatabase(async (url) => {
  rows.push(await scenario('PostgreSQL, 1 replica', 1, 'postgres', url, secret));
});
await withDatabase(async (url) => {
  rows.push(await scenario('PostgreSQL, 3 replicas', 3, 'postgres', url, secret));
  cost = await statementCost(url);
});

const base = rows[0].rps;
const out = [];
out.push('## Coordinator HA: PostgreSQL replicas vs the SQLite single node');
out.push('');
out.push('Command: `pnpm bench coordinator-ha`.');
out.push('');
out.push(
  `RequestInference with ${AGENTS} simulated agents (heartbeat 2 s, homed on the first replica), ${CONCURRENCY} requests in flight in total ` +
    `(round-robin over the replicas), ${MEASURED} measured after ${WARMUP} warm-up; coordinators are child processes of the built bin, ` +
    'PostgreSQL on the same machine. On PostgreSQL each decision awaits one `fleet_reserve` round trip (atomic reservation); on SQLite it is reserved in memory.',
);
out.push('');
out.push('| setup | requests/s | vs SQLite | p50 (ms) | p99 (ms) | errors |');
out.push('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  out.push(`| ${r.label} | ${r.rps.toFixed(0)} | ${(r.rps / base).toFixed(2)}× | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} |`);
}
out.push('');
out.push(`Shared store's cost per decision (one connection, ${STATEMENTS} sequential statements on ${AGENTS} agent rows, µs p50 / p99):`);
out.push('');
out.push('| statement | p50 (µs) | p99 (µs) |');
out.push('| --- | ---: | ---: |');
out.push(`| \`fleet_reserve\` (2 candidates, no client limit) | ${cost.reserve[0]} | ${cost.reserve[1]} |`);
out.push(`| \`fleet_reserve\` with a client limit (per-client advisory lock + count) | ${cost.limited[0]} | ${cost.limited[1]} |`);
out.push(`| release (delete the job, give the slot back) | ${cost.release[0]} | ${cost.release[1]} |`);
process.stdout.write(`${out.join('\n')}\n`);
process.exit(0);
