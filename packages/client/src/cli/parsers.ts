import { InvalidArgumentError as CommanderInvalidArgument } from 'commander';

/** Commander parser for an integer flag ≥ 1. */
export function parseIntArg(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new CommanderInvalidArgument(`${flag} must be an integer >= 1`);
    return n;
  };
}

/** Commander parser for a comma-separated list flag (empty entries dropped; at least one entry). */
export function parseListArg(flag: string): (value: string) => string[] {
  return (value) => {
    const items = value
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean);
    if (items.length === 0) throw new CommanderInvalidArgument(`${flag} expects a comma-separated list, e.g. a,b`);
    return items;
  };
}

/** Commander parser for a lifetime such as `30d`, `12h`, `90m`, `45s` or `2w` (a bare number is seconds), in seconds (≥ 1). */
export function parseLifetimeArg(flag: string): (value: string) => number {
  return (value) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$/.exec(value);
    const factor = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[(m?.[2] ?? 's') as 's' | 'm' | 'h' | 'd' | 'w'];
    const seconds = m ? Math.round(Number(m[1]) * factor) : 0;
    if (seconds < 1) throw new CommanderInvalidArgument(`${flag} must be a duration such as 30d, 12h, 90m or 3600s`);
    return seconds;
  };
}

/** Commander parser for a finite number flag. */
export function parseNumberArg(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new CommanderInvalidArgument(`${flag} must be a number`);
    return n;
  };
}

/** Commander parser collecting repeatable `key=value` flags (no default, so help shows no `(default: {})`). */
export function parseParam(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new CommanderInvalidArgument(`--param expects key=value, got "${value}"`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

/** Commander parser for one of a set of names (case-insensitive). */
export function parseChoice<T extends string>(flag: string, choices: readonly T[]): (value: string) => T {
  return (value) => {
    const upper = value.toUpperCase().replace(/-/g, '_');
    const found = choices.find((c) => c === upper);
    if (!found) throw new CommanderInvalidArgument(`${flag} must be one of ${choices.join(', ')}`);
    return found;
  };
}
