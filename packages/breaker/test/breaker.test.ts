import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { Breaker, type BreakerPolicy, breakerPolicy, type CloseEvent, type HalfOpenEvent, type OpenEvent, REJECTED } from '../src/index.js';

const id = { level: 'service', service: 'orders' } as const;

function make(overrides: Partial<BreakerPolicy> = {}) {
  const clock = new ManualClock(1_000);
  const b = new Breaker(
    id,
    breakerPolicy({
      window: { type: 'count', size: 10 },
      failureRateThreshold: 50,
      minimumCalls: 4,
      consecutiveFailures: 0,
      sleepWindowMs: 5_000,
      probes: 2,
      ...overrides,
    }),
    { clock },
  );
  const events: (OpenEvent | HalfOpenEvent | CloseEvent)[] = [];
  b.onOpen.add((e) => events.push(e));
  b.onHalfOpen.add((e) => events.push(e));
  b.onClose.add((e) => events.push(e));
  const call = (failed: boolean, ms = 1) => {
    const p = b.tryAcquire();
    if (p !== REJECTED) b.record(p, failed, ms);
    return p !== REJECTED;
  };
  return { b, clock, events, call };
}

describe('Breaker', () => {
  it('trips on the failure rate only once the window holds minimumCalls', () => {
    const { b, call, events } = make();
    call(true);
    call(true);
    call(true);
    assert.equal(b.state, 'closed', '3 of 3 failed but minimumCalls is 4');
    call(false);
    assert.equal(b.state, 'open', '3 of 4 = 75% >= 50%');
    const open = events[0] as OpenEvent;
    assert.equal(open.reason, 'failure-rate');
    assert.equal(open.failureRate, 75);
    assert.equal(open.calls, 4);
    assert.equal(open.from, 'closed');
    assert.equal(open.retryAt, 6_000);
  });

  it('a rate just under the threshold stays closed; at the threshold it opens', () => {
    const { b, call } = make({ failureRateThreshold: 50, minimumCalls: 4 });
    call(false);
    call(false);
    call(false);
    call(true); // 25%
    assert.equal(b.state, 'closed');
    call(true); // 2 of 5 = 40%
    assert.equal(b.state, 'closed');
    call(true); // 3 of 6 = 50%
    assert.equal(b.state, 'open');
  });

  it('trips on consecutive failures regardless of the window, and a success resets the run', () => {
    const { b, call, events } = make({ consecutiveFailures: 3, failureRateThreshold: 0, minimumCalls: 100 });
    call(true);
    call(true);
    call(false);
    call(true);
    call(true);
    assert.equal(b.state, 'closed');
    call(true);
    assert.equal(b.state, 'open');
    assert.equal((events[0] as OpenEvent).reason, 'consecutive-failures');
    assert.equal((events[0] as OpenEvent).consecutiveFailures, 3);
  });

  it('trips on the slow-call rate; a call exactly at the threshold is not slow', () => {
    const { b, call, events } = make({ failureRateThreshold: 0, slowCallThresholdMs: 100, slowCallRateThreshold: 50, minimumCalls: 4 });
    call(false, 100);
    call(false, 100);
    call(false, 101);
    call(false, 50);
    assert.equal(b.state, 'closed', '1 of 4 slow');
    call(false, 500);
    call(false, 500); // 3 of 6 slow
    assert.equal(b.state, 'open');
    assert.equal((events[0] as OpenEvent).reason, 'slow-call-rate');
  });

  it('open rejects until the sleep window ends, then turns half-open lazily on the next call', () => {
    const { b, clock, call, events } = make({ consecutiveFailures: 1 });
    call(true);
    assert.equal(b.state, 'open');
    clock.advance(4_999);
    assert.equal(b.tryAcquire(), REJECTED);
    assert.equal(b.retryAfter(), 1);
    clock.advance(1);
    assert.equal(b.state, 'open', 'no timer: nothing happens until a call comes');
    assert.equal(clock.pendingTimers, 0);
    assert.notEqual(b.tryAcquire(), REJECTED);
    assert.equal(b.state, 'half-open');
    const half = events[1] as HalfOpenEvent;
    assert.deepEqual([half.from, half.at, half.probes], ['open', 6_000, 2]);
    assert.equal(b.snapshot().rejected, 1);
  });

  it('half-open admits exactly `probes` concurrent calls; all succeed → closed', () => {
    const { b, clock, call, events } = make({ consecutiveFailures: 1, probes: 3 });
    call(true);
    clock.advance(5_000);
    const permits = Array.from({ length: 10 }, () => b.tryAcquire());
    assert.equal(permits.filter((p) => p !== REJECTED).length, 3, 'of 10 concurrent calls exactly 3 are probes');
    assert.equal(b.snapshot().probesInFlight, 3);
    assert.equal(b.isRejecting(), true);
    const probes = permits.filter((p) => p !== REJECTED);
    b.record(probes[0] as number, false, 1);
    b.record(probes[1] as number, false, 1);
    assert.equal(b.state, 'half-open');
    assert.equal(b.tryAcquire(), REJECTED, 'a probe finishing does not free a new probe slot');
    b.record(probes[2] as number, false, 1);
    assert.equal(b.state, 'closed');
    const close = events.at(-1) as CloseEvent;
    assert.deepEqual([close.from, close.probesSucceeded], ['half-open', 3]);
    assert.equal(b.snapshot().calls, 0, 'closing starts a fresh window');
  });

  it('a failed probe re-opens for another sleep window', () => {
    const { b, clock, call, events } = make({ consecutiveFailures: 1 });
    call(true);
    clock.advance(5_000);
    const p1 = b.tryAcquire();
    const p2 = b.tryAcquire();
    b.record(p1, false, 1);
    b.record(p2, true, 1);
    assert.equal(b.state, 'open');
    const reopen = events.at(-1) as OpenEvent;
    assert.deepEqual([reopen.from, reopen.reason, reopen.retryAt], ['half-open', 'probe-failed', 11_000]);
    clock.advance(4_999);
    assert.equal(b.tryAcquire(), REJECTED);
  });

  it('a probe unsettled a sleep window after the last was taken counts as failed: open again, not half-open for ever', () => {
    // The reviewer's case: one of the probes never settles (no deadline on the call).
    const { b, clock, call, events } = make({ consecutiveFailures: 1, probes: 2 });
    call(true);
    clock.advance(5_000);
    const p1 = b.tryAcquire();
    clock.advance(1_000);
    b.tryAcquire(); // never settles
    b.record(p1, false, 1);
    assert.equal(b.tryAcquire(), REJECTED);
    assert.equal(b.retryAfter(), 5_000, "the rest of the probes' deadline, not 0");
    clock.advance(4_999);
    assert.equal(b.tryAcquire(), REJECTED);
    assert.equal(b.state, 'half-open');
    assert.equal(b.retryAfter(), 1);
    clock.advance(1);
    assert.equal(b.tryAcquire(), REJECTED, 'the call that finds the deadline passed is refused: the breaker opens');
    assert.equal(b.state, 'open');
    const reopen = events.at(-1) as OpenEvent;
    assert.deepEqual([reopen.from, reopen.reason, reopen.retryAt], ['half-open', 'probe-timeout', 17_000]);
    clock.advance(5_000);
    const probes = [b.tryAcquire(), b.tryAcquire()];
    for (const p of probes) b.record(p, false, 1);
    assert.equal(b.state, 'closed', 'fresh probes decide; the hung one, of an old epoch, counts nothing');
  });

  it('outcomes of calls started before a transition do not count', () => {
    const { b, clock } = make({ consecutiveFailures: 1, probes: 1 });
    const early = b.tryAcquire(); // started while closed
    const trip = b.tryAcquire();
    b.record(trip, true, 1);
    clock.advance(5_000);
    const probe = b.tryAcquire();
    b.record(early, true, 1); // the old call fails late: must not re-open the half-open breaker
    assert.equal(b.state, 'half-open');
    b.record(probe, false, 1);
    assert.equal(b.state, 'closed');
  });

  it('a released probe permit frees its slot', () => {
    const { b, clock, call } = make({ consecutiveFailures: 1, probes: 1 });
    call(true);
    clock.advance(5_000);
    const p = b.tryAcquire();
    assert.equal(b.tryAcquire(), REJECTED);
    b.release(p);
    const again = b.tryAcquire();
    assert.notEqual(again, REJECTED);
    b.record(again, false, 1);
    assert.equal(b.state, 'closed');
  });

  it('a veto keeps it closed and is counted', () => {
    const clock = new ManualClock();
    const b = new Breaker(id, breakerPolicy({ consecutiveFailures: 1 }), { clock, mayOpen: () => false });
    b.record(b.tryAcquire(), true, 1);
    assert.equal(b.state, 'closed');
    assert.equal(b.snapshot().vetoedTrips, 1);
  });

  it('snapshot reads state and counts for a dashboard', () => {
    const { b, call } = make({ minimumCalls: 100 });
    call(true);
    call(false);
    const s = b.snapshot();
    assert.deepEqual(
      [s.state, s.calls, s.failures, s.failureRate, s.consecutiveFailures, s.breaker],
      ['closed', 2, 1, 50, 0, { level: 'service', service: 'orders' }],
    );
  });

  it('a throwing listener does not break the breaker', () => {
    const { b, call } = make({ consecutiveFailures: 1 });
    b.onOpen.add(() => {
      throw new Error('dashboard bug');
    });
    call(true);
    assert.equal(b.state, 'open');
  });

  it("an async listener's rejection is handled, not left to end the process", () => {
    const { b, call } = make({ consecutiveFailures: 1 });
    let handled = false;
    // What an async listener returns, observed: the breaker must attach a rejection handler.
    b.onOpen.add(() => ({
      // biome-ignore lint/suspicious/noThenProperty: a thenable, as an async function's promise
      then: (_ok: unknown, onRejected: unknown) => {
        handled = typeof onRejected === 'function';
      },
    }));
    call(true);
    assert.equal(b.state, 'open');
    assert.equal(handled, true);
  });
});

describe('Breaker: a success whose body is told later (bodyFollows, bodyEnded)', () => {
  /** A success recorded at its headers with its body to come; returns the permit, for bodyEnded. */
  const answered = (b: Breaker) => {
    const p = b.tryAcquire();
    assert.notEqual(p, REJECTED);
    b.record(p, false, 1, undefined, true);
    return p;
  };

  it('a broken body is a failure in the run and in the window; a whole one ends the run', () => {
    const { b } = make({ consecutiveFailures: 3, failureRateThreshold: 0 });
    b.bodyEnded(answered(b), true);
    b.bodyEnded(answered(b), true);
    assert.equal(b.snapshot().consecutiveFailures, 2);
    assert.equal(b.snapshot().failures, 2);
    assert.equal(b.snapshot().calls, 2, 'each call counted once');
    b.bodyEnded(answered(b), false);
    assert.equal(b.snapshot().consecutiveFailures, 0);
    for (let i = 0; i < 3; i++) b.bodyEnded(answered(b), true);
    assert.equal(b.state, 'open');
  });

  it('a success with its body to come does not end a run of failures until the body is whole', () => {
    const { b, call } = make({ consecutiveFailures: 3, failureRateThreshold: 0 });
    call(true);
    call(true);
    const p = answered(b);
    assert.equal(b.snapshot().consecutiveFailures, 2);
    b.bodyEnded(p, true);
    assert.equal(b.state, 'open', 'the third failure in a row');
  });

  it("a probe's broken body opens the breaker again; a body told after a transition says nothing", () => {
    const { b, clock } = make({ consecutiveFailures: 1, failureRateThreshold: 0, probes: 2 });
    const before = answered(b);
    const q = b.tryAcquire();
    b.record(q, true, 1);
    assert.equal(b.state, 'open');
    b.bodyEnded(before, true);
    assert.equal(b.snapshot().opened, 1, 'the permit is from before the trip');
    clock.advance(5_000);
    const probe = answered(b);
    assert.equal(b.state, 'half-open');
    b.bodyEnded(probe, true);
    assert.equal(b.state, 'open');
    assert.equal(b.snapshot().opened, 2);
  });

  // Found in the final review: with one probe (the default outlier detection's), the probe
  // closed the breaker at its headers, and its body broken after them reopened nothing.
  it('with one probe: its headers do not close the breaker; a broken body reopens it, a whole one closes it', () => {
    const { b, clock } = make({ consecutiveFailures: 1, failureRateThreshold: 0, probes: 1 });
    b.record(b.tryAcquire(), true, 1);
    clock.advance(5_000);
    const broken = answered(b);
    assert.equal(b.state, 'half-open', 'not closed at the headers');
    b.bodyEnded(broken, true);
    assert.equal(b.state, 'open');
    clock.advance(10_000);
    const whole = answered(b);
    assert.equal(b.state, 'half-open');
    b.bodyEnded(whole, false);
    assert.equal(b.state, 'closed');
  });
});
