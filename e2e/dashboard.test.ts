/**
 * The dashboard in a real browser: headless Chromium from Debian's `chromium` package (no browser
 * download; `.ci/run` installs it), driven by `playwright-core`, against a real local cluster of
 * built bins (instance manager, coordinator with a short heartbeat timeout, two agents on the
 * embedded llama.cpp engine). The Fleet page lists both agents; a generation moves the traffic
 * charts; the Instances page shows the instance manager's tree and its events live; killing an
 * agent turns its row offline within the eviction time; once an API key exists the dashboard
 * wants the admin token, and Keys shows the key's usage. No secret ever reaches the page, and
 * the page logs no error (CSP included).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { InstanceManagerClient } from '@titancompute/client';
import { startCluster, startService, waitForAgents } from '../scripts/lib/launch.mjs';
import { BINS, MODEL, tempDir, waitFor, type Cluster, type ServiceProcess } from './support.js';

/** Debian's chromium (`apt-get install chromium`); TITAN_CHROMIUM points elsewhere. */
const CHROMIUM = process.env.TITAN_CHROMIUM ?? '/usr/bin/chromium';
/** Short, so a killed agent is evicted soon; long enough for two llama.cpp agents on a busy 2-core machine. */
const HEARTBEAT_TIMEOUT_MS = 5000;
const COORDINATOR_ARGS = ['--heartbeat-timeout', `${HEARTBEAT_TIMEOUT_MS}ms`, '--heartbeat-interval', '1s'];

let cluster: Cluster;
/** The coordinator started again by the resume test (not the cluster's own process). */
let restartedCoordinator: ServiceProcess | undefined;
let browser: Browser;
let page: Page;
let base: string;
let dataDir: string;
const pageErrors: string[] = [];

/** The text of what a locator finds ('' when nothing). */
const text = async (locator: Locator) => (await locator.first().textContent()) ?? '';

/** The page's HTML and text, for secret checks. */
const everything = async () => `${await page.content()}\n${await text(page.locator('body'))}`;

/** The state badge of an agent's row ('' while the row is not there). */
const rowState = async (agentId: string): Promise<string> =>
  (await page
    .locator(`tr[data-agent-id="${agentId}"] [data-state]`)
    .getAttribute('data-state', { timeout: 200 })
    .catch(() => '')) ?? '';

async function show(name: 'fleet' | 'traffic' | 'instances' | 'keys') {
  await page.goto(`${base}/#/${name}`);
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 15_000 });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium) or set TITAN_CHROMIUM`);
  dataDir = tempDir('dashboard');
  cluster = await startCluster({
    dataDir,
    agents: 2,
    coordinatorArgs: COORDINATOR_ARGS,
  });
  await waitForAgents(cluster.coordinator.address, 2, 60_000);
  base = `http://127.0.0.1:${cluster.coordinator.httpPort}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await restartedCoordinator?.stop();
  await cluster?.stop();
}, 60_000);

describe('the dashboard in headless Chromium against a local cluster', () => {
  it('Fleet lists both agents with state, engine, model, RAM (CPU-only), slots; filtering and sorting work', async () => {
    await show('fleet');
    await waitFor(
      async () => ['healthy', 'degraded'].includes(await rowState('agent-1')) && ['healthy', 'degraded'].includes(await rowState('agent-2')),
      15_000,
      'both agents routable in the fleet table',
    );
    const row = page.locator('tr[data-agent-id="agent-1"]');
    const rowText = await text(row);
    expect(rowText).toContain('llama-cpp');
    expect(rowText).toContain(MODEL);
    expect(rowText).toMatch(/RAM/);
    expect(rowText).toMatch(/\d+ used · \d+ free/);
    expect(await text(page.locator('[data-testid=fleet-shown]'))).toMatch(/^2 agents/);

    await page.fill('input.filter', 'agent-2');
    await waitFor(async () => (await page.locator('tbody tr[data-agent-id]').count()) === 1, 5000, 'only agent-2 after filtering');
    expect(await page.locator('tbody tr[data-agent-id]').getAttribute('data-agent-id')).toBe('agent-2');
    await page.fill('input.filter', '');
    await page.getByRole('button', { name: 'Agent' }).click(); // id, now descending
    await waitFor(
      async () => (await page.locator('tbody tr[data-agent-id]').first().getAttribute('data-agent-id')) === 'agent-2',
      5000,
      'agent-2 first when sorted by id, descending',
    );
  }, 60_000);

  it('a generation moves the Traffic charts: requests, tokens and TTFT', async () => {
    await show('traffic');
    expect(await page.locator('.chart-card canvas').count()).toBe(5);
    const requestsBefore = Number(await text(page.locator('[data-testid=traffic-requests-total]')));
    const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
    const res = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 });
    // Sampled at OpenAI's default temperature, the random-weights model may end early on its end token.
    const generated = res.usage!.completion_tokens;
    expect(generated).toBeGreaterThan(0);
    expect(generated).toBeLessThanOrEqual(8);
    expect(res.choices[0]!.finish_reason).toBe(generated === 8 ? 'length' : 'stop');
    await waitFor(
      async () => Number(await text(page.locator('[data-testid=traffic-requests-total]'))) >= requestsBefore + 1,
      10_000,
      'the request in the requests total',
    );
    await waitFor(
      async () => Number(await text(page.locator('[data-testid=traffic-tokens-total]'))) >= generated,
      10_000,
      'the generated tokens in the tokens total',
    );
    await waitFor(async () => /\d+ (ms|s)/.test(await text(page.locator('[data-testid=traffic-ttft]'))), 10_000, 'a TTFT');
  }, 60_000);

  it('Instances shows the instance manager tree and relays its events live', async () => {
    await show('instances');
    await page.waitForSelector('[data-testid=instance-tree] li[data-instance-id="agent-1"]', { timeout: 15_000 });
    await page.waitForSelector('[data-testid=instance-tree] li[data-instance-id="agent-2"]', { timeout: 15_000 });
    // The agents registered after the coordinator started watching: their events are in the feed.
    await page.waitForSelector('[data-testid=instance-feed] li:has-text("agent-1 added")', { timeout: 10_000 });

    const im = new InstanceManagerClient({ address: cluster.instanceManager.address });
    try {
      expect((await im.addInstance({ id: 'rack-7', type: 'COORDINATOR', hostname: 'rack-7' })).success).toBe(true);
      expect((await im.addInstance({ id: 'rack-7-worker', type: 'INFERENCE_AGENT' })).success).toBe(true);
      expect((await im.addChild('rack-7', 'rack-7-worker')).success).toBe(true);
      // Nested: parent → child.
      await page.waitForSelector('li[data-instance-id="rack-7"] > ul > li[data-instance-id="rack-7-worker"]', { timeout: 10_000 });
      await page.waitForSelector('[data-testid=instance-feed] li:has-text("rack-7-worker became a child of rack-7")', { timeout: 10_000 });
      expect(await text(page.locator('li[data-instance-id="rack-7"] [data-field=last-check]').first())).toMatch(/checked \d+ s ago/);
      await im.killInstance('rack-7', 'dashboard test');
      await page.waitForSelector('[data-testid=instance-feed] li:has-text("rack-7-worker removed — parent died")', { timeout: 10_000 });
      await waitFor(async () => (await page.locator('li[data-instance-id="rack-7"]').count()) === 0, 10_000, 'rack-7 gone from the tree');
    } finally {
      im.close();
    }
  }, 60_000);

  it('the event feed resumes from its sequence after the stream drops (the coordinator restarts): nothing lost, nothing repeated', async () => {
    await show('instances');
    await page.waitForSelector('[data-testid=instance-feed] li[data-sequence]', { timeout: 10_000 });
    const old = cluster.coordinator;
    await old.stop('SIGTERM');
    const im = new InstanceManagerClient({ address: cluster.instanceManager.address });
    try {
      // While no coordinator watches the instance manager.
      expect((await im.addInstance({ id: 'while-down', type: 'INFERENCE_AGENT' })).success).toBe(true);
      // The same coordinator again: same ports, data dir and flags.
      restartedCoordinator = await startService({
        name: 'coordinator',
        bin: BINS.coordinator,
        args: ['--port', String(old.port), '--http-port', String(old.httpPort), '--data-dir', join(dataDir, 'coordinator'), ...COORDINATOR_ARGS],
        env: { TITAN_HOST: '127.0.0.1', TITAN_JOIN_TOKEN: cluster.joinToken, TITAN_INSTANCE_MANAGER: cluster.instanceManager.address },
      });
      await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 30_000 });
      await page.waitForSelector('[data-testid=instance-feed] li:has-text("while-down added")', { timeout: 15_000 });
      const sequences = await page
        .locator('[data-testid=instance-feed] li[data-sequence]')
        .evaluateAll((items) => items.map((li) => Number(li.getAttribute('data-sequence'))));
      expect(new Set(sequences).size).toBe(sequences.length);
      expect(sequences).toEqual([...sequences].sort((a, b) => b - a));
      expect(await page.locator('[data-testid=instance-feed] .feed-gap').count()).toBe(0);
      await im.killInstance('while-down', 'dashboard test');
    } finally {
      im.close();
    }
    await waitForAgents(restartedCoordinator.address, 2, 60_000);
  }, 120_000);

  it('killing an agent turns its row offline within the eviction time', async () => {
    await show('fleet');
    await waitFor(async () => ['healthy', 'degraded'].includes(await rowState('agent-2')), 10_000, 'agent-2 routable');
    const killedAt = Date.now();
    await cluster.agents[1]!.stop('SIGKILL');
    const { elapsedMs } = await waitFor(async () => (await rowState('agent-2')) === 'offline', HEARTBEAT_TIMEOUT_MS + 5000, 'agent-2 offline');
    expect(Date.now() - killedAt).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT_MS + 2000);
    expect(elapsedMs).toBeLessThanOrEqual(HEARTBEAT_TIMEOUT_MS + 2000);
    // After the eviction it stays listed, offline.
    await new Promise((r) => setTimeout(r, HEARTBEAT_TIMEOUT_MS + 1500));
    expect(await rowState('agent-2')).toBe('offline');
    expect(await text(page.locator('tr[data-agent-id="agent-2"]'))).toContain('evicted');
    expect(await rowState('agent-1')).not.toBe('offline');
  }, 60_000);

  it('once an API key exists the dashboard wants the admin token; Keys shows usage against quotas; no secret is ever rendered', async () => {
    await show('keys');
    const adminToken = readFileSync(join(dataDir, 'coordinator', 'admin-token'), 'utf8').trim();
    const created = await fetch(`${base}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ name: 'ci', requests_per_minute: 60, tokens_per_minute: 20_000, budget_tokens: 100_000, max_concurrent: 4 }),
    });
    expect(created.status).toBe(201);
    const { secret } = (await created.json()) as { secret: string };

    // Auth turned on: the open page loses its stream and asks for the admin token.
    await page.waitForSelector('[data-testid=connection][data-state=login]', { timeout: 10_000 });
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await page.waitForSelector('p.error:has-text("invalid admin token")', { timeout: 5000 });
    await page.fill('input[name=token]', adminToken);
    await page.click('button[type=submit]');
    await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 10_000 });
    await page.waitForSelector('tr[data-key-name="ci"]', { timeout: 10_000 });

    const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: secret, maxRetries: 0 });
    await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
    await waitFor(async () => (await text(page.locator('tr[data-key-name="ci"] [data-field=requests]'))).trim() === '1', 15_000, "the key's request counted");
    await waitFor(
      async () => /\d+ \/ 100\.0k tok/.test(await text(page.locator('tr[data-key-name="ci"] [data-field=budget]'))),
      15_000,
      "the key's tokens against its budget",
    );

    for (const name of ['fleet', 'traffic', 'instances', 'keys'] as const) {
      await show(name);
      const rendered = await everything();
      for (const secretValue of [adminToken, cluster.joinToken, secret]) expect(rendered).not.toContain(secretValue);
    }
    // A new browser (no session cookie) gets the login form, not the data.
    const other = await browser.newPage();
    await other.goto(`${base}/#/fleet`);
    await other.waitForSelector('[data-testid=connection][data-state=login]', { timeout: 10_000 });
    expect(await other.locator('tr[data-agent-id]').count()).toBe(0);
    await other.close();
  }, 90_000);

  it('the page logged no error (Content-Security-Policy violations included)', () => {
    // Expected network errors: the 401s of the stream while logged out, and the refused reconnects while the
    // coordinator restarted.
    expect(pageErrors.filter((e) => !/401 \(Unauthorized\)|net::ERR_CONNECTION_REFUSED/.test(e))).toEqual([]);
  });
});
