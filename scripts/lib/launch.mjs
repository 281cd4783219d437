/**
 * Starts TitanCompute services from their built bins as child processes and wires a local
 * cluster together. Used by `pnpm start`, `pnpm demo` and the end-to-end tests, so all three
 * run the system exactly the same way.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Every service process this module started that has not exited yet. */
const live = new Set();
process.on('exit', () => {
  // Last resort: never leave a service behind when the launching process exits.
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Stops every service this module started and is still running (SIGTERM, then SIGKILL after
 * `timeoutMs`); resolves with their exit codes.
 * @param {number} [timeoutMs]
 */
export async function stopAllServices(timeoutMs = 15_000) {
  return Promise.all(
    [...live].map(
      (child) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
          child.once('exit', (code) => {
            clearTimeout(timer);
            resolve(code);
          });
          child.kill('SIGTERM');
        }),
    ),
  );
}

/** Built bin of each service. */
export const BINS = {
  'instance-manager': join(repoRoot, 'packages/instance-manager/dist/bin.js'),
  coordinator: join(repoRoot, 'packages/coordinator/dist/bin.js'),
  agent: join(repoRoot, 'packages/agent/dist/bin.js'),
  titan: join(repoRoot, 'packages/client/dist/cli/bin.js'),
};

/**
 * @typedef {object} ServiceProcess
 * @property {string} name
 * @property {import('node:child_process').ChildProcess} child
 * @property {number} port gRPC port (from the service's "listening" log line)
 * @property {string} address 127.0.0.1:port
 * @property {object[]} logs the JSON log lines so far (the last MAX_KEPT_LOG_LINES: a long `pnpm start` does not grow)
 * @property {(pred: (line: object) => boolean, timeoutMs?: number) => Promise<object>} waitForLog
 * @property {(signal?: NodeJS.Signals, timeoutMs?: number) => Promise<number | null>} stop
 * @property {Promise<number | null>} exited resolves with the exit code
 * @property {number} [httpPort] HTTP port (coordinator: REST and OpenAI API; agent: OpenAI-compatible routes), set by startCluster
 */

/** Log lines and stderr characters kept per service (older ones are dropped; only tests and error messages read them). */
const MAX_KEPT_LOG_LINES = 10_000;
const MAX_KEPT_STDERR_CHARS = 64 * 1024;

/**
 * Spawns a service bin and resolves once it logged `listening`.
 * @param {{ name: string, bin: string, args?: string[], env?: Record<string,string>, readyTimeoutMs?: number, echo?: boolean }} options
 * @returns {Promise<ServiceProcess>}
 */
export function startService(options) {
  const { name, bin, args = [], env = {}, readyTimeoutMs = 30_000, echo = false } = options;
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: repoRoot,
    // TITAN_PARENT_PID: the service shuts itself down once this process is gone, even if it was
    // SIGKILLed and had no chance to stop it (server-kit's runMain watches its parent pid).
    // JSON logs: this module parses them, whatever TITAN_LOG_FORMAT the user's shell sets.
    env: { ...process.env, ...env, TITAN_PARENT_PID: String(process.pid), TITAN_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a Ctrl-C in the terminal reaches only the launching script, which
    // then stops each service once (a second signal would make a service exit at once).
    detached: true,
  });
  const logs = [];
  const waiters = new Set();
  let stderr = '';
  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (echo) process.stderr.write(`[${name}] ${line}\n`);
      try {
        const parsed = JSON.parse(line);
        logs.push(parsed);
        if (logs.length > MAX_KEPT_LOG_LINES) logs.splice(0, logs.length - MAX_KEPT_LOG_LINES / 2);
        for (const w of waiters) w(parsed);
      } catch {
        /* not a JSON log line */
      }
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    if (stderr.length > MAX_KEPT_STDERR_CHARS) stderr = stderr.slice(-MAX_KEPT_STDERR_CHARS / 2);
    if (echo) process.stderr.write(`[${name}] ${chunk}`);
  });
  live.add(child);
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? (signal ? -1 : null));
    }),
  );

  const waitForLog = (pred, timeoutMs = 15_000) =>
    new Promise((resolve, reject) => {
      const found = logs.find(pred);
      if (found) return resolve(found);
      const onLine = (line) => {
        if (pred(line)) finish(() => resolve(line));
      };
      const finish = (fn) => {
        clearTimeout(timer);
        waiters.delete(onLine);
        fn();
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`${name}: log line not seen in ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`))),
        timeoutMs,
      );
      waiters.add(onLine);
      void exited.then((code) => finish(() => reject(new Error(`${name} exited with ${code} before the log line; stderr: ${stderr.slice(-2000)}`))));
    });

  const stop = async (signal = 'SIGTERM', timeoutMs = 15_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  const ready = waitForLog((l) => l.msg === 'listening' && typeof l.port === 'number', readyTimeoutMs).catch(async (err) => {
    // Never leave a half-started service behind.
    await stop('SIGKILL');
    throw err;
  });
  return ready.then((line) => ({
    name,
    child,
    port: line.port,
    address: `127.0.0.1:${line.port}`,
    logs,
    waitForLog,
    stop,
    exited,
    get stderr() {
      return stderr;
    },
  }));
}

/**
 * Starts a local cluster: instance manager (SQLite), coordinator and `agents` agents on the
 * embedded engine with the bundled model, wired with one join token.
 * @param {{ dataDir: string, agents?: number, ports?: { instanceManager?: number, coordinator?: number, http?: number, agents?: number[] },
 *   env?: Record<string,string>, coordinatorArgs?: string[], agentArgs?: string[], echo?: boolean }} options
 */
export async function startCluster(options) {
  const { dataDir, agents = 2, ports = {}, env = {}, echo = false } = options;
  mkdirSync(dataDir, { recursive: true });
  const joinToken = env.TITAN_JOIN_TOKEN ?? randomBytes(24).toString('base64url');
  const common = { TITAN_HOST: '127.0.0.1', TITAN_LOG_LEVEL: env.TITAN_LOG_LEVEL ?? 'info', ...env, TITAN_JOIN_TOKEN: joinToken };
  const started = [];
  try {
    const im = await startService({
      name: 'instance-manager',
      bin: BINS['instance-manager'],
      args: ['--port', String(ports.instanceManager ?? 0), '--data-dir', join(dataDir, 'instance-manager')],
      env: common,
      echo,
    });
    started.push(im);
    const coordinator = await startService({
      name: 'coordinator',
      bin: BINS.coordinator,
      args: [
        '--port',
        String(ports.coordinator ?? 0),
        '--http-port',
        String(ports.http ?? 0),
        '--data-dir',
        join(dataDir, 'coordinator'),
        ...(options.coordinatorArgs ?? []),
      ],
      // The dashboard's Instances page watches the instance manager.
      env: { ...common, TITAN_INSTANCE_MANAGER: im.address },
      echo,
    });
    started.push(coordinator);
    const httpLine = await coordinator.waitForLog((l) => typeof l.httpPort === 'number' || (l.msg ?? '').includes('http'), 15_000);
    coordinator.httpPort = httpLine.httpPort ?? httpLine.port;
    const agentProcs = [];
    for (let i = 0; i < agents; i += 1) {
      const agentId = `agent-${i + 1}`;
      const agent = await startService({
        name: agentId,
        bin: BINS.agent,
        args: [
          '--port',
          String(ports.agents?.[i] ?? 0),
          // The OpenAI-compatible HTTP port: --port + 10 with fixed ports (50062, 50063), else a free one.
          '--http-port',
          String(ports.agents?.[i] ? ports.agents[i] + 10 : 0),
          '--agent-id',
          agentId,
          '--public-host',
          '127.0.0.1',
          '--data-dir',
          join(dataDir, agentId),
          ...(options.agentArgs ?? []),
        ],
        env: { ...common, TITAN_COORDINATOR: coordinator.address, TITAN_INSTANCE_MANAGER: im.address },
        echo,
      });
      started.push(agent);
      const httpLine = await agent.waitForLog((l) => l.msg === 'http listening' && typeof l.httpPort === 'number', 15_000);
      agent.httpPort = httpLine.httpPort;
      agentProcs.push(agent);
    }
    // What it takes to start each service again on the port it has now (see supervise()).
    const specs = new Map([
      [
        im,
        {
          name: 'instance-manager',
          bin: BINS['instance-manager'],
          args: ['--port', String(im.port), '--data-dir', join(dataDir, 'instance-manager')],
          env: common,
          echo,
        },
      ],
      [
        coordinator,
        {
          name: 'coordinator',
          bin: BINS.coordinator,
          args: [
            '--port',
            String(coordinator.port),
            '--http-port',
            String(coordinator.httpPort),
            '--data-dir',
            join(dataDir, 'coordinator'),
            ...(options.coordinatorArgs ?? []),
          ],
          env: { ...common, TITAN_INSTANCE_MANAGER: im.address },
          echo,
        },
      ],
      ...agentProcs.map((agent) => [
        agent,
        {
          name: agent.name,
          bin: BINS.agent,
          args: [
            '--port',
            String(agent.port),
            '--http-port',
            String(agent.httpPort),
            '--agent-id',
            agent.name,
            '--public-host',
            '127.0.0.1',
            '--data-dir',
            join(dataDir, agent.name),
            ...(options.agentArgs ?? []),
          ],
          env: { ...common, TITAN_COORDINATOR: coordinator.address, TITAN_INSTANCE_MANAGER: im.address },
          echo,
        },
      ]),
    ]);
    let stopping = false;
    /** Restarts scheduled or under way, so stop() can cancel or wait for them. */
    const pending = new Set();
    const cluster = {
      joinToken,
      instanceManager: im,
      coordinator,
      agents: agentProcs,
      processes: started,
      /** Stops every service (and any restart supervise() has scheduled); resolves with their exit codes. */
      async stop() {
        stopping = true;
        for (const p of pending) clearTimeout(p.timer);
        await Promise.all([...pending].map((p) => p.starting));
        const codes = await Promise.all([...started].reverse().map((p) => p.stop()));
        return codes;
      },
      /**
       * Keeps the cluster up: a service that exits while the cluster is not stopping (told to exit,
       * e.g. `titan instances kill agent-2`, or crashed) is reported through `onExit` and started
       * again on the same port after a backoff: `initialMs` (default 500), doubling while it keeps
       * dying within `stableMs` (default 30 s) of its start, at most `maxMs` (default 30 s).
       * @param {{ onExit?: (name: string, code: number | null, stderrTail: string) => void,
       *   onRestart?: (name: string, proc: ServiceProcess) => void,
       *   onRestartFailed?: (name: string, err: Error, retryInMs: number) => void,
       *   initialMs?: number, maxMs?: number, stableMs?: number }} [handlers]
       */
      supervise(handlers = {}) {
        const { initialMs = 500, maxMs = 30_000, stableMs = 30_000 } = handlers;
        const state = new Map(started.map((p) => [specs.get(p).name, { attempt: 0, startedAt: Date.now() }]));
        const replace = (old, next) => {
          const spec = specs.get(old);
          specs.delete(old);
          specs.set(next, spec);
          started[started.indexOf(old)] = next;
          if (cluster.instanceManager === old) cluster.instanceManager = next;
          if (cluster.coordinator === old) {
            next.httpPort = old.httpPort;
            cluster.coordinator = next;
          }
          const i = agentProcs.indexOf(old);
          if (i >= 0) {
            next.httpPort = old.httpPort;
            agentProcs[i] = next;
          }
        };
        const schedule = (proc, spec, st) => {
          st.attempt = Date.now() - st.startedAt >= stableMs ? 0 : st.attempt + 1;
          const delay = Math.min(maxMs, initialMs * 2 ** Math.max(0, st.attempt - 1));
          const entry = { timer: undefined, starting: undefined };
          pending.add(entry);
          entry.timer = setTimeout(() => {
            entry.starting = startService(spec)
              .then((next) => {
                replace(proc, next);
                st.startedAt = Date.now();
                if (stopping) return;
                handlers.onRestart?.(spec.name, next);
                watch(next);
              })
              .catch((err) => {
                if (stopping) return;
                st.startedAt = Date.now();
                const again = Math.min(maxMs, initialMs * 2 ** st.attempt);
                handlers.onRestartFailed?.(spec.name, err, again);
                schedule(proc, spec, st);
              })
              .finally(() => pending.delete(entry));
          }, delay);
          return delay;
        };
        const watch = (proc) => {
          void proc.exited.then((code) => {
            if (stopping || !started.includes(proc)) return;
            const spec = specs.get(proc);
            handlers.onExit?.(spec.name, code, proc.stderr.slice(-2000));
            schedule(proc, spec, state.get(spec.name));
          });
        };
        for (const p of started) watch(p);
      },
    };
    return cluster;
  } catch (err) {
    await Promise.all(started.map((p) => p.stop('SIGKILL')));
    throw err;
  }
}

/**
 * Polls the coordinator until `count` agents are routable (healthy or degraded), or throws after `timeoutMs`.
 * @param {string} coordinatorAddress
 * @param {number} count
 * @param {number} [timeoutMs]
 */
export async function waitForAgents(coordinatorAddress, count, timeoutMs = 30_000) {
  const { createClientFactory } = await import('nice-grpc');
  const { CoordinatorServiceDefinition, createProtoVersionClientMiddleware, createTitanChannel } = await import('@titancompute/protocol');
  const channel = createTitanChannel(coordinatorAddress);
  const client = createClientFactory().use(createProtoVersionClientMiddleware()).create(CoordinatorServiceDefinition, channel);
  const deadline = Date.now() + timeoutMs;
  let last;
  try {
    while (Date.now() < deadline) {
      try {
        last = await client.querySystemStatus({ includeAgents: true }, { signal: AbortSignal.timeout(2000) });
        // Routable: healthy, or degraded (v1's rule: e.g. CPU above 90 % on a busy machine).
        if (last.agents.filter((a) => a.status === 'healthy' || a.status === 'degraded').length >= count) return last;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    channel.close();
  }
  throw new Error(`fewer than ${count} routable agents after ${timeoutMs} ms: ${JSON.stringify(last)}`);
}
