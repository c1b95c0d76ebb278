// Rate limit accuracy (issue 4): offer 10x the limit and compare what was admitted with
// the ideal (burst + rate x duration), locally on a fake clock, locally on the real clock,
// and across 4 processes sharing one bucket through Redis; plus the cost of one decision.
// RATELIMIT_BENCH_SECONDS sets the duration (default 10). MESHLET_REDIS_URL names the
// Redis to use; without it a throwaway one is started with scripts/redis.sh.
import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { type Clock, systemClock } from '@meshlet/core';
import { type LimitedRequest, parseRateLimitSection, RateLimiter, TokenBuckets } from '@meshlet/ratelimit';
import { fmt, machine, median, table } from './harness.js';
import type { WorkerReport, WorkerTask } from './ratelimit-worker.js';

const SECONDS = Number(process.env.RATELIMIT_BENCH_SECONDS ?? 10);
const LOCAL_RATE = 1000; // per second
const LOCAL_BURST = 100;
const DIST_RATE = 400; // per second, shared by the 4 processes
const DIST_BURST = 40;
const WORKERS = 4;
const OVERLOAD = 10;

const request: LimitedRequest = { method: 'GET', path: '/orders/42', tag: () => undefined };
const rules = (rate: number, burst: number, mode: 'local' | 'distributed') =>
  parseRateLimitSection({ rules: [{ name: 'bench', rate, burst, mode, api: { method: '*', path: '/orders/{id}' } }] }, 'ratelimit');
const errorPct = (admitted: number, ideal: number) => `${admitted >= ideal ? '+' : ''}${fmt(((admitted - ideal) / ideal) * 100, 3)}%`;

type Row = (string | number)[];

function fakeClockRun(): Row {
  // A fake clock that is only a number: ManualClock's timer bookkeeping would dominate the cost.
  let now = 0;
  const clock: Clock = { now: () => now, wallNow: () => now, setTimeout: () => () => {} };
  const limiter = new RateLimiter({ service: 'bench', clock });
  limiter.setRules(rules(LOCAL_RATE, LOCAL_BURST, 'local'));
  const offered = LOCAL_RATE * OVERLOAD * SECONDS;
  const step = 1000 / (LOCAL_RATE * OVERLOAD);
  let admitted = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < offered; i++) {
    if ((limiter.decide(request) as { allowed: boolean }).allowed) admitted++;
    now += step;
  }
  const ns = Number(process.hrtime.bigint() - t0) / offered;
  const ideal = LOCAL_BURST + LOCAL_RATE * SECONDS;
  return ['local, fake clock', fmt(offered), fmt(admitted), fmt(ideal), errorPct(admitted, ideal), `${fmt(ns)} ns`];
}

async function realClockRun(): Promise<Row> {
  const limiter = new RateLimiter({ service: 'bench', clock: systemClock });
  limiter.setRules(rules(LOCAL_RATE, LOCAL_BURST, 'local'));
  const intervalMs = 1000 / (LOCAL_RATE * OVERLOAD);
  const total = LOCAL_RATE * OVERLOAD * SECONDS;
  let offered = 0;
  let admitted = 0;
  const t0 = systemClock.now();
  while (offered < total) {
    const due = Math.min(total, Math.floor((systemClock.now() - t0) / intervalMs) + 1);
    for (; offered < due; offered++) if ((limiter.decide(request) as { allowed: boolean }).allowed) admitted++;
    await new Promise((r) => setImmediate(r));
  }
  const elapsedS = (systemClock.now() - t0) / 1000;
  const ideal = LOCAL_BURST + LOCAL_RATE * elapsedS;
  return ['local, real clock', fmt(offered), fmt(admitted), fmt(ideal, 1), errorPct(admitted, ideal), '(tight loop below)'];
}

/** Cost of a decision alone, in a tight loop on the real clock (most refused, as under overload). */
function decisionCost(): Row[] {
  const limiter = new RateLimiter({ service: 'bench' });
  limiter.setRules(rules(LOCAL_RATE, LOCAL_BURST, 'local'));
  const buckets = new TokenBuckets({ rate: LOCAL_RATE, burst: LOCAL_BURST });
  const N = 2_000_000;
  const timeIt = (fn: () => unknown) => {
    const runs: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) fn();
      runs.push(Number(process.hrtime.bigint() - t0) / N);
    }
    return median(runs);
  };
  return [
    [
      'TokenBuckets.tryAcquire',
      fmt(
        timeIt(() => buckets.tryAcquire('k')),
        1,
      ),
    ],
    [
      'RateLimiter.decide (1 API rule, path template)',
      fmt(
        timeIt(() => limiter.decide(request)),
        1,
      ),
    ],
  ];
}

async function withRedis<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const given = process.env.MESHLET_REDIS_URL;
  if (given) return fn(given);
  const script = fileURLToPath(new URL('../../scripts/redis.sh', import.meta.url));
  const port = '16389';
  const url = execFileSync(script, ['start', port], { encoding: 'utf8' }).trim();
  try {
    return await fn(url);
  } finally {
    execFileSync(script, ['stop', port]);
  }
}

async function distributedRun(url: string): Promise<Row> {
  const worker = fileURLToPath(new URL('./ratelimit-worker.js', import.meta.url));
  const startAt = Date.now() + 1500; // time for every worker to connect
  const task: WorkerTask = {
    url,
    service: `bench-${process.pid}-${Date.now()}`,
    startAt,
    seconds: SECONDS,
    rate: DIST_RATE,
    burst: DIST_BURST,
    offerPerSecond: (DIST_RATE * OVERLOAD) / WORKERS,
    instances: WORKERS,
  };
  const children = Array.from({ length: WORKERS }, () => fork(worker, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  const reports = children.map(async (child) => {
    const reply = once(child, 'message') as Promise<[WorkerReport]>;
    child.send(task);
    const [report] = await reply;
    return report;
  });
  const all = await Promise.all(reports);
  const offered = all.reduce((s, r) => s + r.offered, 0);
  const admitted = all.reduce((s, r) => s + r.admitted, 0);
  const degraded = all.reduce((s, r) => s + r.degradedDecisions, 0);
  const latencies = all.flatMap((r) => r.latenciesNs).sort((a, b) => a - b);
  const meanUs = all.reduce((s, r) => s + r.totalNs, 0) / offered / 1000;
  const p50 = (latencies[Math.floor(latencies.length / 2)] ?? 0) / 1000;
  const ideal = DIST_BURST + DIST_RATE * SECONDS;
  return [
    `distributed, ${WORKERS} processes, Redis${degraded ? ` (${degraded} degraded)` : ''}`,
    fmt(offered),
    fmt(admitted),
    fmt(ideal),
    errorPct(admitted, ideal),
    `${fmt(meanUs, 1)} µs mean, ${fmt(p50, 1)} µs p50`,
  ];
}

export async function ratelimitAccuracy(): Promise<string> {
  const accuracy = [fakeClockRun(), await realClockRun(), await withRedis(distributedRun)];
  return [
    '## Rate limit accuracy',
    '',
    `${machine()}. Offered ${OVERLOAD}x the limit for ${SECONDS} s. Local: ${LOCAL_RATE}/s, burst ${LOCAL_BURST}. Distributed: ${DIST_RATE}/s, burst ${DIST_BURST}, one bucket shared by ${WORKERS} processes through a Redis Lua token bucket (Redis TIME). Ideal = burst + rate x duration. Targets: within 1% locally, 5% distributed.`,
    '',
    table(['limiter', 'offered', 'admitted', 'ideal', 'error', 'cost per decision'], accuracy),
    '',
    'Decision cost alone (tight loop, real clock, median of 5 x 2M):',
    '',
    table(['call', 'ns per call'], decisionCost()),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await ratelimitAccuracy());
