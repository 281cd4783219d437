import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { COMPATIBLE_PROTO_VERSIONS, PROTO_VERSION } from './proto-version.js';

const repo = fileURLToPath(new URL('../../..', import.meta.url));

/** Runs `pnpm generate` (scripts/generate.mjs) in a scratch copy of the contract. */
function generate(root: string, ...args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(root, 'scripts/generate.mjs'), ...args], { cwd: root }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code) : 0, output: stdout + stderr }),
    );
  });
}

describe('proto_version scheme (pnpm generate)', () => {
  let root: string;
  const protoFile = () => join(root, 'proto/stats/v1/stats.proto');
  const version = () => readFileSync(join(root, 'proto/proto_version'), 'utf8').trim();
  const compatible = () => readFileSync(join(root, 'proto/compatible_versions'), 'utf8').trim().split('\n');

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'titan-generate-'));
    for (const entry of ['proto', 'scripts', 'buf.yaml', 'buf.gen.yaml']) cpSync(join(repo, entry), join(root, entry), { recursive: true });
    cpSync(join(repo, 'packages/protocol/src/gen'), join(root, 'packages/protocol/src/gen'), { recursive: true });
    symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('matches the committed contract, and --check passes', async () => {
    expect(version()).toBe(PROTO_VERSION);
    expect(compatible()).toEqual([...COMPATIBLE_PROTO_VERSIONS]);
    await expect(generate(root, '--check')).resolves.toMatchObject({ code: 0 });
  });

  it('keeps the version when only comments change', async () => {
    writeFileSync(protoFile(), readFileSync(protoFile(), 'utf8').replace('// StatsService stores', '// A reworded comment.\n// StatsService stores'));
    await expect(generate(root)).resolves.toMatchObject({ code: 0 });
    expect(version()).toBe(PROTO_VERSION);
  });

  it('makes a new version for an additive change and keeps the old one compatible; --check sees staleness', async () => {
    writeFileSync(protoFile(), readFileSync(protoFile(), 'utf8').replace('bool success = 1;', 'bool success = 1;\n  string note = 2;'));
    const stale = await generate(root, '--check');
    expect(stale.code).toBe(1);
    expect(stale.output).toContain('proto/proto_version is stale');
    await expect(generate(root)).resolves.toMatchObject({ code: 0 });
    expect(version()).not.toBe(PROTO_VERSION);
    expect(compatible()).toEqual([...COMPATIBLE_PROTO_VERSIONS, version()]);
    expect(readFileSync(join(root, 'packages/protocol/src/gen/proto-version.ts'), 'utf8')).toContain(version());
  });

  it('refuses a breaking change unless it is accepted, which resets the compatible set', async () => {
    const before = version();
    writeFileSync(protoFile(), readFileSync(protoFile(), 'utf8').replace('string note = 2;', 'int64 note = 2;'));
    const refused = await generate(root);
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('breaks the published contract');
    expect(version()).toBe(before);
    await expect(generate(root, '--accept-breaking')).resolves.toMatchObject({ code: 0 });
    expect(version()).not.toBe(before);
    expect(compatible()).toEqual([version()]);
  });
});
