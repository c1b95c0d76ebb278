// The design card named opossum for breakers; Meshlet wrote its own. This measures why,
// reproducibly: heap per breaker, live timers, and the CPU an idle process spends on
// them, for N breakers of each, created and given one successful call. Each case runs in
// a fresh child with --expose-gc; heap is measured after two GCs.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Breaker, breakerPolicy } from '@meshlet/breaker';
import CircuitBreakerOpossum from 'opossum';
import { fmt, machine, sized, table } from './harness.js';

const COUNT = sized('BENCH_CARD_BREAKERS', 10_000, 1_000);
/** How long the idle CPU is sampled, ms (a wall-clock window: a benchmark, not a test). */
const IDLE_MS = sized('BENCH_CARD_IDLE_MS', 2_000, 300);

type Kind = 'meshlet' | 'opossum' | 'opossum-lean';

interface Measured {
  readonly bytes: number;
  readonly timers: number;
  readonly idleCpuPercent: number;
}

/**
 * Live timers, unref'd ones too (opossum unrefs its intervals, so the process's list of
 * active resources does not show them): setInterval/setTimeout counted until cleared.
 */
let live = 0;
function countTimers(): void {
  const { setInterval: si, clearInterval: ci, setTimeout: st, clearTimeout: ct } = globalThis;
  const alive = new Set<unknown>();
  const track = <T>(t: T): T => {
    alive.add(t);
    live = alive.size;
    return t;
  };
  const untrack = (t: unknown) => {
    alive.delete(t);
    live = alive.size;
  };
  globalThis.setInterval = ((...a: Parameters<typeof si>) => track(si(...a))) as typeof si;
  globalThis.clearInterval = ((t: Parameters<typeof ci>[0]) => {
    untrack(t);
    ci(t);
  }) as typeof ci;
  globalThis.setTimeout = ((fn: () => void, ...rest: number[]) => {
    const t = st(
      () => {
        untrack(t);
        fn();
      },
      ...rest,
    );
    return track(t);
  }) as typeof st;
  globalThis.clearTimeout = ((t: Parameters<typeof ct>[0]) => {
    untrack(t);
    ct(t);
  }) as typeof ct;
}
const timers = () => live;

async function child(kind: Kind, n: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  countTimers();
  const action = async () => 1;
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const held: unknown[] = [];
  if (kind === 'meshlet') {
    const policy = breakerPolicy();
    for (let i = 0; i < n; i++) {
      const b = new Breaker({ level: 'instance', service: 'orders', instance: `orders-${i}` }, policy);
      const permit = b.tryAcquire();
      b.record(permit, false, 1);
      held.push(b);
    }
  } else {
    // opossum's defaults; "lean": percentiles off, as DEPENDENCIES.md suggests for many breakers.
    const options = kind === 'opossum-lean' ? { rollingPercentilesEnabled: false } : {};
    for (let i = 0; i < n; i++) {
      const b = new CircuitBreakerOpossum(action, options);
      await b.fire();
      held.push(b);
    }
  }
  gc();
  gc();
  const bytes = process.memoryUsage().heapUsed - before;
  const liveTimers = timers();
  const cpu = process.cpuUsage();
  const wall = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const used = process.cpuUsage(cpu);
  const elapsedUs = Number(process.hrtime.bigint() - wall) / 1_000;
  const idleCpuPercent = ((used.user + used.system) / elapsedUs) * 100;
  const out: Measured = { bytes, timers: liveTimers, idleCpuPercent };
  process.stdout.write(JSON.stringify(out));
  for (const b of held) if (b instanceof CircuitBreakerOpossum) b.shutdown();
}

function inChild(kind: Kind, n: number): Measured {
  const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--card-child', kind, String(n)], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as Measured;
}

export async function cardOpossum(): Promise<string> {
  const rows = (['meshlet', 'opossum', 'opossum-lean'] as const).map((kind) => {
    const m = inChild(kind, COUNT);
    const label = {
      meshlet: 'Meshlet `Breaker`',
      opossum: 'opossum 10, defaults',
      'opossum-lean': 'opossum 10, rollingPercentilesEnabled: false',
    }[kind];
    return [label, fmt(m.bytes / COUNT), fmt(m.timers), fmt(m.timers / COUNT, 1), `${fmt(m.idleCpuPercent, 1)}%`];
  });
  return [
    "## The card's breaker library: opossum beside Meshlet's breakers",
    '',
    `${machine()}. ${fmt(COUNT)} breakers each (one per instance of a large fleet), each given one successful call; ` +
      `heap after GC, live timers, and the CPU of the otherwise idle process over ${fmt(IDLE_MS)} ms.`,
    '',
    table(['breakers', 'heap bytes each', 'live timers', 'timers each', 'idle CPU (one core = 100%)'], rows),
    '',
  ].join('\n');
}

if (process.argv[2] === '--card-child') {
  await child(process.argv[3] as Kind, Number(process.argv[4]));
}
