import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MeshletError } from '@meshlet/core';
import { Bulkhead, BulkheadFullError, Bulkheads } from '../src/index.js';

/** A call that finishes when the test says so. */
function gate() {
  let open!: () => void;
  const done = new Promise<void>((r) => {
    open = r;
  });
  return { done, open };
}

describe('Bulkhead', () => {
  it('runs up to maxConcurrent, queues up to maxQueue, refuses the rest with BulkheadFullError', async () => {
    const bulkhead = new Bulkhead('payments', { maxConcurrent: 2, maxQueue: 1 });
    const gates = [gate(), gate(), gate()];
    const order: number[] = [];
    const calls = gates.map((g, i) =>
      bulkhead.execute(async () => {
        order.push(i);
        await g.done;
        return i;
      }),
    );
    await Promise.resolve();
    assert.equal(bulkhead.active, 2);
    assert.equal(bulkhead.queued, 1);
    await assert.rejects(
      bulkhead.execute(async () => 'never'),
      (err: unknown) => {
        assert.ok(err instanceof BulkheadFullError && err instanceof MeshletError);
        assert.equal(err.code, 'MESHLET_BULKHEAD_FULL');
        assert.equal(err.service, 'payments');
        assert.match(err.message, /2 calls in flight and 1 waiting/);
        return true;
      },
    );
    assert.equal(bulkhead.refused, 1);
    gates[0]?.open();
    assert.equal(await calls[0], 0);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [0, 1, 2], 'the waiter got the freed slot');
    assert.equal(bulkhead.active, 2);
    gates[1]?.open();
    gates[2]?.open();
    assert.deepEqual(await Promise.all(calls), [0, 1, 2]);
    assert.equal(bulkhead.active, 0);
  });

  it('gives the slot back when the call throws', async () => {
    const bulkhead = new Bulkhead('s', { maxConcurrent: 1 });
    await assert.rejects(
      bulkhead.execute(() => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.equal(await bulkhead.execute(async () => 'ok'), 'ok');
  });

  it('drops an aborted waiter from the queue with the signal reason', async () => {
    const bulkhead = new Bulkhead('s', { maxConcurrent: 1, maxQueue: 1 });
    const g = gate();
    const running = bulkhead.execute(() => g.done);
    const controller = new AbortController();
    const waiting = bulkhead.execute(async () => 'ran', controller.signal);
    assert.equal(bulkhead.queued, 1);
    controller.abort(new Error('caller gave up'));
    await assert.rejects(waiting, /caller gave up/);
    assert.equal(bulkhead.queued, 0, 'the queue has room again');
    const next = bulkhead.execute(async () => 'next');
    g.open();
    await running;
    assert.equal(await next, 'next');
    await assert.rejects(
      bulkhead.execute(async () => 1, AbortSignal.abort(new Error('already'))),
      /already/,
    );
  });

  it('releases a slot once even if release is called twice', async () => {
    const bulkhead = new Bulkhead('s', { maxConcurrent: 1, maxQueue: 0 });
    const release = await bulkhead.acquire();
    release();
    release();
    assert.equal(bulkhead.active, 0);
    const again = await bulkhead.acquire();
    await assert.rejects(bulkhead.acquire(), BulkheadFullError);
    again();
  });

  it('keeps one bulkhead per destination with per-service overrides', async () => {
    const bulkheads = new Bulkheads({ defaults: { maxConcurrent: 1 }, services: { search: { maxConcurrent: 3, maxQueue: 2 } } });
    assert.equal(bulkheads.for('search').maxConcurrent, 3);
    assert.equal(bulkheads.for('search').maxQueue, 2);
    assert.equal(bulkheads.for('users').maxConcurrent, 1);
    assert.equal(bulkheads.for('users'), bulkheads.for('users'));
    assert.equal(await bulkheads.execute('users', async () => 7), 7);
    assert.throws(() => new Bulkhead('x', { maxConcurrent: 0 }), RangeError);
  });
});
