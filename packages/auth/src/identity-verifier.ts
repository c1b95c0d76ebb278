import { type Clock, systemClock } from '@meshlet/core';
import {
  BadMeshKeyError,
  checkIdentity,
  DEFAULT_MAX_LIFETIME_MS,
  DEFAULT_MAX_SKEW_MS,
  type IdentityCheck,
  type IdentityCounters,
  type MeshKey,
  meshKeyCheck,
  newIdentityCounters,
  type VerifiedIdentity,
} from './identity.js';

export interface IdentityVerifierOptions {
  /** Every active key: one normally, two during a rollover. */
  readonly keys: readonly MeshKey[];
  readonly clock?: Clock;
  /** Default DEFAULT_MAX_SKEW_MS (5 s). */
  readonly maxSkewMs?: number;
  /** Default DEFAULT_MAX_LIFETIME_MS (5 min). */
  readonly maxLifetimeMs?: number;
  /** This service's name, to refuse tokens signed for another service. Default: not checked. */
  readonly audience?: string;
  /** Verified headers remembered, so a caller's reused token costs a map lookup. Default 4096; 0 turns it off. */
  readonly cacheSize?: number;
}

/**
 * Verifies inbound identity headers and counts the outcomes. A header already verified
 * is remembered (it holds its own MAC, so a hit proves the same bytes were checked) and
 * only its times are checked again. Changing the keys forgets everything.
 */
export class IdentityVerifier {
  /** The keys checked: the active ones, then retired ones still in their overlap. */
  #keys: readonly MeshKey[];
  #active: readonly MeshKey[];
  /** Retired keys and when each stops being accepted (clock time). */
  #retired: readonly { readonly key: MeshKey; readonly until: number }[] = [];
  /** The earliest `until` of #retired: the next time #keys shrinks. */
  #nextRetirement = Number.POSITIVE_INFINITY;
  readonly #clock: Clock;
  readonly #options: { maxSkewMs: number; maxLifetimeMs: number; audience?: string };
  readonly #cacheSize: number;
  readonly #cache = new Map<string, VerifiedIdentity>();
  readonly counters: IdentityCounters = newIdentityCounters();

  constructor(options: IdentityVerifierOptions) {
    this.#active = checkKeys(options.keys);
    this.#keys = this.#active;
    this.#clock = options.clock ?? systemClock;
    this.#options = {
      maxSkewMs: options.maxSkewMs ?? DEFAULT_MAX_SKEW_MS,
      maxLifetimeMs: options.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS,
      ...(options.audience !== undefined ? { audience: options.audience } : {}),
    };
    this.#cacheSize = options.cacheSize ?? 4096;
  }

  /** The verified caller, or undefined: the caller is anonymous. */
  verify(header: string | undefined): VerifiedIdentity | undefined {
    const result = this.check(header);
    return result.ok ? result.identity : undefined;
  }

  /** The outcome with its reason; counted. */
  check(header: string | undefined): IdentityCheck {
    if (this.#nextRetirement !== Number.POSITIVE_INFINITY && this.#clock.now() >= this.#nextRetirement) this.#retire();
    if (header !== undefined && this.#cacheSize > 0) {
      const hit = this.#cache.get(header);
      if (hit !== undefined) {
        // Its times against the wall clock, as checkIdentity judges them (a step may have moved it).
        const now = this.#clock.wallNow();
        const skew = this.#options.maxSkewMs;
        if (now <= hit.expiresAt + skew && hit.issuedAt <= now + skew) {
          this.counters.verified++;
          return { ok: true, identity: hit };
        }
        this.#cache.delete(header);
      }
    }
    const result = checkIdentity(header, this.#keys, this.#clock, this.#options);
    if (result.ok) {
      this.counters.verified++;
      if (header !== undefined && this.#cacheSize > 0) {
        if (this.#cache.size >= this.#cacheSize) this.#cache.clear();
        this.#cache.set(header, result.identity);
      }
    } else this.counters[result.reason]++;
    return result;
  }

  /**
   * Replaces the active keys (rollover steps 1 and 3). A key dropped here is still accepted
   * for `overlapMs` (default 0: refused at once), so tokens signed with it just before the
   * change stay good until they expire; give the signers' token lifetime plus the skew.
   * Bad keys throw BadMeshKeyError and change nothing; so does an id still accepted here
   * (active, or retired within its overlap) given other bytes: the id is how a token names
   * its key, so tokens signed with the old bytes would fail at once as `bad-signature`,
   * with no overlap. A new key needs a new id.
   */
  setKeys(keys: readonly MeshKey[], options: { readonly overlapMs?: number } = {}): void {
    const next = checkKeys(keys);
    const overlap = options.overlapMs ?? 0;
    const now = this.#clock.now();
    const accepted = [...this.#active, ...this.#retired.filter((r) => r.until > now).map((r) => r.key)];
    for (const k of next) {
      const held = accepted.find((a) => a.id === k.id);
      if (held !== undefined && !Buffer.from(held.key).equals(k.key))
        throw new BadMeshKeyError(
          `id "${k.id}" is in force with other key bytes; tokens signed with those would be refused at once (bad-signature). Give the new key its own id`,
        );
    }
    const ids = new Set(next.map((k) => k.id));
    const retired = [
      ...this.#retired.filter((r) => r.until > now && !ids.has(r.key.id)),
      ...(overlap > 0 ? this.#active.filter((k) => !ids.has(k.id)).map((key) => ({ key, until: now + overlap })) : []),
    ];
    this.#active = next;
    this.#retired = retired;
    this.#keys = [...next, ...retired.map((r) => r.key)];
    this.#nextRetirement = Math.min(Number.POSITIVE_INFINITY, ...retired.map((r) => r.until));
    this.#cache.clear();
  }

  /** The active key ids, then the retired ones still accepted. */
  get keyIds(): readonly string[] {
    if (this.#clock.now() >= this.#nextRetirement) this.#retire();
    return this.#keys.map((k) => k.id);
  }

  #retire(): void {
    const now = this.#clock.now();
    this.#retired = this.#retired.filter((r) => r.until > now);
    this.#keys = [...this.#active, ...this.#retired.map((r) => r.key)];
    this.#nextRetirement = Math.min(Number.POSITIVE_INFINITY, ...this.#retired.map((r) => r.until));
    // A cached token of a key now gone must be checked again (and refused).
    this.#cache.clear();
  }
}

function checkKeys(keys: readonly MeshKey[]): readonly MeshKey[] {
  if (keys.length === 0) throw new BadMeshKeyError('give at least one key to verify identities with');
  const ids = new Set<string>();
  for (const k of keys) {
    meshKeyCheck(k);
    if (ids.has(k.id)) throw new BadMeshKeyError(`id "${k.id}" appears twice; every key needs its own id`);
    ids.add(k.id);
  }
  return [...keys];
}
