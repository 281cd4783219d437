import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { PROTO_VERSION_POLICIES, type ProtoVersionPolicy } from '@titancompute/protocol';
import { ConfigError, HelpRequested, VersionRequested } from './errors.js';

/**
 * One configuration option: a `--flag`, its environment variables (first set one wins;
 * list the `TITAN_` name first, then v1's name where v1 had one) and a zod schema that turns
 * the raw string into the typed value.
 */
export interface OptionSpec<T = unknown> {
  /** Flag name without dashes, e.g. `port` for `--port`. */
  flag: string;
  /** Environment variables, in order of precedence. */
  env?: readonly string[];
  /** Parses the raw string (or `undefined` when unset and no default). */
  schema: z.ZodType<T, string | undefined>;
  /** Raw default, parsed by `schema` like any other value. */
  default?: string;
  /** Shown in `--help`. */
  description: string;
  /** Human-readable expected form, used in error messages, e.g. "an integer from 0 to 65535". */
  expected: string;
  /** A flag that takes no value (`--flag` means "true"). */
  boolean?: boolean;
}

/** A set of options keyed by config field name. */
export type ConfigSpec = Record<string, OptionSpec>;

/** The typed config a spec produces. */
export type ConfigOf<S extends ConfigSpec> = { [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };

/** Where options come from. Defaults: `process.argv.slice(2)` and `process.env`. */
export interface LoadConfigOptions {
  argv?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
  /** Bin name, for `--help`. */
  name: string;
  /** One-paragraph description, for `--help`. */
  summary?: string;
  /** Allow positional arguments (returned as `positionals`). Default false. */
  allowPositionals?: boolean;
  /** Printed by `--version` (see {@link readPackageVersion}). Default: `--version` is not accepted. */
  version?: string;
}

/**
 * The `version` of the nearest package.json at or above the file `fromUrl` (pass
 * `import.meta.url`): works from `src/`, `dist/` and a `pnpm deploy` copy alike.
 * Returns `unknown` when none is found.
 */
export function readPackageVersion(fromUrl: string): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const { version } = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown };
      return typeof version === 'string' ? version : 'unknown';
    }
    const up = dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

/** Node's parseArgs messages, rewritten as one short line naming the offending argument. */
function describeArgvError(cause: unknown): string {
  const err = cause as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(err.message ?? '')?.[1] ?? '';
  const flag = quoted.split(' ')[0] ?? quoted;
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${flag}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(quoted)}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /does not take an argument/.test(err.message ?? '') ? `option ${flag} takes no value` : `option ${flag} needs a value`;
    default:
      return (err.message ?? String(cause)).split('. ')[0] ?? 'bad arguments';
  }
}

/**
 * Reads a config from flags, then environment variables, then defaults, validating each
 * value. Throws {@link ConfigError} naming the flag or variable, the expected form and the
 * value received, or {@link HelpRequested} for `--help`.
 *
 * @example
 * ```ts
 * const config = loadConfig({ ...commonOptions({ port: 50051, portEnv: ['COORDINATOR_PORT'], service: 'coordinator' }) },
 *   { name: 'titan-coordinator' });
 * config.port; // number
 * ```
 */
export function loadConfig<S extends ConfigSpec>(spec: S, options: LoadConfigOptions): ConfigOf<S> & { positionals: string[] } {
  const argv = options.argv ?? process.argv.slice(2);
  const env = options.env ?? process.env;
  const parseOptions: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  if (options.version !== undefined) parseOptions.version = { type: 'boolean' };
  for (const opt of Object.values(spec)) parseOptions[opt.flag] = { type: opt.boolean ? 'boolean' : 'string' };
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options: parseOptions, allowPositionals: options.allowPositionals ?? false, strict: true });
  } catch (cause) {
    throw new ConfigError(
      `${describeArgvError(cause)} (run ${options.name} --help for the options)`,
      {
        option: 'arguments',
        source: 'command line',
        expected: 'a known --flag',
      },
      { cause },
    );
  }
  if (parsed.values.help) throw new HelpRequested(formatUsage(spec, options));
  if (parsed.values.version && options.version !== undefined) throw new VersionRequested(`${options.name} ${options.version}`);

  const out: Record<string, unknown> = { positionals: parsed.positionals };
  for (const [key, opt] of Object.entries(spec)) {
    const fromFlag = parsed.values[opt.flag];
    let raw: string | undefined;
    let source: string;
    if (fromFlag !== undefined) {
      raw = String(fromFlag);
      source = `--${opt.flag}`;
    } else {
      const envName = opt.env?.find((name) => env[name] !== undefined && env[name] !== '');
      if (envName) {
        raw = env[envName];
        source = `environment variable ${envName}`;
      } else {
        raw = opt.default;
        source = `default of --${opt.flag}`;
      }
    }
    const result = opt.schema.safeParse(raw);
    if (!result.success) {
      const names = [`--${opt.flag}`, ...(opt.env ?? [])].join(' / ');
      const got = raw === undefined ? 'nothing' : JSON.stringify(raw);
      throw new ConfigError(`invalid ${source} (${names}): expected ${opt.expected}, got ${got}`, {
        option: opt.flag,
        source,
        expected: opt.expected,
        ...(raw === undefined ? {} : { got: raw }),
      });
    }
    out[key] = result.data;
  }
  return out as ConfigOf<S> & { positionals: string[] };
}

/** The `--help` text of a spec. */
export function formatUsage(spec: ConfigSpec, options: Pick<LoadConfigOptions, 'name' | 'summary' | 'version'>): string {
  const lines = [`Usage: ${options.name} [options]`, ''];
  if (options.summary) lines.push(options.summary, '');
  lines.push('Options (flag, then environment variables; flags win):');
  for (const opt of Object.values(spec)) {
    const head = `  --${opt.flag}${opt.boolean ? '' : ' <value>'}`;
    const env = opt.env?.length ? ` [env: ${opt.env.join(', ')}]` : '';
    const def = opt.default !== undefined ? ` (default: ${opt.default})` : '';
    lines.push(head, `      ${opt.description}${def}${env}`);
  }
  lines.push('  -h, --help', '      Show this help.');
  if (options.version !== undefined) lines.push('  --version', '      Print the version.');
  return `${lines.join('\n')}\n`;
}

// ---- Schemas for common kinds of values. Each takes the raw string.

const required = <T>(inner: z.ZodType<T, string>) => z.string({ error: 'required' }).pipe(inner) as unknown as z.ZodType<T, string | undefined>;

const optional = <T>(inner: z.ZodType<T, string>) => z.string().pipe(inner).optional() as unknown as z.ZodType<T | undefined, string | undefined>;

/** Integer in [min, max]. */
export function intOption(base: Omit<OptionSpec, 'schema' | 'expected'>, min: number, max: number): OptionSpec<number> {
  return {
    ...base,
    expected: `an integer from ${min} to ${max}`,
    schema: required(
      z
        .string()
        .trim()
        .regex(/^-?\d+$/)
        .transform(Number)
        .pipe(z.number().int().min(min).max(max)),
    ),
  };
}

/** A TCP port, 0 meaning "any free port". */
export function portOption(base: Omit<OptionSpec, 'schema' | 'expected'>): OptionSpec<number> {
  return intOption(base, 0, 65535);
}

/** Number (integer or decimal) in [min, max]. */
export function numberOption(base: Omit<OptionSpec, 'schema' | 'expected'>, min: number, max: number): OptionSpec<number> {
  return {
    ...base,
    expected: `a number from ${min} to ${max}`,
    schema: required(
      z
        .string()
        .trim()
        .regex(/^-?\d+(\.\d+)?$/)
        .transform(Number)
        .pipe(z.number().min(min).max(max)),
    ),
  };
}

/** The units {@link formatDuration} writes, largest first. */
const DURATION_UNITS = [
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
] as const;

/**
 * A duration in milliseconds as a flag default: the largest whole unit up to `largestUnit`
 * (default `h`), in the form {@link durationOption} parses back. `300000` → `5m`, `30000` →
 * `30s`, `250` → `250ms`, `3600000` → `1h`; `formatDuration(60000, 's')` → `60s`.
 */
export function formatDuration(ms: number, largestUnit: 'h' | 'm' | 's' | 'ms' = 'h'): string {
  const units = DURATION_UNITS.slice(DURATION_UNITS.findIndex(([unit]) => unit === largestUnit));
  const [unit, factor] = units.find(([, f]) => ms % f === 0) ?? ['ms', 1];
  return `${ms / factor}${unit}`;
}

/** Parses "500ms", "30s", "5m", "1h" or a bare number of seconds into milliseconds. */
export function parseDurationMs(raw: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(n * factor);
}

/** A duration ("500ms", "30s", "5m", "1h"; a bare number is seconds), in milliseconds, within bounds. */
export function durationOption(base: Omit<OptionSpec, 'schema' | 'expected'>, minMs = 1, maxMs = 7 * 24 * 3_600_000): OptionSpec<number> {
  return {
    ...base,
    expected: `a duration such as 500ms, 30s, 5m or 1h (bare numbers are seconds) between ${minMs}ms and ${maxMs}ms`,
    schema: required(
      z.string().transform((s, ctx) => {
        const ms = parseDurationMs(s);
        if (ms === undefined || ms < minMs || ms > maxMs) {
          ctx.addIssue({ code: 'custom', message: 'bad duration' });
          return z.NEVER;
        }
        return ms;
      }),
    ),
  };
}

/** One of a fixed set of strings. */
export function enumOption<const T extends readonly [string, ...string[]]>(base: Omit<OptionSpec, 'schema' | 'expected'>, values: T): OptionSpec<T[number]> {
  return { ...base, expected: `one of ${values.join(', ')}`, schema: required(z.enum(values)) };
}

/** Free text; empty counts as unset. */
export function stringOption(base: Omit<OptionSpec, 'schema' | 'expected'>): OptionSpec<string | undefined> {
  return { ...base, expected: 'a non-empty string', schema: optional(z.string().min(1)) };
}

/** Free text that must be present. */
export function requiredStringOption(base: Omit<OptionSpec, 'schema' | 'expected'>): OptionSpec<string> {
  return { ...base, expected: 'a non-empty string', schema: required(z.string().min(1)) };
}

/** Comma-separated list; empty entries are dropped. */
export function listOption(base: Omit<OptionSpec, 'schema' | 'expected'>): OptionSpec<string[]> {
  return {
    ...base,
    expected: 'a comma-separated list',
    schema: z
      .string()
      .optional()
      .transform((s) =>
        (s ?? '')
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean),
      ) as unknown as z.ZodType<string[], string | undefined>,
  };
}

/** true/false, 1/0, yes/no; a bare `--flag` is true. */
export function boolOption(base: Omit<OptionSpec, 'schema' | 'expected' | 'boolean'>): OptionSpec<boolean> {
  return {
    ...base,
    boolean: true,
    expected: 'true or false',
    schema: z
      .string()
      .optional()
      .transform((s, ctx) => {
        if (s === undefined) return false;
        const v = s.trim().toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(v)) return true;
        if (['false', '0', 'no', 'off', ''].includes(v)) return false;
        ctx.addIssue({ code: 'custom', message: 'bad boolean' });
        return z.NEVER;
      }) as unknown as z.ZodType<boolean, string | undefined>,
  };
}

/** Log formats accepted by `--log-format`: `auto` is `pretty` on a terminal, `json` otherwise. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The defaults that every service's {@link commonOptions} share (see {@link COMMON_DEFAULTS}). */
export interface CommonDefaults {
  /** `--host`: the listen address. */
  readonly host: string;
  /** `--log-level`. */
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** `--log-format`. */
  readonly logFormat: (typeof LOG_FORMATS)[number];
  /** `--proto-version-policy`. */
  readonly protoVersionPolicy: ProtoVersionPolicy;
  /** `--shutdown-timeout`, in milliseconds. */
  readonly shutdownTimeoutMs: number;
}

/**
 * The defaults of {@link commonOptions}, written once: the common flags show and use them, and
 * each service's `<SERVICE>_DEFAULTS` takes the ones its `start<Service>()` applies. The port is
 * each service's own ({@link CommonOptionDefaults.port}); the data directory is
 * {@link defaultDataDir}.
 */
export const COMMON_DEFAULTS: CommonDefaults = Object.freeze({
  host: '0.0.0.0',
  logLevel: 'info',
  logFormat: 'auto',
  protoVersionPolicy: 'strict',
  shutdownTimeoutMs: 10_000,
});

/** A service's default `--data-dir`: `./.titan/<service>` (relative to the working directory). */
export function defaultDataDir(service: string): string {
  return `./.titan/${service}`;
}

/** Per-service settings of {@link commonOptions}. */
export interface CommonOptionDefaults {
  /** Service name, used in env names (`TITAN_<SERVICE>_…` is not used; see README) and data dir. */
  service: string;
  port: number;
  /** v1's port variable, if any (e.g. `COORDINATOR_PORT`). */
  portEnv?: readonly string[];
}

/**
 * The options every service takes: `--port`, `--host`, `--data-dir`, `--log-level`, `--log-format`, TLS
 * (`--tls-cert`, `--tls-key`, `--tls-ca` for mTLS), `--proto-version-policy` and
 * `--shutdown-timeout`.
 */
export function commonOptions(defaults: CommonOptionDefaults) {
  return {
    port: portOption({
      flag: 'port',
      env: ['TITAN_PORT', ...(defaults.portEnv ?? [])],
      default: String(defaults.port),
      description: 'gRPC port to listen on (0 picks a free port).',
    }),
    host: requiredStringOption({
      flag: 'host',
      env: ['TITAN_HOST'],
      default: COMMON_DEFAULTS.host,
      description: 'Address to listen on.',
    }),
    dataDir: requiredStringOption({
      flag: 'data-dir',
      env: ['TITAN_DATA_DIR'],
      default: defaultDataDir(defaults.service),
      description: 'Directory for the service state.',
    }),
    logLevel: enumOption(
      { flag: 'log-level', env: ['TITAN_LOG_LEVEL'], default: COMMON_DEFAULTS.logLevel, description: 'Log level (logs go to stdout).' },
      LOG_LEVELS,
    ),
    logFormat: enumOption(
      {
        flag: 'log-format',
        env: ['TITAN_LOG_FORMAT'],
        default: COMMON_DEFAULTS.logFormat,
        description: 'Log lines: json (one JSON object per line), pretty (readable, pino-pretty) or auto (pretty when stdout is a terminal, else json).',
      },
      LOG_FORMATS,
    ),
    tlsCert: stringOption({ flag: 'tls-cert', env: ['TITAN_TLS_CERT'], description: 'Server certificate (PEM); enables TLS.' }),
    tlsKey: stringOption({ flag: 'tls-key', env: ['TITAN_TLS_KEY'], description: 'Server private key (PEM).' }),
    tlsCa: stringOption({
      flag: 'tls-ca',
      env: ['TITAN_TLS_CA'],
      description: 'CA (PEM) that client certificates must chain to; enables mTLS. Also the CA of outgoing TLS calls.',
    }),
    protoVersionPolicy: enumOption(
      {
        flag: 'proto-version-policy',
        env: ['TITAN_PROTO_VERSION_POLICY'],
        default: COMMON_DEFAULTS.protoVersionPolicy,
        description: 'strict: refuse calls without a compatible proto_version; allow-missing: accept calls without the header (v1 clients).',
      },
      PROTO_VERSION_POLICIES as unknown as readonly ['strict', 'allow-missing'],
    ),
    shutdownTimeoutMs: durationOption({
      flag: 'shutdown-timeout',
      env: ['TITAN_SHUTDOWN_TIMEOUT'],
      default: formatDuration(COMMON_DEFAULTS.shutdownTimeoutMs),
      description: 'How long in-flight calls may drain on SIGTERM/SIGINT before they are cut.',
    }),
  };
}
