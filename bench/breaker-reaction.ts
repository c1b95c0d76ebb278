// Breaker reaction (BENCH.md question 7): how many calls fail after an instance dies,
// before its instance breaker ejects it. Three upstream processes; one stops listening
// and drops its connections (what a crashed process looks like to a client) while the
// registry still lists it, so only the breaker can take it out. Three setups: no rules at
// all (the safe defaults: outlier ejection after 5 failures in a row, retries when nothing
// was sent); the default instance rule ({ "level": "instance" }: 5 failures in a row or
// 50% of at least 10 calls in 10 s; 30 s asleep) with retries turned off; and the same with
// one retry to another instance. Load keeps going until the dead instance is ejected and
// 200 more calls went through.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { InMemoryKvStore, InMemoryRegistry, silentLogger } from '@meshlet/core';
import { createMesh } from 'meshlet';
import { fmt, machine, median, sized, spread, startUpstream, stopUpstream, table } from './harness.js';

const TRIALS = sized('BENCH_BREAKER_TRIALS', 5, 2);
const SERVICE = 'fragile';
const AFTER = 200;

async function tell(child: ChildProcess, cmd: 'down' | 'up'): Promise<void> {
  const ack = once(child, 'message');
  child.send({ cmd });
  await ack;
}

interface Trial {
  failedAttempts: number;
  failedCalls: number;
  ejectedAfterMs: number;
}

type Setup = 'defaults' | 'rule, no retry' | 'rule + 1 retry';

const SECTIONS: Record<Setup, object | undefined> = {
  defaults: undefined,
  'rule, no retry': { rules: [{ level: 'instance' }], retry: { maxRetries: 0 } },
  'rule + 1 retry': { rules: [{ level: 'instance' }], retry: { maxRetries: 1 } },
};

async function trial(ups: { port: number; child: ChildProcess }[], setup: Setup, concurrency: number): Promise<Trial> {
  const registry = new InMemoryRegistry();
  for (const [i, u] of ups.entries()) {
    await registry.register({
      id: `f-${i}`,
      service: SERVICE,
      address: '127.0.0.1',
      port: u.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
  }
  const kv = new InMemoryKvStore();
  const section = SECTIONS[setup];
  if (section) await kv.put(`meshlet/rules/${SERVICE}`, JSON.stringify({ service: SERVICE, breaker: section }));
  const dead = ups[0] as { port: number; child: ChildProcess };
  let failedAttempts = 0;
  const send: typeof globalThis.fetch = async (input, init) => {
    try {
      return await globalThis.fetch(input, init);
    } catch (err) {
      if (String(input instanceof Request ? input.url : input).includes(`:${dead.port}/`)) failedAttempts++;
      throw err;
    }
  };
  const mesh = createMesh({ service: 'caller', registry, rules: kv, logger: silentLogger, fetch: send });
  const call = () => mesh.fetch(`http://${SERVICE}/x`).then((r) => r.arrayBuffer());
  for (let i = 0; i < 30; i++) await call(); // connections open, rules loaded
  let ejectedAt: bigint | undefined;
  const unsubscribe = mesh.breakers.instanceBreakers.subscribe(() => {
    if (ejectedAt === undefined && mesh.breakers.instanceBreakers.isExcluded('f-0')) ejectedAt = process.hrtime.bigint();
  });
  await tell(dead.child, 'down');
  failedAttempts = 0;
  const t0 = process.hrtime.bigint();
  let failedCalls = 0;
  let after = 0;
  const worker = async () => {
    while (after < AFTER && Number(process.hrtime.bigint() - t0) < 10e9) {
      try {
        await call();
      } catch {
        failedCalls++;
      }
      if (ejectedAt !== undefined) after++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  unsubscribe();
  await mesh.close();
  await tell(dead.child, 'up');
  if (ejectedAt === undefined) throw new Error('the dead instance was never ejected');
  return { failedAttempts, failedCalls, ejectedAfterMs: Number(ejectedAt - t0) / 1e6 };
}

export async function breakerReaction(): Promise<string> {
  const ups = [await startUpstream(), await startUpstream(), await startUpstream()];
  const rows: (string | number)[][] = [];
  try {
    for (const concurrency of [1, 50]) {
      for (const setup of Object.keys(SECTIONS) as Setup[]) {
        const trials: Trial[] = [];
        for (let t = 0; t < TRIALS; t++) trials.push(await trial(ups, setup, concurrency));
        const f = trials.map((x) => x.failedAttempts);
        const c = trials.map((x) => x.failedCalls);
        const ms = trials.map((x) => x.ejectedAfterMs);
        rows.push([
          concurrency,
          setup === 'defaults'
            ? 'no rules (safe defaults)'
            : setup === 'rule, no retry'
              ? 'instance rule, retries off'
              : 'instance rule + 1 retry',
          `${fmt(median(f))} (${spread(f)})`,
          `${fmt(median(c))} (${spread(c)})`,
          `${fmt(median(ms), 1)} (${spread(ms, 1)})`,
        ]);
      }
    }
  } finally {
    for (const u of ups) await stopUpstream(u.child);
  }
  return [
    '## Breaker reaction to a dead instance (BENCH.md Q7)',
    '',
    `${machine()}; 3 instances, round robin, one stops listening and drops its connections while still registered; median (min–max) of ${TRIALS} trials.`,
    '',
    table(['conc.', 'rules', 'attempts failed on the dead instance', 'calls failed (seen by the app)', 'ms from death to ejection'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await breakerReaction());
