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
  // 2: the shared fleet (postgres-fleet-store.ts): each agent's registration and latest health
  // snapshot, written by the replica its health stream is homed on; its load (slots, what it runs,
  // what is reserved on it) that every replica's reservation takes atomically; and the granted jobs
  // (reserved until the agent reports them started, then started until it reports them ended).
  // fleet_reserve() is the one statement of a scheduling decision (postgres-shared-reservations.ts).
  `CREATE TABLE fleet_agents (
     agent_id TEXT PRIMARY KEY,
     snapshot JSONB NOT NULL,
     home_replica TEXT,
     last_seen_ms BIGINT NOT NULL
   );
   CREATE INDEX fleet_agents_by_last_seen ON fleet_agents (last_seen_ms);
   CREATE TABLE fleet_load (
     agent_id TEXT PRIMARY KEY REFERENCES fleet_agents (agent_id) ON DELETE CASCADE,
     max_jobs INTEGER NOT NULL,
     running INTEGER NOT NULL DEFAULT 0,
     reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
     accepting BOOLEAN NOT NULL DEFAULT true,
     version BIGINT NOT NULL DEFAULT 0
   );
   CREATE TABLE fleet_jobs (
     job_id TEXT PRIMARY KEY,
     agent_id TEXT NOT NULL REFERENCES fleet_agents (agent_id) ON DELETE CASCADE,
     client_id TEXT NOT NULL,
     key_id TEXT,
     state TEXT NOT NULL CHECK (state IN ('reserved', 'started')),
     expires_at_ms BIGINT NOT NULL,
     token_expires_at_ms BIGINT NOT NULL,
     granted_by TEXT NOT NULL
   );
   CREATE INDEX fleet_jobs_by_agent ON fleet_jobs (agent_id);
   CREATE INDEX fleet_jobs_by_client ON fleet_jobs (client_id);
   CREATE INDEX fleet_jobs_reserved_by_expiry ON fleet_jobs (expires_at_ms) WHERE state = 'reserved';
   CREATE FUNCTION fleet_now_ms() RETURNS BIGINT LANGUAGE sql STABLE AS
     $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
   -- One scheduling decision: under the client's lock (when a client limit applies) count what it
   -- holds, then take a slot on the first candidate whose reserved + running < max_jobs (the row
   -- lock makes concurrent takers re-check), and record the job. outcome: reserved | busy | client_limit.
   CREATE FUNCTION fleet_reserve(
     p_agents TEXT[], p_job TEXT, p_client TEXT, p_key TEXT, p_expires_at_ms BIGINT,
     p_token_expires_at_ms BIGINT, p_client_limit INTEGER, p_replica TEXT
   ) RETURNS TABLE (outcome TEXT, agent_id TEXT, reserved INTEGER, running INTEGER, version BIGINT, held INTEGER)
   LANGUAGE plpgsql AS $$
   DECLARE
     candidate TEXT;
     n INTEGER := 0;
     r fleet_load%ROWTYPE;
   BEGIN
     IF p_client_limit > 0 THEN
       PERFORM pg_advisory_xact_lock(hashtext('titan_fleet_client:' || p_client));
       SELECT count(*)::int INTO n FROM fleet_jobs j WHERE j.client_id = p_client;
       IF n >= p_client_limit THEN
         RETURN QUERY SELECT 'client_limit'::text, NULL::text, 0, 0, 0::bigint, n;
         RETURN;
       END IF;
     END IF;
     FOREACH candidate IN ARRAY p_agents LOOP
       UPDATE fleet_load l SET reserved = l.reserved + 1, version = l.version + 1
         WHERE l.agent_id = candidate AND l.accepting AND l.reserved + l.running < l.max_jobs
         RETURNING l.* INTO r;
       IF FOUND THEN
         INSERT INTO fleet_jobs (job_id, agent_id, client_id, key_id, state, expires_at_ms, token_expires_at_ms, granted_by)
           VALUES (p_job, candidate, p_client, p_key, 'reserved', p_expires_at_ms, p_token_expires_at_ms, p_replica);
         RETURN QUERY SELECT 'reserved'::text, candidate, r.reserved, r.running, r.version, n;
         RETURN;
       END IF;
     END LOOP;
     RETURN QUERY SELECT 'busy'::text, NULL::text, 0, 0, 0::bigint, n;
   END $$;`,
];

/** The schema version this coordinator writes and understands. */
export const COORDINATOR_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;
