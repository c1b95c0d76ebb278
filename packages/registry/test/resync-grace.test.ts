// Issue 17: right after an outage Consul may report instances critical that are alive (a
// restarted agent's restored checks have not run yet; a server restart): the registry
// keeps them for resyncGraceMs instead of sending every call to the few that passed.
// Consul here is a scripted fetch; the grace runs on a ManualClock.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type Instance, ManualClock, MemoryLogger } from '@meshlet/core';
import { ConsulRegistry, type HealthEntry } from '../src/index.js';

const entry = (id: string, status: 'passing' | 'critical'): HealthEntry => ({
  Node: { Node: 'node-1', Address: '127.0.0.1' },
  Service: { ID: id, Service: 'orders', Address: '127.0.0.1', Port: 9000, Tags: [], Meta: {} },
  Checks: [{ Status: status, ServiceID: id }],
});

type Step = { answer: HealthEntry[]; index: number } | { fail: true };

/** Answers the health queries with `steps` in order (then holds them), and the probe with a leader. */
function scriptedConsul(steps: Step[]): typeof globalThis.fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    if (url.pathname === '/v1/status/leader') return new Response('"127.0.0.1:8300"', { status: 200 });
    const step = steps.shift();
    if (!step)
      return new Promise<Response>((_resolve, reject) => {
        const signal = init?.signal;
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    if ('fail' in step) throw new TypeError('fetch failed');
    return new Response(JSON.stringify(step.answer), { status: 200, headers: { 'x-consul-index': String(step.index) } });
  }) as typeof globalThis.fetch;
}

function deliveries(registry: ConsulRegistry) {
  const seen: string[][] = [];
  /** The watch's second argument with each delivery: registered, not passing. */
  const unhealthy: (string[] | undefined)[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  const off = registry.watch('orders', (l: readonly Instance[], u?: readonly Instance[]) => {
    seen.push(l.map((i) => i.id).sort());
    unhealthy.push(u?.map((i) => i.id).sort());
    for (const w of waiting.filter((w) => w.n === seen.length)) w.resolve();
  });
  const nth = (n: number) => (seen.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve })));
  return { seen, unhealthy, nth, off };
}

it('after an outage, instances reported critical are kept for the grace, then dropped if still critical', async () => {
  const clock = new ManualClock(1_000_000);
  const logger = new MemoryLogger();
  const fetch = scriptedConsul([
    { answer: [entry('a', 'passing'), entry('b', 'passing')], index: 10 },
    { fail: true },
    { answer: [entry('a', 'passing'), entry('b', 'critical')], index: 3 },
  ]);
  const registry = new ConsulRegistry({ fetch, clock, logger, resyncGraceMs: 15_000 });
  const { seen, unhealthy, nth, off } = deliveries(registry);
  await nth(2);
  assert.deepEqual(seen, [
    ['a', 'b'],
    ['a', 'b'],
  ]);
  assert.deepEqual(unhealthy[1], [], 'b is kept as passing, so not listed as unhealthy too');
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_REGISTRY_RESYNC'));
  clock.advance(14_999);
  assert.equal(seen.length, 2);
  clock.advance(1);
  await nth(3);
  assert.deepEqual(seen[2], ['a'], 'still critical when the grace ends: dropped');
  off();
  await registry.close();
});

it('after an outage, an instance Consul no longer has goes at once', async () => {
  const clock = new ManualClock(1_000_000);
  const fetch = scriptedConsul([
    { answer: [entry('a', 'passing'), entry('b', 'passing')], index: 10 },
    { fail: true },
    { answer: [entry('a', 'passing')], index: 3 },
  ]);
  const registry = new ConsulRegistry({ fetch, clock, logger: new MemoryLogger() });
  const { seen, nth, off } = deliveries(registry);
  await nth(2);
  assert.deepEqual(seen[1], ['a']);
  assert.equal(clock.pendingTimers, 0, 'no grace to wait for');
  off();
  await registry.close();
});

it('outside an outage, a critical instance goes at once', async () => {
  const clock = new ManualClock(1_000_000);
  const fetch = scriptedConsul([
    { answer: [entry('a', 'passing'), entry('b', 'passing')], index: 10 },
    { answer: [entry('a', 'passing'), entry('b', 'critical')], index: 11 },
  ]);
  const registry = new ConsulRegistry({ fetch, clock, logger: new MemoryLogger() });
  const { seen, nth, off } = deliveries(registry);
  await nth(2);
  assert.deepEqual(seen[1], ['a']);
  off();
  await registry.close();
});

it('tells the watch which instances are registered but not passing; one deregistered is in neither list', async () => {
  const clock = new ManualClock(1_000_000);
  const fetch = scriptedConsul([
    { answer: [entry('a', 'passing'), entry('b', 'passing'), entry('c', 'passing')], index: 10 },
    { answer: [entry('a', 'passing'), entry('b', 'critical')], index: 11 },
  ]);
  const registry = new ConsulRegistry({ fetch, clock, logger: new MemoryLogger() });
  const { seen, unhealthy, nth, off } = deliveries(registry);
  await nth(2);
  assert.deepEqual(seen, [['a', 'b', 'c'], ['a']]);
  assert.deepEqual(unhealthy, [[], ['b']]);
  const late: (string[] | undefined)[] = [];
  registry.watch('orders', (_l, u) => late.push(u?.map((i) => i.id)))();
  assert.deepEqual(late, [['b']], 'a listener added later gets it too');
  off();
  await registry.close();
});
