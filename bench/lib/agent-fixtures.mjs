/**
 * What the agent benchmarks (agent, agent-soak) need around a real agent: session tokens signed
 * like the coordinator's, and a minimal CoordinatorService the agent registers with.
 */
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { importFromPackage } from './packages.mjs';

const protocol = await import('@titancompute/protocol');

/**
 * An Ed25519 key pair and a signer of session tokens for `agentId`, with the claims the
 * coordinator puts in them (the protocol's `sessionTokenPayload`: job id, model, limits,
 * parameters, prompt_sha256), valid for 5 minutes.
 *
 * @param {{ agentId: string, keyId?: string }} options
 * @returns {{ keyId: string, publicKeyPem: string, token(grant: { model: string, maxTokens: number, temperature: number, parameters: Record<string, string>, prompt: string }): string }}
 */
export function createTokenSigner({ agentId, keyId = 'bench-key' }) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: protocol.SESSION_TOKEN_ALGORITHM, typ: protocol.SESSION_TOKEN_TYPE, kid: keyId });
  return {
    keyId,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    token(grant) {
      const now = Math.floor(Date.now() / 1000);
      const body = b64({
        ...protocol.sessionTokenPayload({ agentId, clientId: 'bench', jobId: randomUUID(), ...grant }),
        iss: protocol.SESSION_TOKEN_ISSUER,
        aud: protocol.sessionTokenAudience(agentId),
        sub: 'bench',
        jti: randomUUID(),
        iat: now,
        nbf: now,
        exp: now + 300,
      });
      const sig = sign(null, Buffer.from(`${head}.${body}`), privateKey).toString('base64url');
      return `${head}.${body}.${sig}`;
    },
  };
}

/**
 * Serves a minimal CoordinatorService on 127.0.0.1: registration, GetPublicKey (the signer's
 * key), and health acks, each `ackDelayMs` after its update (0: at once; a delay stands for a
 * coordinator across a network: the next update leaves before the previous ack arrives).
 *
 * @param {{ keyId: string, publicKeyPem: string, ackDelayMs?: number, heartbeatIntervalSeconds?: number }} options
 * @returns {Promise<{ port: number, maxCompletedPerUpdate(): number, stop(): void }>}
 */
export async function startFakeCoordinator({ keyId, publicKeyPem, ackDelayMs = 0, heartbeatIntervalSeconds = 2 }) {
  const niceGrpc = await importFromPackage('agent', 'nice-grpc');
  let maxCompleted = 0;
  const server = niceGrpc.createServer();
  server.add(protocol.CoordinatorServiceDefinition, {
    async requestInference() {
      throw new niceGrpc.ServerError(niceGrpc.Status.UNIMPLEMENTED, 'bench');
    },
    async querySystemStatus() {
      return {};
    },
    async registerAgent() {
      return { status: 'registered', heartbeatIntervalSeconds };
    },
    async *reportHealth(updates) {
      const acks = [];
      let wake;
      let ended = false;
      void (async () => {
        for await (const u of updates) {
          maxCompleted = Math.max(maxCompleted, u.completedJobs.length);
          const ack = { agentId: u.agentId, status: 'ok', echoTimestamp: u.timestamp };
          const deliver = () => {
            acks.push(ack);
            wake?.();
          };
          if (ackDelayMs > 0) setTimeout(deliver, ackDelayMs);
          else deliver();
        }
        ended = true;
        wake?.();
      })().catch(() => {
        ended = true;
        wake?.();
      });
      for (;;) {
        if (acks.length > 0) {
          yield acks.shift();
          continue;
        }
        if (ended) return;
        await new Promise((r) => (wake = r));
        wake = undefined;
      }
    },
    async getPublicKey() {
      return {
        publicKeyPem,
        algorithm: protocol.SESSION_TOKEN_ALGORITHM,
        issuer: protocol.SESSION_TOKEN_ISSUER,
        keyId,
        keys: [{ keyId, publicKeyPem, algorithm: protocol.SESSION_TOKEN_ALGORITHM }],
      };
    },
    async deregisterAgent() {
      return { status: 'deregistered' };
    },
  });
  const port = await server.listen('127.0.0.1:0');
  return { port, maxCompletedPerUpdate: () => maxCompleted, stop: () => server.forceShutdown() };
}
