#!/usr/bin/env node
/**
 * `pnpm bench [name ...]`: runs every bench/<name>.bench.mjs (or the named ones) one after
 * another and writes their markdown sections into docs/benchmarks.md together with the
 * command and the machine they ran on. Each bench compares against a baseline measured in
 * the same run, so the ratios are what to read; absolute numbers depend on the machine.
 *
 * Sections of benches not run this time are kept from the previous file.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem, platform, release } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const benchDir = join(root, 'bench');
const docFile = join(root, 'docs/benchmarks.md');
const wanted = process.argv.slice(2).filter((a) => a !== '--');
const all = readdirSync(benchDir)
  .filter((f) => f.endsWith('.bench.mjs'))
  .map((f) => f.replace(/\.bench\.mjs$/, ''))
  .sort();
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`unknown bench: ${unknown.join(', ')} (have: ${all.join(', ')})`);
  process.exit(2);
}
const selected = wanted.length ? wanted : all;
const TIMEOUT_MS = 8 * 60_000;
// The agent soak sends 20,000 requests: it gets longer.
const timeoutOf = (name) => (name === 'agent-soak' ? 20 * 60_000 : TIMEOUT_MS);

function runBench(name) {
  return new Promise((resolve) => {
    const started = Date.now();
    // --expose-gc: benches that sample memory (agent-soak) collect garbage before each sample.
    const child = spawn(process.execPath, ['--expose-gc', join(benchDir, `${name}.bench.mjs`)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutOf(name));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = ((Date.now() - started) / 1000).toFixed(0);
      if (code === 0 && out.trim()) resolve(`${out.trim()}\n\n_Ran in ${seconds} s._`);
      else resolve(`## ${name}\n\nThis benchmark failed (exit ${code ?? signal}) after ${seconds} s; see the console output of \`pnpm bench ${name}\`.`);
    });
  });
}

const previous = existsSync(docFile) ? readFileSync(docFile, 'utf8') : '';
const sectionOf = (text, name) => {
  const m = new RegExp(`<!-- bench:${name} -->\\n([\\s\\S]*?)\\n<!-- /bench:${name} -->`).exec(text);
  return m?.[1];
};

const sections = new Map();
for (const name of all) {
  if (selected.includes(name)) {
    console.error(`\n=== bench ${name} ===`);
    const section = await runBench(name);
    sections.set(name, section);
    process.stdout.write(`${section}\n\n`);
  } else {
    const kept = sectionOf(previous, name);
    if (kept) sections.set(name, kept);
  }
}

const cpu = cpus();
const machine = [
  `- CPU: ${cpu[0]?.model ?? 'unknown'} × ${cpu.length} cores`,
  `- Memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
  `- OS: ${platform()} ${release()}`,
  `- Node.js: ${process.version}`,
  `- Date: ${new Date().toISOString().slice(0, 10)}`,
].join('\n');

const doc = [
  '# Benchmarks',
  '',
  'Produced by `pnpm bench` (which builds first and runs `node bench/run.mjs`; `pnpm bench <name>` reruns one).',
  'Every benchmark measures a baseline in the same run on the same machine and reports ratios against it:',
  'machines are noisy, so compare ratios, not absolute numbers. Loads only target 127.0.0.1.',
  '',
  '## Machine of the last run',
  '',
  machine,
  '',
  ...[...sections.entries()].flatMap(([name, text]) => [`<!-- bench:${name} -->`, text, `<!-- /bench:${name} -->`, '']),
].join('\n');
mkdirSync(dirname(docFile), { recursive: true });
writeFileSync(docFile, doc);
console.error(`\nwrote ${docFile}`);
