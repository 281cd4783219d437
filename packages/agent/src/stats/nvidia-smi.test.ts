import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { GpuStatsError } from '../errors.js';
import { NVIDIA_SMI_FIXTURES, writeFakeNvidiaSmi } from '../test-support/fake-nvidia-smi.js';
import { parseNvidiaSmi, queryNvidiaSmi } from './nvidia-smi.js';
import { createStatsSampler } from './system-stats.js';

const fixture = (name: string) => readFileSync(join(NVIDIA_SMI_FIXTURES, name), 'utf8');
const dir = mkdtempSync(join(os.tmpdir(), 'titan-smi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseNvidiaSmi', () => {
  it('reads a single GPU with all values', () => {
    expect(parseNvidiaSmi(fixture('single-h100.txt'))).toEqual([
      {
        index: 0,
        uuid: 'GPU-5c1e2f0a-8f0b-4b3e-9d7a-1f2e3d4c5b6a',
        name: 'NVIDIA H100 80GB HBM3',
        memoryTotalMb: 81559,
        memoryUsedMb: 0,
        memoryFreeMb: 81080,
        utilizationPercent: 0,
        temperatureC: 30,
        powerDrawW: 69.42,
      },
    ]);
  });

  it('reads every GPU of an 8-GPU machine, not just the first', () => {
    const gpus = parseNvidiaSmi(fixture('multi-8x-h100.txt'));
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(gpus[7]).toMatchObject({ memoryUsedMb: 7004, memoryFreeMb: 74076, utilizationPercent: 70, temperatureC: 37, powerDrawW: 209.07 });
    expect(gpus.reduce((s, g) => s + g.memoryTotalMb, 0)).toBe(8 * 81559);
  });

  it('leaves [N/A] values unset', () => {
    const [a, b] = parseNvidiaSmi(fixture('na-values.txt'));
    expect(a).toMatchObject({ name: 'NVIDIA GeForce RTX 3090', memoryFreeMb: 23552, temperatureC: 41 });
    expect(a?.utilizationPercent).toBeUndefined();
    expect(a?.powerDrawW).toBeUndefined();
    expect(b?.temperatureC).toBeUndefined();
    expect(b?.powerDrawW).toBe(27.1);
  });

  it('leaves [Not Supported] values (MIG mode) unset', () => {
    const [gpu] = parseNvidiaSmi(fixture('mig-not-supported.txt'));
    expect(gpu).toMatchObject({ name: 'NVIDIA A100-SXM4-80GB', memoryTotalMb: 81920, temperatureC: 34 });
    expect(gpu?.powerDrawW).toBeUndefined();
    expect(gpu?.utilizationPercent).toBeUndefined();
  });

  it('rejects output that is not the expected CSV', () => {
    expect(() => parseNvidiaSmi(fixture('garbage.txt'))).toThrow(GpuStatsError);
  });
});

describe('queryNvidiaSmi and the stats sampler', () => {
  it('runs the binary and parses its output', async () => {
    const bin = writeFakeNvidiaSmi(dir, { fixture: 'multi-8x-h100.txt' }, 'smi-multi');
    expect(await queryNvidiaSmi({ binary: bin })).toHaveLength(8);
  });

  it('reports the no-driver failure with its message', async () => {
    const bin = writeFakeNvidiaSmi(dir, { fixture: 'no-driver.txt', exitCode: 9 }, 'smi-nodriver');
    await expect(queryNvidiaSmi({ binary: bin })).rejects.toThrow(/couldn't communicate with the NVIDIA driver/);
  });

  it('times out a hanging nvidia-smi', async () => {
    const bin = writeFakeNvidiaSmi(dir, { hang: true }, 'smi-hang');
    await expect(queryNvidiaSmi({ binary: bin, timeoutMs: 200 })).rejects.toThrow(/did not answer within 200 ms/);
  });

  it('a missing nvidia-smi makes a CPU-only agent with one log line, no crash', async () => {
    const warnings: unknown[] = [];
    const logger = { warn: (o: unknown) => warnings.push(o), info: () => undefined } as never;
    const sampler = createStatsSampler({ nvidiaSmi: { binary: join(dir, 'does-not-exist') }, logger });
    await sampler.refreshGpus();
    await sampler.refreshGpus();
    const m = sampler.current();
    expect(m.gpus).toEqual([]);
    expect(m.totalVramMb).toBe(0);
    expect(m.totalRamMb).toBeGreaterThan(0);
    expect(m.freeRamMb).toBeGreaterThan(0);
    expect(warnings).toHaveLength(1);
  });

  it('sums VRAM over all GPUs for the agent totals', async () => {
    const sampler = createStatsSampler({ nvidiaSmi: { binary: writeFakeNvidiaSmi(dir, { fixture: 'multi-8x-h100.txt' }, 'smi-multi2') } });
    await sampler.refreshGpus();
    const m = sampler.current();
    expect(m.gpus).toHaveLength(8);
    expect(m.totalVramMb).toBe(8 * 81559);
    expect(m.freeVramMb).toBe([0, 1, 2, 3, 4, 5, 6, 7].reduce((s, i) => s + 81080 - i * 1000 - 4, 0));
  });
});
