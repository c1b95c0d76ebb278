// The attempt chain's cost, two tables.
// 1. Promises per governed call, counted (async_hooks' PROMISE inits), not timed:
//    `mesh.fetch` through a stub client that answers at once and `mesh.request` through a
//    stub undici dispatcher (decision-cost.ts), with the bench rules in force (a timeout,
//    one retry, the breakers), tracing off, on but unsampled, and 100% sampled. "added" is
//    over the row's raw client alone: what the pipeline's own steps cost in promises (the
//    executor's async function, its await, any `.then` a per-attempt concern puts on it).
// 2. CPU per attempt through the mesh's chain — CLIENT span, in-flight count, a fault stage
//    without rules — to a transport that answers at once, in one process: the observers as
//    the mesh runs them (composeAttempt: told by the chain, settled after the await, as the
//    executor does) beside the same observers each in its around form (aroundObserver: a
//    `.then` and closures per concern per attempt, the control flow the chain had before).
import { createHook } from 'node:async_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Attempt,
  type AttemptHandler,
  type AttemptInterceptor,
  type AttemptObserver,
  aroundObserver,
  composeAttempt,
  createContext,
  type Instance,
  runWithContext,
} from '@meshlet/core';
import { testAttempt, testCall } from '@meshlet/core/testing';
import { Router } from '@meshlet/route';
import { clientSpanObserver, createTracing, type Tracing } from '@meshlet/trace';
import type { Mesh } from 'meshlet';
import { request } from 'undici';
import { meshWith, stubDispatcher } from './decision-cost.js';
import { UPSTREAM_SERVICE } from './governed-client.js';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const CALLS = 200;

/** Promises made per call of `fn`, over CALLS sequential calls after a warm-up. */
async function promisesPer(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 50; i++) await fn();
  let made = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'PROMISE') made++;
    },
  });
  // The loop's own await and the hook's bookkeeping are the same for every row: subtracted by "added".
  hook.enable();
  for (let i = 0; i < CALLS; i++) await fn();
  hook.disable();
  return made / CALLS;
}

export async function attemptPromises(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-promises-'));
  const ctx = createContext({ tags: [['user-tier', 'vip']], caller: { service: 'edge' } });
  const url = `http://${UPSTREAM_SERVICE}/api/users/42`;
  const shared = new Response(null, { status: 200 });
  const stub = () => Promise.resolve(shared);
  const meshes = [
    await meshWith('off', join(dir, 'a.jsonl')),
    await meshWith('unsampled', join(dir, 'b.jsonl')),
    await meshWith('sampled', join(dir, 'c.jsonl')),
  ] as Mesh[];
  const rows: string[][] = [];
  let cpu = '';
  try {
    const rawFetch = await promisesPer(stub);
    const rawRequest = await promisesPer(() =>
      request('http://127.0.0.1:9/api/users/42', { dispatcher: stubDispatcher }).then((r) => r.body.text()),
    );
    rows.push(['stub client alone', rawFetch.toFixed(1), '—']);
    for (const [name, m] of [
      ['tracing off', meshes[0]],
      ['unsampled', meshes[1]],
      ['tracing 100%', meshes[2]],
    ] as const) {
      const n = await promisesPer(() => runWithContext(ctx, () => (m as Mesh).fetch(url)));
      rows.push([`mesh.fetch, ${name}`, n.toFixed(1), (n - rawFetch).toFixed(1)]);
    }
    rows.push(['undici.request alone, stub dispatcher, body read', rawRequest.toFixed(1), '—']);
    for (const [name, m] of [
      ['tracing off', meshes[0]],
      ['unsampled', meshes[1]],
      ['tracing 100%', meshes[2]],
    ] as const) {
      const n = await promisesPer(() =>
        runWithContext(ctx, () => (m as Mesh).request(url, { dispatcher: stubDispatcher }).then((r) => r.body.text())),
      );
      rows.push([`mesh.request, ${name}`, n.toFixed(1), (n - rawRequest).toFixed(1)]);
    }
    for (const m of meshes) await m.close();
    meshes.length = 0;
    cpu = await chainCpu(dir);
  } finally {
    for (const m of meshes) await m.close();
    await rm(dir, { recursive: true, force: true });
  }
  return [
    '## Promises per governed call',
    '',
    `${CALLS} sequential calls with the bench rules in force (a 5 s timeout, one retry, breakers), answered first time by a stub; ` +
      'promises made per call (async_hooks PROMISE inits, a count, not a time); "added" is over the raw client alone.',
    '',
    table(['call', 'promises per call', 'added'], rows),
    '',
    cpu,
  ].join('\n');
}

const RUNS = sized('BENCH_RUNS', 5, 2);
const ATTEMPTS = sized('BENCH_CHAIN_ATTEMPTS', 100_000, 10_000);
const instance: Instance = {
  id: 'up-v1',
  service: 'bench-upstream',
  address: '127.0.0.1',
  port: 34567,
  tags: [],
  metadata: {},
  health: 'passing',
};
const answer = { status: 200 };
const transport: AttemptHandler = () => Promise.resolve(answer) as never;
// A fault stage without rules for the service: straight on.
const noFault: AttemptInterceptor = (attempt, next) => next(attempt);

/** Table 2: CPU per attempt through span, in-flight and fault stages, observers told vs wrapped. */
async function chainCpu(dir: string): Promise<string> {
  const router = new Router();
  router.setInstances('bench-upstream', [instance]);
  const target = router.picker('bench-upstream').first(() => undefined);
  // The executor's record's shape: every field made with it (testAttempt makes them all).
  const attemptOf = (): Attempt =>
    testAttempt(testCall({ service: 'bench-upstream', path: '/api/users/42', transport, fromResponse: () => answer }), target) as Attempt;
  const made: Tracing[] = [];
  const span = (options: Parameters<typeof createTracing>[0]): AttemptObserver => {
    const t = createTracing(options);
    made.push(t);
    return clientSpanObserver(t);
  };
  const kinds: [string, AttemptObserver[]][] = [
    ['tracing off (in-flight, fault)', []],
    ['unsampled, call metrics on', [span({ service: 'bench-client', sampleRatio: 0 })]],
    [
      'sampled, batched to the trace log',
      [span({ service: 'bench-client', sampleRatio: 1, log: { path: join(dir, 'chain.jsonl'), maxBytes: 2 ** 30 } })],
    ],
  ];
  type Variant = { name: string; run: (a: Attempt) => Promise<unknown> };
  const variants: Variant[] = [];
  for (const [name, spans] of kinds) {
    const observers: AttemptObserver[] = [...spans, { started: router.inFlight.started, settled: router.inFlight.settled }];
    const told = composeAttempt([...observers, noFault], { last: transport });
    variants.push({ name: `${name}: observers, settled after the await`, run: async (a) => told.settle(a, await told.send(a), undefined) });
    // Nested by hand: composeAttempt and chainAttempt would tell leading observers directly.
    const around = observers.map((o) => aroundObserver(o) as AttemptInterceptor);
    const nested = around.reduceRight<AttemptHandler>(
      (next, i) => (a) => i(a, next),
      (a) => noFault(a, transport),
    );
    // Awaited as the executor awaits it: the executor's await is there either way.
    variants.push({ name: `${name}: each wrapped around the send (.then per concern)`, run: async (a) => await nested(a) });
  }
  const cpuOf = async (run: Variant['run']): Promise<number> => {
    const c0 = process.cpuUsage();
    for (let i = 0; i < ATTEMPTS; i++) {
      await run(attemptOf());
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) * 1000) / ATTEMPTS;
  };
  const times: number[][] = variants.map(() => []);
  try {
    for (const v of variants) await cpuOf(v.run); // warm-up
    for (let r = 0; r < RUNS; r++)
      for (let k = 0; k < variants.length; k++) {
        const i = (k + r) % variants.length;
        times[i]?.push(await cpuOf((variants[i] as Variant).run));
      }
  } finally {
    for (const t of made) await t.shutdown();
  }
  return [
    '## The attempt chain per attempt: observers told, or wrapped around the send',
    '',
    `${machine()}; ${fmt(ATTEMPTS)} attempts a run through the mesh's stages (CLIENT span when traced, in-flight count, ` +
      'a fault stage without rules) to a transport that answers at once; CPU ns per attempt (process.cpuUsage), ' +
      `median of ${RUNS} interleaved runs. Each pair: the observers as the mesh runs them (no promise of theirs), then the ` +
      "same observers each in its around form (a `.then` and closures per concern, the chain's control flow before).",
    '',
    table(
      ['attempt', 'CPU ns per attempt', 'spread'],
      variants.map((v, i) => [v.name, fmt(median(times[i] ?? []), 0), spread(times[i] ?? [], 0)]),
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await attemptPromises());
