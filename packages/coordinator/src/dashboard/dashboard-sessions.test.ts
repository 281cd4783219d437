import { describe, expect, it } from '@jest/globals';
import { AdminAuthError } from '../errors.js';
import { createDashboardSessions, DASHBOARD_COOKIE, readCookie } from './dashboard-sessions.js';

describe('dashboard sessions', () => {
  it('a login with the admin token opens a session carried by an HttpOnly SameSite=Strict cookie', () => {
    const sessions = createDashboardSessions({ adminToken: 'the-admin-token' });
    expect(() => sessions.login('wrong')).toThrow(AdminAuthError);
    const id = sessions.login('the-admin-token');
    expect(id).not.toContain('the-admin-token');
    const cookie = sessions.cookie(id);
    expect(cookie).toMatch(new RegExp(`^${DASHBOARD_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=\\d+$`));
    expect(sessions.authenticate({ cookie: `other=1; ${DASHBOARD_COOKIE}=${id}` })).toEqual({ kind: 'session', id });
    expect(sessions.authenticate({ cookie: `${DASHBOARD_COOKIE}=forged` })).toBeUndefined();
    expect(sessions.authenticate({})).toBeUndefined();
    sessions.logout(id);
    expect(sessions.authenticate({ cookie: `${DASHBOARD_COOKIE}=${id}` })).toBeUndefined();
    expect(sessions.clearCookie()).toContain('Max-Age=0');
  });

  it('accepts Authorization: Bearer <admin token> (curl, tests) and nothing else', () => {
    const sessions = createDashboardSessions({ adminToken: 'the-admin-token' });
    expect(sessions.authenticate({ authorization: 'Bearer the-admin-token' })).toEqual({ kind: 'admin-token' });
    expect(sessions.authenticate({ authorization: 'Bearer nope' })).toBeUndefined();
    expect(sessions.authenticate({ authorization: 'the-admin-token' })).toBeUndefined();
  });

  it('a session ends when idle too long or too old, whatever its use', () => {
    let t = 0;
    const sessions = createDashboardSessions({ adminToken: 'x', idleTtlMs: 1000, maxTtlMs: 5000, now: () => t });
    const idle = sessions.login('x');
    const busy = sessions.login('x');
    t = 900;
    expect(sessions.stillValid({ kind: 'session', id: busy })).toBe(true);
    t = 1500;
    expect(sessions.stillValid({ kind: 'session', id: idle })).toBe(false);
    for (t = 1500; t <= 4900; t += 800) expect(sessions.stillValid({ kind: 'session', id: busy })).toBe(true);
    t = 5100;
    expect(sessions.stillValid({ kind: 'session', id: busy })).toBe(false);
    expect(sessions.stillValid({ kind: 'admin-token' })).toBe(true);
  });

  it('readCookie finds one cookie among several', () => {
    expect(readCookie('a=1; b = 2 ;c=3', 'b')).toBe('2');
    expect(readCookie('a=1', 'b')).toBeUndefined();
    expect(readCookie(undefined, 'b')).toBeUndefined();
  });
});
