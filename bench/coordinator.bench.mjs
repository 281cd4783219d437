#!/usr/bin/env node
/**
 * RequestInference throughput and latency of the coordinator with 10, 100 and 1,000 registered
 * agents (fake agents registered over gRPC, each with a live ReportHealth stream sending
 * heartbeats), against a bare @grpc/grpc-js unary server that answers a canned
 * InferenceResponse of the same size, measured in the same run, with the same client and
 * concurrency. Both servers run as child processes on 127.0.0.1. Prints one markdown section.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLog, importFromPackage, percentile, repoRoot, startListeningChild } from './lib/index.mjs';

const protocol = await import('@titancompute/protocol');

const CONCURRENCY = 8;
const WARMUP = 400;
const MEASURED = 4000;
const AGENT_COUNTS = [10, 100, 1000];
const HEARTBEAT_MS = 2000;
const JOIN_TOKEN = 'bench-join-token';
const log = createLog();

/** Registering 1,000 agents on a loaded machine can take a while: no start deadline. */
const startChild = (args) => startListeningChild(args, { timeoutMs: Infinity });

async function load(client, count, makeRequest) {
  const latencies = new Float64Array(count);
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        const i = next++;
        const t0 = performance.now();
        try {
          await client.requestInference(makeRequest(i));
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

class PushQueue {
  items = [];
  waiters = [];
  push(x) {
    const w = this.waiters.shift();
    if (w) w({ value: x, done: false });
    else this.items.push(x);
  }
  end() {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
  }
  [Symbol.asyncIterator]() {
    return {
      next: () =>
        this.items.length
          ? Promise.resolve({ value: this.items.shift(), done: false })
          : this.ended
            ? Promise.resolve({ done: true, value: undefined })
            : new Promise((r) => this.waiters.push(r)),
    };
  }
}

async function registerAgents(client, niceGrpc, count, endpoint) {
  const metadata = niceGrpc.Metadata({ authorization: `Bearer ${JOIN_TOKEN}` });
  const agents = [];
  for (let start = 0; start < count; start += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, count - start) }, async (_, k) => {
        const i = start + k;
        const agentId = `agent-${String(i).padStart(5, '0')}`;
        const gpu = i % 4 !== 3;
        const reg = {
          agentId,
          // One loopback server answers the coordinator's endpoint check for every simulated agent.
          endpoint,
          agentCredential: randomBytes(32).toString('base64url'),
          totalVramMb: gpu ? 24_000 * (1 + (i % 4)) : 0,
          totalRamMb: 64_000,
          maxJobs: 100_000,
          supportedModels: ['bench-model', i % 2 ? 'other-model' : 'third-model'],
          engine: 'fake',
        };
        await client.registerAgent(reg, { metadata });
        const queue = new PushQueue();
        const abort = new AbortController();
        let sent = 0;
        const update = () => ({
          agentId,
          // The first update of a stream proves the agent's identity.
          ...(sent++ === 0 ? { agentCredential: reg.agentCredential } : {}),
          freeVramMb: Math.floor(reg.totalVramMb * (0.5 + (i % 7) / 14)),
          freeRamMb: 48_000,
          runningJobs: i % 3,
          queuedJobs: 0,
          cpuPercent: 20,
          rttMs: 1 + (i % 20),
          timestamp: Date.now(),
          totalRamMb: 64_000,
        });
        const stream = client.reportHealth(queue, { metadata, signal: abort.signal });
        const acked = (async () => {
          try {
            for await (const _ of stream) void _;
          } catch {}
        })();
        queue.push(update());
        const timer = setInterval(() => queue.push(update()), HEARTBEAT_MS + (i % 100));
        agents.push({
          stop: async () => {
            clearInterval(timer);
            queue.end();
            abort.abort();
            await acked;
          },
        });
      }),
    );
  }
  return agents;
}

async function main() {
  const niceGrpc = await importFromPackage('coordinator', 'nice-grpc');
  const makeClient = (port) => {
    const channel = protocol.createTitanChannel(`127.0.0.1:${port}`);
    return {
      channel,
      client: niceGrpc.createClientFactory().use(protocol.createProtoVersionClientMiddleware()).create(protocol.CoordinatorServiceDefinition, channel),
    };
  };
  const prompt = 'Explain the difference between a process and a thread. '.repeat(4);
  const makeRequest = (i) => ({ clientId: `client-${i % 50}`, model: 'bench-model', prompt, maxTokens: 128 });
  const rows = [];
  const binPath = join(repoRoot, 'packages/coordinator/dist/bin.js');

  for (const count of AGENT_COUNTS) {
    // Coordinator first, so the echo's canned token has the coordinator's real token size.
    const dataDir = mkdtempSync(join(tmpdir(), 'titan-bench-coord-'));
    const coord = await startChild([
      binPath,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--http-port',
      '0',
      '--data-dir',
      dataDir,
      '--join-token',
      JOIN_TOKEN,
      '--log-level',
      'info',
      '--heartbeat-timeout',
      '60s',
    ]);
    const c = makeClient(coord.port);
    log(`registering ${count} agents (separate process)…`);
    const agentsProc = await startChild([fileURLToPath(import.meta.url), '--serve-agents', String(coord.port), String(count)]);
    const status = await c.client.querySystemStatus({});
    if (status.totalAgents !== count) throw new Error(`expected ${count} agents, have ${status.totalAgents}`);
    // Routable once the coordinator has checked each endpoint (in the background).
    for (let i = 0; (await c.client.querySystemStatus({})).healthyAgents < count; i++) {
      if (i > 600) throw new Error(`agents not routable after 60 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const sample = await c.client.requestInference(makeRequest(0));
    await load(c.client, WARMUP, makeRequest);
    log(`measuring coordinator with ${count} agents…`);
    const coordResult = await load(c.client, MEASURED, makeRequest);

    // The echo runs while the agent simulator (a process on the same 2 cores) keeps its
    // health streams to the coordinator going, so both measurements share the same machine load.
    const echo = await startChild([fileURLToPath(import.meta.url), '--serve-echo', String(sample.sessionToken.length)]);
    const e = makeClient(echo.port);
    await load(e.client, WARMUP, makeRequest);
    log(`measuring bare echo (${count} agents row)…`);
    const echoResult = await load(e.client, MEASURED, makeRequest);
    e.channel.close();
    await echo.stop();

    await agentsProc.stop();
    c.channel.close();
    await coord.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rows.push({ count, coord: coordResult, echo: echoResult });
  }

  const f = (x, d = 2) => x.toFixed(d);
  const last = rows[rows.length - 1];
  const p50Ratio = last.coord.p50 / last.echo.p50;
  const pass = p50Ratio <= 1.5 && last.coord.p99 < 5;
  const out = [];
  out.push('## Coordinator RequestInference latency and throughput');
  out.push('');
  out.push(
    `RequestInference (validate, schedule over the registered agents, reserve a slot, sign an EdDSA session token) against a bare ` +
      `@grpc/grpc-js unary server answering a canned InferenceResponse of the same size; same nice-grpc client, ` +
      `concurrency ${CONCURRENCY}, ${MEASURED} measured requests after ${WARMUP} warm-up, each server in its own process on 127.0.0.1. ` +
      `Agents are registered over gRPC from a third process and keep a ReportHealth stream with a heartbeat every ${HEARTBEAT_MS / 1000} s during both measurements ` +
      `(the simulator shares the 2 cores with both servers; the coordinator also answers its health traffic, the echo does not). ` +
      `Absolute numbers depend on how busy the machine is; read the ratios.`,
  );
  out.push('');
  out.push(
    '| agents | coordinator req/s | echo req/s | throughput ratio | coordinator p50 ms | echo p50 ms | p50 ratio | coordinator p99 ms | echo p99 ms | p99 ratio | errors |',
  );
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    out.push(
      `| ${r.count} | ${f(r.coord.rps, 0)} | ${f(r.echo.rps, 0)} | ${f(r.coord.rps / r.echo.rps)}x | ${f(r.coord.p50)} | ${f(r.echo.p50)} | ${f(r.coord.p50 / r.echo.p50)}x | ${f(r.coord.p99)} | ${f(r.echo.p99)} | ${f(r.coord.p99 / r.echo.p99)}x | ${r.coord.errors + r.echo.errors} |`,
    );
  }
  out.push('');
  out.push(
    `Verdict: at 1,000 agents p50 is ${f(p50Ratio)}x the bare echo (target ≤ 1.5x) and p99 is ${f(last.coord.p99)} ms (target < 5 ms): ${pass ? 'target met' : 'target NOT met'}.`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---- child mode: the bare echo server
async function serveEcho() {
  const grpc = await importFromPackage('server-kit', '@grpc/grpc-js');
  const canned = Buffer.from(
    protocol.InferenceResponse.encode({
      agentEndpoint: '127.0.0.1:50052',
      sessionToken: 'x'.repeat(Number(process.argv[3] ?? 600)),
      expiresAt: Math.floor(Date.now() / 1000) + 300,
      jobId: '00000000-0000-4000-8000-000000000000',
      estimatedRttMs: 1,
      agentId: 'agent-00000',
      maxTokens: 100,
      temperature: 0.7,
    }).finish(),
  );
  const server = new grpc.Server();
  const id = (b) => b;
  server.addService(
    {
      requestInference: {
        path: '/titancompute.v1.CoordinatorService/RequestInference',
        requestStream: false,
        responseStream: false,
        requestSerialize: id,
        requestDeserialize: id,
        responseSerialize: id,
        responseDeserialize: id,
      },
    },
    { requestInference: (_call, cb) => cb(null, canned) },
  );
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}

async function serveAgents() {
  const niceGrpc = await importFromPackage('coordinator', 'nice-grpc');
  const [, , , port, count] = process.argv;
  const channel = protocol.createTitanChannel(`127.0.0.1:${port}`);
  const client = niceGrpc.createClientFactory().use(protocol.createProtoVersionClientMiddleware()).create(protocol.CoordinatorServiceDefinition, channel);
  // The coordinator checks every agent's endpoint (grpc health SERVING, GetStatus answering with
  // its id) before routing to it: one loopback server answers for all simulated agents.
  const { createServiceServer } = await import('@titancompute/server-kit');
  const server = createServiceServer({
    logger: (await import('@titancompute/server-kit')).createLogger({ service: 'bench-agents', level: 'silent' }),
    host: '127.0.0.1',
    port: 0,
  });
  server.add(protocol.AgentServiceDefinition, {
    async *streamInference() {
      throw new Error('simulated agents do not stream');
    },
    async getStatus(request) {
      return { agentId: request.agentId, status: 'healthy' };
    },
  });
  const { port: agentPort } = await server.listen();
  const agents = await registerAgents(client, niceGrpc, Number(count), `127.0.0.1:${agentPort}`);
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: Number(port), agents: agents.length })}\n`);
  process.on('SIGTERM', async () => {
    await Promise.all(agents.map((a) => a.stop()));
    process.exit(0);
  });
}

if (process.argv[2] === '--serve-echo') await serveEcho();
else if (process.argv[2] === '--serve-agents') await serveAgents();
else await main();
