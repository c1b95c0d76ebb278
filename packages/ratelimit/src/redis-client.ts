import type { Logger } from '@meshlet/core';
import { redisCreateClient } from './redis-module.js';
import { connectRedisSentinel, parseSentinelUrl } from './redis-sentinel.js';
import type { RedisCommand } from './redis-token-buckets.js';

/** The part of a node-redis client the limiter uses. */
export interface RawCommandClient {
  sendCommand(args: readonly string[]): Promise<unknown>;
}

/** Adapts a node-redis (`redis` / `@redis/client`) client to the limiter's RedisCommand port. */
export function nodeRedisCommand(client: RawCommandClient): RedisCommand {
  return (args) => client.sendCommand(args);
}

export interface RedisConnection {
  readonly send: RedisCommand;
  /** Settles when the first connection is up; until then commands fail (and limits use local shares). */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Connects to Redis for rate limiting, tuned to fail fast rather than wait: commands are
 * not queued while disconnected (the limiter falls back to local shares at once), and the
 * client keeps reconnecting in the background with capped backoff. Never waits for the
 * first connection, so a service starts even when Redis is down.
 *
 * `redis+sentinel://host:port[,host:port…]/<primary name>` connects through Sentinel
 * instead: the primary the Sentinels name, followed across failovers (connectRedisSentinel).
 */
export function connectRedis(url: string, options: { logger?: Logger; connectTimeoutMs?: number } = {}): RedisConnection {
  if (url.startsWith('redis+sentinel:')) return connectRedisSentinel(parseSentinelUrl(url), options);
  const createClient = redisCreateClient();
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: options.connectTimeoutMs ?? 1000, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000) },
  });
  let reported = false;
  // Without a listener node-redis would crash the process on the first socket error.
  client.on('error', (err: unknown) => {
    if (reported) return;
    reported = true;
    options.logger?.warn('rate limit Redis connection error; will keep reconnecting', {
      code: 'MESHLET_RATELIMIT_REDIS',
      reason: err instanceof Error ? err.message : String(err),
    });
  });
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  client.on('ready', () => {
    reported = false;
    onReady();
  });
  // Not awaited: with Redis down this settles only once it is up (the client keeps retrying).
  client.connect().catch(() => undefined);
  return {
    send: (args) => client.sendCommand(args as string[]),
    ready,
    async close() {
      if (client.isOpen) client.destroy();
    },
  };
}
