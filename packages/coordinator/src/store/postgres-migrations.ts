/**
 * The coordinator's PostgreSQL schema (`--store postgres`), as versioned migrations: entry i
 * brings the schema to version i + 1. Replicas run the missing ones at start, one replica at a
 * time (`pg_advisory_lock`), and record each in `coordinator_schema_version`; a replica refuses
 * a database whose version is higher than {@link COORDINATOR_SCHEMA_VERSION}. Append, never edit.
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  // 1: API keys and their usage, the grants (sliding minute of requests) and token charges
  // (sliding minute of tokens) every replica counts against, agent identities, and the signing
  // keyring (private keys AES-256-GCM encrypted with the keyring secret).
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     prefix TEXT NOT NULL,
     secret_sha256 BYTEA NOT NULL UNIQUE,
     requests_per_minute INTEGER NOT NULL,
     tokens_per_minute INTEGER NOT NULL,
     max_concurrent INTEGER NOT NULL,
     budget_tokens BIGINT NOT NULL,
     models TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     expires_at BIGINT,
     revoked_at BIGINT,
     tokens_used BIGINT NOT NULL DEFAULT 0,
     requests_total BIGINT NOT NULL DEFAULT 0,
     last_used_at BIGINT,
     seq BIGSERIAL NOT NULL
   );
   CREATE INDEX api_keys_by_name ON api_keys (name);
   CREATE TABLE api_key_grants (
     id BIGSERIAL PRIMARY KEY,
     key_id TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
     at_ms BIGINT NOT NULL
   );
   CREATE INDEX api_key_grants_by_key ON api_key_grants (key_id, at_ms);
   CREATE TABLE api_key_charges (
     id BIGSERIAL PRIMARY KEY,
     key_id TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
     at_ms BIGINT NOT NULL,
     tokens BIGINT NOT NULL
   );
   CREATE INDEX api_key_charges_by_key ON api_key_charges (key_id, at_ms);
   CREATE TABLE agent_identities (
     agent_id TEXT PRIMARY KEY,
     credential_sha256 BYTEA NOT NULL,
     bound_at BIGINT NOT NULL,
     verified_endpoint TEXT
   );
   CREATE TABLE keyring_keys (
     kid TEXT PRIMARY KEY,
     algorithm TEXT NOT NULL,
     public_key_pem TEXT NOT NULL,
     private_key_sealed BYTEA NOT NULL,
     created_at BIGINT NOT NULL,
     retire_at BIGINT NOT NULL DEFAULT 0
   );
   CREATE TABLE keyring_current (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     kid TEXT NOT NULL REFERENCES keyring_keys (kid)
   );`,
];

/** The schema version this coordinator writes and understands. */
export const COORDINATOR_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;
