import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Directory of the recorded nvidia-smi outputs (src/stats/fixtures). */
export const NVIDIA_SMI_FIXTURES = fileURLToPath(new URL('../stats/fixtures/', import.meta.url));

/**
 * Writes an executable fake nvidia-smi into `dir`: prints a fixture to stdout (or stderr with
 * `exitCode` ≠ 0), or hangs. Returns its path.
 */
export function writeFakeNvidiaSmi(dir: string, behaviour: { fixture?: string; exitCode?: number; hang?: boolean }, name = 'nvidia-smi'): string {
  const path = join(dir, name);
  const lines = ['#!/bin/sh'];
  if (behaviour.hang) lines.push('exec sleep 30');
  if (behaviour.fixture) {
    const file = join(NVIDIA_SMI_FIXTURES, behaviour.fixture);
    lines.push(behaviour.exitCode ? `cat '${file}' 1>&2` : `cat '${file}'`);
  }
  lines.push(`exit ${behaviour.exitCode ?? 0}`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  chmodSync(path, 0o755);
  return path;
}
