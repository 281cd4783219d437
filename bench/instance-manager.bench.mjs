#!/usr/bin/env node
/**
 * Instance-manager heartbeats against etcd, on the same machine in the same run: N instances
 * (default 10,000) each send one health check per second for a window (default 10 s).
 *
 * - Baseline: etcd (Debian's `etcd-server`, installed by this bench when absent), N leases kept
 *   alive over `Lease.LeaseKeepAlive` streams, as etcd's clients do.
 * - The instance manager on SQLite and on PostgreSQL, health checks over TryHealthCheckStream
 *   (the same number of streams) and over unary TryHealthCheck (at most MAX_INFLIGHT in flight).
 * - For reference, a bare nice-grpc server answering the same two RPCs with a constant.
 * - Event fan-out latency to 100 subscribers (SQLite), and each server's memory (RSS).
 *
 * One load generator for every row: plain @grpc/grpc-js in this process, requests encoded once
 * up front; servers run in child processes. Prints one markdown section on stdout; progress on
 * stderr.
 * Env: IM_BENCH_WINDOW_S (default 10), IM_BENCH_INSTANCES (default 10000), IM_BENCH_STREAMS
 *      (default 4), IM_BENCH_BACKENDS (default "sqlite,postgres"), IM_BENCH_MODES (default
 *      "stream,unary"), IM_BENCH_BASELINES (default "etcd,echo"), IM_BENCH_PG_URL (default
 *      postgres://postgres@127.0.0.1:5432/test), IM_BENCH_SERVER_ARGS (extra flags for the
 *      instance manager, space-separated), IM_BENCH_NODE_ARGS (Node.js flags for the instance
 *      manager and echo processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them).
 */
import { setMaxListeners } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import {
  decodeLeaseResponse,
  encodeLeaseGrantRequest,
  encodeLeaseKeepAliveRequest,
  ensureEtcd,
  etcdVersion,
  LEASE_GRANT,
  LEASE_KEEP_ALIVE,
  startEtcd,
} from './lib/etcd.mjs';
import { createLog, importFromPackage, percentile, repoRoot, startListeningChild } from './lib/index.mjs';

const imDir = join(repoRoot, 'packages/instance-manager');
const { createChannel, createClientFactory, ChannelCredentials } = await importFromPackage('instance-manager', 'nice-grpc');
const protocol = await import('@titancompute/protocol');
const {
  instanceManager,
  createProtoVersionClientMiddleware,
  PROTO_VERSION,
  COMPATIBLE_PROTO_VERSIONS,
  PROTO_VERSION_METADATA_KEY,
  PROTO_COMPATIBLE_METADATA_KEY,
} = protocol;
const imEntry = fileURLToPath(import.meta.resolve('@titancompute/instance-manager'));
const binPath = join(dirname(imEntry), 'bin.js');

const WINDOW_S = Number(process.env.IM_BENCH_WINDOW_S ?? 10);
const N = Number(process.env.IM_BENCH_INSTANCES ?? 10_000);
const STREAMS = Number(process.env.IM_BENCH_STREAMS ?? 4);
const list = (name, fallback) => (process.env[name] ?? fallback).split(',').filter(Boolean);
const BACKENDS = list('IM_BENCH_BACKENDS', 'sqlite,postgres');
const MODES = list('IM_BENCH_MODES', 'stream,unary');
const BASELINES = list('IM_BENCH_BASELINES', 'etcd,echo');
const SERVER_ARGS = (process.env.IM_BENCH_SERVER_ARGS ?? '').split(' ').filter(Boolean);
const NODE_ARGS = (process.env.IM_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
/** Beats in flight beyond this are not sent (counted as "not sent"), for every row alike: an overloaded run degrades instead of collapsing. */
const MAX_INFLIGHT = 1000;
const PG_URL = process.env.IM_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const TICK_MS = 10;
/** Every run first sends at the full rate for this long without measuring (JIT, connections, caches), for every row alike. */
const WARMUP_S = 2;
const log = createLog('[im-bench]');
const fmt = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

const TRY = '/instance_manager.v1.TryService';
const {
  TryAddInstanceRequest,
  TryAddInstanceResponse,
  TryHealthCheckRequest,
  TryHealthCheckResponse,
  TryHealthCheckStreamRequest,
  TryHealthCheckStreamResponse,
} = instanceManager;

const ECHO_SERVER = `
import { createServer } from 'nice-grpc';
import { instanceManager } from '@titancompute/protocol';
const server = createServer();
const ok = async () => ({ success: true, message: '' });
server.add(instanceManager.TryServiceDefinition, {
  tryHealthCheck: async () => ({ healthy: true, message: '', status: 1 }),
  async *tryHealthCheckStream(requests) {
    for await (const r of requests) yield { instanceId: r.instanceId, healthy: true, message: '', status: 1 };
  },
  tryAddInstance: ok, tryKillInstance: async () => ({ success: true, message: '', killedInstanceIds: [] }), tryAddChild: ok, tryAddService: ok,
});
const port = await server.listen('127.0.0.1:0');
console.log(JSON.stringify({ msg: 'listening', port }));
process.on('SIGTERM', () => server.shutdown().then(() => process.exit(0)));
`;

/** A server in a child process, run from the instance manager's folder (so `nice-grpc` resolves for the echo). */
const startChild = (args) => startListeningChild([...NODE_ARGS, ...args], { cwd: imDir, timeoutMs: 60_000 });

/**
 * `count` grpc-js clients of `address`, each on its own connection (a distinct channel option
 * keeps grpc-js from sharing one subchannel between them).
 */
function rawClients(address, count = STREAMS) {
  const clients = Array.from({ length: count }, (_, i) => new grpc.Client(address, grpc.credentials.createInsecure(), { 'titan.bench.connection': i }));
  return {
    list: clients,
    close: () => {
      for (const c of clients) c.close();
    },
  };
}

/** The instance manager's proto_version headers. */
function imMetadata() {
  const md = new grpc.Metadata();
  md.set(PROTO_VERSION_METADATA_KEY, PROTO_VERSION);
  md.set(PROTO_COMPATIBLE_METADATA_KEY, COMPATIBLE_PROTO_VERSIONS.join(','));
  return md;
}

const asBuffer = (b) => b;
/** One unary call with a request already encoded. */
function unary(client, path, bytes, decode, metadata, timeoutMs = 10_000) {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(path, asBuffer, decode, bytes, metadata, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

/** Runs `fn(i)` for i in [0, n) with at most `width` running at once. */
async function forEachLimited(n, width, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** CPU seconds used so far by every PostgreSQL server process, by pid (from /proc). */
function postgresCpu() {
  const byPid = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') byPid.set(pid, cpuSeconds(pid));
    } catch {}
  }
  return byPid;
}

/** CPU seconds PostgreSQL used between two {@link postgresCpu} readings (processes alive at both). */
function postgresCpuSince(before) {
  let total = 0;
  for (const [pid, seconds] of postgresCpu()) if (before.has(pid)) total += seconds - before.get(pid);
  return total;
}

/** Resident memory of a process, now and at its peak, in MB (from /proc). */
function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1]);
    return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
  } catch {
    return { rssMb: NaN, peakMb: NaN };
  }
}

/**
 * Paces N beats per second in 10 ms ticks: N × WARMUP_S beats of warm-up, then exactly
 * N × WINDOW_S measured ones; `send(i, sentAt)` sends instance i's beat unless MAX_INFLIGHT
 * beats are already in flight. Returns once every beat sent was answered (or failed), at most
 * 5 s after the window.
 */
async function pace(state, send) {
  const perTick = N / (1000 / TICK_MS);
  const warm = N * WARMUP_S;
  const total = warm + N * WINDOW_S;
  const start = performance.now();
  let t0 = Infinity;
  let cpu0;
  let server0;
  let db0;
  let due = 0;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const target = Math.min(total, Math.floor(((performance.now() - start) / TICK_MS + 1) * perTick));
      for (; due < target; due++) {
        const now = performance.now();
        const measured = due >= warm;
        if (measured && t0 === Infinity) {
          t0 = now;
          cpu0 = process.cpuUsage();
          server0 = cpuSeconds(state.pid);
          db0 = postgresCpu();
        }
        if (state.inflight >= MAX_INFLIGHT) {
          if (measured) state.skipped++;
          continue;
        }
        state.inflight++;
        if (measured) state.sent++;
        send(due % N, now, measured);
      }
      if (due >= total) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  const windowMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const serverCpu = cpuSeconds(state.pid) - server0;
  const dbCpu = postgresCpuSince(db0);
  const drainUntil = Date.now() + 5000;
  while (state.inflight > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
  state.finished = true;
  logPerSecond(state.label, state, t0);
  return {
    n: N,
    sent: state.sent,
    skipped: state.skipped,
    done: state.lat.length,
    rate: state.lat.length / WINDOW_S,
    p50: percentile(state.lat, 0.5),
    p99: percentile(state.lat, 0.99),
    errors: state.errors + state.inflight,
    unhealthy: state.unhealthy,
    serverCpuPct: (100 * serverCpu) / (windowMs / 1000),
    loadCpuPct: (100 * (cpu.user + cpu.system)) / 1000 / windowMs,
    dbCpuPct: (100 * dbCpu) / (windowMs / 1000),
  };
}

const newState = (pid) => ({ pid, lat: [], at: [], inflight: 0, sent: 0, skipped: 0, errors: 0, unhealthy: 0, finished: false });

/** Records one answer (unless its beat was a warm-up one): its latency, and when it was sent. */
function answered(state, sentAt, measured) {
  if (!measured) return false;
  state.lat.push(performance.now() - sentAt);
  state.at.push(sentAt);
  return true;
}

/** p99 of each second of the window, on stderr: shows whether the tail is a warm-up or periodic. */
function logPerSecond(label, state, t0) {
  const buckets = Array.from({ length: Math.ceil(WINDOW_S) }, () => []);
  for (let i = 0; i < state.at.length; i++) buckets[Math.min(buckets.length - 1, Math.floor((state.at[i] - t0) / 1000))]?.push(state.lat[i]);
  log(`${label}: p99 per second (ms): ${buckets.map((b) => fmtNum(percentile(b, 0.99))).join(' ')}`);
}
const fmtNum = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');

/**
 * Keep-alive load over STREAMS bidi streams (instance i on stream i % STREAMS). Answers come in
 * request order, so each stream matches them to its sends first in, first out.
 */
async function streamLoad({ clients, path, metadata, requests, decode, healthy, pid, label }) {
  const state = { ...newState(pid), label };
  const streams = clients.list.map((client) => {
    // When each beat in flight was sent, in order; warm-up beats negated (times are positive).
    const sentAt = [];
    let head = 0;
    const call = client.makeBidiStreamRequest(path, asBuffer, decode, metadata(), {});
    call.on('data', (res) => {
      const t = sentAt[head++];
      const measured = answered(state, Math.abs(t), t > 0);
      if (head > 4096) {
        sentAt.splice(0, head);
        head = 0;
      }
      state.inflight--;
      if (measured && !healthy(res)) state.unhealthy++;
    });
    call.on('error', (err) => {
      if (state.finished) return;
      const lost = sentAt.length - head;
      state.errors += lost;
      state.inflight -= lost;
      head = sentAt.length;
      log('stream failed:', err.message);
    });
    return { call, sentAt };
  });
  const result = await pace(state, (i, t, measured) => {
    const s = streams[i % streams.length];
    s.sentAt.push(measured ? t : -t);
    s.call.write(requests[i]);
  });
  for (const s of streams) s.call.cancel();
  return result;
}

/** Unary load: instance i's beat on client i % STREAMS, at most MAX_INFLIGHT in flight. */
async function unaryLoad({ clients, path, metadata, requests, decode, healthy, pid, label }) {
  const state = { ...newState(pid), label };
  const md = metadata();
  return pace(state, (i, t, measured) => {
    clients.list[i % clients.list.length].makeUnaryRequest(path, asBuffer, decode, requests[i], md, { deadline: Date.now() + 5000 }, (err, res) => {
      state.inflight--;
      if (err) return void (measured && state.errors++);
      if (answered(state, t, measured) && !healthy(res)) state.unhealthy++;
    });
  });
}

const ids = Array.from({ length: N }, (_, i) => `bench-${i}`);
const encode = (Type, msg) => Buffer.from(Type.encode(msg).finish());
const imRequests = {
  stream: ids.map((instanceId) => encode(TryHealthCheckStreamRequest, { instanceId })),
  unary: ids.map((instanceId) => encode(TryHealthCheckRequest, { instanceId })),
};

/** The instance manager's (or the echo's) health checks over `mode` (stream or unary). */
function imLoad(address, mode, pid) {
  const clients = rawClients(address);
  const common = { clients, metadata: imMetadata, requests: imRequests[mode], healthy: (r) => r.healthy, pid, label: `${address} ${mode}` };
  const run =
    mode === 'stream'
      ? streamLoad({ ...common, path: `${TRY}/TryHealthCheckStream`, decode: (b) => TryHealthCheckStreamResponse.decode(b) })
      : unaryLoad({ ...common, path: `${TRY}/TryHealthCheck`, decode: (b) => TryHealthCheckResponse.decode(b) });
  return run.finally(() => clients.close());
}

/** Registers the N instances (TryAddInstance, 500 at a time). */
async function registerInstances(address) {
  const clients = rawClients(address);
  const md = imMetadata();
  const t0 = performance.now();
  await forEachLimited(N, 500, async (i) => {
    const bytes = encode(TryAddInstanceRequest, { instance: { id: ids[i], type: 7, hostname: 'bench', address: `${ids[i]}:1`, metadata: {} } });
    const res = await unary(clients.list[i % clients.list.length], `${TRY}/TryAddInstance`, bytes, (b) => TryAddInstanceResponse.decode(b), md);
    if (!res.success) throw new Error(`TryAddInstance ${ids[i]}: ${res.message}`);
  });
  clients.close();
  return (performance.now() - t0) / 1000;
}

/** etcd: grant N leases (TTL 60 s), then keep them alive over STREAMS LeaseKeepAlive streams. */
async function etcdRun(etcd) {
  const server = await startEtcd(etcd);
  try {
    const clients = rawClients(server.address);
    const t0 = performance.now();
    const leaseIds = ids.map((_, i) => i + 1);
    await forEachLimited(N, 200, async (i) => {
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await unary(
            clients.list[i % clients.list.length],
            LEASE_GRANT,
            encodeLeaseGrantRequest({ ttl: 60, id: leaseIds[i] }),
            decodeLeaseResponse,
            new grpc.Metadata(),
          );
          if (res.error || res.id !== leaseIds[i]) throw new Error(`LeaseGrant ${leaseIds[i]}: ${res.error || `got id ${res.id}`}`);
          return;
        } catch (err) {
          // The first calls may come before etcd has elected itself leader.
          if (attempt >= 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    const grantS = (performance.now() - t0) / 1000;
    log(`etcd: ${N} leases granted in ${grantS.toFixed(1)} s; keep-alives for ${WINDOW_S} s`);
    const r = await streamLoad({
      clients,
      path: LEASE_KEEP_ALIVE,
      metadata: () => new grpc.Metadata(),
      requests: leaseIds.map(encodeLeaseKeepAliveRequest),
      decode: decodeLeaseResponse,
      healthy: (res) => res.ttl > 0,
      pid: server.pid,
      label: 'etcd',
    });
    clients.close();
    return { ...r, ...memoryOf(server.pid), setupS: grantS };
  } finally {
    await server.stop();
  }
}

/** 100 subscribers; E events from TryAddInstance; latency from call start to each subscriber's receipt. */
async function fanOut(port, subscribers = 100, events = 200) {
  const factory = createClientFactory().use(createProtoVersionClientMiddleware());
  const channels = Array.from({ length: STREAMS }, () => createChannel(`127.0.0.1:${port}`, ChannelCredentials.createInsecure()));
  const sub = channels.map((ch) => factory.create(instanceManager.SubscribeServiceDefinition, ch));
  const tr = factory.create(instanceManager.TryServiceDefinition, channels[0]);
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
        for await (const m of sub[s % sub.length].subscribeToInstanceUpdates({ instanceTypes: [5] }, { signal: controller.signal })) {
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
    await tr.tryAddInstance({ instance: { id, type: 5, hostname: 'fan', address: '', metadata: {} } });
    commit.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.race([finished, new Promise((r) => setTimeout(r, 10_000))]);
  controller.abort();
  for (const ch of channels) ch.close();
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
const notes = [];
let etcdLabel = 'etcd';
if (BASELINES.includes('etcd')) {
  const etcd = ensureEtcd(log);
  if (etcd) {
    etcdLabel = etcdVersion(etcd).replace(/^etcd Version:\s*/, 'etcd ');
    log(`baseline: ${etcdLabel}, ${N} leases`);
    rows.push({ server: `${etcdLabel} (baseline)`, storage: 'its WAL', rpc: `LeaseKeepAlive, ${STREAMS} streams`, ...(await etcdRun(etcd)) });
  } else {
    notes.push('etcd could not be installed (`apt-get install -y etcd-server`): its baseline row is missing.');
  }
}
if (BASELINES.includes('echo')) {
  for (const mode of MODES) {
    log(`reference: bare nice-grpc echo, ${mode}`);
    const srv = await startChild(['--input-type=module', '-e', ECHO_SERVER]);
    const r = await imLoad(`127.0.0.1:${srv.port}`, mode, srv.child.pid);
    rows.push({ server: 'bare nice-grpc echo (reference)', storage: '—', rpc: rpcLabel(mode), ...r, ...memoryOf(srv.child.pid) });
    await srv.stop();
  }
}

function rpcLabel(mode) {
  return mode === 'stream' ? `TryHealthCheckStream, ${STREAMS} streams` : `TryHealthCheck (unary), ${STREAMS} channels`;
}

const pgInfo = BACKENDS.includes('postgres') ? await pgReachable() : { ok: false };
if (BACKENDS.includes('postgres') && !pgInfo.ok) notes.push('PostgreSQL was unreachable: its rows are missing.');
let fan;
const flags = ['--host', '127.0.0.1', '--port', '0', '--log-level', 'info', '--stale-timeout', '60s', ...SERVER_ARGS];
for (const backend of BACKENDS.filter((b) => b !== 'postgres' || pgInfo.ok)) {
  const dir = mkdtempSync(join(tmpdir(), 'im-bench-'));
  let storage = backend;
  let schema;
  if (backend === 'postgres') {
    schema = `im_bench_${process.pid}`;
    storage = `${PG_URL}?options=-c%20search_path%3D${schema}`;
    const c = new pgInfo.pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await c.end();
  }
  const srv = await startChild([binPath, '--storage', storage, '--data-dir', dir, ...flags]);
  const address = `127.0.0.1:${srv.port}`;
  log(`instance manager on ${backend}: registering ${N} instances`);
  const setupS = await registerInstances(address);
  log(`registered in ${setupS.toFixed(1)} s; server RSS ${fmt(memoryOf(srv.child.pid).rssMb, 0)} MB`);
  if (backend === 'postgres') {
    // Let PostgreSQL settle after the burst of registrations (as a long-running one would be):
    // statistics and dead tuples of 10,000 inserts, and their checkpoint, before measuring.
    const c = new pgInfo.pg.Client({ connectionString: storage });
    await c.connect();
    await c.query('VACUUM ANALYZE instances');
    await c.query('VACUUM ANALYZE events');
    await c.query('CHECKPOINT');
    await c.end();
  }
  for (const mode of MODES) {
    log(`instance manager on ${backend}, ${mode}`);
    const r = await imLoad(address, mode, srv.child.pid);
    rows.push({
      server: 'instance manager',
      storage: backend === 'sqlite' ? 'SQLite' : 'PostgreSQL',
      rpc: rpcLabel(mode),
      mode,
      backend,
      ...r,
      ...memoryOf(srv.child.pid),
      setupS,
    });
    log(`server RSS ${fmt(rows.at(-1).rssMb, 0)} MB (peak ${fmt(rows.at(-1).peakMb, 0)} MB)`);
  }
  if (backend === 'sqlite') {
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

const base = rows.find((r) => r.server.startsWith('etcd'));
const vsBase = (r) => (base ? `${(r.p99 / base.p99).toFixed(2)}×` : 'n/a');
const out = [];
out.push('## Instance manager: heartbeats against etcd, event fan-out, memory', '');
out.push(
  `${N.toLocaleString('en')} instances each send one health check per second (spread evenly, ${TICK_MS} ms ticks) for ${WINDOW_S} s, measured after ${WARMUP_S} s of the same load as warm-up (the ${(N * WINDOW_S).toLocaleString('en')} beats after the warm-up's ${(N * WARMUP_S).toLocaleString('en')}). ` +
    'The instances are registered first (etcd: LeaseGrant; instance manager: TryAddInstance, 500 at a time), and PostgreSQL is vacuumed and checkpointed after that burst. ' +
    `Baseline in the same run: ${etcdLabel} (Debian's \`etcd-server\`, started by the bench on loopback ports; installed when absent), ` +
    `${N.toLocaleString('en')} leases kept alive over \`Lease.LeaseKeepAlive\` streams as etcd's clients do. ` +
    `One load generator for every row: plain @grpc/grpc-js in the bench process, requests encoded up front, ${STREAMS} connections; ` +
    'each stream carries a quarter of the instances and is answered in order. Servers run in child processes on the same 2-core machine. ' +
    `Latency is client-observed (send → answer). At most ${MAX_INFLIGHT} beats are in flight; beats due beyond that are not sent, ` +
    '"sustained" is beats answered per second of the window. The instance manager runs with its defaults (stale timeout 60 s for the bench, ' +
    'health checks written in one transaction per 100 ms flush interval); "server CPU" is the server process\'s CPU over the window (200 % = both cores), ' +
    '"PostgreSQL CPU" that of every PostgreSQL process (its rows only), "load CPU" the load generator\'s; RSS is the server\'s resident memory after the run, and its peak.',
  '',
);
out.push(
  '| server | storage | RPC | sustained beats/s | p50 ms | p99 ms | p99 vs etcd | not sent | errors | unhealthy | server CPU | PostgreSQL CPU | load CPU | RSS MB (peak) |',
);
out.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  out.push(
    `| ${r.server} | ${r.storage} | ${r.rpc} | ${r.rate.toFixed(0)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${vsBase(r)} | ${r.skipped} | ${r.errors} | ${r.unhealthy} | ` +
      `${fmt(r.serverCpuPct, 0)} % | ${r.backend === 'postgres' ? `${fmt(r.dbCpuPct, 0)} %` : '—'} | ${fmt(r.loadCpuPct, 0)} % | ${fmt(r.rssMb, 0)} (${fmt(r.peakMb, 0)}) |`,
  );
}
for (const n of notes) out.push('', n);
if (fan) {
  out.push(
    '',
    `Event fan-out (SQLite, with the ${N.toLocaleString('en')} instances registered): 100 subscribers, 200 \`TryAddInstance\` events 10 ms apart; latency from the call's start to each subscriber's receipt. Baseline: the call's own latency (commit).`,
    '',
  );
  out.push('| delivered | p50 ms | p99 ms | commit p50 ms | commit p99 ms | p99 delivery / commit |');
  out.push('|---:|---:|---:|---:|---:|---:|');
  out.push(
    `| ${fan.delivered}/${fan.want} | ${fmt(fan.p50)} | ${fmt(fan.p99)} | ${fmt(fan.commitP50)} | ${fmt(fan.commitP99)} | ${(fan.p99 / fan.commitP99).toFixed(2)}× |`,
  );
}

const im = (backend, mode) => rows.find((r) => r.backend === backend && r.mode === mode);
const met = (ok) => (ok ? 'MET' : 'NOT MET');
const verdicts = [];
const sqliteStream = im('sqlite', 'stream');
if (base && sqliteStream) {
  const ok = sqliteStream.rate >= base.rate && sqliteStream.p99 <= base.p99 && sqliteStream.errors === 0 && sqliteStream.skipped === 0;
  verdicts.push(
    `SQLite, streaming (goal: sustained ≥ etcd's, p99 ≤ etcd's): ${met(ok)} — ${sqliteStream.rate.toFixed(0)}/s at p99 ${fmt(sqliteStream.p99)} ms against etcd's ${base.rate.toFixed(0)}/s at p99 ${fmt(base.p99)} ms.`,
  );
}
const pgStream = im('postgres', 'stream');
if (base && pgStream) {
  const ok = pgStream.rate * 1.5 >= base.rate && pgStream.p99 <= 1.5 * base.p99 && pgStream.errors === 0;
  verdicts.push(
    `PostgreSQL, streaming (goal: within 1.5× of etcd — sustained ≥ etcd's / 1.5, p99 ≤ 1.5 × etcd's): ${met(ok)} — ${pgStream.rate.toFixed(0)}/s at p99 ${fmt(pgStream.p99)} ms (p50 ${fmt(pgStream.p50)} ms).`,
  );
}
for (const backend of ['sqlite', 'postgres']) {
  const measured = rows.filter((r) => r.backend === backend);
  if (measured.length === 0) continue;
  const peak = Math.max(...measured.map((r) => r.peakMb));
  verdicts.push(
    `Memory, ${backend === 'sqlite' ? 'SQLite' : 'PostgreSQL'} (goal: instance manager with ${N.toLocaleString('en')} instances < 200 MB RSS): ${met(peak < 200)} — peak ${fmt(peak, 0)} MB.`,
  );
}
out.push('');
if (verdicts.length === 0) out.push('**Verdict:** no goal could be judged in this run (etcd or the instance-manager rows are missing).');
else out.push('**Verdicts:**', '', ...verdicts.map((v) => `- ${v}`));
process.stdout.write(`${out.join('\n')}\n`);
