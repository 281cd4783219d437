#!/usr/bin/env node
/**
 * `node scripts/dashboard-screenshots.mjs [out-dir]` (default docs/images): the dashboard's
 * screenshots, taken in headless Chromium (Debian's `chromium`, or TITAN_CHROMIUM) with
 * playwright-core against a local cluster started like `pnpm start` (instance manager,
 * coordinator, two agents on the bundled model). Build first (`pnpm build`).
 *
 * So that the GPU columns show something on a machine without GPUs, it also registers two
 * **simulated** GPU agents (`sim-gpu-1`, `sim-gpu-2`): they speak the real protocol
 * (RegisterAgent with the join token, one ReportHealth stream, an AgentService the coordinator's
 * endpoint check dials) and report made-up GPU figures, and serve a model no request asks for.
 * Everything else — traffic, TTFT, tokens, the instance tree and events, API keys — is real:
 * requests through the OpenAI-compatible API for TITAN_SCREENSHOT_SECONDS (default 150),
 * then two API keys (auth turns on; the browser logs in with the admin token) and more requests
 * with them.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot, startCluster, waitForAgents } from './lib/launch.mjs';

const { chromium } = await import('playwright-core');
const { createClientFactory, Metadata } = await import('nice-grpc');
const { AgentServiceDefinition, CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel } = await import('@titancompute/protocol');
const { createLogger, createServiceServer } = await import('@titancompute/server-kit');
const { InstanceManagerClient } = await import('@titancompute/client');

const out = resolve(process.argv[2] ?? join(repoRoot, 'docs/images'));
const CHROMIUM = process.env.TITAN_CHROMIUM ?? '/usr/bin/chromium';
const SECONDS = Number(process.env.TITAN_SCREENSHOT_SECONDS ?? 150);
const MODEL = 'llama-2-tiny-random';
const say = (line) => process.stdout.write(`${line}\n`);

/**
 * A simulated GPU agent: registers, serves AgentService (health + GetStatus) so the endpoint
 * check passes, and reports GPU figures that drift every second on one health stream.
 */
async function startSimulatedGpuAgent({ coordinator, joinToken, agentId, gpus, gpuName, memoryMb }) {
  const server = createServiceServer({ logger: createLogger({ service: agentId, level: 'silent' }), host: '127.0.0.1', port: 0, shutdownTimeoutMs: 200 });
  server.add(AgentServiceDefinition, {
    async *streamInference() {
      throw new Error('simulated agent');
    },
    async getStatus() {
      return { agentId, status: 'healthy' };
    },
  });
  const { port } = await server.listen();
  const channel = createTitanChannel(coordinator);
  const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
  const metadata = () => Metadata({ authorization: `Bearer ${joinToken}` });
  const credential = randomBytes(32).toString('base64url');
  await client.registerAgent(
    {
      agentId,
      agentCredential: credential,
      endpoint: `127.0.0.1:${port}`,
      totalVramMb: gpus * memoryMb,
      totalRamMb: 1_024_000,
      maxJobs: 8 * gpus,
      maxQueue: 16 * gpus,
      supportedModels: ['llama-3.1-70b-instruct (simulated)', 'qwen2.5-72b-instruct (simulated)'],
      engine: 'vllm (simulated)',
      capabilities: {},
      gpus: [],
      httpEndpoint: '',
    },
    { metadata: metadata() },
  );
  const controller = new AbortController();
  let first = true;
  let tick = 0;
  async function* updates() {
    while (!controller.signal.aborted) {
      tick += 1;
      const devices = Array.from({ length: gpus }, (_, index) => {
        const used = Math.round(memoryMb * (0.55 + 0.35 * Math.abs(Math.sin((tick + index * 7) / 23))));
        return {
          index,
          uuid: `GPU-sim-${agentId}-${index}`,
          name: gpuName,
          memoryTotalMb: memoryMb,
          memoryUsedMb: used,
          memoryFreeMb: memoryMb - used,
          utilizationPercent: Math.round(100 * Math.abs(Math.sin((tick + index * 3) / 9))),
          temperatureC: 55 + index,
        };
      });
      const free = devices.reduce((n, d) => n + d.memoryFreeMb, 0);
      yield {
        agentId,
        agentCredential: first ? credential : '',
        freeVramMb: free,
        freeRamMb: 900_000,
        totalRamMb: 1_024_000,
        runningJobs: 1 + (tick % 3),
        queuedJobs: tick % 2,
        cpuPercent: 35,
        rttMs: 2,
        timestamp: Date.now(),
        gpus: devices,
        activeJobIds: [],
        completedJobs: [],
        startedJobIds: [],
        rejectedJobIds: [],
        draining: false,
      };
      first = false;
      await sleep(1000, undefined, { signal: controller.signal }).catch(() => undefined);
    }
  }
  const stream = client.reportHealth(updates(), { metadata: metadata(), signal: controller.signal });
  const acks = (async () => {
    try {
      for await (const _ack of stream);
    } catch {
      // stopped
    }
  })();
  return {
    async stop() {
      controller.abort();
      await acks;
      channel.close();
      await server.shutdown();
    },
  };
}

/** Requests through the OpenAI-compatible API: `concurrency()` workers, until `until`. */
async function traffic(base, apiKeys, until, concurrency) {
  let running = 0;
  let sent = 0;
  const one = async () => {
    running += 1;
    const key = apiKeys.length ? apiKeys[sent % apiKeys.length] : 'none';
    sent += 1;
    try {
      await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 8 + Math.floor(Math.random() * 40) }),
      }).then((r) => r.arrayBuffer());
    } catch {
      // busy or refused: that is traffic too
    } finally {
      running -= 1;
    }
  };
  while (Date.now() < until) {
    while (running < concurrency()) void one();
    await sleep(100);
  }
  while (running > 0) await sleep(100);
  return sent;
}

const dataDir = mkdtempSync(join(tmpdir(), 'titan-screenshots-'));
let cluster;
let browser;
const simulated = [];
const im = { client: undefined, timer: undefined };
try {
  say('starting a local cluster…');
  cluster = await startCluster({ dataDir, agents: 2, coordinatorArgs: ['--heartbeat-timeout', '10s'] });
  await waitForAgents(cluster.coordinator.address, 2, 60_000);
  const base = `http://127.0.0.1:${cluster.coordinator.httpPort}`;
  simulated.push(
    await startSimulatedGpuAgent({
      coordinator: cluster.coordinator.address,
      joinToken: cluster.joinToken,
      agentId: 'sim-gpu-1',
      gpus: 8,
      gpuName: 'H100 80GB (simulated)',
      memoryMb: 81_559,
    }),
    await startSimulatedGpuAgent({
      coordinator: cluster.coordinator.address,
      joinToken: cluster.joinToken,
      agentId: 'sim-gpu-2',
      gpus: 4,
      gpuName: 'A100 40GB (simulated)',
      memoryMb: 40_960,
    }),
  );

  // The instance tree: the coordinator as the agents' parent (kept alive by health checks).
  im.client = new InstanceManagerClient({ address: cluster.instanceManager.address });
  await im.client.addInstance({ id: 'coordinator', type: 'COORDINATOR', hostname: 'localhost', address: cluster.coordinator.address });
  await im.client.addService('coordinator', { type: 'COORDINATOR_GRPC', port: cluster.coordinator.port });
  await im.client.addService('coordinator', { type: 'COORDINATOR_HTTP', port: cluster.coordinator.httpPort });
  for (const agent of ['agent-1', 'agent-2']) await im.client.addChild('coordinator', agent);
  im.timer = setInterval(() => void im.client.healthCheck('coordinator').catch(() => undefined), 2000);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(`${base}/#/traffic`);

  const phase1 = Date.now() + SECONDS * 600;
  say(`traffic without API keys for ${Math.round(SECONDS * 0.6)} s…`);
  const started = Date.now();
  // 1–3 requests at a time, with a burst of 8 (more than the agents' slots: some answers are busy).
  await traffic(base, [], phase1, () => {
    const s = (Date.now() - started) / 1000;
    return s % 40 > 34 ? 8 : 1 + Math.round(1 + Math.sin(s / 9));
  });

  const adminToken = readFileSync(join(dataDir, 'coordinator', 'admin-token'), 'utf8').trim();
  const createKey = async (body) => {
    const res = await fetch(`${base}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` }, body: JSON.stringify(body) });
    if (res.status !== 201) throw new Error(`creating key ${body.name}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()).secret;
  };
  const keys = [
    await createKey({ name: 'ci-pipeline', requests_per_minute: 120, tokens_per_minute: 4000, max_concurrent: 4, budget_tokens: 200_000 }),
    await createKey({ name: 'notebook', requests_per_minute: 30, budget_tokens: 20_000, models: [MODEL] }),
    await createKey({ name: 'batch-eval', tokens_per_minute: 50_000, expires: '30d' }),
  ];
  await page.waitForSelector('[data-testid=connection][data-state=login]', { timeout: 15_000 });
  mkdirSync(out, { recursive: true });
  await page.setViewportSize({ width: 1440, height: 520 });
  await page.screenshot({ path: join(out, 'dashboard-login.png') });
  await page.fill('input[name=token]', adminToken);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 15_000 });

  say(`traffic with API keys for ${Math.round(SECONDS * 0.4)} s…`);
  await traffic(base, keys.slice(0, 2), Date.now() + SECONDS * 400, () => 2);
  // An agent that went away: its row stays, offline.
  await simulated.pop().stop();
  await sleep(3000);

  // The page scrolls inside its main area: a taller window shows all five traffic charts.
  const shots = [
    ['fleet', 'dashboard-fleet.png', 640],
    ['traffic', 'dashboard-traffic.png', 1180],
    ['instances', 'dashboard-instances.png', 560],
    ['keys', 'dashboard-keys.png', 400],
  ];
  for (const [name, file, height] of shots) {
    await page.setViewportSize({ width: 1440, height });
    await page.goto(`${base}/#/${name}`);
    await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 15_000 });
    await sleep(2500);
    await page.screenshot({ path: join(out, file) });
    say(`wrote ${join(out, file)}`);
  }
} catch (err) {
  process.stderr.write(`screenshots failed: ${err.stack ?? err}\n`);
  process.exitCode = 1;
} finally {
  if (im.timer) clearInterval(im.timer);
  im.client?.close();
  await browser?.close();
  for (const agent of simulated) await agent.stop();
  await cluster?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
