// The shared rules query by key list (`sharedQuery: 'keys'`, the default) against a real
// Consul dev agent: what each change reads, and who is told.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { type KvEntry, MemoryLogger, RULES_PREFIX } from '@meshlet/core';
import { ConsulKvStore } from '../src/index.js';
import { type ConsulAgent, startConsulAgent } from '../src/testing/consul-agent.js';

let agent: ConsulAgent;
before(async () => {
  agent = await startConsulAgent();
});
after(async () => {
  await agent.stop();
});

/** What the store asked the agent: `GET <path>`, or `txn <verb> <key>` per operation of a transaction. */
function recordRequests(store: ConsulKvStore): string[] {
  const sent: string[] = [];
  const request = store.client.request.bind(store.client);
  store.client.request = ((method, target, options) => {
    if (method === 'PUT' && target === '/v1/txn')
      for (const op of JSON.parse(options?.body ?? '[]') as { KV: { Verb: string; Key: string } }[])
        sent.push(`txn ${op.KV.Verb} ${op.KV.Key}`);
    else if (method === 'GET') sent.push(`GET ${target}`);
    return request(method, target, options);
  }) as typeof store.client.request;
  return sent;
}

/** Watches `key`, recording each delivery; `heard(n)` resolves once it has been told n times. */
function watchKey(store: ConsulKvStore, key: string) {
  const got: (readonly KvEntry[])[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  const off = store.watch(key, (entries) => {
    got.push(entries);
    for (const w of waiting.filter((w) => got.length >= w.n)) w.resolve();
  });
  const heard = (n: number) => (got.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve })));
  return { got, heard, off };
}

const key = (name: string) => `${RULES_PREFIX}keys-${name}`;

it('a change to one watched document reads that document alone and tells its watch alone; one nobody watches reads no value', async (t) => {
  const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
  const writer = new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() });
  for (const name of ['a', 'b', 'c', 'unwatched']) await writer.put(key(name), `${name}1`);
  const sent = recordRequests(store);
  const watches = ['a', 'b', 'c'].map((name) => watchKey(store, key(name)));
  t.after(() => {
    for (const w of watches) w.off();
  });
  await Promise.all(watches.map((w) => w.heard(1)));
  assert.deepEqual([...store.queries], [[RULES_PREFIX, 3]]);
  assert.ok(
    sent.every((s) => !s.includes('recurse')),
    'no query brings every document',
  );

  sent.length = 0;
  await writer.put(key('unwatched'), 'unwatched2');
  await writer.put(key('b'), 'b2');
  await watches[1]?.heard(2);
  assert.deepEqual(
    watches.map((w) => w.got.map((entries) => entries.map((e) => e.value))),
    [[['a1']], [['b1'], ['b2']], [['c1']]],
  );
  // The change nobody here watches was read as the key list and a check of the watched keys' indexes:
  // the one value read is b's.
  assert.deepEqual(
    sent.filter((s) => s.startsWith('txn get')),
    [`txn get ${key('b')}`],
  );
  assert.ok(sent.every((s) => s.startsWith('txn check-index') || s.startsWith('txn get') || s.includes('?keys=true')));
  for (const name of ['a', 'b', 'c', 'unwatched']) await writer.delete(key(name));
});

it('a watched document deleted: its watch hears "none", with no read; written again: read and told', async (t) => {
  const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
  const writer = new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() });
  await writer.put(key('d'), 'd1');
  await writer.put(key('e'), 'e1');
  const d = watchKey(store, key('d'));
  const e = watchKey(store, key('e'));
  t.after(() => {
    d.off();
    e.off();
  });
  await Promise.all([d.heard(1), e.heard(1)]);
  const sent = recordRequests(store);
  await writer.delete(key('d'));
  await d.heard(2);
  assert.deepEqual(d.got[1], []);
  assert.deepEqual(
    sent.filter((s) => s.startsWith('txn get')),
    [],
  );
  await writer.put(key('d'), 'd2');
  await d.heard(3);
  assert.deepEqual(
    d.got[2]?.map((x) => x.value),
    ['d2'],
  );
  assert.equal(e.got.length, 1, 'the other watch is not told');
  await writer.delete(key('d'));
  await writer.delete(key('e'));
});

it('a watch added while the query runs reads its own document once and is told it; the others are not told again', async (t) => {
  const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
  const writer = new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() });
  await writer.put(key('f'), 'f1');
  await writer.put(key('g'), 'g1');
  const f = watchKey(store, key('f'));
  t.after(() => f.off());
  await f.heard(1);
  const sent = recordRequests(store);
  const g = watchKey(store, key('g'));
  t.after(() => g.off());
  await g.heard(1);
  assert.deepEqual(
    g.got[0]?.map((x) => x.value),
    ['g1'],
  );
  assert.deepEqual(
    sent.filter((s) => s.startsWith('txn')),
    [`txn get ${key('g')}`],
    'one read, of its own key',
  );
  assert.ok(
    sent.every((s) => s.startsWith('txn') || !s.includes('index=0')),
    'the blocking query goes on',
  );
  // Then followed as the others: a change to it reaches it.
  await writer.put(key('g'), 'g2');
  await g.heard(2);
  assert.deepEqual(
    g.got[1]?.map((x) => x.value),
    ['g2'],
  );
  assert.equal(f.got.length, 1);
  assert.deepEqual([...store.queries], [[RULES_PREFIX, 2]]);
  await writer.delete(key('f'));
  await writer.delete(key('g'));
});

it("sharedQuery 'recurse' keeps the query that brings every document; a bad value is refused naming the option", async (t) => {
  const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, sharedQuery: 'recurse', logger: new MemoryLogger() });
  const writer = new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() });
  await writer.put(key('h'), 'h1');
  const sent = recordRequests(store);
  const h = watchKey(store, key('h'));
  t.after(() => h.off());
  await h.heard(1);
  assert.ok(sent[0]?.startsWith(`GET /v1/kv/${RULES_PREFIX}?recurse=true`), sent[0]);
  assert.throws(
    () => new ConsulKvStore({ sharedQuery: 'all' as 'keys' }),
    (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_OPTION' && /sharedQuery/.test((err as Error).message),
  );
  await writer.delete(key('h'));
});

it('a watch removed and added again while a step reads is told its key as it is, not as deleted', async (t) => {
  const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
  const writer = new ConsulKvStore({ address: agent.address, logger: new MemoryLogger() });
  await writer.put(key('r'), 'r1');
  await writer.put(key('s'), 's1');
  // The next transaction, once armed, waits at `gate` until released: the step's read is held in flight.
  let armed = false;
  let held: () => void = () => {};
  const inFlight = new Promise<void>((arrived) => {
    const request = store.client.request.bind(store.client);
    store.client.request = (async (method, target, options) => {
      if (armed && target === '/v1/txn') {
        armed = false;
        await new Promise<void>((release) => {
          held = release;
          arrived();
        });
      }
      return request(method, target, options);
    }) as typeof store.client.request;
  });
  const s = watchKey(store, key('s'));
  const first = watchKey(store, key('r'));
  t.after(() => s.off());
  await Promise.all([s.heard(1), first.heard(1)]);
  first.off(); // a reload replaces the watcher of r…
  armed = true;
  await writer.put(key('s'), 's2'); // …a write elsewhere starts a step, its read held…
  await inFlight;
  const again = watchKey(store, key('r')); // …and the new watcher of r comes while it reads
  t.after(() => again.off());
  held();
  await s.heard(2);
  // One more step: everything queued behind the first (the new watcher's own read) is done by its end.
  await writer.put(key('s'), 's3');
  await s.heard(3);
  assert.ok(again.got.length >= 1, 'the new watcher was told');
  assert.deepEqual(
    again.got.map((entries) => entries.map((x) => x.value)),
    again.got.map(() => ['r1']),
    'every delivery holds r as it is',
  );
  await writer.delete(key('r'));
  await writer.delete(key('s'));
});
