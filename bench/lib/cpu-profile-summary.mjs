#!/usr/bin/env node
/**
 * Summarizes a V8 `.cpuprofile` (what `node --cpu-prof` writes): where the process's CPU time
 * went, by function (self and inclusive) and by owner (a package of this repository, a
 * dependency under node_modules, Node's own internals, GC, idle, and `(not running)`: gaps
 * between samples longer than ten sampling intervals, when the process got no CPU). Used to show in
 * docs/benchmarks.md which costs are ours and which a dependency's.
 *
 * CLI: `node bench/lib/cpu-profile-summary.mjs <file.cpuprofile> [--top N] [--match <regexp>]
 * [--window <file.json>] [--per <n>]` prints the tables as markdown; `--match` also lists the
 * inclusive time of the functions whose `name (url)` matches; `--window` keeps only the samples
 * between `fromUs` and `toUs` of the JSON file (the monotonic clock of `process.hrtime`, which
 * V8's profile timestamps share) and divides by its `requests`; `--per <n>` divides by n.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Who a call frame belongs to: `packages/<name>` for this repository's code, the package name
 * for a dependency, `node` for Node's internals, or the pseudo frames `(garbage collector)`,
 * `(idle)`, `(program)`.
 *
 * @param {{ url: string, functionName: string }} frame - A V8 call frame.
 * @returns {string} The owner.
 */
export function ownerOf(frame) {
  const { url, functionName } = frame;
  if (!url) return functionName.startsWith('(') ? functionName : 'native';
  if (url.startsWith('node:')) return 'node';
  const dep = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return dep[1];
  const ours = /\/packages\/([^/]+)\//.exec(url);
  return ours ? `packages/${ours[1]}` : url;
}

/**
 * Self and inclusive CPU time (ms) per function and per owner of a profile.
 *
 * @param {{ nodes: any[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }} profile - A parsed `.cpuprofile`.
 * @param {{ fromUs?: number, toUs?: number }} [window] - Only samples taken in this window (profile clock, µs).
 * @returns {{ totalMs: number, byOwner: Map<string, number>, selfByFunction: Map<string, number>, inclusiveByFunction: Map<string, number>, inclusiveByOwner: Map<string, number> }}
 */
export function summarizeCpuProfile(profile, window = {}) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n) => {
    const f = n.callFrame;
    const file = f.url ? `${f.url.replace(/^.*\/(node_modules|packages)\//, '$1/')}:${f.lineNumber + 1}` : '';
    return `${f.functionName || '(anonymous)'}${file ? ` (${file})` : ''}`;
  };
  const add = (map, key, ms) => map.set(key, (map.get(key) ?? 0) + ms);
  const byOwner = new Map();
  const selfByFunction = new Map();
  const inclusiveByFunction = new Map();
  const inclusiveByOwner = new Map();
  let totalMs = 0;
  let at = profile.startTime;
  // A gap far longer than the sampling interval means the process did not run (the machine was
  // busy elsewhere): it is counted as such, not given to whatever ran last.
  const deltas = Float64Array.from(profile.timeDeltas).sort();
  const gapUs = 10 * (deltas[Math.floor(deltas.length / 2)] || 1000);
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i];
    // A sample's time is the delta to the next sample (the last one gets the mean).
    const us = profile.timeDeltas[i + 1] ?? (profile.endTime - profile.startTime) / profile.samples.length;
    if ((window.fromUs !== undefined && at < window.fromUs) || (window.toUs !== undefined && at > window.toUs)) continue;
    const node = nodes.get(profile.samples[i]);
    if (!node) continue;
    if (us > gapUs) {
      const stalled = (us - gapUs) / 1000;
      totalMs += stalled;
      add(byOwner, '(not running)', stalled);
      add(selfByFunction, '(not running)', stalled);
    }
    const ms = Math.min(us, gapUs) / 1000;
    totalMs += ms;
    add(byOwner, ownerOf(node.callFrame), ms);
    add(selfByFunction, keyOf(node), ms);
    const seenFunctions = new Set();
    const seenOwners = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const n = nodes.get(id);
      const key = keyOf(n);
      const owner = ownerOf(n.callFrame);
      if (!seenFunctions.has(key)) {
        seenFunctions.add(key);
        add(inclusiveByFunction, key, ms);
      }
      if (!seenOwners.has(owner)) {
        seenOwners.add(owner);
        add(inclusiveByOwner, owner, ms);
      }
    }
  }
  return { totalMs, byOwner, selfByFunction, inclusiveByFunction, inclusiveByOwner };
}

/**
 * The summary as markdown tables: time by owner (self and inclusive), the top functions by self
 * time, and the inclusive time of the functions matching `match`.
 *
 * @param {ReturnType<typeof summarizeCpuProfile>} summary - From {@link summarizeCpuProfile}.
 * @param {{ top?: number, match?: RegExp, per?: { count: number, label: string } }} [options] - `per`: also show µs per unit (e.g. per request).
 * @returns {string} Markdown.
 */
export function formatCpuProfileSummary(summary, options = {}) {
  const top = options.top ?? 15;
  const { totalMs } = summary;
  const pct = (ms) => `${((100 * ms) / totalMs).toFixed(1)} %`;
  const per = options.per ? (ms) => ` | ${((1000 * ms) / options.per.count).toFixed(1)}` : () => '';
  const perHead = options.per ? ` | µs per ${options.per.label}` : '';
  const perRule = options.per ? '|---:' : '';
  const sorted = (map) => [...map.entries()].sort((a, b) => b[1] - a[1]);
  const out = [`Sampled ${totalMs.toFixed(0)} ms.`, '', `| owner | self ms | self share | inclusive ms${perHead} |`, `|---|---:|---:|---:${perRule}|`];
  for (const [owner, ms] of sorted(summary.byOwner).slice(0, top)) {
    const incl = summary.inclusiveByOwner.get(owner) ?? ms;
    out.push(`| ${owner} | ${ms.toFixed(0)} | ${pct(ms)} | ${incl.toFixed(0)}${per(ms)} |`);
  }
  out.push('', `| function (self time) | self ms | share${perHead} |`, `|---|---:|---:${perRule}|`);
  for (const [fn, ms] of sorted(summary.selfByFunction).slice(0, top)) out.push(`| \`${fn}\` | ${ms.toFixed(0)} | ${pct(ms)}${per(ms)} |`);
  if (options.match) {
    out.push('', `| function (inclusive time) | inclusive ms | share${perHead} |`, `|---|---:|---:${perRule}|`);
    for (const [fn, ms] of sorted(summary.inclusiveByFunction).filter(([fn]) => options.match.test(fn))) {
      out.push(`| \`${fn}\` | ${ms.toFixed(0)} | ${pct(ms)}${per(ms)} |`);
    }
  }
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const file = args.find((a, i) => !a.startsWith('--') && !['--top', '--match', '--per', '--window'].includes(args[i - 1]));
  if (!file) {
    console.error('usage: node bench/lib/cpu-profile-summary.mjs <file.cpuprofile> [--top N] [--match <regexp>] [--window <file.json>] [--per <requests>]');
    process.exit(2);
  }
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const window = opt('--window') ? JSON.parse(readFileSync(opt('--window'), 'utf8')) : {};
  const summary = summarizeCpuProfile(JSON.parse(readFileSync(file, 'utf8')), window);
  const per = opt('--per') ?? window.requests;
  process.stdout.write(
    `${formatCpuProfileSummary(summary, {
      top: Number(opt('--top') ?? 15),
      match: opt('--match') ? new RegExp(opt('--match')) : undefined,
      per: per ? { count: Number(per), label: 'request' } : undefined,
    })}\n`,
  );
}
