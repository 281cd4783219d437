import { execa } from 'execa';
import type { GpuInfo } from '@titancompute/protocol';
import { GpuStatsError } from '../errors.js';

/** The `--query-gpu` fields the agent reads, in order. */
export const NVIDIA_SMI_QUERY = 'index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw';

/** nvidia-smi arguments: every GPU, one CSV line each, no header or units. */
export const NVIDIA_SMI_ARGS = [`--query-gpu=${NVIDIA_SMI_QUERY}`, '--format=csv,noheader,nounits'] as const;

const absent = (v: string | undefined) =>
  v === undefined || v === '' || /^\[(N\/A|Not Supported|Unknown Error|Insufficient Permissions)\]$/i.test(v) || v === 'N/A';

function num(v: string | undefined): number | undefined {
  if (absent(v)) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,
 * utilization.gpu,temperature.gpu,power.draw --format=csv,noheader,nounits` output: one GPU per
 * line; `[N/A]` / `[Not Supported]` become unset (memory: 0). Throws {@link GpuStatsError} on
 * lines that do not have the expected fields.
 *
 * @example
 * ```ts
 * parseNvidiaSmi('0, GPU-5c1, NVIDIA H100 80GB HBM3, 81559, 0, 81080, 0, 30, 69.42\n')[0]?.memoryFreeMb; // 81080
 * ```
 */
export function parseNvidiaSmi(output: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const raw of output.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    const f = line.split(',').map((s) => s.trim());
    if (f.length < 9) throw new GpuStatsError(`unexpected nvidia-smi line (expected 9 fields): ${line.slice(0, 200)}`, { line });
    // A GPU name may itself contain commas: the last 6 fields are numeric, the first 2 are index and uuid.
    const tail = f.slice(-6);
    const name = f.slice(2, f.length - 6).join(', ');
    const index = num(f[0]);
    if (index === undefined) throw new GpuStatsError(`unexpected nvidia-smi line (bad index): ${line.slice(0, 200)}`, { line });
    const util = num(tail[3]);
    const temp = num(tail[4]);
    const power = num(tail[5]);
    gpus.push({
      index,
      uuid: absent(f[1]) ? '' : (f[1] ?? ''),
      name,
      memoryTotalMb: Math.round(num(tail[0]) ?? 0),
      memoryUsedMb: Math.round(num(tail[1]) ?? 0),
      memoryFreeMb: Math.round(num(tail[2]) ?? 0),
      ...(util !== undefined ? { utilizationPercent: util } : {}),
      ...(temp !== undefined ? { temperatureC: temp } : {}),
      ...(power !== undefined ? { powerDrawW: power } : {}),
    });
  }
  return gpus;
}

/** What {@link queryNvidiaSmi} uses when its options leave them out. */
export const NVIDIA_SMI_DEFAULTS = { binary: 'nvidia-smi', timeoutMs: 5000 } as const;

/** Options of {@link queryNvidiaSmi}. */
export interface NvidiaSmiOptions {
  /** Binary path. Default `nvidia-smi`. */
  binary?: string;
  /** Kill it after this long. Default 5000 ms. */
  timeoutMs?: number;
}

/**
 * Runs nvidia-smi (with a timeout) and parses its output. Throws {@link GpuStatsError} when it is
 * missing (`context.missing`), exits non-zero (e.g. no driver), hangs or prints garbage.
 */
export async function queryNvidiaSmi(options: NvidiaSmiOptions = {}): Promise<GpuInfo[]> {
  const binary = options.binary ?? NVIDIA_SMI_DEFAULTS.binary;
  const timeoutMs = options.timeoutMs ?? NVIDIA_SMI_DEFAULTS.timeoutMs;
  let stdout: string;
  try {
    const child = execa(binary, [...NVIDIA_SMI_ARGS], { timeout: timeoutMs, reject: true, stripFinalNewline: false, forceKillAfterDelay: 500 });
    // A wrapper script may leave a grandchild holding stdout open after the kill: never wait past the deadline.
    let hardTimer: NodeJS.Timeout | undefined;
    const hardStop = new Promise<never>((_, reject) => {
      hardTimer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(Object.assign(new Error('timed out'), { timedOut: true }));
      }, timeoutMs + 250);
    });
    child.catch(() => undefined);
    try {
      const result = await Promise.race([child, hardStop]);
      stdout = String(result.stdout);
    } finally {
      clearTimeout(hardTimer);
    }
  } catch (cause) {
    const err = cause as { code?: string; timedOut?: boolean; exitCode?: number; stdout?: string; stderr?: string; shortMessage?: string };
    if (err.code === 'ENOENT') throw new GpuStatsError(`${binary} not found`, { binary, missing: true }, { cause });
    if (err.timedOut) throw new GpuStatsError(`${binary} did not answer within ${timeoutMs} ms`, { binary, timedOut: true }, { cause });
    const detail = `${err.stdout ?? ''} ${err.stderr ?? ''}`.trim().split('\n')[0] ?? '';
    throw new GpuStatsError(
      `${binary} failed (exit ${err.exitCode ?? '?'}): ${detail || err.shortMessage || ''}`.trim(),
      { binary, exitCode: err.exitCode },
      { cause },
    );
  }
  return parseNvidiaSmi(stdout);
}
