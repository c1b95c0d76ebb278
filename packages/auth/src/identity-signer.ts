import { type Clock, systemClock } from '@meshlet/core';
import { type CallerIdentity, DEFAULT_IDENTITY_TTL_MS, type MeshKey, signIdentity } from './identity.js';

export interface IdentitySignerOptions {
  readonly identity: CallerIdentity;
  /** The key new tokens are signed with: during a rollover, the old one until every verifier has the new one. */
  readonly key: MeshKey;
  readonly clock?: Clock;
  /** Lifetime of a token. Default DEFAULT_IDENTITY_TTL_MS (30 s). */
  readonly ttlMs?: number;
}

// One entry per destination service; the registry bounds how many there are, this bounds a leak.
const MAX_AUDIENCES = 1024;

/**
 * Signs this service's identity for outbound calls, once per half-lifetime and destination
 * rather than per call: a token is reused until half its life is spent, so the receiver
 * always gets at least ttl/2 of validity and the HMAC is off the per-call path.
 */
export class IdentitySigner {
  #identity: CallerIdentity;
  #key: MeshKey;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #refreshMs: number;
  readonly #cache = new Map<string, { header: string; issuedAt: number; renewAt: number }>();
  /** Signatures computed so far (for tests and metrics: cache misses). */
  signatures = 0;

  constructor(options: IdentitySignerOptions) {
    this.#identity = options.identity;
    this.#key = options.key;
    this.#clock = options.clock ?? systemClock;
    this.#ttlMs = options.ttlMs ?? DEFAULT_IDENTITY_TTL_MS;
    this.#refreshMs = this.#ttlMs / 2;
    // Sign once now: a bad key or identity fails at start, not on the first call.
    this.header();
  }

  /**
   * The header value to send to `audience` (a service name; '' for any). The cache is judged
   * on the wall clock, as the token is: after a step either way (now before the token's
   * issue, or past its half-life) the token is signed again with the wall time in force.
   */
  header(audience = ''): string {
    const now = this.#clock.wallNow();
    const cached = this.#cache.get(audience);
    if (cached !== undefined && now >= cached.issuedAt && now < cached.renewAt) return cached.header;
    const header = signIdentity(this.#identity, this.#key, this.#clock, { ttlMs: this.#ttlMs, audience });
    this.signatures++;
    if (this.#cache.size >= MAX_AUDIENCES && cached === undefined) this.#cache.clear();
    this.#cache.set(audience, { header, issuedAt: now, renewAt: now + this.#refreshMs });
    return header;
  }

  /** Switches the signing key (rollover step 2); cached tokens are dropped. */
  setKey(key: MeshKey): void {
    signIdentity(this.#identity, key, this.#clock, { ttlMs: this.#ttlMs });
    this.#key = key;
    this.#cache.clear();
  }

  /** Changes the identity (e.g. once the instance id is known at registration). */
  setIdentity(identity: CallerIdentity): void {
    this.#identity = identity;
    this.#cache.clear();
  }
}
