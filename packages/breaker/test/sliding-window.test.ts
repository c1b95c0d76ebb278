import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CountWindow, TimeWindow } from '../src/index.js';

const totals = (w: { calls: number; failures: number; slowCalls: number }) => [w.calls, w.failures, w.slowCalls];

describe('CountWindow', () => {
  it('keeps the last N calls: the oldest leaves as the N+1th arrives', () => {
    const w = new CountWindow(3);
    w.record(0, true, true);
    w.record(0, false, false);
    w.record(0, false, true);
    assert.deepEqual(totals(w), [3, 1, 2]);
    w.record(0, false, false); // evicts the failed+slow one
    assert.deepEqual(totals(w), [3, 0, 1]);
    w.reset();
    assert.deepEqual(totals(w), [0, 0, 0]);
  });
});

describe('TimeWindow', () => {
  it('drops a bucket exactly when `buckets` newer buckets have begun', () => {
    const w = new TimeWindow(1_000, 10); // 100 ms buckets
    w.record(0, true, false); // bucket 0
    w.record(99, true, false); // bucket 0
    w.record(100, false, false); // bucket 1
    w.advance(999);
    assert.deepEqual(totals(w), [3, 2, 0], 'bucket 0 still inside at t=999');
    w.advance(1_000);
    assert.deepEqual(totals(w), [1, 0, 0], 'bucket 0 gone at t=1000 (bucket 10 began)');
    w.advance(1_099);
    assert.deepEqual(totals(w), [1, 0, 0]);
    w.advance(1_100);
    assert.deepEqual(totals(w), [0, 0, 0]);
  });

  it('a gap longer than the window empties it; counting resumes', () => {
    const w = new TimeWindow(1_000, 10);
    for (let t = 0; t < 1_000; t += 50) w.record(t, t % 100 === 0, false);
    assert.deepEqual(totals(w), [20, 10, 0]);
    w.record(60_000, true, true);
    assert.deepEqual(totals(w), [1, 1, 1]);
  });

  it('a time that goes backwards counts in the newest bucket', () => {
    const w = new TimeWindow(1_000, 10);
    w.record(500, false, false);
    w.record(400, true, false);
    assert.deepEqual(totals(w), [2, 1, 0]);
  });
});

describe('amendFailure: a success that turned out to fail (its body broke)', () => {
  it('CountWindow: the newest success becomes a failure, the calls unchanged; nothing when none is left', () => {
    const w = new CountWindow(3);
    w.amendFailure(0);
    assert.deepEqual(totals(w), [0, 0, 0], 'an empty window');
    w.record(0, false, false);
    w.record(0, true, false);
    w.amendFailure(0);
    assert.deepEqual(totals(w), [2, 2, 0]);
    w.amendFailure(0);
    assert.deepEqual(totals(w), [2, 2, 0], 'no success left');
    w.record(0, false, false);
    w.record(0, false, false); // evicts the first (now failed) call
    assert.deepEqual(totals(w), [3, 1, 0]);
  });

  it('TimeWindow: a success of the newest bucket holding one; failures never outnumber calls', () => {
    const w = new TimeWindow(1_000, 10);
    w.record(0, false, false); // bucket 0
    w.record(150, true, false); // bucket 1
    w.amendFailure(180);
    assert.deepEqual(totals(w), [2, 2, 0], 'bucket 1 had none: bucket 0 its success');
    w.amendFailure(190);
    assert.deepEqual(totals(w), [2, 2, 0]);
    w.advance(1_000);
    assert.deepEqual(totals(w), [1, 1, 0], 'the amended call left with its bucket');
  });
});
