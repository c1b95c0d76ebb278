// Issue 17: a distributed limit across a Redis primary failover. A primary, a replica and
// three Sentinels from Debian's packages (scripts/redis-sentinel.sh, which installs them
// when missing), on free loopback ports; a fleet of four limiters, each with its own
// connection through Sentinel, offers ten times the limit while the primary is killed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { MemoryLogger } from '@meshlet/core';
import { createClient } from '@redis/client';
import {
  connectRedis,
  parseRateLimitSection,
  parseSentinelUrl,
  RateLimiter,
  type RedisConnection,
  RedisTokenBuckets,
} from '../src/index.js';

const script = fileURLToPath(new URL('../../../../scripts/redis-sentinel.sh', import.meta.url));
const RATE = 100; // per second, for the whole fleet
// A share's burst (BURST / FLEET) must outlast this process being starved of CPU for a
// moment on a loaded machine, or the fleet admits less than the limit while degraded.
const BURST = 30;
const FLEET = 4;

async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

const ports: number[] = [];
let url = '';
before(async () => {
  while (ports.length < 5) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  url = execFileSync(script, ['start', ...ports.map(String)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    .trim()
    .split('\n')
    .at(-1) as string;
});
after(() => {
  execFileSync(script, ['stop', String(ports[0])], { stdio: 'inherit' });
});

/** The primary the Sentinels name now, and its process id. */
async function primaryOf(sentinelUrl: string): Promise<{ port: number; pid: number }> {
  const { sentinels, name } = parseSentinelUrl(sentinelUrl);
  const s = sentinels[0] as { host: string; port: number };
  const sentinel = createClient({ socket: { host: s.host, port: s.port, reconnectStrategy: false } });
  sentinel.on('error', () => {});
  await sentinel.connect();
  const [, port] = (await sentinel
    .sendCommand(['SENTINEL', 'get-master-addr-by-name', name])
    .finally(() => sentinel.destroy())) as unknown as string[];
  const redis = createClient({ socket: { host: '127.0.0.1', port: Number(port), reconnectStrategy: false } });
  redis.on('error', () => {});
  await redis.connect();
  const info = String(await redis.sendCommand(['INFO', 'server']).finally(() => redis.destroy()));
  return { port: Number(port), pid: Number(/process_id:(\d+)/.exec(info)?.[1]) };
}

it('a primary failover under load keeps the fleet within 5% of the limit, never open, and the fleet follows the new primary', async () => {
  const logger = new MemoryLogger();
  const connections: RedisConnection[] = Array.from({ length: FLEET }, () => connectRedis(url, { logger }));
  await Promise.all(connections.map((c) => c.ready));
  const service = `failover-${process.pid}-${Date.now().toString(36)}`;
  const limiters = connections.map((c) => {
    const limiter = new RateLimiter({
      service,
      redis: new RedisTokenBuckets({ send: c.send, timeoutMs: 200 }),
      instances: () => FLEET,
      probeIntervalMs: 200,
      logger,
    });
    limiter.setRules(
      parseRateLimitSection({ rules: [{ name: 'fleet', rate: RATE, unit: 'second', burst: BURST, mode: 'distributed' }] }, 'ratelimit'),
    );
    return limiter;
  });
  const request = { method: 'GET', path: '/', tag: () => undefined };
  // Each second of the run: admitted calls, for the whole fleet.
  const admittedPerSecond: number[] = [];
  let running = true;
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const t0 = performance.now();
  const loops = limiters.map(async (limiter) => {
    while (running) {
      const d = await limiter.decide(request);
      if (d.allowed) {
        const second = Math.floor((performance.now() - t0) / 1000);
        admittedPerSecond[second] = (admittedPerSecond[second] ?? 0) + 1;
      }
      // 4 limiters × ~250 tries/s: ten times the limit offered.
      await sleep(4);
    }
  });

  await sleep(2_000);
  const before = await primaryOf(url);
  process.kill(before.pid, 'SIGKILL');
  // Wait for the Sentinels to promote the replica and for every limiter to be on it again.
  for (;;) {
    const { sentinels, name } = parseSentinelUrl(url);
    const s = sentinels[1] as { host: string; port: number };
    const sentinel = createClient({ socket: { host: s.host, port: s.port, reconnectStrategy: false } });
    sentinel.on('error', () => {});
    await sentinel.connect();
    const [, port] = (await sentinel
      .sendCommand(['SENTINEL', 'get-master-addr-by-name', name])
      .finally(() => sentinel.destroy())) as unknown as string[];
    if (Number(port) !== before.port && limiters.every((l) => !l.stats.degraded)) break;
    await sleep(100);
  }
  await sleep(2_000);
  running = false;
  await Promise.all(loops);
  const elapsed = (performance.now() - t0) / 1000;
  lag.disable();
  await Promise.all(connections.map((c) => c.close()));

  const admitted = admittedPerSecond.reduce((a, b) => a + (b ?? 0), 0);
  const limit = RATE * elapsed;
  console.log(
    `# failover: ${admitted} admitted in ${elapsed.toFixed(1)} s (rate × time ${limit.toFixed(0)}: ${(((admitted - limit) / limit) * 100).toFixed(2)}%; with the bucket's first burst ${(limit + BURST).toFixed(0)}: ${(((admitted - limit - BURST) / (limit + BURST)) * 100).toFixed(2)}%); per second ${admittedPerSecond.join(', ')}`,
  );

  // Allowance: the full bucket at the start, the local shares' full buckets when Redis went,
  // and the Redis bucket refilled while it was away.
  const allowance = 3 * BURST;
  assert.ok(admitted <= limit * 1.05 + allowance, `never open: ${admitted} admitted in ${elapsed.toFixed(1)} s, limit ${limit.toFixed(0)}`);
  assert.ok(
    admitted >= limit * 0.95,
    `not closed either: ${admitted} admitted in ${elapsed.toFixed(1)} s, limit ${limit.toFixed(0)} (event loop delay p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms)`,
  );
  for (const [second, n] of admittedPerSecond.entries())
    assert.ok((n ?? 0) <= RATE + allowance, `second ${second}: ${n} admitted, limit ${RATE} per second`);
  assert.ok(
    limiters.some((l) => l.stats.degradedDecisions > 0),
    'the failover was seen: decisions were made from local shares meanwhile',
  );
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_RATELIMIT_REDIS_FAILOVER'));
});
