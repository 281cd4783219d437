import { COMPATIBLE_PROTO_VERSIONS, PROTO_VERSION } from './gen/proto-version.js';

export { COMPATIBLE_PROTO_VERSIONS, PROTO_VERSION };

/** Metadata key that carries the caller's contract hash on every call. */
export const PROTO_VERSION_METADATA_KEY = 'proto_version';
/**
 * Metadata key that carries, comma-separated, every version the caller's contract is
 * compatible with, so an older server can accept a newer client (rolling upgrades).
 */
export const PROTO_COMPATIBLE_METADATA_KEY = 'proto_compatible_versions';

/**
 * Whether two sides can talk: either side's version is in the other side's compatible set.
 *
 * @example
 * ```ts
 * areProtoVersionsCompatible(
 *   { version: clientVersion, compatible: clientSet },
 *   { version: PROTO_VERSION, compatible: COMPATIBLE_PROTO_VERSIONS },
 * );
 * ```
 */
export function areProtoVersionsCompatible(
  a: { version: string; compatible: readonly string[] },
  b: { version: string; compatible: readonly string[] },
): boolean {
  return a.version === b.version || b.compatible.includes(a.version) || a.compatible.includes(b.version);
}
