// KvPrefixQuery is logic: a scripted `query` stands in for Consul's KV endpoint, a
// ManualClock for the blocking loop's rate limit. Every wait is on a query made or a
// delivery, never on real time.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type KvEntry, ManualClock } from '@meshlet/core';
import type { ConsulResponse } from '../src/consul-client.js';
import { ConsulKvStore } from '../src/consul-kv-store.js';
import { type KvPair, KvPrefixQuery } from '../src/kv-prefix-query.js';

interface Call {
  readonly index: number;
  readonly signal: AbortSignal;
  answer(index: number, pairs: KvPair[]): void;
  fail(err: unknown): void;
}

/** Consul's KV endpoint, answering only when the test says so; an aborted query rejects, as fetch does. */
class ScriptedKv {
  readonly calls: Call[] = [];
  readonly #waiting: { n: number; resolve: (c: Call) => void }[] = [];
  readonly query = (index: number, _wait: number, signal: AbortSignal): Promise<ConsulResponse<KvPair[] | undefined>> =>
    new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      const call: Call = { index, signal, answer: (i, body) => resolve({ index: i, body, status: 200 }), fail: reject };
      this.calls.push(call);
      for (const w of this.#waiting.filter((w) => w.n === this.calls.length)) w.resolve(call);
    });
  /** The n-th query (from 1), once made. */
  call(n: number): Promise<Call> {
    const made = this.calls[n - 1];
    return made ? Promise.resolve(made) : new Promise((resolve) => this.#waiting.push({ n, resolve }));
  }
}

const pair = (key: string, value: string, modifyIndex: number): KvPair => ({
  Key: key,
  Value: Buffer.from(value).toString('base64'),
  ModifyIndex: modifyIndex,
});

/** A follower that records what it was told; `next()` resolves on its next delivery. */
function recorder() {
  const got: (readonly KvEntry[])[] = [];
  let failures = 0;
  let waiting: (() => void) | undefined;
  return {
    got,
    get failures() {
      return failures;
    },
    follower: {
      onEntries: (entries: readonly KvEntry[]) => {
        got.push(entries);
        waiting?.();
        waiting = undefined;
      },
      onFailure: () => {
        failures++;
      },
    },
    next: () => new Promise<void>((resolve) => (waiting = resolve)),
  };
}

const R = 'meshlet/rules/';

function setup() {
  const kv = new ScriptedKv();
  const clock = new ManualClock();
  let idle = 0;
  const query = new KvPrefixQuery({ prefix: R, query: kv.query, clock, random: () => 0, onIdle: () => idle++ });
  return { kv, query, clock, idle: () => idle };
}

/** Ends the loop's backoff after a failure: waits for its timer to be set (a turn of the loop at a time), then runs it. */
async function endBackoff(clock: ManualClock): Promise<void> {
  while (clock.pendingTimers === 0) await new Promise((r) => setImmediate(r));
  clock.advance(1_000);
}

it('many watches under the prefix: one query; each hears only of its own keys', async () => {
  const { kv, query } = setup();
  const orders = recorder();
  const users = recorder();
  query.follow(`${R}orders`, orders.follower);
  query.follow(`${R}users`, users.follower);
  const first = await kv.call(1);
  assert.equal(first.index, 0);
  const firstOrders = orders.next();
  first.answer(10, [pair(`${R}users`, 'u1', 7), pair(`${R}orders`, 'o1', 5), pair(`${R}pay`, 'p1', 9)]);
  await firstOrders;
  assert.deepEqual(orders.got, [[{ key: `${R}orders`, value: 'o1', revision: 5 }]]);
  assert.deepEqual(users.got, [[{ key: `${R}users`, value: 'u1', revision: 7 }]]);

  // orders written: its watch alone hears of it, with its new text.
  const second = await kv.call(2);
  assert.equal(kv.calls.length, 2, "the next query blocks on the answer's index; no query per watch");
  assert.equal(second.index, 10);
  const changed = orders.next();
  second.answer(11, [pair(`${R}users`, 'u1', 7), pair(`${R}orders`, 'o2', 11), pair(`${R}pay`, 'p1', 9)]);
  await changed;
  assert.deepEqual(orders.got[1], [{ key: `${R}orders`, value: 'o2', revision: 11 }]);
  assert.equal(users.got.length, 1);

  // A key no watch follows changes, then the index moves with nothing changed: nobody is told.
  (await kv.call(3)).answer(12, [pair(`${R}users`, 'u1', 7), pair(`${R}orders`, 'o2', 11), pair(`${R}pay`, 'p2', 12)]);
  (await kv.call(4)).answer(13, [pair(`${R}users`, 'u1', 7), pair(`${R}orders`, 'o2', 11), pair(`${R}pay`, 'p2', 12)]);
  // users deleted: its watch hears "no entries"; orders does not.
  const deleted = users.next();
  (await kv.call(5)).answer(14, [pair(`${R}orders`, 'o2', 11), pair(`${R}pay`, 'p2', 12)]);
  await deleted;
  assert.deepEqual(users.got[1], []);
  assert.equal(orders.got.length, 2);
  assert.equal(users.got.length, 2);
});

it('a watch that joins after the first answer gets the last answer at once, with no new query', async () => {
  const { kv, query } = setup();
  const orders = recorder();
  query.follow(`${R}orders`, orders.follower);
  const told = orders.next();
  (await kv.call(1)).answer(3, [pair(`${R}orders`, 'o1', 2), pair(`${R}users`, 'u1', 3)]);
  await told;
  await kv.call(2);
  const users = recorder();
  query.follow(`${R}users`, users.follower);
  assert.deepEqual(users.got, [[{ key: `${R}users`, value: 'u1', revision: 3 }]], 'told synchronously, from the last answer');
  const absent = recorder();
  query.follow(`${R}absent`, absent.follower);
  assert.deepEqual(absent.got, [[]], 'a key not in the answer: told "none" at once');
  assert.equal(kv.calls.length, 2);
  assert.equal(query.followers, 3);
});

it('the index going backwards: the next query reads at once, and a key whose index is unchanged is not told again', async () => {
  const { kv, query } = setup();
  const orders = recorder();
  query.follow(`${R}orders`, orders.follower);
  (await kv.call(1)).answer(50, [pair(`${R}orders`, 'o1', 40)]);
  (await kv.call(2)).answer(20, [pair(`${R}orders`, 'o1', 40), pair(`${R}users`, 'u', 19)]);
  assert.equal((await kv.call(3)).index, 0, 'reset to 0 after the index went backwards');
  assert.equal(orders.got.length, 1);
});

it('a failed query tells every watch once per run of failures; one that joins during it, before any answer, at once', async () => {
  const { kv, query, clock } = setup();
  const orders = recorder();
  query.follow(`${R}orders`, orders.follower);
  (await kv.call(1)).fail(new Error('connect ECONNREFUSED'));
  await endBackoff(clock);
  await kv.call(2);
  assert.equal(orders.failures, 1);
  const users = recorder();
  query.follow(`${R}users`, users.follower);
  assert.equal(users.failures, 1);
  const told = users.next();
  (await kv.call(2)).answer(4, [pair(`${R}users`, 'u', 4)]);
  await told;
  assert.deepEqual(orders.got, [[]]);
});

it('the last watch leaving stops the query (its request aborted) and ends it', async () => {
  const { kv, query, idle } = setup();
  const offOrders = query.follow(`${R}orders`, recorder().follower);
  const offUsers = query.follow(`${R}users`, recorder().follower);
  const first = await kv.call(1);
  offOrders();
  assert.equal(first.signal.aborted, false, 'another watch still rides on it');
  offUsers();
  assert.equal(first.signal.aborted, true);
  assert.equal(idle(), 1);
  assert.throws(() => query.follow(`${R}orders`, recorder().follower), /has ended/);
});

it('ConsulKvStore refuses a bad sharedPrefixes with MESHLET_BAD_OPTION naming it', () => {
  for (const bad of [['meshlet/rules'], ['/meshlet/rules/'], [''], 'meshlet/rules/', Array.from({ length: 17 }, (_, i) => `p${i}/`)]) {
    assert.throws(
      () => new ConsulKvStore({ sharedPrefixes: bad as readonly string[] }),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_OPTION' && /sharedPrefixes/.test((err as Error).message),
      JSON.stringify(bad),
    );
  }
  assert.deepEqual([...new ConsulKvStore({ sharedPrefixes: [] }).queries], []);
});
