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
  #keys: readonly MeshKey[];
  readonly #clock: Clock;
  readonly #options: { maxSkewMs: number; maxLifetimeMs: number; audience?: string };
  readonly #cacheSize: number;
  readonly #cache = new Map<string, VerifiedIdentity>();
  readonly counters: IdentityCounters = newIdentityCounters();

  constructor(options: IdentityVerifierOptions) {
    this.#keys = checkKeys(options.keys);
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
    if (header !== undefined && this.#cacheSize > 0) {
      const hit = this.#cache.get(header);
      if (hit !== undefined) {
        const now = this.#clock.now();
        if (now <= hit.expiresAt + this.#options.maxSkewMs) {
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

  /** Replaces the active keys (rollover steps 1 and 3); tokens of a retired key are refused at once. */
  setKeys(keys: readonly MeshKey[]): void {
    this.#keys = checkKeys(keys);
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
