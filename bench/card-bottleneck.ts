// The design card named bottleneck for distributed limits; Meshlet wrote a Redis Lua token
// bucket instead. This runs both on the same Redis 7 (scripts/redis.sh, or
// MESHLET_REDIS_URL): whether bottleneck works there at all (with ioredis; it does not
// take node-redis v4+), what one admission costs each when tokens are there, and how each
// says no when they are not: bottleneck queues (a job waits for the reservoir), Meshlet
// answers at once with a retry-after.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connectRedis, RedisTokenBuckets } from '@meshlet/ratelimit';
import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import { fmt, machine, quantile, sized, table } from './harness.js';

const OPS = sized('BENCH_CARD_LIMIT_OPS', 2_000, 200);

async function withRedis<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const given = process.env.MESHLET_REDIS_URL;
  if (given) return fn(given);
  const script = fileURLToPath(new URL('../../scripts/redis.sh', import.meta.url));
  const port = '16388';
  const url = execFileSync(script, ['start', port], { encoding: 'utf8' }).trim().split('\n').at(-1) ?? '';
  try {
    return await fn(url);
  } finally {
    execFileSync(script, ['stop', port]);
  }
}

/** p50 / p99 of `n` sequential awaits of `op`, in µs. */
async function latencies(n: number, op: () => Promise<unknown>): Promise<[number, number]> {
  const us = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await op();
    us[i] = Number(process.hrtime.bigint() - t) / 1_000;
  }
  us.sort();
  return [quantile(us, 0.5), quantile(us, 0.99)];
}

export async function cardBottleneck(): Promise<string> {
  return withRedis(async (url) => {
    const redisVersion = await (async () => {
      const c = new Redis(url);
      const info = await c.info('server');
      c.disconnect();
      return /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
    })();

    // bottleneck: a reservoir big enough that every job is admitted at once.
    const id = `card-${process.pid}-${Date.now()}`;
    const limiter = new Bottleneck({
      id,
      datastore: 'ioredis',
      clientOptions: url,
      clearDatastore: true,
      reservoir: OPS * 10,
      maxConcurrent: null,
      Redis,
    });
    let bottleneckError = '';
    limiter.on('error', (e: Error) => {
      bottleneckError ||= e.message;
    });
    await limiter.ready();
    const [bnP50, bnP99] = await latencies(OPS, () => limiter.schedule(async () => undefined));
    // Out of tokens: how does it say no? It queues: the job is still waiting after 200 ms.
    await limiter.updateSettings({ reservoir: 0 });
    let waited = false;
    const job = limiter
      .schedule(async () => undefined)
      .then(() => {
        waited = true;
      });
    await new Promise((r) => setTimeout(r, 200));
    const queued = !waited;
    await limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
    void job.catch(() => undefined);
    await limiter.disconnect();

    // Meshlet: the Lua token bucket.
    const redis = connectRedis(url);
    await redis.ready;
    const buckets = new RedisTokenBuckets({ send: redis.send, timeoutMs: 1_000 });
    const spec = [{ key: `card:${id}`, ratePerMs: 0.001, burst: OPS * 10 }];
    await buckets.tryAcquire(spec); // loads the script
    const [mlP50, mlP99] = await latencies(OPS, () => buckets.tryAcquire(spec));
    const empty = [{ key: `card:${id}:empty`, ratePerMs: 0.001, burst: 1 }];
    await buckets.tryAcquire(empty);
    const refused = await buckets.tryAcquire(empty);
    await redis.close();

    return [
      "## The card's limiter library: bottleneck beside Meshlet's Redis bucket",
      '',
      `${machine()}. Redis ${redisVersion} on loopback; ${fmt(OPS)} sequential admissions each with tokens available (bottleneck 2.19.5 through ioredis: it does not take node-redis v4+).`,
      '',
      table(
        ['limiter', 'works on this Redis', 'admission p50 µs', 'p99 µs', 'out of tokens'],
        [
          [
            'bottleneck 2.19.5 (`schedule`)',
            bottleneckError ? `error: ${bottleneckError}` : 'yes',
            fmt(bnP50),
            fmt(bnP99),
            queued ? 'the job waits in a queue (no synchronous no)' : 'ran',
          ],
          [
            'Meshlet `RedisTokenBuckets.tryAcquire`',
            'yes',
            fmt(mlP50),
            fmt(mlP99),
            refused.admitted ? 'admitted' : `refused at once, retry after ${fmt(refused.retryAfterMs)} ms`,
          ],
        ],
      ),
      '',
    ].join('\n');
  });
}
