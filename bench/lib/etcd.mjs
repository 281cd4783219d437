/**
 * etcd as a benchmark baseline: Debian's `etcd-server` (installed here when absent), one member
 * started on free loopback ports with a throw-away data dir, and the two Lease RPCs a keep-alive
 * load needs, spoken with plain @grpc/grpc-js. The four messages involved are encoded by hand
 * (field numbers from etcd's `etcdserverpb/rpc.proto`), so no etcd client library is needed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { freePort } from '@titancompute/test-support/free-port';

const ETCD = '/usr/bin/etcd';

/**
 * The path of Debian's etcd, installing `etcd-server` with apt-get first when it is missing (and
 * `apt-get update` once if the package is not known yet).
 *
 * @param {(...parts: unknown[]) => void} log - Progress lines.
 * @returns {string | undefined} `/usr/bin/etcd`, or undefined when it could not be installed.
 */
export function ensureEtcd(log) {
  if (existsSync(ETCD)) return ETCD;
  const install = () =>
    execFileSync('apt-get', ['install', '-y', '-qq', 'etcd-server'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  try {
    log('etcd is not installed: apt-get install -y etcd-server');
    try {
      install();
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'pipe'] });
      install();
    }
  } catch (err) {
    log(
      'could not install etcd-server:',
      String(err.stderr ?? err.message)
        .trim()
        .split('\n')
        .at(-1),
    );
  }
  return existsSync(ETCD) ? ETCD : undefined;
}

/** `etcd --version`'s first line, e.g. `etcd Version: 3.4.23`. */
export function etcdVersion(etcd) {
  return execFileSync(etcd, ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
}

/**
 * Starts one etcd member on free loopback ports. It keeps its WAL and snapshots in a temporary
 * directory that `stop()` removes.
 *
 * @param {string} etcd - The binary.
 * @returns {Promise<{ address: string, pid: number, stop(): Promise<void> }>} Once its client port accepts connections.
 */
export async function startEtcd(etcd) {
  const dir = mkdtempSync(join(tmpdir(), 'titan-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const child = spawn(
    etcd,
    [
      '--name=default',
      `--data-dir=${join(dir, 'data')}`,
      `--listen-client-urls=http://127.0.0.1:${client}`,
      `--advertise-client-urls=http://127.0.0.1:${client}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=default=http://127.0.0.1:${peer}`,
      '--logger=zap',
      '--log-level=error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const stop = () =>
    new Promise((resolve) => {
      const done = () => {
        rmSync(dir, { recursive: true, force: true });
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once('exit', done);
      child.kill('SIGTERM');
    });
  const address = `127.0.0.1:${client}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd exited (${child.exitCode}): ${stderr}`);
    if (await accepts(client)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`etcd did not listen on ${address} within 20 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { address, pid: child.pid, stop };
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const writeVarintField = (w, field, value) => w.tag(field, WireType.Varint).int64(value);

/** LeaseGrantRequest { int64 TTL = 1; int64 ID = 2; } */
export function encodeLeaseGrantRequest({ ttl, id }) {
  const w = new BinaryWriter();
  writeVarintField(w, 1, ttl);
  if (id) writeVarintField(w, 2, id);
  return Buffer.from(w.finish());
}

/** LeaseKeepAliveRequest { int64 ID = 1; } */
export function encodeLeaseKeepAliveRequest(id) {
  return Buffer.from(writeVarintField(new BinaryWriter(), 1, id).finish());
}

/**
 * LeaseGrantResponse { header = 1; int64 ID = 2; int64 TTL = 3; string error = 4; } and
 * LeaseKeepAliveResponse { header = 1; int64 ID = 2; int64 TTL = 3; }: ID, TTL and error.
 */
export function decodeLeaseResponse(bytes) {
  const r = new BinaryReader(bytes);
  const out = { id: 0, ttl: 0, error: '' };
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 2 && wireType === WireType.Varint) out.id = Number(r.int64());
    else if (field === 3 && wireType === WireType.Varint) out.ttl = Number(r.int64());
    else if (field === 4 && wireType === WireType.LengthDelimited) out.error = r.string();
    else r.skip(wireType);
  }
  return out;
}

/** gRPC method paths of etcd's Lease service. */
export const LEASE_GRANT = '/etcdserverpb.Lease/LeaseGrant';
export const LEASE_KEEP_ALIVE = '/etcdserverpb.Lease/LeaseKeepAlive';
