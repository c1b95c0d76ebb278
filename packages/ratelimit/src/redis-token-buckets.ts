import { createHash } from 'node:crypto';
import type { Clock } from '@meshlet/core';
import { MeshletError, systemClock } from '@meshlet/core';

/**
 * Sends one Redis command and resolves with its reply. The port this package needs from a
 * Redis client: `nodeRedisCommand(client)` adapts node-redis, and any other client with a
 * raw-command call fits in one line.
 */
export type RedisCommand = (args: readonly string[]) => Promise<unknown>;

/** One bucket a distributed acquire must take from. */
export interface RedisBucketSpec {
  readonly key: string;
  /** Tokens per millisecond. */
  readonly ratePerMs: number;
  readonly burst: number;
}

/** Redis did not answer in time or answered with an error; the limiter falls back to local shares. */
export class RedisUnavailableError extends MeshletError {
  static readonly code = 'MESHLET_RATELIMIT_REDIS';
  constructor(reason: string, options?: ErrorOptions) {
    super(
      RedisUnavailableError.code,
      `rate limit store unavailable: ${reason}. Limits fall back to each instance's share until Redis answers again.`,
      options,
    );
  }
}

/**
 * All-or-nothing token bucket over several keys, in one round trip. Time comes from Redis
 * `TIME` so that the clocks of the instances do not matter; a bucket's state is a hash
 * {tokens, at} that expires once it would have refilled anyway; an `at` ahead of `TIME` (Redis's
 * clock stepped back) is moved to `TIME`, even by a refusal. ARGV is n, then rate (tokens
 * per ms), burst and TTL (ms) per key: the TTL is bucketTtlMs's, sent rather than computed
 * here, so the bound on live keys (RedisKeys) and Redis's expiry are one formula. Replies
 * {1, 0, 0} when admitted, else {0, wait ms, index of the bucket that waits longest (1-based)}.
 */
export const TOKEN_BUCKET_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local levels = {}
local wait, worst = 0, 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[i * 3 - 1])
  local burst = tonumber(ARGV[i * 3])
  local s = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(s[1])
  local at = tonumber(s[2])
  if tokens == nil or at == nil then
    tokens = burst
  elseif now > at then
    tokens = math.min(burst, tokens + (now - at) * rate)
  elseif now < at then
    -- Redis's clock stepped back: nothing refilled, and the refill goes on from its new time
    -- (else a drained bucket would refill nothing until the clock was back at at).
    redis.call('HSET', key, 'at', tostring(now))
  end
  levels[i] = tokens
  if tokens + 1e-6 < n then
    local w = (n - tokens) / rate
    if w > wait then wait, worst = w, i end
  end
end
if worst > 0 then return {0, math.ceil(wait), worst} end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tokens', tostring(levels[i] - n), 'at', tostring(now))
  redis.call('PEXPIRE', key, ARGV[i * 3 + 1])
end
return {1, 0, 0}
`;

export const TOKEN_BUCKET_SHA = createHash('sha1').update(TOKEN_BUCKET_LUA).digest('hex');

/**
 * How long Redis keeps a bucket after a write (the script's PEXPIRE, sent with each call):
 * until it has refilled, and a second more.
 */
export function bucketTtlMs(ratePerMs: number, burst: number): number {
  return Math.ceil(burst / ratePerMs) + 1000;
}

export type RedisAcquired =
  | { readonly admitted: true }
  | { readonly admitted: false; readonly retryAfterMs: number; readonly bucket: number };

export interface RedisTokenBucketsOptions {
  readonly send: RedisCommand;
  /** A reply slower than this counts as Redis being down. Default 50 ms. */
  readonly timeoutMs?: number;
  /** For the timeout timer only. Default systemClock. */
  readonly clock?: Clock;
}

/**
 * Token buckets kept in Redis, shared by every instance that names the same keys. Runs the
 * script with EVALSHA and, when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH),
 * with EVAL, which caches it again.
 */
export class RedisTokenBuckets {
  readonly #send: RedisCommand;
  readonly #timeoutMs: number;
  readonly #clock: Clock;

  constructor(options: RedisTokenBucketsOptions) {
    this.#send = options.send;
    this.#timeoutMs = options.timeoutMs ?? 50;
    this.#clock = options.clock ?? systemClock;
  }

  /** Takes `n` tokens from every bucket, or from none. Rejects with RedisUnavailableError. */
  async tryAcquire(buckets: readonly RedisBucketSpec[], n = 1): Promise<RedisAcquired> {
    const args: string[] = [String(buckets.length)];
    for (const b of buckets) args.push(b.key);
    args.push(String(n));
    for (const b of buckets) args.push(String(b.ratePerMs), String(b.burst), String(bucketTtlMs(b.ratePerMs, b.burst)));
    let reply: unknown;
    try {
      reply = await this.#withTimeout(this.#send(['EVALSHA', TOKEN_BUCKET_SHA, ...args]));
    } catch (err) {
      if (!isNoScript(err)) throw asUnavailable(err);
      try {
        reply = await this.#withTimeout(this.#send(['EVAL', TOKEN_BUCKET_LUA, ...args]));
      } catch (again) {
        throw asUnavailable(again);
      }
    }
    if (!Array.isArray(reply) || reply.length < 3) throw new RedisUnavailableError(`unexpected script reply ${JSON.stringify(reply)}`);
    if (Number(reply[0]) === 1) return { admitted: true };
    return { admitted: false, retryAfterMs: Number(reply[1]), bucket: Number(reply[2]) - 1 };
  }

  #withTimeout<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const cancel = this.#clock.setTimeout(
        () => reject(new RedisUnavailableError(`no reply within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      p.then(
        (v) => {
          cancel();
          resolve(v);
        },
        (err: unknown) => {
          cancel();
          reject(err);
        },
      );
    });
  }
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

function asUnavailable(err: unknown): RedisUnavailableError {
  if (err instanceof RedisUnavailableError) return err;
  return new RedisUnavailableError(err instanceof Error ? err.message : String(err), { cause: err });
}
