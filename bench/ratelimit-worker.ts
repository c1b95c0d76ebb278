// One instance of a service in the distributed rate limit benchmark: offers its share of
// the load against a rule shared through Redis and reports what it got. Forked by
// ratelimit-accuracy.ts; talks to it over the IPC channel.
import { connectRedis, parseRateLimitSection, RateLimiter, RedisTokenBuckets } from '@meshlet/ratelimit';

export interface WorkerTask {
  readonly url: string;
  readonly service: string;
  /** Wall-clock epoch ms at which every worker starts offering. */
  readonly startAt: number;
  readonly seconds: number;
  /** The shared rule. */
  readonly rate: number;
  readonly burst: number;
  /** Requests this worker offers per second. */
  readonly offerPerSecond: number;
  readonly instances: number;
}

export interface WorkerReport {
  readonly offered: number;
  readonly admitted: number;
  readonly degradedDecisions: number;
  /** Sum and samples of decision latencies, in nanoseconds. */
  readonly totalNs: number;
  readonly latenciesNs: number[];
}

const MAX_IN_FLIGHT = 64;

async function runTask(task: WorkerTask): Promise<WorkerReport> {
  const connection = connectRedis(task.url);
  await connection.ready;
  const limiter = new RateLimiter({
    service: task.service,
    redis: new RedisTokenBuckets({ send: connection.send, timeoutMs: 250 }),
    instances: () => task.instances,
  });
  limiter.setRules(
    parseRateLimitSection({ rules: [{ name: 'bench', rate: task.rate, burst: task.burst, mode: 'distributed' }] }, 'ratelimit'),
  );
  const request = { method: 'GET', path: '/', tag: () => undefined };
  const total = Math.round(task.offerPerSecond * task.seconds);
  const intervalMs = 1000 / task.offerPerSecond;
  const latencies: number[] = [];
  let offered = 0;
  let admitted = 0;
  let totalNs = 0;
  let inFlight = 0;
  await new Promise((r) => setTimeout(r, Math.max(0, task.startAt - Date.now())));
  const t0 = Date.now();
  const offer = async () => {
    inFlight++;
    const s = process.hrtime.bigint();
    const d = await limiter.decide(request);
    const ns = Number(process.hrtime.bigint() - s);
    totalNs += ns;
    if (latencies.length < 20_000) latencies.push(ns);
    if (d.allowed) admitted++;
    inFlight--;
  };
  const pending: Promise<void>[] = [];
  while (offered < total) {
    // Offer every request that is due by now (open loop: arrivals do not wait for answers).
    const due = Math.min(total, Math.floor((Date.now() - t0) / intervalMs) + 1);
    while (offered < due && inFlight < MAX_IN_FLIGHT) {
      offered++;
      pending.push(offer());
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(pending);
  await connection.close();
  return { offered, admitted, degradedDecisions: limiter.stats.degradedDecisions, totalNs, latenciesNs: latencies };
}

process.once('message', (task: WorkerTask) => {
  runTask(task).then(
    (report) => process.send?.(report, () => process.exit(0)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
});
