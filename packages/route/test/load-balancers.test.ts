import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Instance } from '@meshlet/core';
import { seededRandom } from '@meshlet/core';
import { MAX_RING_POINTS, ringPointCounts } from '../src/consistent-hash.js';
import {
  buildSchedule,
  ConsistentHash,
  type Endpoint,
  LeastRequests,
  parseRouteSection,
  Router,
  SmoothWeightedRoundRobin,
  WeightedRandom,
} from '../src/index.js';
import { countBy, instance, tags } from './fixtures.js';

const endpoints = (weights: readonly number[], prefix = 'i'): Endpoint[] =>
  weights.map((weight, i) => ({ instance: instance('svc', `${prefix}${i}`), weight, load: { outstanding: 0 } }));
const ids = (picks: Instance[]) => countBy(picks, (p) => p.id);

describe('smooth weighted round robin', () => {
  it('gives each instance exactly its weight per cycle, spread out', () => {
    const schedule = [...buildSchedule([5, 1, 1])];
    assert.deepEqual(schedule, [0, 0, 0, 1, 2, 0, 0]);
    const long = [...buildSchedule([300, 200, 100])];
    assert.equal(long.length, 6); // divided by the gcd
    assert.deepEqual(countBy(long, String), { 0: 3, 1: 2, 2: 1 });
  });

  it('keeps runs short: no instance twice in a row when none has half the weight', () => {
    const schedule = buildSchedule([40, 30, 20, 10]);
    for (let i = 1; i < schedule.length; i++) assert.notEqual(schedule[i], schedule[i - 1]);
  });

  it('scales cycles that would be too long, keeping the proportions', () => {
    const schedule = buildSchedule([9973, 4999, 1], 1000);
    assert.ok(schedule.length <= 1001, String(schedule.length));
    const c = countBy(schedule, String);
    assert.ok(Math.abs((c['0'] ?? 0) / (c['1'] ?? 1) - 2) < 0.02);
    assert.equal(c['2'], 1); // never starved to zero
  });

  it('follows metadata weights through the router', () => {
    const router = new Router({ random: seededRandom(1) });
    router.setInstances('svc', [
      instance('svc', 'big', { weight: '300' }),
      instance('svc', 'small'),
      instance('svc', 'junk', { weight: 'x' }),
    ]);
    const picks = Array.from({ length: 500 }, () => router.pick('svc', tags()));
    assert.deepEqual(ids(picks), { big: 300, small: 100, junk: 100 });
  });

  it('starts the cycle at a random place', () => {
    const eps = endpoints([1, 1, 1, 1]);
    const firsts = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => new SmoothWeightedRoundRobin(eps, seededRandom(seed)).pick().id));
    assert.ok(firsts.size > 1);
  });
});

describe('weighted random', () => {
  it('picks in proportion to weight within statistical bounds (seeded)', () => {
    const lb = new WeightedRandom(endpoints([100, 300, 0.0001]), seededRandom(42));
    const n = 20_000;
    const c = ids(Array.from({ length: n }, () => lb.pick()));
    // Binomial(20 000, 0.75): sd ≈ 61; allow 4 sd.
    assert.ok(Math.abs((c.i1 ?? 0) - 15_000) <= 245, JSON.stringify(c));
    assert.ok((c.i2 ?? 0) <= 2);
  });

  it('picks uniformly with equal weights', () => {
    const lb = new WeightedRandom(endpoints([100, 100, 100, 100]), seededRandom(7));
    const c = ids(Array.from({ length: 8000 }, () => lb.pick()));
    for (const k of ['i0', 'i1', 'i2', 'i3']) assert.ok(Math.abs((c[k] ?? 0) - 2000) <= 160, JSON.stringify(c));
  });
});

describe('least outstanding requests (power of two choices)', () => {
  it('never picks the busiest instance while others are idle', () => {
    const eps = endpoints([100, 100, 100, 100, 100]);
    (eps[2] as Endpoint).load.outstanding = 5;
    const lb = new LeastRequests(eps, seededRandom(3));
    const c = ids(Array.from({ length: 1000 }, () => lb.pick()));
    assert.equal(c.i2, undefined);
    assert.equal(Object.keys(c).length, 4);
  });

  it('weighs calls in flight by instance weight', () => {
    const eps = endpoints([200, 100]);
    (eps[0] as Endpoint).load.outstanding = 3; // 3/200 < 2/100
    (eps[1] as Endpoint).load.outstanding = 2;
    const lb = new LeastRequests(eps, seededRandom(3));
    for (let i = 0; i < 50; i++) assert.equal(lb.pick().id, 'i0');
  });

  it('keeps calls in flight even under a closed loop of slow and fast instances', () => {
    const router = new Router({ random: seededRandom(11) });
    router.setRules('svc', parseRouteSection({ loadBalancer: { type: 'leastRequests' } }));
    router.setInstances('svc', [instance('svc', 'slow'), instance('svc', 'fast')]);
    // The slow instance holds each call for 4 steps, the fast one for 1: it must get more.
    const inFlight: { end: () => void; until: number }[] = [];
    const c: Record<string, number> = {};
    for (let t = 0; t < 2000; t++) {
      for (const f of inFlight.filter((x) => x.until <= t)) f.end();
      inFlight.splice(0, inFlight.length, ...inFlight.filter((x) => x.until > t));
      for (let k = 0; k < 2; k++) {
        const inst = router.pick('svc', tags());
        c[inst.id] = (c[inst.id] ?? 0) + 1;
        inFlight.push({ end: router.callStarted(inst), until: t + (inst.id === 'slow' ? 4 : 1) });
      }
    }
    assert.ok((c.fast ?? 0) > 2 * (c.slow ?? 0), JSON.stringify(c));
  });
});

describe('consistent hash', () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
  const owners = (lb: ConsistentHash) => keys.map((k) => lb.pick(tags({ uid: k })).id);

  it('sends the same key to the same instance, and spreads keys evenly', () => {
    const lb = new ConsistentHash(endpoints(Array(10).fill(100)), 'uid');
    assert.deepEqual(owners(lb), owners(lb));
    for (const [, n] of Object.entries(countBy(owners(lb), (x) => x))) assert.ok(n > 500 && n < 1500, String(n));
  });

  it('moves only the leaving instance’s keys, about 1/n of them', () => {
    const all = endpoints(Array(10).fill(100));
    const before = owners(new ConsistentHash(all, 'uid'));
    const after = owners(
      new ConsistentHash(
        all.filter((e) => e.instance.id !== 'i3'),
        'uid',
      ),
    );
    let moved = 0;
    before.forEach((owner, k) => {
      if (owner !== after[k]) {
        moved++;
        assert.equal(owner, 'i3', `key ${keys[k]} moved from ${owner}`);
      }
    });
    assert.ok(moved > 0 && moved <= 1.5 * (keys.length / 10), `moved ${moved} of ${keys.length}`);
  });

  it('moves only keys to a joining instance', () => {
    const all = endpoints(Array(11).fill(100));
    const before = owners(new ConsistentHash(all.slice(0, 10), 'uid'));
    const after = owners(new ConsistentHash(all, 'uid'));
    let moved = 0;
    before.forEach((owner, k) => {
      if (owner !== after[k]) {
        moved++;
        assert.equal(after[k], 'i10');
      }
    });
    assert.ok(moved <= 1.5 * (keys.length / 11), `moved ${moved}`);
  });

  it('gives heavier instances more keys', () => {
    const c = countBy(owners(new ConsistentHash(endpoints([300, 100]), 'uid')), (x) => x);
    assert.ok((c.i0 ?? 0) > 2 * (c.i1 ?? 0), JSON.stringify(c));
  });

  it('keeps the ring within MAX_RING_POINTS, one point per instance at least', () => {
    const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
    // 10,000 instances of weight 10000 with 1,000 virtual nodes: 1,000,000 points before.
    const heavy = ringPointCounts(Array(10_000).fill(10_000), 1000);
    assert.ok(sum(heavy) <= MAX_RING_POINTS, String(sum(heavy)));
    assert.ok(sum(heavy) > 0.9 * MAX_RING_POINTS, 'scaled down, not cut to one each');
    // Weights 1 next to 10000: the light ones keep one point each, the total still fits.
    const mixed = ringPointCounts([...Array(100_000).fill(1), ...Array(1000).fill(10_000)], 1000);
    assert.ok(sum(mixed) <= MAX_RING_POINTS, String(sum(mixed)));
    assert.equal(Math.min(...mixed), 1);
    // A small fleet is not scaled: virtualNodes per default weight, in proportion to weight.
    assert.deepEqual(ringPointCounts([100, 300, 1], 160), [160, 480, 2]);
  });

  it('round-robins requests without the tag, and stays sticky across rule changes through the router', () => {
    const lb = new ConsistentHash(endpoints([100, 100]), 'uid');
    assert.deepEqual([lb.pick(tags()).id, lb.pick(tags()).id, lb.pick(tags()).id], ['i0', 'i1', 'i0']);
    const router = new Router();
    router.setInstances(
      'svc',
      Array.from({ length: 5 }, (_, i) => instance('svc', `s${i}`)),
    );
    const section = parseRouteSection({ loadBalancer: { type: 'consistentHash', hashTag: 'uid' } });
    router.setRules('svc', section);
    const first = router.pick('svc', tags({ uid: 'alice' })).id;
    router.setRules('svc', parseRouteSection({ ...section, rules: [] }));
    assert.equal(router.pick('svc', tags({ uid: 'alice' })).id, first);
  });
});
