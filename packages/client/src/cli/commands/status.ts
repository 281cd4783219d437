import type { Command } from 'commander';
import { TitanClient } from '../../titan-client.js';
import { tlsFromOptions, type CliIo, type GlobalOptions } from '../context.js';
import { formatGpuMemory, formatNumber, jsonLine, renderTable } from '../format.js';

/** `titan status`: a table of the cluster's agents. */
export function registerStatus(program: Command, io: CliIo): void {
  program
    .command('status')
    .description('show the cluster: agents with state, GPU memory, jobs and tokens/s')
    .action(async (_options: unknown, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const tls = tlsFromOptions(globals);
      const client = new TitanClient({
        coordinator: globals.coordinator,
        ...(tls ? { tls } : {}),
        ...(globals.timeout ? { requestTimeoutMs: globals.timeout } : {}),
      });
      try {
        const status = await client.status(io.signal ? { signal: io.signal } : {});
        if (globals.json) {
          io.stdout.write(jsonLine(status));
          return;
        }
        io.stdout.write(
          `${status.totalAgents} agent(s), ${status.healthyAgents} healthy · ${status.totalJobs} job(s) scheduled · coordinator up ${status.uptime || `${Math.round(status.uptimeSeconds)}s`}\n`,
        );
        if (status.agents.length === 0) return;
        const rows = [['AGENT', 'STATE', 'GPU MEMORY', 'JOBS', 'TOK/S', 'MODELS', 'ENDPOINT']];
        for (const a of status.agents) {
          rows.push([
            a.id,
            a.state,
            formatGpuMemory(a.totalVramMb, a.freeVramMb),
            `${a.runningJobs}/${a.maxJobs}${a.queuedJobs ? ` +${a.queuedJobs}q` : ''}`,
            formatNumber(a.tokensPerSecond),
            a.models.join(','),
            a.endpoint,
          ]);
        }
        io.stdout.write(renderTable(rows));
      } finally {
        client.close();
      }
    });
}
