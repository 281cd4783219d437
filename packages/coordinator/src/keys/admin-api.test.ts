import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createClientFactory, Metadata, Status } from 'nice-grpc';
import { AdminServiceDefinition, createProtoVersionClientMiddleware, type AdminServiceClient } from '@titancompute/protocol';
import { expectGrpcError } from '../test-support/expect-grpc-error.js';
import { startTestCoordinator, type TestCoordinator } from '../test-support/test-coordinator.js';

let tc: TestCoordinator;
let admin: AdminServiceClient;
const auth = (token: string) => ({ metadata: Metadata({ authorization: `Bearer ${token}` }) });

beforeEach(async () => {
  tc = await startTestCoordinator();
  admin = createClientFactory().use(createProtoVersionClientMiddleware()).create(AdminServiceDefinition, tc.channel);
});
afterEach(() => tc.stop(true));

describe('admin credential', () => {
  it('is generated at first start into <data-dir>/admin-token (0600) and reused after a restart', async () => {
    const file = join(tc.dataDir, 'admin-token');
    expect(readFileSync(file, 'utf8').trim()).toBe(tc.coordinator.adminToken);
    expect(tc.coordinator.adminToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const first = tc.coordinator.adminToken;
    await tc.stop();
    tc = await startTestCoordinator({ dataDir: tc.dataDir });
    expect(tc.coordinator.adminToken).toBe(first);
  });

  it('a configured one (--admin-token, TITAN_ADMIN_TOKEN) wins', async () => {
    await tc.stop(true);
    tc = await startTestCoordinator({ adminToken: 'configured-admin-secret' });
    admin = createClientFactory().use(createProtoVersionClientMiddleware()).create(AdminServiceDefinition, tc.channel);
    expect(tc.coordinator.adminToken).toBe('configured-admin-secret');
    await expect(admin.listApiKeys({}, auth('configured-admin-secret'))).resolves.toEqual({ keys: [] });
  });
});

describe('AdminService (gRPC)', () => {
  it('answers UNAUTHENTICATED without the admin token, or with another one (the join token included)', async () => {
    await expectGrpcError(admin.listApiKeys({}), Status.UNAUTHENTICATED, /missing admin token/);
    await expectGrpcError(admin.createApiKey({ name: 'x' }, auth('wrong')), Status.UNAUTHENTICATED, /invalid admin token/);
    await expectGrpcError(admin.revokeApiKey({ key: 'x' }, auth('test-join-token')), Status.UNAUTHENTICATED, /invalid admin token/);
    await expectGrpcError(
      admin.listApiKeys({}, { metadata: Metadata({ authorization: tc.coordinator.adminToken }) }),
      Status.UNAUTHENTICATED,
      /malformed authorization/,
    );
  });

  it('creates (secret once), lists (never the secret) and revokes keys by id or name', async () => {
    const a = auth(tc.coordinator.adminToken);
    const before = Math.floor(Date.now() / 1000);
    const created = await admin.createApiKey(
      { name: 'ci', requestsPerMinute: 60, tokensPerMinute: 10_000, maxConcurrent: 2, budgetTokens: 1_000_000, models: ['tiny'], expiresInSeconds: 3600 },
      a,
    );
    expect(created.secret).toMatch(/^tk-/);
    expect(created.key).toMatchObject({
      name: 'ci',
      prefix: created.secret.slice(0, 10),
      requestsPerMinute: 60,
      tokensPerMinute: 10_000,
      maxConcurrent: 2,
      budgetTokens: 1_000_000,
      models: ['tiny'],
      revokedAt: 0,
      tokensUsed: 0,
      requestsTotal: 0,
      lastUsedAt: 0,
    });
    expect(created.key!.createdAt).toBeGreaterThanOrEqual(before);
    expect(created.key!.expiresAt - created.key!.createdAt).toBeGreaterThanOrEqual(3599);
    await expectGrpcError(admin.createApiKey({ name: 'ci' }, a), Status.ALREADY_EXISTS, /already named "ci"/);
    await expectGrpcError(admin.createApiKey({ name: 'bad name' }, a), Status.INVALID_ARGUMENT, /^name: /);
    await expectGrpcError(admin.createApiKey({ name: 'n', maxConcurrent: -1 }, a), Status.INVALID_ARGUMENT, /^max_concurrent: must not be negative/);
    const other = await admin.createApiKey({ name: 'other' }, a);

    const listed = await admin.listApiKeys({}, a);
    expect(listed.keys.map((k) => k.name)).toEqual(['ci', 'other']);
    expect(JSON.stringify(listed)).not.toContain(created.secret.slice(10));

    expect((await admin.revokeApiKey({ key: 'ci' }, a)).key?.revokedAt).toBeGreaterThanOrEqual(before);
    expect((await admin.revokeApiKey({ key: other.key!.id }, a)).key?.name).toBe('other');
    await expectGrpcError(admin.revokeApiKey({ key: 'nope' }, a), Status.NOT_FOUND, /no API key with id or name "nope"/);
    expect((await admin.listApiKeys({}, a)).keys).toEqual([]);
    expect((await admin.listApiKeys({ includeInactive: true }, a)).keys.map((k) => k.name)).toEqual(['ci', 'other']);
  });
});

describe('REST /admin/keys', () => {
  const call = async (method: string, path: string, token: string | undefined, body?: unknown) => {
    const res = await fetch(`${tc.httpUrl}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it('answers 401 unauthorized without the admin token', async () => {
    for (const [method, path] of [
      ['GET', '/admin/keys'],
      ['POST', '/admin/keys'],
      ['DELETE', '/admin/keys/x'],
    ] as const) {
      expect(await call(method, path, undefined, method === 'POST' ? { name: 'x' } : undefined)).toMatchObject({
        status: 401,
        json: { error: 'unauthorized', code: 401, message: expect.stringContaining('missing admin token') },
      });
      expect((await call(method, path, 'wrong', method === 'POST' ? { name: 'x' } : undefined)).status).toBe(401);
    }
    expect((await call('GET', '/admin/keys', undefined)).json).not.toHaveProperty('keys');
  });

  it('POST creates (201, secret once), GET lists, DELETE revokes; 400/404/409 as v1-style errors', async () => {
    const token = tc.coordinator.adminToken;
    const created = await call('POST', '/admin/keys', token, { name: 'web', requests_per_minute: 10, models: ['tiny'], expires: '30d' });
    expect(created.status).toBe(201);
    expect(created.json.secret).toMatch(/^tk-/);
    expect(created.json.warning).toMatch(/shown only this once/);
    const key = created.json.key as Record<string, unknown>;
    expect(key).toMatchObject({
      name: 'web',
      state: 'active',
      requests_per_minute: 10,
      tokens_per_minute: 0,
      models: ['tiny'],
      revoked_at: null,
      last_used_at: null,
    });
    expect((key.expires_at as number) - (key.created_at as number)).toBe(30 * 86_400);

    expect(await call('POST', '/admin/keys', token, { name: 'web' })).toMatchObject({ status: 409, json: { error: 'already_exists' } });
    expect(await call('POST', '/admin/keys', token, { name: 'x', budget_tokens: 'lots' })).toMatchObject({
      status: 400,
      json: { error: 'invalid_argument', message: 'budget_tokens: must be a number' },
    });
    expect(await call('POST', '/admin/keys', token, { name: 'x', expires: 'soon' })).toMatchObject({
      status: 400,
      json: { message: expect.stringMatching(/^expires: /) },
    });
    expect(await call('POST', '/admin/keys', token, '{nope')).toMatchObject({ status: 400, json: { error: 'invalid_json' } });

    const list = await call('GET', '/admin/keys', token);
    expect(list.status).toBe(200);
    expect((list.json.keys as Array<{ name: string }>).map((k) => k.name)).toEqual(['web']);
    expect(JSON.stringify(list.json)).not.toContain((created.json.secret as string).slice(10));

    expect(await call('DELETE', `/admin/keys/${key.id as string}`, token)).toMatchObject({ status: 200, json: { key: { name: 'web', state: 'revoked' } } });
    expect(await call('DELETE', '/admin/keys/web', token)).toMatchObject({ status: 200, json: { key: { id: key.id, state: 'revoked' } } });
    expect(await call('DELETE', '/admin/keys/missing', token)).toMatchObject({ status: 404, json: { error: 'not_found' } });
    expect((await call('GET', '/admin/keys', token)).json.keys).toEqual([]);
    expect(((await call('GET', '/admin/keys?include_inactive=true', token)).json.keys as unknown[]).length).toBe(1);
  });
});
