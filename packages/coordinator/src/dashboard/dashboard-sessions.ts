import { randomBytes } from 'node:crypto';
import { checkAdminToken } from '../keys/admin-token.js';

/** The dashboard's session cookie. */
export const DASHBOARD_COOKIE = 'titan_dashboard';
/** Default {@link DashboardSessionsOptions.idleTtlMs}: 30 minutes. */
export const DEFAULT_SESSION_IDLE_TTL_MS = 30 * 60_000;
/** Default {@link DashboardSessionsOptions.maxTtlMs}: 12 hours. */
export const DEFAULT_SESSION_MAX_TTL_MS = 12 * 3_600_000;
/** Sessions kept at most (the oldest goes first). */
const MAX_SESSIONS = 1000;

/** Options of {@link createDashboardSessions}. */
export interface DashboardSessionsOptions {
  /** The admin credential a login must present. */
  adminToken: string;
  /** A session unused this long ends. Default {@link DEFAULT_SESSION_IDLE_TTL_MS}. */
  idleTtlMs?: number;
  /** A session ends this long after its login, used or not. Default {@link DEFAULT_SESSION_MAX_TTL_MS}. */
  maxTtlMs?: number;
  /** Clock (ms). Default `Date.now`. */
  now?: () => number;
}

/** How a request proved it may read the dashboard. */
export type DashboardCredential = { kind: 'session'; id: string } | { kind: 'admin-token' };

/**
 * Short-lived browser sessions of the dashboard. A browser cannot set headers on an
 * EventSource, so it logs in once with the admin credential (a form) and gets an HttpOnly,
 * SameSite=Strict cookie holding a random session id (never the credential). Sessions live in
 * memory: a coordinator restart logs everyone out.
 */
export interface DashboardSessions {
  /** Checks the admin credential (constant time; `AdminAuthError`) and opens a session; returns its id. */
  login(adminToken: string): string;
  /** Ends a session. */
  logout(id: string): void;
  /**
   * Who the request is: a live session from its cookie (refreshed), or `Authorization: Bearer
   * <admin token>`; undefined when neither.
   */
  authenticate(headers: { cookie?: string | undefined; authorization?: string | undefined }): DashboardCredential | undefined;
  /** Whether a credential still holds (sessions expire; the admin token always holds). Refreshes a session. */
  stillValid(credential: DashboardCredential): boolean;
  /** `Set-Cookie` value for a new session. */
  cookie(id: string): string;
  /** `Set-Cookie` value that clears the cookie. */
  clearCookie(): string;
}

/** The value of cookie `name` in a `Cookie` header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Creates the {@link DashboardSessions}.
 *
 * @example
 * ```ts
 * const sessions = createDashboardSessions({ adminToken });
 * const id = sessions.login(submittedToken); // throws AdminAuthError when wrong
 * reply.header('set-cookie', sessions.cookie(id));
 * ```
 */
export function createDashboardSessions(options: DashboardSessionsOptions): DashboardSessions {
  const now = options.now ?? Date.now;
  const idleTtlMs = options.idleTtlMs ?? DEFAULT_SESSION_IDLE_TTL_MS;
  const maxTtlMs = options.maxTtlMs ?? DEFAULT_SESSION_MAX_TTL_MS;
  /** Id → { created, last used } (local ms). Insertion order is age order. */
  const sessions = new Map<string, { createdAtMs: number; usedAtMs: number }>();

  const live = (id: string): boolean => {
    const s = sessions.get(id);
    if (!s) return false;
    const t = now();
    if (t - s.usedAtMs > idleTtlMs || t - s.createdAtMs > maxTtlMs) {
      sessions.delete(id);
      return false;
    }
    s.usedAtMs = t;
    return true;
  };

  return {
    login(adminToken) {
      checkAdminToken(`Bearer ${adminToken.trim()}`, options.adminToken);
      const id = randomBytes(32).toString('base64url');
      const t = now();
      sessions.set(id, { createdAtMs: t, usedAtMs: t });
      while (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
      return id;
    },
    logout(id) {
      sessions.delete(id);
    },
    authenticate(headers) {
      const id = readCookie(headers.cookie, DASHBOARD_COOKIE);
      if (id && live(id)) return { kind: 'session', id };
      if (headers.authorization) {
        try {
          checkAdminToken(headers.authorization, options.adminToken);
          return { kind: 'admin-token' };
        } catch {
          return undefined;
        }
      }
      return undefined;
    },
    stillValid(credential) {
      return credential.kind === 'admin-token' || live(credential.id);
    },
    cookie(id) {
      return `${DASHBOARD_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxTtlMs / 1000)}`;
    },
    clearCookie() {
      return `${DASHBOARD_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
    },
  };
}
