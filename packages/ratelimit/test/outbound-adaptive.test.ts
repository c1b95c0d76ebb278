// The per-destination adaptive limit on a ManualClock: refusal when full (typed, counted),
// which outcomes are samples, per-destination settings, the bound on destinations, and a
// destination that slows down getting its limit cut.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { MAX_OUTBOUND_LIMITS, OutboundAdaptiveLimits, OutboundLimitError } from '../src/index.js';

/** A call the test settles by hand. */
function deferred<T = string>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const settings = { minLimit: 2, initialLimit: 8, maxLimit: 20, probeSamples: 2, minWindowSamples: 2, windowMs: 100, probeJitter: 0 };

describe('OutboundAdaptiveLimits', () => {
  it('refuses a call over the limit at once with OutboundLimitError (MESHLET_OUTBOUND_LIMITED), counted', async () => {
    const limits = new OutboundAdaptiveLimits({ defaults: settings, clock: new ManualClock(0) });
    const a = deferred();
    const b = deferred();
    const first = limits.execute('orders', () => a.promise);
    const second = limits.execute('orders', () => b.promise);
    let ran = false;
    const refused = await limits
      .execute('orders', () => {
        ran = true;
        return 'sent';
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(refused instanceof OutboundLimitError, 'typed error');
    assert.equal(refused.code, 'MESHLET_OUTBOUND_LIMITED');
    assert.equal(refused.service, 'orders');
    assert.equal(refused.limit, 2, 'the floor: the first thing a limit does is measure the minimum RTT');
    assert.equal(refused.inFlight, 2);
    assert.equal(ran, false, 'the call was not made');
    assert.equal(await limits.execute('users', () => 'other destination'), 'other destination', 'each destination has its own limit');
    a.resolve('a');
    b.resolve('b');
    assert.deepEqual(await Promise.all([first, second]), ['a', 'b']);
    const [orders] = limits.stats;
    assert.equal(orders?.service, 'orders');
    assert.equal(orders?.admitted, 2);
    assert.equal(orders?.refused, 1);
    assert.equal(orders?.inFlight, 0);
    assert.equal(orders?.mode, 'track', 'two answers ended the probe');
    assert.equal(orders?.limit, 8, 'back to the initial limit');
  });

  it('takes an answer or a timeout as a sample of the latency; a fast failure or an abort is not one', async () => {
    const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' });
    const coded = Object.assign(new Error('call timed out'), { code: 'MESHLET_TIMEOUT' });
    const open = Object.assign(new Error('breaker open'), { code: 'MESHLET_CIRCUIT_OPEN' });
    const rows: [outcome: string, run: (signal: AbortSignal) => Promise<unknown>, abort: boolean, sample: boolean][] = [
      ['an answer', async () => 'ok', false, true],
      ['a TimeoutError', async () => Promise.reject(timeout), false, true],
      ['an error with a TIMEOUT code', async () => Promise.reject(coded), false, true],
      ['a breaker open', async () => Promise.reject(open), false, false],
      ['a refused connection', async () => Promise.reject(new TypeError('fetch failed')), false, false],
      ['the caller aborted', async () => Promise.reject(new Error('aborted')), true, false],
    ];
    for (const [outcome, run, abort, sample] of rows) {
      const clock = new ManualClock(0);
      const limits = new OutboundAdaptiveLimits({ defaults: { ...settings, probeSamples: 1 }, clock });
      const controller = new AbortController();
      await limits
        .execute(
          'orders',
          async (signal) => {
            clock.advance(7);
            if (abort) controller.abort();
            return run(signal as AbortSignal);
          },
          controller.signal,
        )
        .catch(() => undefined);
      const stats = limits.stats[0];
      assert.equal(stats?.inFlight, 0, `${outcome}: the slot is given back`);
      assert.equal(stats?.probes, sample ? 1 : 0, `${outcome}: ${sample ? 'a sample' : 'not a sample'}`);
      if (sample) assert.equal(stats?.minRttMs, 7, `${outcome}: its RTT`);
    }
  });

  it('gives each destination its own settings, none for a destination turned off, only the listed ones when `only` is set', async () => {
    const clock = new ManualClock(0);
    const rows: [options: ConstructorParameters<typeof OutboundAdaptiveLimits>[0], service: string, limit: number | undefined][] = [
      [{ defaults: settings }, 'orders', 2],
      [{ defaults: settings, services: { orders: { minLimit: 5, initialLimit: 9 } } }, 'orders', 5],
      [{ defaults: settings, services: { orders: false } }, 'orders', undefined],
      [{ defaults: settings, only: ['users'] }, 'orders', undefined],
      [{ defaults: settings, only: ['users'], services: { users: { minLimit: 4 } } }, 'users', 4],
      [{}, 'orders', 3],
    ];
    for (const [options, service, limit] of rows) {
      const limits = new OutboundAdaptiveLimits({ ...options, clock });
      assert.equal(limits.for(service)?.limit, limit, `${JSON.stringify(options)}: ${service}`);
      assert.equal(await limits.execute(service, () => 'sent'), 'sent');
    }
  });

  it('makes at most MAX_OUTBOUND_LIMITS limits; calls to further destinations go unlimited, counted', async () => {
    const limits = new OutboundAdaptiveLimits({ clock: new ManualClock(0) });
    for (let i = 0; i < MAX_OUTBOUND_LIMITS; i++) assert.ok(limits.for(`svc-${i}`));
    assert.equal(limits.for('one-too-many'), undefined);
    assert.equal(await limits.execute('one-too-many', () => 'sent'), 'sent');
    assert.equal(limits.untracked, 2);
    assert.equal(limits.stats.length, MAX_OUTBOUND_LIMITS);
  });

  it('moves the limit of a destination with its latency, and refuses the calls over it', async () => {
    const clock = new ManualClock(0);
    const limits = new OutboundAdaptiveLimits({ defaults: settings, clock });
    // The probe: two 10 ms answers, the minimum RTT; the limit goes back to 8.
    for (let i = 0; i < 2; i++)
      await limits.execute('orders', async () => {
        clock.advance(10);
        return 'ok';
      });
    assert.equal(limits.for('orders')?.limit, 8);
    // Rounds of calls sent at once (the limit plus `extra`), all answering after `rttMs`,
    // one round per 100 ms window. Each row is a phase of rounds at one latency.
    const round = async (extra: number, rttMs: number) => {
      const pending = Array.from({ length: (limits.for('orders')?.limit ?? 0) + extra }, () => deferred());
      const runs = pending.map((p) => limits.execute('orders', () => p.promise).catch((e: unknown) => e));
      clock.advance(rttMs);
      // The last admitted first: a window may close at its second sample, and the in-flight
      // count a sample carries (at its admission) tells the limit it was in use.
      for (const p of pending.reverse()) p.resolve('ok');
      const refused = (await Promise.all(runs)).filter((o) => o instanceof OutboundLimitError).length;
      clock.advance(Math.max(0, 100 - rttMs));
      return refused;
    };
    const rows: [rounds: number, rttMs: number, check: (limit: number) => boolean, why: string][] = [
      [4, 10, (l) => l === 20, 'at the minimum RTT with the limit in use: grows to the ceiling'],
      [4, 100, (l) => l <= 3, '10 x the minimum: cut by up to half per window, down near the floor'],
      [3, 400, (l) => l === 2, 'slower still: at the floor'],
      [4, 10, (l) => l >= 6, 'fast again: grows back off the floor'],
    ];
    for (const [rounds, rttMs, check, why] of rows) {
      for (let i = 0; i < rounds; i++) assert.equal(await round(2, rttMs), 2, `${why}: the two calls over the limit are refused`);
      const limit = limits.for('orders')?.limit ?? 0;
      assert.ok(check(limit), `${why} (limit ${limit})`);
    }
  });
});
