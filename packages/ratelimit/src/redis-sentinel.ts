import { type Logger, MeshletError, wholeNumberOption } from '@meshlet/core';
import type { RedisConnection } from './redis-client.js';
import { redisCreateClient } from './redis-module.js';
import { RedisUnavailableError } from './redis-token-buckets.js';

/** Where the Sentinels are and which primary they watch, from `redis+sentinel://h1:p1,h2:p2/<name>`. */
export interface SentinelAddress {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  readonly name: string;
}

/**
 * Parses `redis+sentinel://host:port[,host:port…]/<primary name>` (the form the limiter's
 * `redisUrl` takes for a Sentinel setup). Throws MeshletError `MESHLET_BAD_OPTION` naming
 * what is wrong.
 */
export function parseSentinelUrl(url: string): SentinelAddress {
  const m = /^redis\+sentinel:\/\/([^/]+)\/([^/?#]+)\/?$/.exec(url);
  if (!m) throw new MeshletError('MESHLET_BAD_OPTION', `redisUrl: "${url}" is not redis+sentinel://host:port[,host:port…]/<primary name>`);
  const sentinels = (m[1] as string).split(',').map((hp) => {
    const at = hp.lastIndexOf(':');
    const host = at >= 0 ? hp.slice(0, at) : hp;
    const port = at >= 0 ? Number(hp.slice(at + 1)) : 26379;
    if (!host || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new MeshletError('MESHLET_BAD_OPTION', `redisUrl: "${hp}" is not a Sentinel host:port`);
    return { host, port };
  });
  return { sentinels, name: decodeURIComponent(m[2] as string) };
}

/** The part of a node-redis client kept for the primary. */
interface Client {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  destroy(): void;
  sendCommand(args: string[]): Promise<unknown>;
}

export interface SentinelConnectionOptions {
  readonly logger?: Logger;
  readonly connectTimeoutMs?: number;
  /**
   * Most time one Sentinel gets to connect and say where the primary is; past it the next
   * Sentinel is asked. A wedged Sentinel (stopped, or its host overloaded) accepts the
   * connection and never replies. Default `connectTimeoutMs` (1 000 ms).
   */
  readonly lookupTimeoutMs?: number;
  /** How often the Sentinels are asked for the primary when nothing says it moved. Default 5 000 ms. */
  readonly checkIntervalMs?: number;
}

/**
 * A Redis connection that follows the primary a set of Sentinels elects: it asks them
 * for the primary (`SENTINEL get-master-addr-by-name`), listens on every Sentinel for
 * `+switch-master`, and asks again when the primary stops answering or answers READONLY
 * (a demoted primary). Commands are never queued: while no primary answers they fail at
 * once and the limiter enforces each instance's share, so a failover never fails open.
 */
export function connectRedisSentinel(address: SentinelAddress, options: SentinelConnectionOptions = {}): RedisConnection {
  const connectTimeout = wholeNumberOption(options.connectTimeoutMs, 'connectTimeoutMs', 1, 600_000, 1000);
  const lookupTimeout = wholeNumberOption(options.lookupTimeoutMs, 'lookupTimeoutMs', 1, 600_000, connectTimeout);
  const createClient = redisCreateClient();
  let primary: { key: string; client: Client } | undefined;
  let closed = false;
  let asking: Promise<void> | undefined;
  /** Ends the Sentinel lookup in progress at once (close() calls it). */
  let stopLookup: (() => void) | undefined;
  let reported = false;
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  const warn = (message: string, fields: Record<string, unknown>) => {
    if (reported) return;
    reported = true;
    options.logger?.warn(message, { code: 'MESHLET_RATELIMIT_REDIS', ...fields });
  };

  const follow = (host: string, port: number) => {
    const key = `${host}:${port}`;
    if (closed || primary?.key === key) return;
    const client = createClient({
      socket: { host, port, connectTimeout, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000) },
      disableOfflineQueue: true,
    });
    client.on('error', (err: unknown) => {
      warn('rate limit Redis primary unreachable; asking the Sentinels', { primary: key, reason: (err as Error).message });
      void ask();
    });
    client.on('ready', () => {
      if (primary?.client !== client) return;
      reported = false;
      onReady();
    });
    client.connect().catch(() => undefined);
    const old = primary;
    primary = { key, client };
    if (old) {
      options.logger?.warn('rate limit Redis primary moved', { code: 'MESHLET_RATELIMIT_REDIS_FAILOVER', from: old.key, to: key });
      if (old.client.isOpen) old.client.destroy();
    }
  };

  /**
   * One Sentinel's answer: the primary's [host, port], or undefined when it is down, does
   * not know, or has not answered within lookupTimeout (then its connection is dropped).
   */
  const lookup = async (s: { readonly host: string; readonly port: number }): Promise<unknown> => {
    const c = createClient({ socket: { host: s.host, port: s.port, connectTimeout, reconnectStrategy: false } });
    c.on('error', () => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const givenUp = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, lookupTimeout, undefined);
      stopLookup = () => resolve(undefined);
    });
    const answered = (async () => {
      await c.connect();
      return await c.sendCommand(['SENTINEL', 'get-master-addr-by-name', address.name]);
    })().catch(() => undefined);
    try {
      return await Promise.race([answered, givenUp]);
    } finally {
      clearTimeout(timer);
      stopLookup = undefined;
      if (c.isOpen) c.destroy();
    }
  };

  /** Asks the Sentinels, one after the other, where the primary is now (one question at a time). */
  const ask = (): Promise<void> => {
    if (closed) return Promise.resolve();
    asking ??= (async () => {
      for (const s of address.sentinels) {
        if (closed) return;
        const reply = await lookup(s);
        if (Array.isArray(reply) && reply.length === 2) {
          follow(String(reply[0]), Number(reply[1]));
          return;
        }
      }
      if (closed) return;
      warn('no Sentinel answered for the rate limit Redis primary', { name: address.name });
    })().finally(() => {
      asking = undefined;
    });
    return asking;
  };

  // Every Sentinel tells of a failover as soon as it is done.
  const subscribers = address.sentinels.map((s) => {
    const sub = createClient({
      socket: { host: s.host, port: s.port, connectTimeout, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2000) },
    });
    sub.on('error', () => {});
    sub
      .connect()
      .then(() =>
        sub.subscribe('+switch-master', (message: string) => {
          // "<name> <old ip> <old port> <new ip> <new port>"
          const [name, , , host, port] = message.split(' ');
          if (name === address.name && host && port) follow(host, Number(port));
        }),
      )
      .catch(() => undefined);
    return sub;
  });
  const timer = setInterval(() => {
    if (!primary?.client.isReady) void ask();
  }, options.checkIntervalMs ?? 5_000);
  timer.unref();
  void ask();

  return {
    async send(args) {
      const client = primary?.client;
      if (!client?.isReady) {
        void ask();
        throw new RedisUnavailableError('no Redis primary known to the Sentinels is connected');
      }
      try {
        return await client.sendCommand(args as string[]);
      } catch (err) {
        // A demoted primary refuses writes: the Sentinels know the new one.
        if (err instanceof Error && err.message.startsWith('READONLY')) void ask();
        throw err;
      }
    },
    ready,
    async close() {
      closed = true;
      clearInterval(timer);
      // A lookup waits on a Sentinel for at most lookupTimeout; close() does not wait at all.
      stopLookup?.();
      await asking;
      if (primary?.client.isOpen) primary.client.destroy();
      for (const sub of subscribers) if (sub.isOpen) sub.destroy();
    },
  };
}
