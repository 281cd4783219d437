#!/usr/bin/env node
/**
 * `pnpm start`: a local TitanCompute cluster — instance manager (SQLite under ./.titan/),
 * coordinator and two agents on the embedded llama.cpp engine with the bundled model, wired
 * with one join token — running until Ctrl-C.
 * `pnpm demo`: the same, then one request through the SDK, its streamed text and stats, and exit.
 *
 * Ports: 50050 (instance manager), 50051 + 8080 (coordinator), 50052/50053 (agents); set
 * TITAN_CLUSTER_PORTS=auto to pick free ports instead (the demo always does).
 * State: ./.titan (TITAN_CLUSTER_DATA_DIR to put it elsewhere). Services run in their own
 * process group; Ctrl-C (SIGINT), SIGTERM or SIGHUP (the terminal closed) stops each of them
 * once and exits 0 (pnpm itself reports 130 for any interrupted script). Should this script die
 * without stopping them (SIGKILL), every service notices its parent is gone and shuts down.
 * A service that exits on its own (told to, e.g. `titan instances kill agent-2`, or crashed) is
 * reported and started again on the same port with backoff; only a signal stops the cluster.
 */
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { repoRoot, startCluster, stopAllServices, waitForAgents } from './lib/launch.mjs';

const demo = process.argv.includes('--demo');
const auto = demo || process.env.TITAN_CLUSTER_PORTS === 'auto';
const dataDir = process.env.TITAN_CLUSTER_DATA_DIR ?? join(repoRoot, '.titan');
mkdirSync(dataDir, { recursive: true });
const MODEL = 'llama-2-tiny-random';

const say = (line = '') => process.stdout.write(`${line}\n`);
// The terminal may be gone (SIGHUP): a failed write must not crash this script before it has
// stopped the services.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

let cluster;
let stopping = false;
/** Stops every service (also while the cluster is still starting) and exits. */
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  say('\nstopping the cluster…');
  // Judge only the services running now: one that exited earlier was reported then.
  const running = cluster ? cluster.processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null) : [];
  let codes;
  if (cluster) {
    await cluster.stop();
    codes = running.map((p) => p.child.exitCode);
  } else {
    codes = await stopAllServices();
  }
  const bad = codes.filter((c) => c !== 0);
  if (bad.length) process.stderr.write(`some services exited uncleanly: ${JSON.stringify(codes)}\n`);
  process.exit(bad.length ? 1 : code);
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => void shutdown(0));

try {
  cluster = await startCluster({
    dataDir,
    agents: 2,
    ports: auto ? {} : { instanceManager: 50050, coordinator: 50051, http: 8080, agents: [50052, 50053] },
    env: { TITAN_LOG_LEVEL: process.env.TITAN_LOG_LEVEL ?? 'info' },
    echo: process.env.TITAN_CLUSTER_ECHO === '1',
  });
  await waitForAgents(cluster.coordinator.address, 2);
} catch (err) {
  if (stopping) await new Promise(() => {}); // a signal arrived during start-up: shutdown() exits
  process.stderr.write(`could not start the local cluster: ${err.message}\n`);
  if (!auto) process.stderr.write('If a port is taken, run with TITAN_CLUSTER_PORTS=auto to use free ports.\n');
  await (cluster ? cluster.stop() : stopAllServices());
  process.exit(1);
}

const { instanceManager, coordinator, agents } = cluster;
/** A path as a person would type it from here: relative inside the current directory, absolute outside it. */
const displayPath = (path) => {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
};
say('TitanCompute local cluster is up:');
say(`  instance manager  grpc ${instanceManager.address}   (SQLite in ${join(dataDir, 'instance-manager')})`);
say(`  coordinator       grpc ${coordinator.address}   http http://127.0.0.1:${coordinator.httpPort}/api/v1/status`);
say(`  OpenAI API        http://127.0.0.1:${coordinator.httpPort}/v1   (any OpenAI client; try: curl http://127.0.0.1:${coordinator.httpPort}/v1/models)`);
say(`  dashboard         http://127.0.0.1:${coordinator.httpPort}/`);
say(`                    (once API keys exist, log in with the token in ${displayPath(join(dataDir, 'coordinator', 'admin-token'))})`);
for (const agent of agents) say(`  ${agent.name.padEnd(17)} grpc ${agent.address}   http 127.0.0.1:${agent.httpPort}   (llama.cpp, ${MODEL})`);
say();

cluster.supervise({
  onExit: (name, code, stderrTail) => {
    const how = code === 0 ? 'exited (0)' : `exited unexpectedly (${code})`;
    process.stderr.write(`${name} ${how}; restarting it${stderrTail.trim() ? `\n${stderrTail.trim()}` : ''}\n`);
  },
  onRestart: (name, proc) => process.stderr.write(`${name} restarted (grpc ${proc.address})\n`),
  onRestartFailed: (name, err, retryInMs) => process.stderr.write(`${name} did not start again (${err.message.split('\n')[0]}); retrying in ${retryInMs} ms\n`),
});

if (demo) {
  const { TitanClient } = await import('@titancompute/client');
  const client = new TitanClient({ coordinator: coordinator.address, clientId: 'demo' });
  const prompt = 'Once upon a time';
  say(`demo: generate --model ${MODEL} "${prompt}"`);
  say('---');
  try {
    let stats;
    for await (const chunk of client.generate({ model: MODEL, prompt, maxTokens: 32 })) {
      if (chunk.text) process.stdout.write(chunk.text);
      if (chunk.stats) stats = chunk.stats;
    }
    say('\n---');
    say(
      `tokens: ${stats.tokens}   time to first token: ${stats.timeToFirstTokenMs.toFixed(1)} ms   ` +
        `tokens/s: ${stats.tokensPerSecond.toFixed(1)}   agent: ${stats.agentId}`,
    );
    say('(the bundled model has random weights: its text is gibberish by design)');
    client.close();
    await shutdown(0);
  } catch (err) {
    process.stderr.write(`demo request failed: ${err.message}\n`);
    client.close();
    await shutdown(1);
  }
} else {
  // `pnpm exec titan` runs the repository's CLI from anywhere inside it; the lines work as printed.
  const titan = 'pnpm exec titan';
  say('Try it (in another terminal):');
  say(`  ${titan} generate --coordinator ${coordinator.address} --model ${MODEL} "Hello"`);
  say(`  ${titan} status --coordinator ${coordinator.address}`);
  say(`  ${titan} instances ls --instance-manager ${instanceManager.address}`);
  say('Press Ctrl-C to stop.');
}
