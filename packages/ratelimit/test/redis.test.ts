import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { MemoryLogger } from '@meshlet/core';
import { connectRedis, type Decision, parseRateLimitSection, RateLimiter, type RedisConnection, RedisTokenBuckets } from '../src/index.js';

// Needs a real Redis: `scripts/redis.sh` starts one; CI exports the URL it prints.
const URL_VAR = 'MESHLET_REDIS_URL';
const HINT = `start one with \`scripts/redis.sh\` and run with ${URL_VAR}=redis://127.0.0.1:16379`;

function redisAddress(): { url: string; host: string; port: number } {
  const url = process.env[URL_VAR];
  if (!url) throw new Error(`${URL_VAR} is not set: these tests need a real Redis; ${HINT}`);
  const u = new URL(url);
  return { url, host: u.hostname, port: Number(u.port || 6379) };
}

const request = { method: 'GET', path: '/', tag: () => undefined };
// Each run gets its own keys, so reruns against the same Redis never see old buckets.
const run = `t${process.pid}x${Date.now().toString(36)}`;
const rules = (burst: number) =>
  parseRateLimitSection({ rules: [{ name: 'shared', rate: 1, unit: 'hour', burst, mode: 'distributed' }] }, 'ratelimit');

/** Polls `check` (bounded) while a client reconnects; not a timing assertion. */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await sleep(50, undefined, { ref: false });
  }
  assert.fail(`never happened within 10 s: ${what}`);
}

/** The Redis keys of `service`'s buckets. */
async function keysOf(connection: RedisConnection, service: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await connection.send(['SCAN', cursor, 'MATCH', `meshlet:rl:{${service}}:*`, 'COUNT', '1000'])) as [
      string,
      string[],
    ];
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

function limiterOn(
  connection: RedisConnection,
  opts: { burst: number; instances?: number; logger?: MemoryLogger; timeoutMs?: number; service?: string },
) {
  const limiter = new RateLimiter({
    service: opts.service ?? run,
    redis: new RedisTokenBuckets({ send: connection.send, timeoutMs: opts.timeoutMs ?? 2000 }),
    instances: () => opts.instances ?? 1,
    probeIntervalMs: 0,
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  limiter.setRules(rules(opts.burst));
  return limiter;
}

describe('RateLimiter with a real Redis', () => {
  const connections: RedisConnection[] = [];
  const connect = (url: string) => {
    const c = connectRedis(url);
    connections.push(c);
    return c;
  };
  /** Connects and waits for the connection, so that no decision is made before Redis is reachable. */
  const connected = async (url: string) => {
    const c = connect(url);
    await Promise.race([
      c.ready,
      sleep(10_000, undefined, { ref: false }).then(() => assert.fail(`no connection to Redis at ${url} within 10 s (${HINT})`)),
    ]);
    return c;
  };

  before(async () => {
    const { url } = redisAddress();
    const probe = await connected(url);
    assert.equal(await probe.send(['PING']), 'PONG');
  });

  after(async () => {
    await Promise.all(connections.map((c) => c.close()));
  });

  it('two limiter instances sharing Redis admit exactly the shared quota', async () => {
    const { url } = redisAddress();
    const a = limiterOn(await connected(url), { burst: 30, service: `${run}-quota` });
    const b = limiterOn(await connected(url), { burst: 30, service: `${run}-quota` });
    // Offer 100, interleaved and concurrent, across both instances: the quota is shared.
    const decisions = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).decide(request)));
    assert.equal(decisions.filter((d) => d.allowed).length, 30);
    const refused = decisions.find((d) => !d.allowed) as Extract<Decision, { allowed: false }>;
    assert.equal(refused.rule.name, 'shared');
    assert.ok(refused.retryAfterSeconds > 0 && refused.retryAfterSeconds <= 3600);
    assert.equal(a.stats.degraded || b.stats.degraded, false);
  });

  it('a flood of distinct 400-byte `by` values writes at most maxKeysPerRule keys to Redis, each name bounded', async () => {
    const { url } = redisAddress();
    const connection = await connected(url);
    const service = `${run}-flood`;
    const limiter = new RateLimiter({
      service,
      redis: new RedisTokenBuckets({ send: connection.send, timeoutMs: 2000 }),
      maxKeysPerRule: 50,
    });
    limiter.setRules(
      parseRateLimitSection(
        { rules: [{ name: 'per-user', by: ['user-id'], rate: 10, unit: 'hour', burst: 10, mode: 'distributed' }] },
        'ratelimit',
      ),
    );
    for (let i = 0; i < 500; i++) {
      const user = `u${i}-${'x'.repeat(400)}`;
      await limiter.decide({ method: 'GET', path: '/', tag: (k) => (k === 'user-id' ? user : undefined) });
    }
    const keys = await keysOf(connection, service);
    assert.equal(keys.length, 51, '50 keys of their own and the overflow key');
    const prefix = `meshlet:rl:{${service}}:per-user:10/3600000/10:`;
    for (const k of keys) assert.ok(k.startsWith(prefix) && k.length <= prefix.length + 64, k);
    assert.deepEqual([limiter.stats.redisKeys, limiter.stats.redisKeysOverflowed], [50, 450]);
  });

  it('a bucket of rate 1/s and burst 2 expires within 3 s of its write, the TTL the limiter sends', async () => {
    const { url } = redisAddress();
    const connection = await connected(url);
    const service = `${run}-ttl`;
    const limiter = new RateLimiter({ service, redis: new RedisTokenBuckets({ send: connection.send, timeoutMs: 2000 }) });
    limiter.setRules(
      parseRateLimitSection({ rules: [{ name: 'per-second', rate: 1, unit: 'second', burst: 2, mode: 'distributed' }] }, 'ratelimit'),
    );
    assert.equal((await limiter.decide(request)).allowed, true);
    const keys = await keysOf(connection, service);
    assert.equal(keys.length, 1);
    const ttl = Number(await connection.send(['PTTL', keys[0] as string]));
    assert.ok(ttl > 0 && ttl <= 3000, `PTTL ${ttl}`);
  });

  it("refills a drained bucket from Redis's time after its clock stepped back (a stored `at` ahead of TIME)", async () => {
    const { url } = redisAddress();
    const connection = await connected(url);
    const buckets = new RedisTokenBuckets({ send: connection.send, timeoutMs: 2000 });
    const key = `meshlet:rl:{${run}-step}:b`;
    const bucket = { key, ratePerMs: 0.001, burst: 1 }; // 1 a second
    assert.equal((await buckets.tryAcquire([bucket])).admitted, true);
    const redisNow = async () => {
      const [s, us] = (await connection.send(['TIME'])) as [string, string];
      return Number(s) * 1000 + Number(us) / 1000;
    };
    // Redis's clock steps an hour back: the bucket's `at` is an hour ahead of TIME.
    await connection.send(['HSET', key, 'tokens', '0', 'at', String((await redisNow()) + 3_600_000)]);
    const refused = await buckets.tryAcquire([bucket]);
    assert.deepEqual(refused, { admitted: false, retryAfterMs: 1000, bucket: 0 });
    const at = Number(await connection.send(['HGET', key, 'at']));
    assert.ok(at <= (await redisNow()), 'the refusal moved `at` back to TIME');
    // A second of Redis's time later (written, not waited for), the bucket has refilled a token.
    await connection.send(['HSET', key, 'at', String(at - 1000)]);
    assert.equal((await buckets.tryAcquire([bucket])).admitted, true);
  });

  it('survives SCRIPT FLUSH (NOSCRIPT) by loading the script again', async () => {
    const { url } = redisAddress();
    const connection = await connected(url);
    const limiter = limiterOn(connection, { burst: 3, service: `${run}-flush` });
    assert.equal((await limiter.decide(request)).allowed, true);
    assert.equal(await connection.send(['SCRIPT', 'FLUSH']), 'OK');
    assert.equal((await limiter.decide(request)).allowed, true);
    assert.equal((await limiter.decide(request)).allowed, true);
    assert.equal((await limiter.decide(request)).allowed, false);
    assert.equal(limiter.stats.degraded, false);
  });

  it('with Redis on a closed port, enforces the local share: not everything, not nothing', async () => {
    const logger = new MemoryLogger();
    // Port 1 (tcpmux) has nothing listening on loopback: connections are refused.
    const limiter = limiterOn(connect('redis://127.0.0.1:1'), { burst: 40, instances: 4, logger, timeoutMs: 200 });
    let ok = 0;
    for (let i = 0; i < 100; i++) if ((await limiter.decide(request)).allowed) ok++;
    assert.equal(ok, 10, 'burst 40 over 4 instances');
    assert.equal(limiter.stats.degraded, true);
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_RATELIMIT_DEGRADED').length, 1);
  });

  it('falls back while Redis is gone and shares the limit again when it returns', async () => {
    const { host, port } = redisAddress();
    const proxy = await tcpProxy(host, port);
    try {
      await outageAndReturn(proxy, await connected(`redis://127.0.0.1:${proxy.port}`));
    } finally {
      await proxy.close();
    }
  });
});

// A Redis of its own: the test makes it refuse every write, which would fail the other
// test files sharing MESHLET_REDIS_URL.
describe('RateLimiter with a real Redis out of memory (refusals answered, writes refused)', () => {
  const script = fileURLToPath(new URL('../../../../scripts/redis.sh', import.meta.url));
  let port = 0;
  let connection: RedisConnection | undefined;
  before(async () => {
    port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const { port: p } = s.address() as { port: number };
        s.close(() => resolve(p));
      });
    });
    execFileSync(script, ['start', String(port)], { stdio: ['ignore', 'ignore', 'inherit'] });
  });
  after(async () => {
    await connection?.close();
    execFileSync(script, ['stop', String(port)], { stdio: 'inherit' });
  });

  it('stays one outage, logged once, until Redis has admitted for recoverAfterMs', async () => {
    const c = connectRedis(`redis://127.0.0.1:${port}`);
    connection = c;
    await c.ready;
    let sent = 0;
    const logger = new MemoryLogger();
    // The outage's lines (the refusals' MESHLET_RATE_LIMITED are the mesh logger's to throttle).
    const outageCodes = () => logger.entries.map((e) => e.fields?.code).filter((c) => c !== 'MESHLET_RATE_LIMITED');
    const limiter = new RateLimiter({
      service: `${run}-oom`,
      logger,
      redis: new RedisTokenBuckets({
        send: (args) => {
          sent++;
          return c.send(args);
        },
        timeoutMs: 2000,
      }),
      probeIntervalMs: 20,
    });
    limiter.setRules(
      parseRateLimitSection(
        { rules: [{ name: 'per-user', by: ['user-id'], rate: 1, unit: 'hour', burst: 1, mode: 'distributed' }] },
        'ratelimit',
      ),
    );
    const user = (v: string) => ({ method: 'GET', path: '/', tag: (k: string) => (k === 'user-id' ? v : undefined) });
    assert.equal((await limiter.decide(user('heavy'))).allowed, true);
    assert.equal((await limiter.decide(user('heavy'))).allowed, false, 'heavy has spent its token');
    await c.send(['CONFIG', 'SET', 'maxmemory-policy', 'noeviction']);
    await c.send(['CONFIG', 'SET', 'maxmemory', '1']);
    try {
      // heavy's refusal writes nothing and is answered; a new user's admission is refused (OOM).
      let i = 0;
      while (sent < 60) {
        await limiter.decide(user('heavy'));
        await limiter.decide(user(`new-${i++}`));
        await sleep(2);
      }
      assert.equal(limiter.stats.outages, 1);
      assert.equal(limiter.stats.degraded, true);
      assert.deepEqual(outageCodes(), ['MESHLET_RATELIMIT_DEGRADED']);
    } finally {
      await c.send(['CONFIG', 'SET', 'maxmemory', '0']);
    }
    let after = 0;
    await eventually('recovered once writes succeed again', async () => {
      await limiter.decide(user(`after-${after++}`));
      return !limiter.stats.degraded;
    });
    assert.deepEqual(outageCodes(), ['MESHLET_RATELIMIT_DEGRADED', 'MESHLET_RATELIMIT_RECOVERED']);
    assert.equal(limiter.stats.outages, 1);
  });
});

async function outageAndReturn(proxy: Awaited<ReturnType<typeof tcpProxy>>, connection: RedisConnection): Promise<void> {
  const logger = new MemoryLogger();
  const limiter = limiterOn(connection, { burst: 1000, instances: 2, logger, timeoutMs: 2000, service: `${run}-outage` });
  assert.equal((await limiter.decide(request)).allowed, true);
  assert.equal(limiter.stats.degraded, false);
  proxy.cut();
  await eventually('degraded after Redis went away', async () => {
    await limiter.decide(request);
    return limiter.stats.degraded;
  });
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_RATELIMIT_DEGRADED'));
  proxy.restore();
  await eventually('recovered after Redis came back', async () => {
    await limiter.decide(request);
    return !limiter.stats.degraded;
  });
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_RATELIMIT_RECOVERED'));
  assert.equal(limiter.stats.outages, 1);
}

/**
 * A TCP forwarder to Redis that the test can cut and restore. It keeps its port the whole
 * time (listening again on a released port could find it taken): while cut, it drops
 * every connection and refuses new ones.
 */
async function tcpProxy(host: string, targetPort: number) {
  const sockets = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = new Socket();
    upstream.connect(targetPort, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    port,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      cut = false;
    },
    async close() {
      this.cut();
      await new Promise((r) => server.close(r));
    },
  };
}
