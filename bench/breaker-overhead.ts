// Breaker cost when closed, per level, and the memory of 10 000 instance breakers.
// Overhead per call is the executor with the level's rule minus the executor without rules,
// on a send that answers at once, so the figure is the governance and nothing else.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Breaker, breakerPolicy, CallExecutor, InstanceBreakers, parseBreakerRules } from '@meshlet/breaker';
import { fmt, machine, median, table } from './harness.js';

const CALLS = Number(process.env.BENCH_BREAKER_CALLS ?? 200_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const BREAKERS = 10_000;

type Inst = { id: string };
const instances: Inst[] = [{ id: 'i-0' }, { id: 'i-1' }, { id: 'i-2' }];
const ok = new Response(null, { status: 200 });

async function nsPerCall(executor: CallExecutor, method = 'GET'): Promise<number> {
  let rr = 0;
  const call = {
    service: 'orders',
    method,
    path: '/users/42',
    pick: () => instances[rr++ % 3] as Inst,
    send: () => Promise.resolve(ok),
  };
  for (let i = 0; i < 20_000; i++) await executor.call<Inst>(call);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) await executor.call<Inst>(call);
  return Number(process.hrtime.bigint() - t0) / CALLS;
}

function executorWith(section: unknown): CallExecutor {
  const e = new CallExecutor();
  if (section !== undefined) e.setRules('orders', parseBreakerRules(section, 'breaker'));
  e.setInstances(
    'orders',
    instances.map((i) => i.id),
  );
  return e;
}

const CASES: [string, unknown][] = [
  ['service', { rules: [{ level: 'service' }] }],
  ['api (template match)', { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/users/{id}' }] }] }],
  ['instance', { rules: [{ level: 'instance' }] }],
  ['timeout (timer + AbortController)', { timeoutMs: 5_000 }],
  ['retry policy (budget, no retry taken)', { retry: { maxRetries: 2 } }],
  [
    'all three levels + timeout + retry',
    {
      rules: [{ level: 'service' }, { level: 'api', apis: [{ method: 'GET', path: '/users/{id}' }] }, { level: 'instance' }],
      timeoutMs: 5_000,
      retry: { maxRetries: 2 },
    },
  ],
];

function bareBreakerNs(): number {
  const b = new Breaker({ level: 'service', service: 'x' }, breakerPolicy());
  const n = 2_000_000;
  for (let i = 0; i < 100_000; i++) b.record(b.tryAcquire(), false, 1);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) b.record(b.tryAcquire(), false, 1);
  return Number(process.hrtime.bigint() - t0) / n;
}

/** Runs in a child with --expose-gc: heap bytes held by 10 000 instance breakers that have each seen a call. */
function heapChild(window: string): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const policy = breakerPolicy(window === 'count' ? { window: { type: 'count', size: 100 } } : {});
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const ib = new InstanceBreakers();
  const group = ib.configure('orders', policy, 50);
  const ids = Array.from({ length: BREAKERS }, (_, i) => `orders-${i}`);
  group?.setInstances(ids);
  for (const id of ids) group?.record(id, group.acquire(id), false, 1);
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  process.stdout.write(JSON.stringify({ bytes: after - before, timers, kept: ib.snapshot().length }));
}

function heapOf(window: string): { bytes: number; timers: number } {
  const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--breaker-heap', window], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as { bytes: number; timers: number };
}

export async function breakerOverhead(): Promise<string> {
  const rows: (string | number)[][] = [];
  const base: number[] = [];
  const per = new Map<string, number[]>();
  const baseline = executorWith(undefined);
  const executors = CASES.map(([name, section]) => [name, executorWith(section)] as const);
  for (let r = 0; r < RUNS; r++) {
    base.push(await nsPerCall(baseline));
    for (const [name, e] of executors) {
      const list = per.get(name) ?? [];
      list.push(await nsPerCall(e));
      per.set(name, list);
    }
  }
  const b = median(base);
  rows.push(['no rules (baseline: executor + await of send)', fmt(b), '—']);
  for (const [name] of CASES) {
    const m = median(per.get(name) ?? []);
    rows.push([name, fmt(m), fmt(m - b)]);
  }
  const bare = bareBreakerNs();
  const time = heapOf('time');
  const count = heapOf('count');
  return [
    '### Breaker overhead when closed (per call) and memory of 10 000 instance breakers',
    `${machine()}; ${CALLS.toLocaleString('en-US')} sequential calls, median of ${RUNS} runs; send resolves at once.`,
    '',
    table(['level', 'ns/call', 'added ns/call'], rows),
    '',
    `Bare \`Breaker\` tryAcquire + record (time window): ${fmt(bare, 1)} ns.`,
    '',
    table(
      ['10 000 instance breakers', 'heap', 'bytes each', 'timers'],
      [
        ['time window 10 s / 10 buckets (default)', `${fmt(time.bytes / 2 ** 20, 2)} MiB`, fmt(time.bytes / BREAKERS), time.timers],
        ['count window, 100 calls', `${fmt(count.bytes / 2 ** 20, 2)} MiB`, fmt(count.bytes / BREAKERS), count.timers],
      ],
    ),
  ].join('\n');
}

if (process.argv[2] === '--breaker-heap') heapChild(process.argv[3] ?? 'time');
else if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await breakerOverhead());
