// The per-attempt timeout without a timer per attempt: DeadlineSweep (one timer per timeout
// value over a FIFO of deadlines), AttemptAbort (an AbortSignal only when read) and
// runTimed, on an injected clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { AttemptAbort, type Deadline, DeadlineSweep, runTimed, TimedAbort } from '../src/attempt-signal.js';
import { TimeoutError } from '../src/timeout-error.js';

describe('DeadlineSweep', () => {
  // Each row: attempts added at `start` with `timeout`, settled at `settle` (never when
  // undefined); `expires` is the clock reading at which the sweep expires it, or undefined
  // when it settled first and must never expire.
  const table: { name: string; attempts: { start: number; timeout: number; settle?: number; expires?: number }[] }[] = [
    { name: 'one attempt that never settles expires at its deadline', attempts: [{ start: 0, timeout: 100, expires: 100 }] },
    { name: 'one attempt that settles first never expires', attempts: [{ start: 0, timeout: 100, settle: 99 }] },
    {
      name: 'a settled head does not hold back the next deadline',
      attempts: [
        { start: 0, timeout: 100, settle: 10 },
        { start: 20, timeout: 100, expires: 120 },
        { start: 30, timeout: 100, expires: 130 },
      ],
    },
    {
      name: 'two timeout values, interleaved: each in its own order',
      attempts: [
        { start: 0, timeout: 500, expires: 500 },
        { start: 10, timeout: 50, expires: 60 },
        { start: 20, timeout: 50, settle: 40 },
        { start: 30, timeout: 500, settle: 499 },
        { start: 40, timeout: 50, expires: 90 },
      ],
    },
    {
      name: 'an attempt added after the timer fired is watched by a new arming',
      attempts: [
        { start: 0, timeout: 100, expires: 100 },
        { start: 150, timeout: 100, expires: 250 },
        { start: 160, timeout: 100, settle: 200 },
      ],
    },
    {
      name: 'deadlines in the same millisecond expire together',
      attempts: [
        { start: 5, timeout: 100, expires: 105 },
        { start: 5, timeout: 100, expires: 105 },
        { start: 5, timeout: 100, settle: 104 },
      ],
    },
  ];

  for (const row of table) {
    it(row.name, () => {
      const clock = new ManualClock(0);
      const sweep = new DeadlineSweep(clock);
      const expiredAt = new Map<number, number>();
      const entries: Deadline[] = [];
      const events: { at: number; run: () => void }[] = [];
      row.attempts.forEach((a, i) => {
        events.push({
          at: a.start,
          run: () => {
            const d: Deadline = { at: clock.now() + a.timeout, done: false, expire: () => expiredAt.set(i, clock.now()) };
            entries[i] = d;
            sweep.add(a.timeout, d);
          },
        });
        if (a.settle !== undefined)
          events.push({
            at: a.settle,
            run: () => {
              (entries[i] as Deadline).done = true;
            },
          });
      });
      events.sort((x, y) => x.at - y.at);
      for (const e of events) {
        clock.advance(e.at - clock.now());
        e.run();
      }
      clock.advance(10_000);
      for (const [i, a] of row.attempts.entries()) assert.equal(expiredAt.get(i), a.expires, `attempt ${i}`);
      assert.equal(clock.pendingTimers, 0, 'no timer left armed');
      assert.deepEqual(sweep.stats, { held: 0, timers: 0, queues: 0 });
    });
  }

  it('holds about the attempts in flight, not every attempt of the timeout period', () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    // 10,000 attempts, one per ms, each settled 1 ms after it started: at most two live.
    let last: Deadline | undefined;
    for (let i = 0; i < 10_000; i++) {
      if (last) last.done = true;
      last = { at: clock.now() + 5_000, done: false, expire: () => assert.fail('settled attempts never expire') };
      sweep.add(5_000, last);
      clock.advance(1);
    }
    assert.ok(sweep.stats.held <= 2, `held ${sweep.stats.held}`);
    assert.equal(sweep.stats.timers, 1, 'one timer for the timeout value');
  });

  it('keeps no queue for a timeout value no longer in use (a rule whose timeoutMs keeps changing)', () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    // 1,000 timeout values, a few attempts each, settled before their deadline.
    for (let value = 1_000; value < 2_000; value++) {
      for (let i = 0; i < 3; i++) {
        const d: Deadline = { at: clock.now() + value, done: false, expire: () => assert.fail('settled attempts never expire') };
        sweep.add(value, d);
        d.done = true;
      }
      clock.advance(1);
    }
    clock.advance(2_000);
    assert.deepEqual(sweep.stats, { held: 0, timers: 0, queues: 0 });
    // A value used again after its queue was dropped is watched as before.
    let expiredAt: number | undefined;
    sweep.add(1_500, { at: clock.now() + 1_500, done: false, expire: () => (expiredAt = clock.now()) });
    const start = clock.now();
    clock.advance(2_000);
    assert.equal(expiredAt, start + 1_500);
    assert.deepEqual(sweep.stats, { held: 0, timers: 0, queues: 0 });
  });
});

describe('AttemptAbort', () => {
  it('makes no signal until one is read; a signal read after the abort is aborted with its reason', () => {
    const a = new AttemptAbort();
    const reasons: unknown[] = [];
    a.onAbort((r) => reasons.push(r));
    const why = new Error('late');
    a.abort(why);
    a.abort(new Error('twice'));
    assert.deepEqual(reasons, [why], 'the hook runs once');
    assert.equal(a.signal.aborted, true);
    assert.equal(a.signal.reason, why);
  });

  it('a signal read before the abort follows it; a hook set after the abort runs at once', () => {
    const a = new AttemptAbort();
    const s = a.signal;
    assert.equal(s.aborted, false);
    a.abort('r');
    assert.equal(s.aborted, true);
    let got: unknown;
    a.onAbort((r) => {
      got = r;
    });
    assert.equal(got, 'r');
  });
});

describe('AttemptAbort hooks', () => {
  it('an object hook (a transport handler) is told through abortAttempt, before the abort and after it alike', () => {
    const told: unknown[] = [];
    const handler = { abortAttempt: (r: unknown) => told.push(r) };
    const a = new AttemptAbort();
    a.onAbort(handler);
    a.abort('first');
    const b = new AttemptAbort();
    b.abort('second');
    b.onAbort(handler);
    const c = new AttemptAbort();
    c.onAbort(handler);
    c.onAbort(undefined);
    c.abort('unhooked');
    assert.deepEqual(told, ['first', 'second']);
  });
});

describe('runTimed', () => {
  it('rejects with a TimeoutError at the deadline and aborts the attempt, even when fn ignores it', async () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    const abort = new AttemptAbort();
    let hooked: unknown;
    abort.onAbort((r) => {
      hooked = r;
    });
    const p = runTimed(sweep, clock, 50, undefined, abort, () => new Promise(() => {}), 'orders');
    clock.advance(49);
    assert.equal(abort.aborted, false);
    clock.advance(1);
    await assert.rejects(p, (e: unknown) => e instanceof TimeoutError && e.timeoutMs === 50);
    assert.ok(hooked instanceof TimeoutError);
  });

  it("the caller's abort rejects with its reason and aborts the attempt; a settled attempt ignores both", async () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    const caller = new AbortController();
    const abort = new AttemptAbort();
    const p = runTimed(sweep, clock, 50, caller.signal, abort, () => new Promise(() => {}));
    caller.abort(new Error('gone'));
    await assert.rejects(p, /gone/);
    assert.equal(abort.reason instanceof Error && abort.reason.message, 'gone');

    const caller2 = new AbortController();
    const abort2 = new AttemptAbort();
    assert.equal(await runTimed(sweep, clock, 50, caller2.signal, abort2, () => Promise.resolve(7)), 7);
    caller2.abort('late');
    clock.advance(100);
    assert.equal(abort2.aborted, false, 'neither the caller nor the deadline aborts a settled attempt');
  });

  it('an already aborted caller signal rejects without running fn', async () => {
    const clock = new ManualClock(0);
    let ran = false;
    await assert.rejects(
      runTimed(new DeadlineSweep(clock), clock, 50, AbortSignal.abort('no'), new AttemptAbort(), () => {
        ran = true;
        return Promise.resolve(1);
      }),
      (e: unknown) => e === 'no',
    );
    assert.equal(ran, false);
  });
});

describe('TimedAbort', () => {
  it('aborts with a TimeoutError at the deadline; ended first, it never does', () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    const late = new TimedAbort(sweep, clock.now(), 50, undefined, 'orders');
    let hooked: unknown;
    late.onAbort((r) => {
      hooked = r;
    });
    const ended = new TimedAbort(sweep, clock.now(), 50, undefined, 'orders');
    clock.advance(10);
    ended.end();
    clock.advance(39);
    assert.equal(late.aborted, false);
    clock.advance(1);
    assert.ok(hooked instanceof TimeoutError && hooked.timeoutMs === 50 && hooked.service === 'orders');
    assert.equal(ended.aborted, false);
    assert.equal(sweep.stats.held, 0);
  });

  it("the caller's abort aborts it with the caller's reason; after end() the caller is not listened to", () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    const caller = new AbortController();
    const a = new TimedAbort(sweep, clock.now(), 50, caller.signal, undefined);
    const b = new TimedAbort(sweep, clock.now(), 50, caller.signal, undefined);
    b.end();
    caller.abort(new Error('gone'));
    assert.equal(a.reason instanceof Error && a.reason.message, 'gone');
    assert.equal(b.aborted, false);
    clock.advance(100);
    assert.equal(b.aborted, false, 'an ended attempt is not expired either');
    assert.ok(a.reason instanceof Error && a.reason.message === 'gone', 'the deadline does not abort it again');
  });

  it('a caller signal aborted already aborts it at once, and nothing is watched', () => {
    const clock = new ManualClock(0);
    const sweep = new DeadlineSweep(clock);
    const a = new TimedAbort(sweep, clock.now(), 50, AbortSignal.abort('no'), undefined);
    assert.equal(a.reason, 'no');
    assert.equal(sweep.stats.held, 0);
  });
});
