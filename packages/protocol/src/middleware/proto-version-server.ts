import { ServerError, Status, type ServerMiddleware } from 'nice-grpc-common';
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
 * Server middleware that refuses calls whose `proto_version` metadata is missing (under
 * `strict`) or incompatible, with FAILED_PRECONDITION naming both versions, and sends the
 * server's `proto_version` in the response headers of every call.
 *
 * @example
 * ```ts
 * const server = createServer().use(createProtoVersionServerMiddleware({ protoVersionPolicy: 'strict' }));
 * ```
 */
export function createProtoVersionServerMiddleware(options: ProtoVersionServerOptions = {}): ServerMiddleware {
  const policy = options.protoVersionPolicy ?? 'strict';
  const version = options.protoVersion ?? PROTO_VERSION;
  const compatible = options.protoVersionCompatible ?? COMPATIBLE_PROTO_VERSIONS;
  const exempt = options.protoVersionExempt ?? isProtoVersionExempt;
  const accepted = compatible.join(', ');

  return async function* protoVersionServerMiddleware(call, context) {
    if (exempt(call.method.path)) {
      return yield* call.next(call.request, context);
    }
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
    } else {
      const clientCompatible = (context.metadata.get(PROTO_COMPATIBLE_METADATA_KEY) ?? '')
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
      const ok = areProtoVersionsCompatible({ version: clientVersion, compatible: clientCompatible }, { version, compatible });
      if (!ok) {
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `proto_version mismatch: client sent ${clientVersion}, server speaks ${version} (accepts ${accepted}). ` +
            'The two sides were built from incompatible contracts: upgrade the older side to a release ' +
            'built from the same proto/ (see COMPATIBLE_PROTO_VERSIONS).',
        );
      }
    }
    return yield* call.next(call.request, context);
  };
}
