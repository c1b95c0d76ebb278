// The shared keys query (`sharedQuery: 'keys'`, the default) on a fake agent: its races and
// bad days, each held where it happens (a read held in flight, an agent restarted).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type KvEntry, MemoryLogger } from '@meshlet/core';
import { waitFor } from '@meshlet/core/testing';
import { ConsulKvStore } from '../src/consul-kv-store.js';
import type { KvPair } from '../src/kv-prefix-query.js';
import { type FakeRequest, fakeConsulKv, json } from './fake-consul-kv.js';

const pair = (Key: string, value: string, ModifyIndex: number): KvPair => ({
  Key,
  Value: Buffer.from(value).toString('base64'),
  ModifyIndex,
});

const gets = (req: FakeRequest, key: string) => req.url.endsWith('/v1/txn') && req.body?.includes(`"get"`) && req.body.includes(key);

/** Watches `key` on `store`, recording each delivery's values. */
function watchKey(store: ConsulKvStore, key: string, listener?: (entries: readonly KvEntry[]) => void) {
  const got: (readonly string[])[] = [];
  const off = store.watch(key, (entries) => {
    got.push(entries.map((e) => e.value));
    listener?.(entries);
  });
  return { got, off };
}

/** A gate: `held` resolves once a request waits at it; `open()` lets it through. */
function gate() {
  let open: () => void = () => {};
  let arrived: () => void = () => {};
  const held = new Promise<void>((r) => {
    arrived = r;
  });
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { held, open, wait: async (res: Response) => (arrived(), await opened, res) };
}

it('after a failed query, an answer at the index last read is read afresh: an agent restarted with other keys at that index is followed', async () => {
  const pairs: KvPair[] = [pair('meshlet/rules/svc-a', 'agent 1 rules for a', 47)];
  let down = false;
  const fake = fakeConsulKv(pairs, () => {
    if (down) throw new TypeError('fetch failed');
    return undefined;
  });
  const logger = new MemoryLogger();
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 1, logger });
  const a = watchKey(store, 'meshlet/rules/svc-a');
  const b = watchKey(store, 'meshlet/rules/svc-b');
  try {
    await waitFor(() => a.got.length === 1 && b.got.length === 1, 'both watches told once');
    assert.deepEqual([a.got, b.got], [[['agent 1 rules for a']], [[]]]);
    // The agent goes away (its blocked query ends) and comes back holding svc-b alone, at index 47 again.
    down = true;
    fake.drop();
    await waitFor(() => logger.entries.some((e) => e.fields?.code === 'MESHLET_KV_DEGRADED'), 'the store degraded');
    pairs.splice(0, pairs.length, pair('meshlet/rules/svc-b', 'agent 2 rules for b', 47));
    down = false;
    await waitFor(() => a.got.length === 2 && b.got.length === 2, 'both watches told of the agent that came back');
    assert.deepEqual(
      [a.got, b.got],
      [
        [['agent 1 rules for a'], []],
        [[], ['agent 2 rules for b']],
      ],
    );
  } finally {
    a.off();
    b.off();
  }
});

it('after a failed query, a key back at the same ModifyIndex with another value is told to its watch', async () => {
  const pairs: KvPair[] = [pair('meshlet/rules/svc-a', 'agent 1 rules for a', 47)];
  let down = false;
  const fake = fakeConsulKv(pairs, () => {
    if (down) throw new TypeError('fetch failed');
    return undefined;
  });
  const logger = new MemoryLogger();
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 1, logger });
  const a = watchKey(store, 'meshlet/rules/svc-a');
  try {
    await waitFor(() => a.got.length === 1, 'the watch told once');
    down = true;
    fake.drop();
    await waitFor(() => logger.entries.some((e) => e.fields?.code === 'MESHLET_KV_DEGRADED'), 'the store degraded');
    pairs.splice(0, pairs.length, pair('meshlet/rules/svc-a', 'agent 2 rules for a', 47));
    down = false;
    await waitFor(() => a.got.length === 2, 'the watch told of the value the agent came back with');
    assert.deepEqual(a.got, [['agent 1 rules for a'], ['agent 2 rules for a']]);
  } finally {
    a.off();
  }
});

it('a watch started while the first step reads is told when it ends, not a blocking wait later', async () => {
  const held = gate();
  let armed = true;
  const fake = fakeConsulKv([pair('meshlet/rules/a', 'a1', 3), pair('meshlet/rules/b', 'b1', 4)], (req) => {
    if (!armed || !gets(req, 'meshlet/rules/a')) return undefined;
    armed = false;
    return held.wait(json({ Results: [{ KV: pair('meshlet/rules/a', 'a1', 3) }], Errors: null }, 4));
  });
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 60, logger: new MemoryLogger() });
  const a = watchKey(store, 'meshlet/rules/a');
  await held.held;
  const b = watchKey(store, 'meshlet/rules/b');
  held.open();
  try {
    await waitFor(() => a.got.length === 1 && b.got.length === 1, 'both told', 5_000);
    assert.deepEqual([a.got, b.got], [[['a1']], [['b1']]]);
  } finally {
    a.off();
    b.off();
  }
});

it('a watch unwatched while its own first read is in flight is not told after', async () => {
  const held = gate();
  let armed = false;
  const fake = fakeConsulKv(
    [pair('meshlet/rules/a', 'a1', 3), pair('meshlet/rules/b', 'b1', 4), pair('meshlet/rules/c', 'c1', 5)],
    (req) => {
      if (!armed || !gets(req, 'meshlet/rules/b')) return undefined;
      armed = false;
      return held.wait(json({ Results: [{ KV: pair('meshlet/rules/b', 'b1', 4) }], Errors: null }, 5));
    },
  );
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 60, logger: new MemoryLogger() });
  const a = watchKey(store, 'meshlet/rules/a');
  try {
    await waitFor(() => a.got.length === 1, 'the first watch told');
    armed = true;
    const b = watchKey(store, 'meshlet/rules/b');
    await held.held;
    b.off();
    held.open();
    // c's own read queues behind b's: once c is told, b's read has ended.
    const c = watchKey(store, 'meshlet/rules/c');
    await waitFor(() => c.got.length === 1, 'a later watch told', 5_000);
    c.off();
    assert.deepEqual(b.got, [], 'not told after its unwatch');
  } finally {
    a.off();
  }
});

it('a watch whose listener throws is logged (MESHLET_KV_LISTENER_FAILED); the other watches are told and the store is not degraded', async () => {
  const fake = fakeConsulKv([pair('meshlet/rules/a', 'a1', 3), pair('meshlet/rules/b', 'b1', 4)]);
  const logger = new MemoryLogger();
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 60, logger });
  const a = watchKey(store, 'meshlet/rules/a', () => {
    throw new Error('the app listener broke');
  });
  const b = watchKey(store, 'meshlet/rules/b');
  try {
    await waitFor(() => a.got.length === 1 && b.got.length === 1, 'both told', 5_000);
    const codes = logger.entries.map((e) => e.fields?.code);
    assert.ok(codes.includes('MESHLET_KV_LISTENER_FAILED'), String(codes));
    assert.equal(logger.entries.find((e) => e.fields?.code === 'MESHLET_KV_LISTENER_FAILED')?.fields?.error, 'the app listener broke');
    assert.ok(!codes.includes('MESHLET_KV_DEGRADED'), String(codes));
    assert.equal(store.degraded, false);
  } finally {
    a.off();
    b.off();
  }
});

it('a watch whose own first read fails is read again after a backoff, not a blocking wait later', async () => {
  let failNext = false;
  const fake = fakeConsulKv([pair('meshlet/rules/a', 'a1', 3), pair('meshlet/rules/b', 'b1', 4)], (req) => {
    if (!failNext || !gets(req, 'meshlet/rules/b')) return undefined;
    failNext = false;
    return new Response('rpc error', { status: 500 });
  });
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 60, logger: new MemoryLogger() });
  const a = watchKey(store, 'meshlet/rules/a');
  try {
    await waitFor(() => a.got.length === 1, 'the first watch told');
    failNext = true;
    const b = watchKey(store, 'meshlet/rules/b');
    try {
      await waitFor(() => b.got.length === 1, 'the second watch told after its failed read', 5_000);
      assert.deepEqual(b.got, [['b1']]);
    } finally {
      b.off();
    }
  } finally {
    a.off();
  }
});
