import os from 'node:os';
import type { GpuInfo } from '@titancompute/protocol';
import type { Logger } from '@titancompute/server-kit';
import { GpuStatsError } from '../errors.js';
import { queryNvidiaSmi, type NvidiaSmiOptions } from './nvidia-smi.js';

/** A snapshot of the machine: GPUs, RAM and CPU. */
export interface MachineStats {
  gpus: GpuInfo[];
  totalVramMb: number;
  freeVramMb: number;
  totalRamMb: number;
  freeRamMb: number;
  /** Busy share of all cores since the previous sample, 0-100. */
  cpuPercent: number;
}

/** Samples machine stats; GPU data comes from nvidia-smi in the background and is cached. */
export interface StatsSampler {
  /**
   * The latest stats (never blocks on nvidia-smi). CPU and RAM are read again at most once per
   * `minSampleIntervalMs`: health updates sent at every job's start and end reuse the last reading
   * instead of parsing /proc each time.
   */
  current(): MachineStats;
  /** Runs nvidia-smi once now and waits for it (used at start so registration sees the GPUs). */
  refreshGpus(): Promise<void>;
  /** Starts background GPU sampling every `intervalMs`. */
  start(intervalMs: number): void;
  stop(): void;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { idle, total };
}

/**
 * Creates a {@link StatsSampler}. A missing, failing or hanging nvidia-smi makes a CPU-only
 * agent (no GPUs, 0 VRAM) with one log line per change of state — never a crash.
 * `minSampleIntervalMs` (default 250): CPU and RAM are read at most this often (`os.cpus()` parses
 * /proc on every call, and `current()` runs for every health update: two per job).
 *
 * @example
 * ```ts
 * const stats = createStatsSampler({ nvidiaSmi: { binary: 'nvidia-smi', timeoutMs: 5000 }, logger });
 * await stats.refreshGpus();
 * stats.current().gpus;
 * ```
 */
export function createStatsSampler(options: { nvidiaSmi?: NvidiaSmiOptions; logger?: Logger; minSampleIntervalMs?: number } = {}): StatsSampler {
  const minSampleIntervalMs = options.minSampleIntervalMs ?? 250;
  let gpus: GpuInfo[] = [];
  let lastCpu = cpuTimes();
  let lastCpuPercent = 0;
  /** The last reading of CPU and RAM, and when it was taken. */
  let host = { at: -Infinity, totalRamMb: 0, freeRamMb: 0 };
  let state: 'unknown' | 'ok' | 'failed' | 'missing' = 'unknown';
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const refreshGpus = (): Promise<void> => {
    if (state === 'missing') return Promise.resolve();
    running ??= (async () => {
      try {
        gpus = await queryNvidiaSmi(options.nvidiaSmi);
        if (state !== 'ok') options.logger?.info({ gpus: gpus.length, names: gpus.map((g) => g.name) }, 'GPUs found with nvidia-smi');
        state = 'ok';
      } catch (err) {
        gpus = [];
        const missing = err instanceof GpuStatsError && err.context.missing === true;
        if (state === 'ok' || state === 'unknown') {
          options.logger?.warn({ reason: (err as Error).message }, 'nvidia-smi unavailable: running as a CPU-only agent');
        }
        state = missing ? 'missing' : 'failed';
      } finally {
        running = undefined;
      }
    })();
    return running;
  };

  return {
    current() {
      const t = performance.now();
      if (t - host.at >= minSampleIntervalMs) {
        const now = cpuTimes();
        const dTotal = now.total - lastCpu.total;
        if (dTotal > 0) {
          lastCpuPercent = Math.max(0, Math.min(100, (1 - (now.idle - lastCpu.idle) / dTotal) * 100));
          lastCpu = now;
        }
        host = { at: t, totalRamMb: Math.round(os.totalmem() / 1048576), freeRamMb: Math.round(os.freemem() / 1048576) };
      }
      const totalVramMb = gpus.reduce((s, g) => s + g.memoryTotalMb, 0);
      const freeVramMb = gpus.reduce((s, g) => s + g.memoryFreeMb, 0);
      return {
        gpus,
        totalVramMb,
        freeVramMb,
        totalRamMb: host.totalRamMb,
        freeRamMb: host.freeRamMb,
        cpuPercent: Math.round(lastCpuPercent * 10) / 10,
      };
    },
    refreshGpus,
    start(intervalMs) {
      if (timer) return;
      timer = setInterval(() => void refreshGpus(), intervalMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
