/** Renders rows as an aligned plain-text table (first row = header). */
export function renderTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  return `${rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

/** `used/total MB`, or `cpu` for an agent without GPU memory. */
export function formatGpuMemory(totalMb: number, freeMb: number): string {
  if (totalMb <= 0) return 'cpu';
  return `${Math.max(totalMb - freeMb, 0)}/${totalMb} MB`;
}

/** A number with at most one decimal. */
export function formatNumber(value: number, digits = 1): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/** A JSON line with a trailing newline. */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

/** Plain-object view of an error for `--json` output. */
export function errorToJson(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const e = error as Error & Record<string, unknown>;
  const out: Record<string, unknown> = { name: e.name, message: e.message };
  for (const key of [
    'code',
    'codeName',
    'model',
    'retryAfterMs',
    'quota',
    'tokensReceived',
    'agentId',
    'field',
    'clientVersion',
    'serverVersion',
    'address',
    'addresses',
  ]) {
    if (e[key] !== undefined) out[key] = e[key];
  }
  return out;
}

/**
 * The shortest decimal that denotes the same 32-bit float as `value`. Protobuf `float`
 * fields (e.g. temperature) arrive widened to doubles: 0.7 becomes 0.699999988079071.
 * This turns it back into 0.7; non-finite values pass through.
 */
export function shortestFloat32(value: number): number {
  if (!Number.isFinite(value)) return value;
  const target = Math.fround(value);
  for (let digits = 1; digits <= 9; digits++) {
    const candidate = Number(target.toPrecision(digits));
    if (Math.fround(candidate) === target) return candidate;
  }
  return target;
}
