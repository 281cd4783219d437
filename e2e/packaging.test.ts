/**
 * The published packages install and work outside the monorepo: `pnpm pack` the protocol and
 * client packages, `npm install` both tarballs into an empty project in the temp dir, then load
 * the SDK from an ESM and a CommonJS consumer, type-check TypeScript consumers in both module
 * modes, and run the installed `titan` bin. Needs a build (`pnpm build`; `pnpm test` builds first).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(process.cwd());
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let work: string;
let project: string;

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
}

beforeAll(() => {
  if (!existsSync(join(root, 'packages/client/dist/cjs/index.js')) || !existsSync(join(root, 'packages/protocol/dist/cjs/index.js'))) {
    run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', 'packages/protocol', 'packages/client'], root);
    run(process.execPath, ['scripts/build-cjs.mjs'], root);
  }
  work = mkdtempSync(join(tmpdir(), 'titan-pack-'));
  const tarballs = join(work, 'tarballs');
  for (const pkg of ['protocol', 'client']) run('pnpm', ['pack', '--pack-destination', tarballs], join(root, 'packages', pkg));
  project = join(work, 'consumer');
  execFileSync('mkdir', ['-p', project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'titan-consumer', version: '1.0.0', private: true }));
  const files = readdirSync(tarballs).map((f) => join(tarballs, f));
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...files], project);
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('published @titancompute/client', () => {
  it('installs from the tarballs with plain npm, protocol satisfying the client dependency', () => {
    const listed = JSON.parse(run('npm', ['ls', '--json', '--all', '@titancompute/protocol'], project)) as {
      dependencies: Record<string, { version: string; dependencies?: Record<string, { version: string }> }>;
    };
    expect(listed.dependencies['@titancompute/client']?.version).toBe('0.1.0');
    expect(listed.dependencies['@titancompute/protocol']?.version).toBe('0.1.0');
  });

  it('loads and constructs a client from an ESM consumer', () => {
    writeFileSync(
      join(project, 'esm.mjs'),
      `import { TitanClient, InstanceManagerClient, NoAgentsError, TitanError, Status } from '@titancompute/client';
       const c = new TitanClient({ coordinator: '127.0.0.1:50051' });
       const im = new InstanceManagerClient();
       console.log(JSON.stringify({ addr: c.coordinatorAddress, im: im.address, sub: new NoAgentsError('x', 'm') instanceof TitanError, unavailable: Status.UNAVAILABLE }));
       c.close(); im.close();`,
    );
    expect(JSON.parse(run(process.execPath, ['esm.mjs'], project))).toEqual({ addr: '127.0.0.1:50051', im: '127.0.0.1:50050', sub: true, unavailable: 14 });
  });

  it('loads and constructs a client from a CommonJS consumer', () => {
    writeFileSync(
      join(project, 'cjs.cjs'),
      `const { TitanClient, CapacityError, TitanError } = require('@titancompute/client');
       const c = new TitanClient({ coordinator: '10.0.0.1:50051', clientId: 'me' });
       console.log(JSON.stringify({ addr: c.coordinatorAddress, id: c.clientId, sub: new CapacityError('busy', 5) instanceof TitanError }));
       c.close();`,
    );
    expect(JSON.parse(run(process.execPath, ['cjs.cjs'], project))).toEqual({ addr: '10.0.0.1:50051', id: 'me', sub: true });
  });

  it('errors thrown by the CommonJS build are instanceof the ESM classes and vice versa (client and protocol)', () => {
    writeFileSync(
      join(project, 'dual.mjs'),
      `import { createRequire } from 'node:module';
       import * as esm from '@titancompute/client';
       import * as esmProtocol from '@titancompute/protocol';
       const cjs = createRequire(import.meta.url)('@titancompute/client');
       const cjsProtocol = createRequire(import.meta.url)('@titancompute/protocol');
       const checks = {
         twoCopies: esm.TitanError !== cjs.TitanError && esmProtocol.ProtocolError !== cjsProtocol.ProtocolError,
         cjsBaseInEsm: new cjs.TitanError('x', 14) instanceof esm.TitanError,
         esmBaseInCjs: new esm.TitanError('x', 14) instanceof cjs.TitanError,
         cjsSubInEsmBase: new cjs.CapacityError('busy', 5) instanceof esm.TitanError,
         cjsSubInEsmSub: new cjs.CapacityError('busy', 5) instanceof esm.CapacityError,
         esmSubInCjsSub: new esm.NoAgentsError('none', 'm') instanceof cjs.NoAgentsError,
         abortInEsm: new cjs.TitanAbortError() instanceof esm.TitanAbortError,
         otherSubclass: new cjs.CapacityError('busy', 5) instanceof esm.NoAgentsError,
         baseInSub: new cjs.TitanError('x', 14) instanceof esm.CapacityError,
         plainError: new Error('x') instanceof esm.TitanError,
         lookAlike: Object.assign(new Error('x'), { name: 'TitanError', code: 14 }) instanceof esm.TitanError,
         passedThrough: (() => { const e = new cjs.CapacityError('busy', 5); return esm.toTitanError(e, { target: 'coordinator', address: 'a:1' }) === e; })(),
         tlsInEsm: new cjsProtocol.TlsConfigError('x', { file: 'f', role: 'ca' }) instanceof esmProtocol.ProtocolError,
         tlsInCjs: new esmProtocol.TlsConfigError('x', { file: 'f', role: 'ca' }) instanceof cjsProtocol.TlsConfigError,
         protocolNotTitan: new cjsProtocol.ProtocolError('x') instanceof esm.TitanError,
         cjsTlsMapped: esm.toTitanError(new cjsProtocol.TlsConfigError('x', { file: 'f', role: 'ca' }), { target: 'agent', address: 'a:1' }) instanceof cjs.ClientConfigError,
       };
       console.log(JSON.stringify(checks));`,
    );
    expect(JSON.parse(run(process.execPath, ['dual.mjs'], project))).toEqual({
      twoCopies: true,
      cjsBaseInEsm: true,
      esmBaseInCjs: true,
      cjsSubInEsmBase: true,
      cjsSubInEsmSub: true,
      esmSubInCjsSub: true,
      abortInEsm: true,
      otherSubclass: false,
      baseInSub: false,
      plainError: false,
      lookAlike: false,
      passedThrough: true,
      tlsInEsm: true,
      tlsInCjs: true,
      protocolNotTitan: false,
      cjsTlsMapped: true,
    });
  });

  it('type-checks TypeScript consumers in ESM (.mts) and CommonJS (.cts) mode', () => {
    const body = `
      const client = new TitanClient({ coordinator: '127.0.0.1:50051', maxAttempts: 2 });
      export async function main(): Promise<number> {
        let tokens = 0;
        for await (const chunk of client.generate({ model: 'm', prompt: 'p', maxTokens: 8 })) {
          if (chunk.done) tokens = chunk.stats.tokens;
          else { const text: string = chunk.text; void text; }
        }
        const status: ClusterStatus = await client.status();
        const kind: InstanceType = 'INFERENCE_AGENT';
        // @ts-expect-error -- stats are typed (would be silently allowed if the types were missing)
        const wrong: string = (await client.complete({ model: 'm', prompt: 'p' })).stats.tokens;
        void wrong; void kind;
        return tokens + status.totalAgents;
      }`;
    writeFileSync(join(project, 'consumer-esm.mts'), `import { TitanClient, type ClusterStatus, type InstanceType } from '@titancompute/client';${body}`);
    writeFileSync(join(project, 'consumer-cjs.cts'), `import { TitanClient, type ClusterStatus, type InstanceType } from '@titancompute/client';${body}`);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          lib: ['ES2022', 'DOM'],
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: [],
        },
        files: ['consumer-esm.mts', 'consumer-cjs.cts'],
      }),
    );
    expect(() => run(process.execPath, [tsc, '-p', 'tsconfig.json'], project)).not.toThrow();
  });

  it('ships a working `titan` bin', () => {
    const help = run(join(project, 'node_modules/.bin/titan'), ['--help'], project);
    expect(help).toMatch(/Usage: titan/);
    expect(help).toMatch(/Exit codes:/);
  });
});
