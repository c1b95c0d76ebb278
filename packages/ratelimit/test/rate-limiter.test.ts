import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryKvStore, ManualClock, MemoryLogger, RuleWatcher } from '@meshlet/core';
import {
  ADAPTIVE_STATS_ROW,
  DEFAULT_ADAPTIVE_SECTION,
  type LimitedRequest,
  parseRateLimitSection,
  RateLimiter,
  type RedisCommand,
  RedisTokenBuckets,
  ratelimitRuleKind,
  rejection,
} from '../src/index.js';
import { req, section, sync } from './limiter-helpers.js';

function admitted(limiter: RateLimiter, request: LimitedRequest, times: number): number {
  let n = 0;
  for (let i = 0; i < times; i++) if (sync(limiter.decide(request)).allowed) n++;
  return n;
}

describe('RateLimiter (local)', () => {
  it('allows everything with no rules, synchronously', () => {
    const limiter = new RateLimiter({ service: 'orders' });
    assert.equal(admitted(limiter, req('GET', '/'), 100), 100);
  });

  it('limits per service, per API (method + template) and per tag condition', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'orders', clock });
    limiter.setRules(
      section([
        { name: 'service', rate: 1, burst: 50 },
        { name: 'create-order', api: { method: 'POST', path: '/orders/{id}' }, rate: 1, burst: 3 },
        { name: 'checkout', when: [{ tag: 'source.service', op: 'equals', value: 'checkout' }], rate: 1, burst: 2 },
      ]),
    );
    assert.equal(admitted(limiter, req('POST', '/orders/1'), 10), 3, 'API rule');
    assert.equal(admitted(limiter, req('POST', '/orders/2'), 10), 0, 'one bucket for the template, not per path');
    assert.equal(admitted(limiter, req('GET', '/orders/1'), 1), 1, 'other methods not under the API rule');
    assert.equal(admitted(limiter, req('GET', '/x', { 'source.service': 'checkout' }), 10), 2, 'tag rule');
    assert.equal(admitted(limiter, req('GET', '/x', { 'source.service': 'cart' }), 100), 50 - 3 - 1 - 2, 'service rule takes the rest');
  });

  it('names the refusing rule, the longest wait, and builds the 429', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'orders', clock });
    limiter.setRules(
      section([
        { name: 'fast', rate: 10, burst: 1 },
        { name: 'slow', rate: 1, unit: 'minute', burst: 1 },
      ]),
    );
    assert.equal(sync(limiter.decide(req('GET', '/'))).allowed, true);
    const d = sync(limiter.decide(req('GET', '/')));
    assert.equal(d.allowed, false);
    if (d.allowed) return;
    assert.equal(d.rule.name, 'slow');
    assert.equal(d.rule.scope, 'service');
    assert.equal(d.retryAfterSeconds, 60);
    const r = rejection(d, 'orders');
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '60');
    assert.deepEqual(JSON.parse(r.body), {
      error: 'rate_limited',
      code: 'MESHLET_RATE_LIMITED',
      service: 'orders',
      rule: 'slow',
      scope: 'service',
      limit: '1 per 1m, burst 1',
      retryAfterSeconds: 60,
    });
  });

  it('logs a refusal with code MESHLET_RATE_LIMITED naming the rule, as the 429 body does', () => {
    const clock = new ManualClock(0);
    const logger = new MemoryLogger();
    const limiter = new RateLimiter({ service: 'orders', clock, logger });
    limiter.setRules(section([{ name: 'one-a-minute', rate: 1, unit: 'minute', burst: 1 }]));
    assert.equal(sync(limiter.decide(req('GET', '/'))).allowed, true);
    assert.equal(logger.entries.length, 0);
    assert.equal(sync(limiter.decide(req('GET', '/'))).allowed, false);
    assert.deepEqual(
      logger.entries.map((e) => [e.level, e.fields]),
      [['warn', { code: 'MESHLET_RATE_LIMITED', service: 'orders', rule: 'one-a-minute', scope: 'service' }]],
    );
  });

  it('a request without the `by` tag is told (MESHLET_RATELIMIT_TAG_ABSENT), and a refusal by the shared bucket says so in the 429 and the log', () => {
    const clock = new ManualClock(0);
    const logger = new MemoryLogger();
    const limiter = new RateLimiter({ service: 'orders', clock, logger });
    // A misnamed tag: requests carry `user-id`, the rule splits by `userid`.
    limiter.setRules(section([{ name: 'per-user', by: ['userid'], rate: 1, unit: 'hour', burst: 1 }]));
    assert.equal(sync(limiter.decide(req('GET', '/', { 'user-id': 'ann' }))).allowed, true);
    const d = sync(limiter.decide(req('GET', '/', { 'user-id': 'bob' })));
    assert.equal(d.allowed, false, "bob is refused by ann's request: one bucket for both");
    if (d.allowed) return;
    assert.equal(d.bucket, 'shared');
    assert.equal(JSON.parse(rejection(d, 'orders').body).bucket, 'shared');
    assert.deepEqual(
      logger.entries.map((e) => [e.level, e.fields]),
      [
        ['info', { code: 'MESHLET_RATELIMIT_TAG_ABSENT', service: 'orders', rule: 'per-user', by: 'userid' }],
        ['info', { code: 'MESHLET_RATELIMIT_TAG_ABSENT', service: 'orders', rule: 'per-user', by: 'userid' }],
        ['warn', { code: 'MESHLET_RATE_LIMITED', service: 'orders', rule: 'per-user', scope: 'tag', bucket: 'shared' }],
      ],
    );
    // A request with the tag: its own bucket, nothing told, and its refusal names no shared bucket.
    logger.entries.length = 0;
    limiter.setRules(section([{ name: 'per-user', by: ['user-id'], rate: 1, unit: 'hour', burst: 1 }]));
    assert.equal(sync(limiter.decide(req('GET', '/', { 'user-id': 'cy' }))).allowed, true);
    const own = sync(limiter.decide(req('GET', '/', { 'user-id': 'cy' })));
    assert.equal(own.allowed, false);
    if (own.allowed) return;
    assert.equal(own.bucket, undefined);
    assert.equal(JSON.parse(rejection(own, 'orders').body).bucket, undefined);
    assert.deepEqual(
      logger.entries.map((e) => e.fields?.code),
      ['MESHLET_RATE_LIMITED'],
    );
  });

  it('takes tokens only when every matching rule admits', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'orders', clock });
    limiter.setRules(
      section([
        { name: 'wide', rate: 1, unit: 'hour', burst: 5 },
        { name: 'narrow', api: { path: '/a' }, rate: 1, unit: 'hour', burst: 1 },
      ]),
    );
    assert.equal(admitted(limiter, req('GET', '/a'), 10), 1);
    // Nine refusals by "narrow" must not have spent "wide": four left for other paths.
    assert.equal(admitted(limiter, req('GET', '/b'), 10), 4);
  });

  it('splits a rule by tag values, and a 10 KB tag value creates no bucket', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'orders', clock, maxKeysPerRule: 1000 });
    limiter.setRules(section([{ name: 'per-user', by: ['user-id'], rate: 1, unit: 'hour', burst: 2 }]));
    assert.equal(admitted(limiter, req('GET', '/', { 'user-id': 'ann' }), 5), 2);
    assert.equal(admitted(limiter, req('GET', '/', { 'user-id': 'bob' }), 5), 2);
    assert.equal(limiter.stats.buckets, 2);
    let huge = 0;
    for (let i = 0; i < 200; i++) if (sync(limiter.decide(req('GET', '/', { 'user-id': `${i}${'x'.repeat(10 * 1024)}` }))).allowed) huge++;
    assert.equal(huge, 2, 'over-bound values share one bucket: limited, not free');
    assert.equal(limiter.stats.buckets, 3, 'one shared bucket for all of them, none per value');
    assert.equal(admitted(limiter, req('GET', '/'), 5), 0, 'requests without the tag share that bucket too');
    for (let i = 0; i < 50_000; i++) limiter.decide(req('GET', '/', { 'user-id': `u${i}` }));
    assert.ok(limiter.stats.buckets <= 1000, `buckets ${limiter.stats.buckets}`);
  });

  it('keeps bucket levels across a reload of the same rule, caps them on a changed one', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'orders', clock });
    limiter.setRules(section([{ name: 'r', rate: 1, unit: 'hour', burst: 5 }]));
    assert.equal(admitted(limiter, req('GET', '/'), 3), 3);
    limiter.setRules(section([{ name: 'r', rate: 1, unit: 'hour', burst: 5 }]));
    assert.equal(admitted(limiter, req('GET', '/'), 5), 2, 'same rule: no fresh burst');
    limiter.setRules(section([{ name: 'r', rate: 1, unit: 'hour', burst: 10 }]));
    assert.equal(admitted(limiter, req('GET', '/'), 5), 0, 'changed rule starts from the old level');
    limiter.setRules(undefined);
    assert.equal(admitted(limiter, req('GET', '/'), 5), 5);
  });

  it('follows the rule document in the KvStore, hot, and keeps the last good rules', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [ratelimitRuleKind], logger }).start();
    const limiter = new RateLimiter({ service: 'orders', clock: new ManualClock(0) });
    limiter.follow(watcher);
    await kv.put(
      'meshlet/rules/orders',
      JSON.stringify({ service: 'orders', ratelimit: { rules: [{ name: 'r', rate: 1, unit: 'hour', burst: 2 }] } }),
    );
    await new Promise((r) => setImmediate(r));
    assert.equal(limiter.rules.length, 1);
    await kv.put('meshlet/rules/orders', JSON.stringify({ service: 'orders', ratelimit: { rules: [{ name: 'r', rate: -1 }] } }));
    await new Promise((r) => setImmediate(r));
    assert.equal(watcher.status.rejected, 1);
    assert.equal(admitted(limiter, req('GET', '/'), 5), 2, 'last good rule still in force');
    watcher.close();
  });
});

/** A scripted Redis: each command is answered by `next`. */
function fakeRedis(next: (args: readonly string[]) => Promise<unknown>) {
  const calls: string[][] = [];
  const send: RedisCommand = (args) => {
    calls.push([...args]);
    return next(args);
  };
  return { send, calls };
}

describe('RateLimiter (distributed, Redis failing)', () => {
  const rules = section([{ name: 'shared', rate: 1, unit: 'hour', burst: 100, mode: 'distributed' }]);

  it('refuses a bad Redis option naming it (MESHLET_BAD_OPTION): maxKeysPerRule, probeIntervalMs, recoverAfterMs', () => {
    const redis = new RedisTokenBuckets({ send: fakeRedis(async () => [1, 0, 0]).send });
    for (const [field, value] of [
      ['maxKeysPerRule', 0],
      ['maxKeysPerRule', 1.5],
      ['probeIntervalMs', -1],
      ['probeIntervalMs', '200'],
      ['recoverAfterMs', Number.POSITIVE_INFINITY],
      ['recoverAfterMs', 600_001],
    ] as const)
      assert.throws(
        () => new RateLimiter({ service: 'orders', redis, [field]: value }),
        (e: unknown) => (e as { code?: string }).code === 'MESHLET_BAD_OPTION' && (e as Error).message.startsWith(`${field}:`),
        `${field} ${String(value)}`,
      );
    assert.doesNotThrow(() => new RateLimiter({ service: 'orders', redis, probeIntervalMs: 0, recoverAfterMs: 0, maxKeysPerRule: 1 }));
  });

  it('falls back to the local share when Redis refuses connections, logs once, recovers', async () => {
    const clock = new ManualClock(0);
    const logger = new MemoryLogger();
    let up = false;
    const redis = fakeRedis(async () => {
      if (!up) throw new Error('connect ECONNREFUSED 127.0.0.1:1');
      return [1, 0, 0];
    });
    const limiter = new RateLimiter({
      service: 'orders',
      clock,
      logger,
      redis: new RedisTokenBuckets({ send: redis.send, clock }),
      instances: () => 4,
      probeIntervalMs: 1000,
    });
    limiter.setRules(rules);
    const first = await limiter.decide(req('GET', '/'));
    assert.equal(first.allowed, true);
    assert.equal(limiter.stats.degraded, true);
    // The share is burst / instances = 25: neither everything nor nothing.
    let ok = 1;
    for (let i = 0; i < 99; i++) if ((await limiter.decide(req('GET', '/'))).allowed) ok++;
    assert.equal(ok, 25);
    assert.equal(redis.calls.length, 1, 'no Redis call between probes');
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_RATELIMIT_DEGRADED').length, 1);
    assert.equal(limiter.stats.outages, 1);
    assert.equal(limiter.stats.degradedDecisions, 100);

    clock.advance(1000);
    await limiter.decide(req('GET', '/')); // probes: still down
    assert.equal(redis.calls.length, 2);
    assert.equal(limiter.stats.degraded, true);
    up = true;
    clock.advance(1000);
    const probe = await limiter.decide(req('GET', '/'));
    assert.equal(redis.calls.length, 3, 'the probe asked Redis, which admitted');
    assert.equal(probe.allowed, false, 'still degraded: the local share (spent) decides a probe too, so probes add nothing to it');
    assert.equal(limiter.stats.degraded, true, 'one good probe: Redis must answer for recoverAfterMs (1 s) first');
    clock.advance(999);
    await limiter.decide(req('GET', '/'));
    assert.equal(limiter.stats.degraded, true);
    clock.advance(1);
    const recovered = await limiter.decide(req('GET', '/'));
    assert.equal(recovered.allowed, true);
    assert.equal(limiter.stats.degraded, false);
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_RATELIMIT_RECOVERED').length, 1);
    assert.equal(limiter.stats.outages, 1);
  });

  it('a Redis that fails every other command stays one outage: one DEGRADED line, no RECOVERED', async () => {
    // As a Redis out of memory: a refusal (no write) answers, an admission (a write) fails.
    const clock = new ManualClock(0);
    const logger = new MemoryLogger();
    let calls = 0;
    const redis = fakeRedis(async () => {
      if (calls++ % 2 === 1) throw new Error("OOM command not allowed when used memory > 'maxmemory'.");
      return [1, 0, 0];
    });
    const limiter = new RateLimiter({ service: 'orders', clock, logger, redis: new RedisTokenBuckets({ send: redis.send, clock }) });
    limiter.setRules(rules);
    // 10 s of a request every 50 ms, a probe every 200 ms.
    for (let t = 0; t < 10_000; t += 50) {
      await limiter.decide(req('GET', '/'));
      clock.advance(50);
    }
    assert.ok(redis.calls.length >= 50, `probed ${redis.calls.length} times`);
    assert.equal(limiter.stats.outages, 1);
    assert.equal(limiter.stats.degraded, true);
    // The outage's lines (the refusals' MESHLET_RATE_LIMITED are the mesh logger's to throttle).
    const codes = logger.entries.map((e) => e.fields?.code).filter((c) => c !== 'MESHLET_RATE_LIMITED');
    assert.deepEqual(codes, ['MESHLET_RATELIMIT_DEGRADED']);
  });

  it('a Redis that flaps logs at most one DEGRADED/RECOVERED pair per minute, counting every outage', async () => {
    // Up 2 s, down 1 s, over and over for 5 minutes (and the hold after the last): 100 outages, each one recovered from.
    const clock = new ManualClock(0);
    const logger = new MemoryLogger();
    const redis = fakeRedis(async () => {
      if (clock.now() % 3000 >= 2000) throw new Error('connect ECONNREFUSED 127.0.0.1:1');
      return [1, 0, 0];
    });
    const limiter = new RateLimiter({ service: 'orders', clock, logger, redis: new RedisTokenBuckets({ send: redis.send, clock }) });
    limiter.setRules(rules);
    for (let t = 0; t < 301_500; t += 50) {
      await limiter.decide(req('GET', '/'));
      clock.advance(50);
    }
    assert.equal(limiter.stats.outages, 100);
    assert.equal(limiter.stats.degraded, false);
    const lines = logger.entries.filter((e) => String(e.fields?.code).startsWith('MESHLET_RATELIMIT_'));
    const degraded = lines.filter((e) => e.fields?.code === 'MESHLET_RATELIMIT_DEGRADED');
    assert.equal(degraded.length, 5, 'one a minute');
    // In pairs, DEGRADED then RECOVERED.
    assert.deepEqual(
      lines.map((e) => e.fields?.code),
      degraded.flatMap(() => ['MESHLET_RATELIMIT_DEGRADED', 'MESHLET_RATELIMIT_RECOVERED']),
    );
    // Each line counts the outages since the previous one: 1, then the 20 of each minute.
    assert.deepEqual(
      degraded.map((e) => e.fields?.outages),
      [1, 20, 20, 20, 20],
    );
  });

  it('while degraded, probes Redis every 200 ms by default: the fleet leaves its local shares within 200 ms of Redis being back', async () => {
    // Until every instance has probed, some take from Redis and some from their shares:
    // the fleet can admit up to its limit twice over for that long (issue 17: a Sentinel
    // failover showed 150 admitted in the second a 100/s limit came back with 1 s probes).
    const clock = new ManualClock(0);
    const redis = fakeRedis(async () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:1');
    });
    const limiter = new RateLimiter({
      service: 'orders',
      clock,
      redis: new RedisTokenBuckets({ send: redis.send, clock }),
      instances: () => 2,
    });
    limiter.setRules(rules);
    await limiter.decide(req('GET', '/'));
    assert.equal(limiter.stats.degraded, true);
    clock.advance(199);
    await limiter.decide(req('GET', '/'));
    assert.equal(redis.calls.length, 1, 'no probe before 200 ms');
    clock.advance(1);
    await limiter.decide(req('GET', '/'));
    assert.equal(redis.calls.length, 2, 'a probe at 200 ms');
  });

  it('treats a Redis slower than the timeout as down', async () => {
    const clock = new ManualClock(0);
    const redis = fakeRedis(() => new Promise(() => {}));
    const limiter = new RateLimiter({
      service: 'orders',
      clock,
      redis: new RedisTokenBuckets({ send: redis.send, clock, timeoutMs: 50 }),
      instances: () => 2,
    });
    limiter.setRules(rules);
    const pending = limiter.decide(req('GET', '/'));
    assert.ok(pending instanceof Promise);
    clock.advance(50);
    assert.equal((await pending).allowed, true);
    assert.equal(limiter.stats.degraded, true);
  });

  it('asks Redis only when the local rules admit, for all distributed rules in one call', async () => {
    const clock = new ManualClock(0);
    const redis = fakeRedis(async () => [1, 0, 0]);
    const limiter = new RateLimiter({ service: 'orders', clock, redis: new RedisTokenBuckets({ send: redis.send, clock }) });
    limiter.setRules(
      section([
        { name: 'local', rate: 1, unit: 'hour', burst: 2 },
        { name: 'shared-a', rate: 1, unit: 'hour', burst: 10, mode: 'distributed' },
        { name: 'shared-b', by: ['user-id'], rate: 1, unit: 'hour', burst: 10, mode: 'distributed' },
      ]),
    );
    const results = [];
    for (let i = 0; i < 4; i++) results.push((await limiter.decide(req('GET', '/', { 'user-id': 'ann' }))).allowed);
    assert.deepEqual(results, [true, true, false, false]);
    assert.equal(redis.calls.length, 2, 'refused locally: no round trip');
    const [cmd, , keys, ...rest] = redis.calls[0] as string[];
    assert.equal(cmd, 'EVALSHA');
    assert.equal(keys, '2');
    assert.match(rest[0] as string, /^meshlet:rl:\{orders\}:shared-a:/);
    assert.match(rest[1] as string, /^meshlet:rl:\{orders\}:shared-b:.*ann$/);
  });

  it('writes at most maxKeysPerRule Redis keys alive per rule: a new `by` value past them takes the overflow key until one expires', async () => {
    const clock = new ManualClock(0);
    const redis = fakeRedis(async () => [1, 0, 0]);
    const limiter = new RateLimiter({
      service: 'orders',
      clock,
      maxKeysPerRule: 3,
      redis: new RedisTokenBuckets({ send: redis.send, clock }),
    });
    // rate 1 per second, burst 2: Redis keeps a bucket 2 s + 1 s after its last write.
    limiter.setRules(section([{ name: 'per-user', by: ['user-id'], rate: 1, unit: 'second', burst: 2, mode: 'distributed' }]));
    const keyOf = async (user: string) => {
      await limiter.decide(req('GET', '/', { 'user-id': user }));
      return (redis.calls.at(-1) as string[])[3] as string;
    };
    const prefix = 'meshlet:rl:{orders}:per-user:1/1000/2:';
    for (const u of ['ann', 'bob', 'cy']) assert.equal(await keyOf(u), `${prefix}${u}`);
    assert.deepEqual(
      (redis.calls.at(-1) as string[]).slice(4),
      ['1', '0.001', '2', '3000'],
      'n, then rate, burst and the TTL this count assumes: Redis expires the key by the same number',
    );
    const overflow = await keyOf('dee');
    assert.equal(overflow, `${prefix}\u0000other`, 'a fourth value while three keys live: the overflow key');
    assert.equal(await keyOf('eve'), overflow);
    clock.advance(1000);
    assert.equal(await keyOf('ann'), `${prefix}ann`, 'a value that has its key keeps it');
    assert.deepEqual([limiter.stats.redisKeys, limiter.stats.redisKeysOverflowed], [3, 2]);
    clock.advance(1999);
    assert.equal(await keyOf('dee'), overflow, 'bob and cy live in Redis until 3 s after their write');
    clock.advance(1);
    assert.equal(await keyOf('dee'), `${prefix}dee`);
    assert.equal(await keyOf('eve'), `${prefix}eve`);
    assert.equal(await keyOf('fay'), overflow, 'ann, sent again at 1 s, lives until 4 s');
    assert.equal(limiter.stats.redisKeys, 3);
  });

  it('stores a `by` value over 64 characters in the Redis key as its SHA-256: a key name is bounded', async () => {
    const clock = new ManualClock(0);
    const redis = fakeRedis(async () => [1, 0, 0]);
    const limiter = new RateLimiter({ service: 'orders', clock, redis: new RedisTokenBuckets({ send: redis.send, clock }) });
    limiter.setRules(section([{ name: 'per-user', by: ['user-id', 'tenant'], rate: 1, unit: 'second', burst: 2, mode: 'distributed' }]));
    const keys: string[] = [];
    for (const user of ['u'.repeat(512), `${'u'.repeat(511)}v`, 'x'.repeat(30)]) {
      await limiter.decide(req('GET', '/', { 'user-id': user, tenant: 't'.repeat(40) }));
      keys.push(((redis.calls.at(-1) as string[])[3] as string).slice('meshlet:rl:{orders}:per-user:1/1000/2:'.length));
    }
    const [a, b, c] = keys as [string, string, string];
    assert.match(a, /^#[A-Za-z0-9_-]{43}$/);
    assert.match(b, /^#[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a, b, 'values differing in their last character keep their own buckets');
    assert.match(c, /^#[A-Za-z0-9_-]{43}$/, 'two short values over 64 characters together: hashed too');
    await limiter.decide(req('GET', '/', { 'user-id': 'ann', tenant: 'acme' }));
    assert.ok(((redis.calls.at(-1) as string[])[3] as string).endsWith(':ann\u0000acme'), 'a short key stays readable');
  });

  it('retries with EVAL when Redis answers NOSCRIPT, and uses the script reply', async () => {
    const clock = new ManualClock(0);
    const redis = fakeRedis(async (args) => {
      if (args[0] === 'EVALSHA') throw new Error('NOSCRIPT No matching script. Please use EVAL.');
      return [0, 1500, 1];
    });
    const limiter = new RateLimiter({ service: 'orders', clock, redis: new RedisTokenBuckets({ send: redis.send, clock }) });
    limiter.setRules(rules);
    const d = await limiter.decide(req('GET', '/'));
    assert.deepEqual(
      redis.calls.map((c) => c[0]),
      ['EVALSHA', 'EVAL'],
    );
    assert.equal(d.allowed, false);
    assert.equal(d.rule?.name, 'shared');
    assert.equal(d.retryAfterSeconds, 2);
    assert.equal(limiter.stats.degraded, false);
  });
});

describe('RateLimiter in shadow mode (`ratelimit.mode: "shadow"`)', () => {
  it('evaluates the rules, counts and logs what they would refuse, and admits every request', () => {
    const clock = new ManualClock(0);
    const logger = new MemoryLogger();
    const limiter = new RateLimiter({ service: 'orders', clock, logger });
    const rules = [
      { name: 'per-user', by: ['user'], rate: 1, unit: 'minute', burst: 2 },
      { name: 'one-at-a-time', concurrency: 1 },
    ];
    limiter.setRules(parseRateLimitSection({ mode: 'shadow', rules }, 'ratelimit'));
    const decisions = Array.from({ length: 5 }, () => sync(limiter.decide(req('GET', '/', { user: 'ana' }))));
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, true, true, true, true],
    );
    // The first holds the one slot; every later one would have been refused by a rule.
    assert.deepEqual(
      decisions.map((d) => (d.allowed ? (d.shadow?.name ?? '-') : 'refused')),
      ['-', 'one-at-a-time', 'one-at-a-time', 'one-at-a-time', 'one-at-a-time'],
    );
    assert.deepEqual([limiter.stats.allowed, limiter.stats.refused, limiter.stats.shadowRefused], [5, 0, 4]);
    assert.ok(logger.entries.every((e) => e.fields?.code === 'MESHLET_RATELIMIT_SHADOW' && e.fields?.rule === 'one-at-a-time'));
    for (const d of decisions) if (d.allowed) d.release();

    // Enforced again: the same rules refuse.
    limiter.setRules(parseRateLimitSection({ rules }, 'ratelimit'));
    assert.equal(sync(limiter.decide(req('GET', '/', { user: 'bo' }))).allowed, true);
    assert.equal(sync(limiter.decide(req('GET', '/', { user: 'bo' }))).allowed, false);
  });

  it('refuses a mode that is neither enforce nor shadow, naming the field', () => {
    assert.throws(() => parseRateLimitSection({ mode: 'dry-run', rules: [] }, 'ratelimit'), /ratelimit\.mode/);
  });
});

describe('RateLimiter counts per rule', () => {
  const row = (limiter: RateLimiter, name: string) => limiter.stats.rules.find((r) => r.name === name);

  it('counts each rule: admitted when it matched a request that went through, refused when it refused one', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'orders', clock });
    limiter.setRules(
      section([
        { name: 'service', rate: 1, unit: 'minute', burst: 100 },
        { name: 'checkout', when: [{ tag: 'source.service', op: 'equals', value: 'checkout' }], rate: 1, unit: 'minute', burst: 2 },
        { name: 'uploads', api: { method: 'POST', path: '/uploads' }, concurrency: 1 },
      ]),
    );
    assert.equal(admitted(limiter, req('GET', '/x', { 'source.service': 'checkout' }), 5), 2);
    assert.equal(admitted(limiter, req('GET', '/x', { 'source.service': 'cart' }), 3), 3);
    const held = sync(limiter.decide(req('POST', '/uploads')));
    assert.equal(held.allowed, true);
    assert.equal(sync(limiter.decide(req('POST', '/uploads'))).allowed, false);
    assert.deepEqual(limiter.stats.rules, [
      // 2 checkout + 3 cart + 1 upload admitted; the refused ones took nothing from it.
      { name: 'service', allowed: 6, refused: 0, shadowRefused: 0 },
      { name: 'checkout', allowed: 2, refused: 3, shadowRefused: 0 },
      { name: 'uploads', allowed: 1, refused: 1, shadowRefused: 0 },
    ]);
    assert.equal(limiter.stats.refused, 4, 'the service total is the sum of the refusals');
    if (held.allowed) held.release();
  });

  it('keeps a rule’s counts across a reload that keeps its name, and drops a removed rule’s', () => {
    const limiter = new RateLimiter({ service: 'orders', clock: new ManualClock(0) });
    limiter.setRules(
      section([
        { name: 'a', rate: 1, unit: 'minute', burst: 1 },
        { name: 'b', rate: 1, unit: 'minute', burst: 1, when: [{ tag: 't', op: 'equals', value: 'b' }] },
      ]),
    );
    assert.equal(admitted(limiter, req('GET', '/'), 3), 1);
    limiter.setRules(section([{ name: 'a', rate: 1, unit: 'minute', burst: 5 }]));
    assert.deepEqual(row(limiter, 'a'), { name: 'a', allowed: 1, refused: 2, shadowRefused: 0 });
    assert.equal(row(limiter, 'b'), undefined, 'bounded: only rules in force are counted');
  });

  it('in shadow mode counts what each rule would have refused, and admits', () => {
    const limiter = new RateLimiter({ service: 'orders', clock: new ManualClock(0) });
    limiter.setRules(
      parseRateLimitSection(
        {
          mode: 'shadow',
          rules: [
            { name: 'per-user', by: ['user'], rate: 1, unit: 'minute', burst: 1 },
            { name: 'bots', when: [{ tag: 'ua', op: 'equals', value: 'bot' }], rate: 1, unit: 'minute', burst: 1 },
          ],
        },
        'ratelimit',
      ),
    );
    assert.equal(admitted(limiter, req('GET', '/', { user: 'ana' }), 4), 4);
    assert.deepEqual(row(limiter, 'per-user'), { name: 'per-user', allowed: 4, refused: 0, shadowRefused: 3 });
    assert.deepEqual(row(limiter, 'bots'), { name: 'bots', allowed: 0, refused: 0, shadowRefused: 0 }, 'a rule that matched nothing');
  });

  it('adds the adaptive limit as its own row, named so that no rule can share it', () => {
    const limiter = new RateLimiter({ service: 'orders', clock: new ManualClock(0), adaptive: DEFAULT_ADAPTIVE_SECTION });
    const d = sync(limiter.decide(req('GET', '/')));
    assert.equal(d.allowed, true);
    const r = row(limiter, ADAPTIVE_STATS_ROW);
    assert.equal(r?.allowed, 1);
    assert.throws(() => section([{ name: ADAPTIVE_STATS_ROW, rate: 1, burst: 1 }]), /name/);
    if (d.allowed) d.release();
  });
});
