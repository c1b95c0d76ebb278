// Issue 17: a distributed limit across a Redis primary failover. A primary, a replica and
// three Sentinels from Debian's packages (scripts/redis-sentinel.sh, which installs them
// when missing), on free loopback ports; a fleet of four limiters, each with its own
// connection through Sentinel, offers ten times the limit while the primary is killed.
//
// The lower bound ("not closed") is measured against what an ideal token bucket would have
// admitted of the requests actually offered, at the instants they were offered: on a
// loaded machine this process (or Redis) is starved for hundreds of milliseconds, fewer
// requests are offered, and tokens a full bucket cannot hold are lost to any limiter, so
// a bound on rate × wall time failed there (admitted 22-67% under it beside four CPU hogs)
// without the limiter refusing anything it should have admitted.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { MemoryLogger } from '@meshlet/core';
import { createClient } from '@redis/client';
import {
  connectRedis,
  connectRedisSentinel,
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

/**
 * How many of the requests offered at `instants` (ms, ascending) a token bucket of
 * `ratePerSec` and `burst`, full at the first, admits: the most a limiter could admit of them.
 */
function idealAdmitted(instants: readonly number[], ratePerSec: number, burst: number): number {
  let tokens = burst;
  let last = instants[0] ?? 0;
  let admitted = 0;
  for (const t of instants) {
    tokens = Math.min(burst, tokens + ((t - last) * ratePerSec) / 1000);
    last = t;
    if (tokens >= 1) {
      tokens -= 1;
      admitted++;
    }
  }
  return admitted;
}

/** Waits until `condition` holds, checking every 20 ms. */
async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await sleep(20);
}

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

it('the ideal bucket: a full burst, then the rate; nothing lost to requests it was not asked', () => {
  const everyMs = Array.from({ length: 2_001 }, (_, i) => i);
  assert.equal(idealAdmitted(everyMs, RATE, BURST), BURST + 2 * RATE);
  // Asked only every 500 ms: every request admitted.
  assert.equal(idealAdmitted([0, 500, 1_000, 1_500], RATE, BURST), 4);
  // Starved for 2 s after the burst: it holds a burst, not two seconds of tokens.
  assert.equal(idealAdmitted([...Array.from({ length: 40 }, () => 0), ...Array.from({ length: 40 }, () => 2_000)], RATE, BURST), 2 * BURST);
});

/** A TCP listener that accepts and never replies, as a SIGSTOPped Sentinel does. */
async function wedgedSentinel() {
  const accepted: Socket[] = [];
  const server = createServer((socket) => {
    accepted.push(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    accepted,
    async close() {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** `p`, or a failure naming `what` after `ms` (a bound on a hang, not a wait). */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  return Promise.race([p, sleep(ms, undefined, { ref: false }).then(() => assert.fail(`${what}: not within ${ms} ms`))]);
}

it('a Sentinel that accepts and never answers, listed first, is given up after lookupTimeoutMs: the next one names the primary', async () => {
  const wedged = await wedgedSentinel();
  const { sentinels, name } = parseSentinelUrl(url);
  const connection = connectRedisSentinel(
    { sentinels: [{ host: '127.0.0.1', port: wedged.port }, ...sentinels], name },
    { lookupTimeoutMs: 300, connectTimeoutMs: 300 },
  );
  try {
    await within(10_000, 'connected through the next Sentinel', connection.ready);
    assert.equal(await connection.send(['PING']), 'PONG');
    assert.ok(wedged.accepted.length >= 1, 'the wedged Sentinel was asked first');
  } finally {
    await within(5_000, 'close()', connection.close());
    await wedged.close();
  }
});

it('close() returns while a Sentinel lookup hangs, without waiting for its timeout', async () => {
  const wedged = await wedgedSentinel();
  const connection = connectRedisSentinel(
    { sentinels: [{ host: '127.0.0.1', port: wedged.port }], name: 'meshlet' },
    { lookupTimeoutMs: 600_000 },
  );
  try {
    // The lookup and the +switch-master subscriber have both connected, and wait.
    await until(() => wedged.accepted.length >= 2);
    await within(5_000, 'close() during a lookup', connection.close());
  } finally {
    await wedged.close();
  }
});

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
  // Every decision: when it was asked for, by which limiter, whether it was made from the
  // local share (Redis unavailable), and whether it admitted.
  const decided: { at: number; limiter: number; local: boolean; allowed: boolean }[] = [];
  let running = true;
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const t0 = performance.now();
  const loops = limiters.map(async (limiter, i) => {
    while (running) {
      const localBefore = limiter.stats.degradedDecisions;
      const at = performance.now();
      const d = await limiter.decide(request);
      decided.push({ at, limiter: i, local: limiter.stats.degradedDecisions > localBefore, allowed: d.allowed });
      if (d.allowed) {
        const second = Math.floor((performance.now() - t0) / 1000);
        admittedPerSecond[second] = (admittedPerSecond[second] ?? 0) + 1;
      }
      // 4 limiters × ~250 tries/s: ten times the limit offered.
      await sleep(4);
    }
  });
  const admittedSince = (from: number) => decided.reduce((n, d) => n + (d.at >= from && d.allowed && !d.local ? 1 : 0), 0);

  // In steady state first: the fleet's bucket emptied and refilled (twice its rate) through Redis.
  await until(() => admittedSince(t0) >= BURST + 2 * RATE);
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
  // Then in steady state on the new primary: its bucket emptied and refilled (twice its rate).
  const recovered = performance.now();
  await until(() => admittedSince(recovered) >= BURST + 2 * RATE);
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
  // Not closed either: through Redis, the fleet admitted what one bucket of the fleet's limit
  // would have of the requests it was asked about then; from the local shares, what each
  // limiter's share would have. Slack: the Redis bucket's level when the replica took over
  // (at most a burst), and 5% for the time a decision spent on its way to Redis.
  const remote = decided.filter((d) => !d.local).sort((a, b) => a.at - b.at);
  let ideal = idealAdmitted(
    remote.map((d) => d.at),
    RATE,
    BURST,
  );
  for (let i = 0; i < FLEET; i++)
    ideal += idealAdmitted(
      decided.filter((d) => d.local && d.limiter === i).map((d) => d.at),
      RATE / FLEET,
      Math.floor(BURST / FLEET),
    );
  console.log(
    `# ideal bucket over the ${decided.length} decisions asked for: ${ideal} (admitted ${admitted}: ${(((admitted - ideal) / ideal) * 100).toFixed(2)}%)`,
  );
  assert.ok(
    admitted >= ideal * 0.95 - BURST,
    `not closed either: ${admitted} admitted of the ${decided.length} asked for, where a bucket of the limit admits ${ideal} (event loop delay p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms)`,
  );
  for (const [second, n] of admittedPerSecond.entries())
    assert.ok((n ?? 0) <= RATE + allowance, `second ${second}: ${n} admitted, limit ${RATE} per second`);
  assert.ok(
    limiters.some((l) => l.stats.degradedDecisions > 0),
    'the failover was seen: decisions were made from local shares meanwhile',
  );
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_RATELIMIT_REDIS_FAILOVER'));
});

it('refuses a bad connectTimeoutMs or lookupTimeoutMs naming it (MESHLET_BAD_OPTION), before connecting', () => {
  const address = { sentinels: [{ host: '127.0.0.1', port: 1 }], name: 'meshlet' };
  for (const [field, value] of [
    ['connectTimeoutMs', 0],
    ['lookupTimeoutMs', -5],
    ['lookupTimeoutMs', 600_001],
    ['connectTimeoutMs', Number.NaN],
  ] as const)
    assert.throws(
      () => connectRedisSentinel(address, { [field]: value }),
      (e: unknown) => (e as { code?: string }).code === 'MESHLET_BAD_OPTION' && (e as Error).message.startsWith(`${field}:`),
      `${field} ${String(value)}`,
    );
});
