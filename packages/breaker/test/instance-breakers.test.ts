import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { breakerPolicy, InstanceBreakers, type OpenEvent, REJECTED } from '../src/index.js';

function setup(maxEjectionPercent = 50, n = 4) {
  const clock = new ManualClock();
  const ib = new InstanceBreakers({ clock });
  const group = ib.configure('orders', breakerPolicy({ consecutiveFailures: 2, sleepWindowMs: 1_000, probes: 2 }), maxEjectionPercent);
  assert.ok(group);
  group.setInstances(Array.from({ length: n }, (_, i) => `o-${i}`));
  let notified = 0;
  ib.subscribe(() => notified++);
  const fail = (id: string) => group.record(id, group.acquire(id), true, 1);
  return { clock, ib, group, fail, notified: () => notified };
}

describe('InstanceBreakers (InstanceExclusion)', () => {
  it('excludes an instance while its breaker is open and tells subscribers', () => {
    const { ib, fail, notified } = setup();
    const opened: OpenEvent[] = [];
    ib.onOpen.add((e) => opened.push(e));
    fail('o-1');
    assert.equal(ib.isExcluded('o-1'), false);
    fail('o-1');
    assert.equal(ib.isExcluded('o-1'), true);
    assert.equal(ib.isExcluded('o-2'), false);
    assert.equal(ib.isExcluded('unknown'), false);
    assert.equal(notified(), 1);
    assert.deepEqual(opened[0]?.breaker, { level: 'instance', service: 'orders', instance: 'o-1' });
  });

  it('poll() re-admits after the sleep window without a timer; probes then decide', () => {
    const { clock, ib, group, fail, notified } = setup();
    fail('o-1');
    fail('o-1');
    clock.advance(999);
    ib.poll();
    assert.equal(ib.isExcluded('o-1'), true);
    clock.advance(1);
    assert.equal(clock.pendingTimers, 0);
    ib.poll();
    assert.equal(group.breaker('o-1').state, 'half-open');
    assert.equal(ib.isExcluded('o-1'), false, 'half-open: routing may send the probes');
    assert.equal(notified(), 2);
    const p1 = group.acquire('o-1');
    assert.equal(ib.isExcluded('o-1'), false);
    const p2 = group.acquire('o-1');
    assert.equal(ib.isExcluded('o-1'), true, 'both probe permits taken: excluded until they finish');
    assert.equal(group.acquire('o-1'), REJECTED);
    assert.equal(notified(), 3);
    group.record('o-1', p1, false, 1);
    group.record('o-1', p2, false, 1);
    assert.equal(group.breaker('o-1').state, 'closed');
    assert.equal(ib.isExcluded('o-1'), false);
    assert.equal(notified(), 4);
  });

  it('poll() opens again an instance whose probes hang past their deadline, then re-admits it (was excluded for ever)', () => {
    const { clock, ib, group, fail } = setup();
    fail('o-1');
    fail('o-1');
    clock.advance(1_000);
    ib.poll();
    group.acquire('o-1');
    group.acquire('o-1'); // both probes hang: routing leaves o-1 out, so nothing calls acquire again
    assert.equal(ib.isExcluded('o-1'), true);
    clock.advance(999);
    ib.poll();
    assert.equal(group.breaker('o-1').state, 'half-open');
    clock.advance(1);
    ib.poll();
    assert.equal(group.breaker('o-1').state, 'open', 'probes unsettled one sleep window: failed');
    assert.equal(ib.isExcluded('o-1'), true);
    clock.advance(1_000);
    ib.poll();
    assert.equal(group.breaker('o-1').state, 'half-open');
    assert.equal(ib.isExcluded('o-1'), false, 'back in routing for new probes');
    assert.equal(clock.pendingTimers, 0);
  });

  it('never ejects more than maxEjectionPercent, and never the last instance', () => {
    const { ib, group, fail } = setup(50, 4); // 2 of 4 may go
    for (const id of ['o-0', 'o-1', 'o-2', 'o-3']) {
      fail(id);
      fail(id);
    }
    assert.deepEqual(
      ['o-0', 'o-1', 'o-2', 'o-3'].map((id) => ib.isExcluded(id)),
      [true, true, false, false],
    );
    assert.equal(group.breaker('o-2').snapshot().vetoedTrips, 1);
    const all = setup(100, 3);
    for (const id of ['o-0', 'o-1', 'o-2']) {
      all.fail(id);
      all.fail(id);
    }
    assert.equal(['o-0', 'o-1', 'o-2'].filter((id) => all.ib.isExcluded(id)).length, 2, '100% still leaves one');
    const low = setup(10, 3); // floor(0.3) = 0, but one may always go when there are two or more
    low.fail('o-0');
    low.fail('o-0');
    assert.equal(low.ib.isExcluded('o-0'), true);
    const single = setup(100, 1);
    single.fail('o-0');
    single.fail('o-0');
    assert.equal(single.ib.isExcluded('o-0'), false, 'the only instance is never ejected');
  });

  it('drops breakers of departed instances and frees their ejection slot', () => {
    const { ib, group, fail, notified } = setup(50, 2);
    fail('o-0');
    fail('o-0');
    assert.equal(group.ejected, 1);
    group.setInstances(['o-1', 'o-2']);
    assert.equal(group.ejected, 0);
    assert.equal(ib.isExcluded('o-0'), false);
    assert.equal(notified(), 2);
  });
});
