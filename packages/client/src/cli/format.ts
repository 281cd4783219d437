/** Renders rows as an aligned plain-text table (first row = header). */
export function renderTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n') + '\n';
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
  return JSON.stringify(value) + '\n';
}

/** Plain-object view of an error for `--json` output. */
export function errorToJson(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const e = error as Error & Record<string, unknown>;
  const out: Record<string, unknown> = { name: e.name, message: e.message };
  for (const key of ['code', 'codeName', 'model', 'retryAfterMs', 'tokensReceived', 'agentId', 'field', 'clientVersion', 'serverVersion', 'address']) {
    if (e[key] !== undefined) out[key] = e[key];
  }
  return out;
}
