import { ServerError, Status, type CallContext, type ServerMiddleware } from 'nice-grpc-common';
import {
  areProtoVersionsCompatible,
  COMPATIBLE_PROTO_VERSIONS,
  PROTO_COMPATIBLE_METADATA_KEY,
  PROTO_VERSION,
  PROTO_VERSION_METADATA_KEY,
} from '../proto-version.js';

/**
 * How a server treats calls:
 * - `strict` (default): a missing or incompatible `proto_version` is refused;
 * - `allow-missing`: calls without the header pass (clients that predate it, such as
 *   TitanCompute v1 clients); a present but incompatible version is still refused.
 */
export type ProtoVersionPolicy = 'strict' | 'allow-missing';

/** Every policy name, for config validation. */
export const PROTO_VERSION_POLICIES = ['strict', 'allow-missing'] as const satisfies readonly ProtoVersionPolicy[];

/** Options of {@link createProtoVersionServerMiddleware}. */
export interface ProtoVersionServerOptions {
  /** Default `strict`. */
  protoVersionPolicy?: ProtoVersionPolicy;
  /** This server's version. Default: {@link PROTO_VERSION}. */
  protoVersion?: string;
  /** Client versions accepted. Default: {@link COMPATIBLE_PROTO_VERSIONS}. */
  protoVersionCompatible?: readonly string[];
  /**
   * Method paths that are never checked. Default: `grpc.health.v1` and server reflection.
   */
  protoVersionExempt?: (path: string) => boolean;
}

/** Health checks and reflection answer any caller. */
export function isProtoVersionExempt(path: string): boolean {
  return path.startsWith('/grpc.health.v1.') || path.startsWith('/grpc.reflection.');
}

/**
 * The proto_version check of one call, without a middleware around it: exempt paths pass; any
 * other call gets the server's `proto_version` in its response headers and is refused with
 * FAILED_PRECONDITION (a thrown `ServerError`) when its own is missing (under `strict`) or
 * incompatible. Server-kit runs it inside its one service middleware.
 */
export type ProtoVersionCheck = (path: string, context: Pick<CallContext, 'metadata' | 'header'>) => void;

/** Distinct (version, compatible set) pairs remembered by a check: clients send the same few. */
const MAX_REMEMBERED_CLIENT_VERSIONS = 64;

/**
 * Creates the {@link ProtoVersionCheck} of {@link createProtoVersionServerMiddleware}. The
 * verdict on a client's (`proto_version`, `proto_compatible_versions`) pair is remembered, so
 * a call from a known client costs two metadata reads and a map lookup.
 *
 * @example
 * ```ts
 * const check = createProtoVersionCheck({ protoVersionPolicy: 'strict' });
 * check(call.method.path, context); // throws ServerError(FAILED_PRECONDITION) on a mismatch
 * ```
 */
export function createProtoVersionCheck(options: ProtoVersionServerOptions = {}): ProtoVersionCheck {
  const policy = options.protoVersionPolicy ?? 'strict';
  const version = options.protoVersion ?? PROTO_VERSION;
  const compatible = options.protoVersionCompatible ?? COMPATIBLE_PROTO_VERSIONS;
  const exempt = options.protoVersionExempt ?? isProtoVersionExempt;
  const accepted = compatible.join(', ');
  /** `<version>\n<compatible header>` → compatible with this server. */
  const verdicts = new Map<string, boolean>();

  /** The pair asked last: one client's calls come with the same two strings. */
  let last = { version: '', header: '', ok: false };
  const compatibleWith = (clientVersion: string, clientCompatibleHeader: string): boolean => {
    if (clientVersion === last.version && clientCompatibleHeader === last.header) return last.ok;
    const ok = verdictOf(clientVersion, clientCompatibleHeader);
    last = { version: clientVersion, header: clientCompatibleHeader, ok };
    return ok;
  };
  const verdictOf = (clientVersion: string, clientCompatibleHeader: string): boolean => {
    const key = `${clientVersion}\n${clientCompatibleHeader}`;
    let ok = verdicts.get(key);
    if (ok === undefined) {
      const clientCompatible = clientCompatibleHeader
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
      ok = areProtoVersionsCompatible({ version: clientVersion, compatible: clientCompatible }, { version, compatible });
      if (verdicts.size >= MAX_REMEMBERED_CLIENT_VERSIONS) verdicts.clear();
      verdicts.set(key, ok);
    }
    return ok;
  };

  return (path, context) => {
    if (exempt(path)) return;
    context.header.set(PROTO_VERSION_METADATA_KEY, version);
    const clientVersion = context.metadata.get(PROTO_VERSION_METADATA_KEY);
    if (!clientVersion) {
      if (policy !== 'allow-missing') {
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `missing proto_version metadata: client sent none, server speaks proto_version ${version} ` +
            `(accepts ${accepted}). Use a TitanCompute client built on @titancompute/protocol, send ` +
            `metadata "proto_version: ${version}", or start the server with --proto-version-policy allow-missing ` +
            'for clients that predate the header.',
        );
      }
    } else if (!compatibleWith(clientVersion, context.metadata.get(PROTO_COMPATIBLE_METADATA_KEY) ?? '')) {
      throw new ServerError(
        Status.FAILED_PRECONDITION,
        `proto_version mismatch: client sent ${clientVersion}, server speaks ${version} (accepts ${accepted}). ` +
          'The two sides were built from incompatible contracts: upgrade the older side to a release ' +
          'built from the same proto/ (see COMPATIBLE_PROTO_VERSIONS).',
      );
    }
  };
}

/**
 * Server middleware that refuses calls whose `proto_version` metadata is missing (under
 * `strict`) or incompatible, with FAILED_PRECONDITION naming both versions, and sends the
 * server's `proto_version` in the response headers of every call (see {@link createProtoVersionCheck}).
 *
 * @example
 * ```ts
 * const server = createServer().use(createProtoVersionServerMiddleware({ protoVersionPolicy: 'strict' }));
 * ```
 */
export function createProtoVersionServerMiddleware(options: ProtoVersionServerOptions = {}): ServerMiddleware {
  const check = createProtoVersionCheck(options);
  return async function* protoVersionServerMiddleware(call, context) {
    check(call.method.path, context);
    return yield* call.next(call.request, context);
  };
}
