import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type Clock, MeshletError } from '@meshlet/core';

/** Shortest login token accepted when one is given (`--console-token`, MESHLET_CONSOLE_TOKEN). */
export const MIN_CONSOLE_TOKEN_LENGTH = 16;

/** The session cookie: HttpOnly, SameSite=Strict, scoped to the console's origin. */
export const SESSION_COOKIE = 'meshlet_console_session';

/** Header that carries the per-session CSRF token on every POST. */
export const CSRF_HEADER = 'x-meshlet-csrf';

/** A refusal the console answers with a status and a stable code. */
export class ConsoleError extends MeshletError {
  readonly status: number;
  readonly path?: string;
  constructor(status: number, code: string, message: string, path?: string) {
    super(code, message);
    this.status = status;
    if (path !== undefined) this.path = path;
  }
}

export const unauthorized = () => new ConsoleError(401, 'MESHLET_CONSOLE_UNAUTHORIZED', 'log in with the console token first');

/** A person logged in with the token: who they said they are, and this session's CSRF token. */
export interface Session {
  readonly id: string;
  readonly author: string;
  readonly csrf: string;
  readonly expiresAt: number;
}

export interface SessionOptions {
  readonly token: string;
  readonly clock: Clock;
  /** Default 12 hours. */
  readonly ttlMs?: number;
  /** Sessions kept at most; the oldest goes first. Default 1,000. */
  readonly maxSessions?: number;
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Equal-length digests: compares in constant time and does not leak the token's length. */
export const sameSecret = (given: string, expected: Buffer): boolean => timingSafeEqual(digest(given), expected);

/** The console's sessions: created by a login with the token, bounded in number and age. */
export class Sessions {
  readonly #expected: Buffer;
  readonly #clock: Clock;
  readonly #ttl: number;
  readonly #max: number;
  readonly #byId = new Map<string, Session>();

  constructor(opts: SessionOptions) {
    if (opts.token.length < MIN_CONSOLE_TOKEN_LENGTH) {
      throw new MeshletError(
        'MESHLET_CONSOLE_TOKEN',
        `console token: at least ${MIN_CONSOLE_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 24\`), or give none and one is made`,
      );
    }
    this.#expected = digest(opts.token);
    this.#clock = opts.clock;
    this.#ttl = opts.ttlMs ?? 12 * 3600_000;
    this.#max = opts.maxSessions ?? 1_000;
  }

  /** A new session when the token matches, else undefined. */
  login(token: string, author: string): Session | undefined {
    if (!sameSecret(token, this.#expected)) return undefined;
    while (this.#byId.size >= this.#max) {
      const oldest = this.#byId.keys().next().value;
      if (oldest === undefined) break;
      this.#byId.delete(oldest);
    }
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
      author,
      csrf: randomBytes(32).toString('base64url'),
      expiresAt: this.#clock.now() + this.#ttl,
    };
    this.#byId.set(session.id, session);
    return session;
  }

  /** The live session a request's cookie names, or undefined. */
  of(req: IncomingMessage): Session | undefined {
    const id = cookie(req.headers.cookie, SESSION_COOKIE);
    if (id === undefined) return undefined;
    const s = this.#byId.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.#clock.now()) {
      this.#byId.delete(id);
      return undefined;
    }
    return s;
  }

  logout(id: string): void {
    this.#byId.delete(id);
  }
}

/** The CSRF header must equal the session's token (constant time). */
export function checkCsrf(req: IncomingMessage, session: Session): void {
  const given = req.headers[CSRF_HEADER];
  if (typeof given !== 'string' || given === '' || !sameSecret(given, digest(session.csrf))) {
    throw new ConsoleError(403, 'MESHLET_CONSOLE_CSRF', `missing or wrong ${CSRF_HEADER} header: reload the page`);
  }
}

/**
 * A change must come from the console's own page: the Origin header (which browsers send
 * with every POST and scripts cannot forge) must name the console's origin: `http://` and a
 * host it answers to, or one of `publicOrigins` (a TLS proxy's `https://` origin).
 */
export function checkOrigin(req: IncomingMessage, allowedHosts: ReadonlySet<string>, publicOrigins: ReadonlySet<string>): void {
  const origin = req.headers.origin;
  const u = typeof origin === 'string' ? URL.parse(origin) : null;
  const own = u !== null && ((u.protocol === 'http:' && allowedHosts.has(u.host)) || publicOrigins.has(u.origin));
  if (!own) {
    throw new ConsoleError(403, 'MESHLET_CONSOLE_ORIGIN', 'a change must come from the console page (Origin header missing or foreign)');
  }
}

/** The Host header must be one the console answers to (a rebound DNS name is not). */
export function checkHost(req: IncomingMessage, allowedHosts: ReadonlySet<string>): void {
  const host = req.headers.host;
  if (host === undefined || !allowedHosts.has(host)) {
    throw new ConsoleError(403, 'MESHLET_CONSOLE_HOST', `the console answers only to ${[...allowedHosts].join(', ')}`);
  }
}

function cookie(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(session: Session, ttlMs: number): string {
  return `${SESSION_COOKIE}=${session.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(ttlMs / 1000)}`;
}

export const clearedCookie = `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;

/** Failed logins per minute before the console answers 429 for the rest of that minute. */
export class LoginThrottle {
  readonly #clock: Clock;
  readonly #max: number;
  #windowStart = 0;
  #failures = 0;
  constructor(clock: Clock, maxPerMinute = 20) {
    this.#clock = clock;
    this.#max = maxPerMinute;
  }
  check(): void {
    this.#roll();
    if (this.#failures >= this.#max) throw new ConsoleError(429, 'MESHLET_CONSOLE_THROTTLED', 'too many failed logins; wait a minute');
  }
  failed(): void {
    this.#roll();
    this.#failures++;
  }
  #roll(): void {
    const now = this.#clock.now();
    if (now - this.#windowStart >= 60_000) {
      this.#windowStart = now;
      this.#failures = 0;
    }
  }
}
