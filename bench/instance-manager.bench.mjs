#!/usr/bin/env node
/**
 * Instance-manager heartbeat capacity: N registered instances each calling TryHealthCheck
 * once per second for a bounded window, per backend (memory, sqlite, postgres); plus event
 * fan-out latency to 100 subscribers. Baseline in the same run: a bare nice-grpc unary
 * server answering the same RPC (no storage, no middleware) at the same rate.
 *
 * Servers run in child processes; the load runs here over a handful of channels.
 * Prints one markdown section on stdout; progress on stderr.
 * Env: IM_BENCH_WINDOW_S (default 8), IM_BENCH_SIZES (default "1000,10000"),
 *      IM_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test).
 */
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLog, importFromPackage, percentile, repoRoot, startListeningChild } from './lib/index.mjs';

const imDir = join(repoRoot, 'packages/instance-manager');
const { createChannel, createClientFactory, ChannelCredentials } = await importFromPackage('instance-manager', 'nice-grpc');
const protocol = await import('@titancompute/protocol');
const { instanceManager, createProtoVersionClientMiddleware } = protocol;
const imEntry = fileURLToPath(import.meta.resolve('@titancompute/instance-manager'));
const binPath = join(dirname(imEntry), 'bin.js');

const WINDOW_S = Number(process.env.IM_BENCH_WINDOW_S ?? 5);
/** Calls in flight beyond this are not sent (counted as skipped) so an overloaded run degrades instead of collapsing. */
const MAX_INFLIGHT = 1000;
const SIZES = (process.env.IM_BENCH_SIZES ?? '1000,10000').split(',').map(Number);
const PG_URL = process.env.IM_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const CHANNELS = 4;
const log = createLog('[im-bench]');

const ECHO_SERVER = `
import { createServer } from 'nice-grpc';
import { instanceManager } from '@titancompute/protocol';
const server = createServer();
const ok = async () => ({ success: true, message: '' });
server.add(instanceManager.TryServiceDefinition, {
  tryHealthCheck: async () => ({ healthy: true, message: '' }),
  tryAddInstance: ok, tryKillInstance: async () => ({ success: true, message: '', killedInstanceIds: [] }), tryAddChild: ok, tryAddService: ok,
});
const port = await server.listen('127.0.0.1:0');
console.log(JSON.stringify({ msg: 'listening', port }));
process.on('SIGTERM', () => server.shutdown().then(() => process.exit(0)));
`;

/** A server in a child process, run from the instance manager's folder (so `nice-grpc` resolves for the echo). */
const startChild = (args) => startListeningChild(args, { cwd: imDir });

function clients(port, def) {
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  const channels = Array.from({ length: CHANNELS }, () => createChannel(`127.0.0.1:${port}`, ChannelCredentials.createInsecure()));
  return {
    list: channels.map((ch) => factory.create(def, ch)),
    close: () => {
      for (const c of channels) c.close();
    },
  };
}

/** N instances × 1 call/s for WINDOW_S, spread evenly over 10 ms ticks. */
async function heartbeatLoad(port, n) {
  const c = clients(port, instanceManager.TryServiceDefinition);
  const ids = Array.from({ length: n }, (_, i) => `bench-${i}`);
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      ids
        .slice(i, i + 500)
        .map((id, j) => c.list[j % CHANNELS].tryAddInstance({ instance: { id, type: 7, hostname: 'bench', address: `${id}:1`, metadata: {} } })),
    );
  }
  const lat = [];
  let errors = 0;
  let unhealthy = 0;
  let skipped = 0;
  const inflight = new Set();
  const tickMs = 10;
  const perTick = n / (1000 / tickMs);
  const t0 = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - t0;
      if (elapsed >= WINDOW_S * 1000) {
        clearInterval(timer);
        return resolve();
      }
      const due = Math.floor((elapsed / tickMs + 1) * perTick);
      for (; sent < due; sent++) {
        if (inflight.size >= MAX_INFLIGHT) {
          skipped++;
          continue;
        }
        const id = ids[sent % n];
        const start = performance.now();
        const p = c.list[sent % CHANNELS]
          .tryHealthCheck({ instanceId: id }, { signal: AbortSignal.timeout(5000) })
          .then((r) => {
            lat.push(performance.now() - start);
            if (!r.healthy) unhealthy++;
          })
          .catch(() => errors++)
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
    }, tickMs);
  });
  await Promise.all([...inflight]);
  c.close();
  return { n, sent, skipped, done: lat.length, rate: lat.length / WINDOW_S, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), errors, unhealthy };
}

/** 100 subscribers; E events from TryAddInstance; latency from call start to each subscriber's receipt. */
async function fanOut(port, subscribers = 100, events = 200) {
  const sub = clients(port, instanceManager.SubscribeServiceDefinition);
  const tr = clients(port, instanceManager.TryServiceDefinition);
  const sentAt = new Map();
  const lat = [];
  const commit = [];
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  let ready = 0;
  const want = subscribers * events;
  let got = 0;
  let allDone;
  const finished = new Promise((r) => (allDone = r));
  for (let s = 0; s < subscribers; s++) {
    (async () => {
      try {
        for await (const m of sub.list[s % CHANNELS].subscribeToInstanceUpdates({ instanceTypes: [5] }, { signal: controller.signal })) {
          if (m.caughtUp) ready++;
          const t = m.event && sentAt.get(m.event.instanceId);
          if (t !== undefined) {
            lat.push(performance.now() - t);
            if (++got === want) allDone();
          }
        }
      } catch {}
    })();
  }
  while (ready < subscribers) await new Promise((r) => setTimeout(r, 20));
  for (let i = 0; i < events; i++) {
    const id = `fan-${i}`;
    const t = performance.now();
    sentAt.set(id, t);
    await tr.list[0].tryAddInstance({ instance: { id, type: 5, hostname: 'fan', address: '', metadata: {} } });
    commit.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.race([finished, new Promise((r) => setTimeout(r, 10_000))]);
  controller.abort();
  sub.close();
  tr.close();
  return {
    delivered: lat.length,
    want,
    p50: percentile(lat, 0.5),
    p99: percentile(lat, 0.99),
    commitP50: percentile(commit, 0.5),
    commitP99: percentile(commit, 0.99),
  };
}

async function pgReachable() {
  const pg = (await importFromPackage('instance-manager', 'pg')).default;
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    return { ok: true, pg };
  } catch (err) {
    log('postgres unreachable, skipping:', err.message);
    return { ok: false };
  } finally {
    await c.end().catch(() => {});
  }
}

const rows = [];
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const baseline = {};
for (const n of SIZES) {
  log(`baseline echo, ${n} instances`);
  const srv = await startChild(['--input-type=module', '-e', ECHO_SERVER]);
  baseline[n] = await heartbeatLoad(srv.port, n);
  await srv.stop();
  rows.push({ backend: 'baseline (bare nice-grpc echo)', ...baseline[n] });
}
const pgInfo = await pgReachable();
const backends = ['memory', 'sqlite', ...(pgInfo.ok ? ['postgres'] : [])].filter(
  (b) => !process.env.IM_BENCH_BACKENDS || process.env.IM_BENCH_BACKENDS.split(',').includes(b),
);
let fan;
for (const backend of backends) {
  for (const n of SIZES) {
    log(`${backend}, ${n} instances`);
    const dir = mkdtempSync(join(tmpdir(), 'im-bench-'));
    let storage = backend;
    let schema;
    if (backend === 'postgres') {
      schema = `im_bench_${process.pid}_${n}`;
      storage = `${PG_URL}?options=-c%20search_path%3D${schema}`;
      const c = new pgInfo.pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await c.end();
    }
    const srv = await startChild([
      binPath,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--storage',
      storage,
      '--data-dir',
      dir,
      '--log-level',
      'info',
      '--stale-timeout',
      '60s',
    ]);
    const r = await heartbeatLoad(srv.port, n);
    rows.push({ backend, ...r });
    if (backend === 'sqlite' && n === SIZES[0]) {
      log('fan-out to 100 subscribers (sqlite)');
      fan = await fanOut(srv.port);
    }
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
    if (schema) {
      const c = new pgInfo.pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    }
  }
}

const out = [];
out.push('## Instance manager: heartbeat capacity and event fan-out', '');
out.push(
  `N registered instances each call \`TryHealthCheck\` once per second (spread evenly) for ${WINDOW_S} s over ${CHANNELS} channels; ` +
    'the server runs in a child process, the load in the bench process, on the same machine. ' +
    'Baseline: a bare nice-grpc server answering the same RPC with a constant (no middleware, no storage) at the same rate. ' +
    `Latency is client-observed (includes client-side queuing); at most ${MAX_INFLIGHT} calls are in flight, heartbeats due beyond that are not sent, so "sustained" is what the pair client+server really completed per second.`,
  '',
);
out.push(
  `| backend | instances | target calls/s | sustained calls/s | p50 ms | p99 ms | p99 vs baseline | not sent (>${MAX_INFLIGHT} in flight) | errors | unhealthy |`,
);
out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const b = baseline[r.n];
  out.push(
    `| ${r.backend} | ${r.n} | ${r.n} | ${r.rate.toFixed(0)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${(r.p99 / b.p99).toFixed(2)}× | ${r.skipped} | ${r.errors} | ${r.unhealthy} |`,
  );
}
if (!pgInfo.ok) out.push('', 'PostgreSQL was unreachable: its rows are missing.');
if (fan) {
  out.push(
    '',
    `Event fan-out (SQLite): 100 subscribers, 200 \`TryAddInstance\` events 10 ms apart; latency from the call's start to each subscriber's receipt. Baseline: the call's own latency (commit).`,
    '',
  );
  out.push('| delivered | p50 ms | p99 ms | commit p50 ms | commit p99 ms | p99 delivery / commit |');
  out.push('|---:|---:|---:|---:|---:|---:|');
  out.push(
    `| ${fan.delivered}/${fan.want} | ${fmt(fan.p50)} | ${fmt(fan.p99)} | ${fmt(fan.commitP50)} | ${fmt(fan.commitP99)} | ${(fan.p99 / fan.commitP99).toFixed(2)}× |`,
  );
}
const target = rows.find((r) => r.backend === 'sqlite' && r.n === 10000);
out.push('');
if (target) {
  const met = target.p99 < 20 && target.rate >= 0.95 * 10000 && target.errors === 0 && target.skipped === 0;
  out.push(
    `**Verdict:** target (SQLite, 10,000 instances at 1 heartbeat/s, p99 < 20 ms) ${met ? 'MET' : 'NOT MET'}: ` +
      `${target.rate.toFixed(0)} calls/s sustained, p99 ${fmt(target.p99)} ms (${(target.p99 / baseline[10000].p99).toFixed(2)}× the bare-gRPC baseline's ${fmt(baseline[10000].p99)} ms).`,
  );
} else {
  out.push('**Verdict:** the 10,000-instance SQLite run was not part of this run (IM_BENCH_SIZES).');
}
process.stdout.write(`${out.join('\n')}\n`);
