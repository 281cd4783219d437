/**
 * Servers under load run in child processes, so the load generator does not share their event
 * loop. A child announces itself with one JSON log line `{"msg":"listening","port":N}` on stdout
 * (what the service bins and the benchmarks' own echo servers print).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Starts `node <args>` and resolves once it printed its `listening` line. stdout keeps being read
 * (so the child never blocks on a full pipe); stderr is inherited.
 *
 * @param {string[]} args - Arguments after `node`.
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number }} [options] - `timeoutMs`
 *   (default 20,000; `Infinity`: no limit): how long the child may take to listen before it is killed.
 * @returns {Promise<{ child: import('node:child_process').ChildProcess, port: number, stop(): Promise<void> }>}
 *   `stop()` sends SIGTERM and resolves when the child has exited.
 * @throws {Error} When the child exits, or does not listen within `timeoutMs`.
 */
export function startListeningChild(args, options = {}) {
  // TITAN_PARENT_PID: a service bin exits by itself when the bench dies (even by a crash or SIGKILL).
  const env = { ...(options.env ?? process.env), TITAN_PARENT_PID: String(process.pid) };
  const child = spawn(process.execPath, args, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'inherit'] });
  const timeoutMs = options.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const onEarlyExit = (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child ${args[0]} exited (${signal ?? code}) before listening`));
    };
    const timer = Number.isFinite(timeoutMs)
      ? setTimeout(() => {
          child.off('exit', onEarlyExit);
          child.kill('SIGKILL');
          reject(new Error(`child ${args[0]} did not listen within ${timeoutMs} ms`));
        }, timeoutMs)
      : undefined;
    child.once('exit', onEarlyExit);
    let listening = false;
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (listening) return;
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        return;
      }
      if (message?.msg !== 'listening' || !message.port) return;
      listening = true;
      clearTimeout(timer);
      child.off('exit', onEarlyExit);
      resolve({
        child,
        port: message.port,
        stop: () =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}
