import { createHash } from 'node:crypto';

/** The longest `by` part of a Redis key kept as it is; a longer one is stored as its hash. */
export const REDIS_KEY_MAX_PLAIN = 64;

/**
 * The `by` part of a distributed bucket's Redis key: the value(s) as they are up to
 * REDIS_KEY_MAX_PLAIN characters, else `#` and their SHA-256 (base64url, 43 characters),
 * so a key name is at most the prefix and 64 characters whatever the tags hold. Two long
 * values share a bucket only on a SHA-256 collision; a short value spelt `#<hash>` shares
 * a long value's bucket, which needs knowing that value (and sending it does the same).
 */
export function redisKeyPart(key: string): string {
  if (key.length <= REDIS_KEY_MAX_PLAIN) return key;
  return `#${createHash('sha256').update(key).digest('base64url')}`;
}

/**
 * The Redis keys one distributed rule has sent from this instance, at most `maxKeys` alive
 * at once. A key is alive until Redis has let it expire (its bucket's TTL after the last
 * round trip that named it, on this instance's clock); a new key while `maxKeys` are alive
 * is refused, and the caller uses the rule's shared overflow bucket instead. Unlike local
 * buckets, a live key cannot be evicted to make room: it stays in Redis until its TTL
 * whatever this instance forgets, so forgetting it would not bound Redis.
 */
export class RedisKeys {
  readonly maxKeys: number;
  readonly #ttlMs: number;
  /** Key → when Redis will have dropped it at the latest. In order of that time: every key shares one TTL. */
  readonly #until = new Map<string, number>();
  #overflowed = 0;

  constructor(maxKeys: number, ttlMs: number) {
    this.maxKeys = Math.max(1, maxKeys);
    this.#ttlMs = ttlMs;
  }

  /** True when `key` may be sent to Redis now (it is known, or there is room for it). */
  admit(key: string, now: number): boolean {
    if (this.#until.has(key)) return true;
    if (this.#until.size >= this.maxKeys) this.#dropExpired(now);
    if (this.#until.size >= this.maxKeys) {
      this.#overflowed++;
      return false;
    }
    this.#until.set(key, now + this.#ttlMs);
    return true;
  }

  /** After a round trip that named `key`, whatever its outcome: Redis may have written it up to now. */
  touch(key: string, now: number): void {
    if (!this.#until.delete(key)) return;
    this.#until.set(key, now + this.#ttlMs);
  }

  /** Keys alive in Redis (as far as this instance knows), at most maxKeys. */
  get size(): number {
    return this.#until.size;
  }

  /** New keys refused since start: requests that went to the overflow bucket. */
  get overflowed(): number {
    return this.#overflowed;
  }

  #dropExpired(now: number): void {
    for (const [key, until] of this.#until) {
      if (until > now) return;
      this.#until.delete(key);
    }
  }
}
