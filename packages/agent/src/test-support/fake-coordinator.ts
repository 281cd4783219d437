import { createServer, ServerError, Status, type Metadata, type Server } from 'nice-grpc';
import { CoordinatorServiceDefinition, type AgentRegistration, type DeregistrationRequest, type HealthUpdate } from '@titancompute/protocol';
import type { TestSigner } from './token-signer.js';

/** An in-process CoordinatorService that records what agents send. */
export interface FakeCoordinator {
  port: number;
  address: string;
  registrations: AgentRegistration[];
  updates: HealthUpdate[];
  deregistrations: DeregistrationRequest[];
  /** agent_id → the credential its first registration presented (trust on first use, like the real coordinator). */
  credentials: Map<string, string>;
  /** Calls refused with PERMISSION_DENIED because they presented another credential. */
  refused: number;
  /** Keys served by GetPublicKey (current first); empty → GetPublicKey fails UNAVAILABLE. */
  signers: TestSigner[];
  /** Calls of GetPublicKey so far. */
  keyFetches: number;
  /** Forget registered agents: the next update is acked with reregister=true. */
  forgetAgents(): void;
  /** Waits until `predicate` holds (polling every 20 ms), or throws after `timeoutMs`. */
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Options of {@link startFakeCoordinator}. */
export interface FakeCoordinatorOptions {
  joinToken?: string;
  signers?: TestSigner[];
  /** Port to bind (for restart tests); default 0. */
  port?: number;
  /** heartbeat_interval_seconds returned by RegisterAgent; default 0 (agent's own). */
  heartbeatIntervalSeconds?: number;
  /** Host to bind (another loopback address, e.g. 127.0.0.2, for a name with several addresses); default 127.0.0.1. */
  host?: string;
  /** Ack health updates; default true. False: updates are recorded and never acked (a hung coordinator). */
  acks?: boolean;
  /** RegisterAgent records the registration, then answers only after this long (a slow answer); default 0. */
  registerDelayMs?: number;
}

/** Starts a {@link FakeCoordinator} on 127.0.0.1 (or `host`) implementing the real generated definition. */
export async function startFakeCoordinator(options: FakeCoordinatorOptions = {}): Promise<FakeCoordinator> {
  const joinToken = options.joinToken ?? 'join-secret';
  const known = new Set<string>();
  const server: Server = createServer();
  const checkAuth = (metadata: Metadata) => {
    if (metadata.get('authorization') !== `Bearer ${joinToken}`) throw new ServerError(Status.UNAUTHENTICATED, 'bad join token');
  };
  const checkCredential = (agentId: string, credential: string, bind: boolean) => {
    const bound = fake.credentials.get(agentId);
    if (bound === undefined) {
      if (bind) fake.credentials.set(agentId, credential);
      return;
    }
    if (bound !== credential) {
      fake.refused += 1;
      throw new ServerError(Status.PERMISSION_DENIED, `agent_id "${agentId}" is bound to another credential`);
    }
  };
  const fake: FakeCoordinator = {
    port: 0,
    address: '',
    registrations: [],
    updates: [],
    deregistrations: [],
    credentials: new Map(),
    refused: 0,
    signers: options.signers ?? [],
    keyFetches: 0,
    forgetAgents: () => known.clear(),
    async waitFor(predicate, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > end) throw new Error('fake coordinator: condition not met in time');
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      server.forceShutdown();
    },
  };
  server.add(CoordinatorServiceDefinition, {
    async requestInference() {
      throw new ServerError(Status.UNIMPLEMENTED, 'fake');
    },
    async querySystemStatus() {
      return {};
    },
    async registerAgent(request, context) {
      checkAuth(context.metadata);
      checkCredential(request.agentId, request.agentCredential, true);
      fake.registrations.push(request);
      known.add(request.agentId);
      if (options.registerDelayMs) await new Promise((r) => setTimeout(r, options.registerDelayMs));
      return { status: 'registered', message: 'ok', heartbeatIntervalSeconds: options.heartbeatIntervalSeconds ?? 0 };
    },
    async *reportHealth(updates, context) {
      checkAuth(context.metadata);
      let first = true;
      for await (const update of updates) {
        if (first) checkCredential(update.agentId, update.agentCredential, false);
        first = false;
        fake.updates.push(update);
        if (options.acks === false) continue;
        yield { agentId: update.agentId, status: 'ok', echoTimestamp: update.timestamp, reregister: !known.has(update.agentId) };
      }
    },
    async getPublicKey() {
      fake.keyFetches++;
      const [current] = fake.signers;
      if (!current) throw new ServerError(Status.UNAVAILABLE, 'no keys');
      return {
        publicKeyPem: current.publicKeyPem,
        algorithm: 'EdDSA',
        issuer: 'titancompute-coordinator',
        keyId: current.kid,
        keys: fake.signers.map((s) => s.publicKey()),
      };
    },
    async deregisterAgent(request, context) {
      checkAuth(context.metadata);
      checkCredential(request.agentId, request.agentCredential, false);
      fake.deregistrations.push(request);
      known.delete(request.agentId);
      return { status: 'deregistered' };
    },
  });
  const host = options.host ?? '127.0.0.1';
  fake.port = await server.listen(`${host}:${options.port ?? 0}`);
  fake.address = `${host}:${fake.port}`;
  return fake;
}
