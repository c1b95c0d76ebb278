// One of three real upstreams starts failing: its instance breaker ejects it from routing,
// the other two keep answering, and once it recovers the probes re-admit it. The sleep
// window runs on a ManualClock, so nothing here waits on time.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { CallExecutor, type CircuitState, parseBreakerRules } from '../src/index.js';

type Upstream = { id: string; port: number; failing: boolean; hits: number; close: () => Promise<void> };
const upstreams: Upstream[] = [];

before(async () => {
  for (const id of ['u-0', 'u-1', 'u-2']) {
    const u: Upstream = { id, port: 0, failing: false, hits: 0, close: async () => {} };
    const s = await listen((_req, res) => {
      u.hits++;
      res.statusCode = u.failing ? 503 : 200;
      res.end(u.id);
    });
    u.port = s.port;
    u.close = s.close;
    upstreams.push(u);
  }
});
after(async () => {
  for (const u of upstreams) await u.close();
});

const SLEEP_MS = 10_000;
const CONSECUTIVE = 3;
const PROBES = 2;

it('ejects a failing instance, keeps serving from the others, re-admits it after probes', async () => {
  const clock = new ManualClock();
  const executor = new CallExecutor({ clock });
  executor.setRules(
    'orders',
    parseBreakerRules(
      {
        rules: [
          {
            level: 'instance',
            consecutiveFailures: CONSECUTIVE,
            failureRateThreshold: 50,
            minimumCalls: 10,
            sleepWindowMs: SLEEP_MS,
            probes: PROBES,
            maxEjectionPercent: 34,
          },
        ],
      },
      'breaker',
    ),
  );
  executor.setInstances(
    'orders',
    upstreams.map((u) => u.id),
  );
  const ib = executor.instanceBreakers;
  const transitions: [string, CircuitState][] = [];
  ib.onOpen.add((e) => transitions.push([e.breaker.instance ?? '', 'open']));
  ib.onHalfOpen.add((e) => transitions.push([e.breaker.instance ?? '', 'half-open']));
  ib.onClose.add((e) => transitions.push([e.breaker.instance ?? '', 'closed']));

  // The stand-in router: round robin over the instances not excluded, recomputed only when
  // the exclusion changes (as the real router precomputes).
  let eligible = upstreams;
  ib.subscribe(() => {
    eligible = upstreams.filter((u) => !ib.isExcluded(u.id));
  });
  let rr = 0;
  const pick = (tried: ReadonlySet<string>) => {
    for (let i = 0; i < eligible.length; i++) {
      const u = eligible[(rr + i) % eligible.length] as Upstream;
      if (tried.has(u.id)) continue;
      rr = (rr + i + 1) % eligible.length;
      return u;
    }
    return undefined;
  };
  const call = async () => {
    const res = await executor.call<Upstream>({
      service: 'orders',
      method: 'GET',
      path: '/orders/1',
      pick,
      send: (u, signal) => fetch(`http://127.0.0.1:${u.port}/orders/1`, signal ? { signal } : {}),
    });
    return { status: res.status, from: await res.text() };
  };

  // Healthy: every instance serves.
  for (let i = 0; i < 12; i++) assert.equal((await call()).status, 200);
  const bad = upstreams[1] as Upstream;

  // u-1 starts failing.
  bad.failing = true;
  let failedBeforeEjection = 0;
  const servedMeanwhile = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const r = await call();
    if (r.status !== 200) {
      assert.equal(r.from, bad.id);
      failedBeforeEjection++;
    } else {
      servedMeanwhile.set(r.from, (servedMeanwhile.get(r.from) ?? 0) + 1);
    }
  }
  console.log(`# failed calls before u-1 was ejected: ${failedBeforeEjection} (bound: consecutiveFailures = ${CONSECUTIVE})`);
  assert.ok(failedBeforeEjection >= 1 && failedBeforeEjection <= CONSECUTIVE);
  assert.equal(ib.isExcluded(bad.id), true);
  assert.equal(servedMeanwhile.get(bad.id), undefined);
  assert.equal(
    (servedMeanwhile.get('u-0') ?? 0) + (servedMeanwhile.get('u-2') ?? 0),
    30 - failedBeforeEjection,
    'every other call succeeded',
  );

  // While open, no traffic reaches u-1 at all, even just before the window ends.
  const hitsWhileOpen = bad.hits;
  clock.advance(SLEEP_MS - 1);
  for (let i = 0; i < 10; i++) assert.equal((await call()).status, 200);
  assert.equal(bad.hits, hitsWhileOpen);

  // u-1 recovers; the window ends; the next calls poll, half-open it, and send it the probes.
  bad.failing = false;
  clock.advance(1);
  for (let i = 0; i < 9; i++) assert.equal((await call()).status, 200);
  assert.equal(bad.hits - hitsWhileOpen, 3, 'two probes, then normal traffic again');
  assert.equal(ib.forService('orders')?.breaker(bad.id).state, 'closed');
  assert.equal(ib.isExcluded(bad.id), false);
  assert.deepEqual(transitions, [
    [bad.id, 'open'],
    [bad.id, 'half-open'],
    [bad.id, 'closed'],
  ]);
});
