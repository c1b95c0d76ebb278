import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Instance } from '@meshlet/core';
import { seededRandom } from '@meshlet/core';
import { MAX_RING_POINTS, ringPointCounts } from '../src/consistent-hash.js';
import {
  buildSchedule,
  ConsistentHash,
  createLoadBalancer,
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
    const router = new Router({ random: seededRandom(1), loadBalancer: { type: 'roundRobin' } });
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

/** Asserts that `got` of `n` picks is within 4 standard deviations of binomial(n, p). */
function near(got: number, n: number, p: number, what: string): void {
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(Math.abs(got - n * p) <= 4 * sd, `${what}: ${got} of ${n}, expected ${(n * p).toFixed(1)} ± ${(4 * sd).toFixed(1)}`);
}

describe('least outstanding requests (power of two choices)', () => {
  it('picks in proportion to weight when nothing is in flight (seeded)', () => {
    const weights = [300, 100, 100, 1];
    const lb = new LeastRequests(endpoints(weights), seededRandom(42));
    const n = 40_000;
    const c = ids(Array.from({ length: n }, () => lb.pick()));
    for (const [i, w] of weights.entries()) near(c[`i${i}`] ?? 0, n, w / 501, `i${i} of weight ${w}`);
  });

  it('is the default, and follows metadata weights through the router', () => {
    const router = new Router({ random: seededRandom(1) });
    router.setInstances('svc', [
      instance('svc', 'big', { weight: '300' }),
      instance('svc', 'small'),
      instance('svc', 'junk', { weight: 'x' }),
    ]);
    const n = 10_000;
    const c = ids(Array.from({ length: n }, () => router.pick('svc', tags())));
    near(c.big ?? 0, n, 0.6, 'big');
    near(c.small ?? 0, n, 0.2, 'small');
    near(c.junk ?? 0, n, 0.2, 'junk');
    // The default balancer reads the counts: an instance holding calls is passed over.
    // The default reads the counts: 4 calls in flight at weight 300 is more per unit of
    // weight than the others' next call at 100 (4/300 > 1/100), so big is passed over.
    const ends = Array.from({ length: 4 }, () => router.callStarted(instance('svc', 'big')));
    const loaded = ids(Array.from({ length: 1000 }, () => router.pick('svc', tags())));
    assert.equal(loaded.big, undefined, JSON.stringify(loaded));
    for (const end of ends) end();
  });

  it('chooses an instance less often the more calls it holds, and never once it holds the most', () => {
    // The others hold 1 and 3. Of the 6 ordered pairs, the held one is kept first when the
    // other holds at least as many, and taken second when the first holds more:
    // k = 0 → 4/6, 1 → 3/6, 2 → 2/6, 3 → 1/6, above 3 → 0.
    const expected = [4 / 6, 3 / 6, 2 / 6, 1 / 6, 0, 0, 0];
    const n = 12_000;
    const shares = expected.map((p, k) => {
      const eps = endpoints([100, 100, 100]);
      (eps[0] as Endpoint).load.outstanding = 1;
      (eps[1] as Endpoint).load.outstanding = 3;
      (eps[2] as Endpoint).load.outstanding = k;
      const lb = new LeastRequests(eps, seededRandom(100 + k));
      const got = ids(Array.from({ length: n }, () => lb.pick())).i2 ?? 0;
      if (p === 0) assert.equal(got, 0, `k = ${k}`);
      else near(got, n, p, `k = ${k}`);
      return got;
    });
    for (let k = 1; k < 5; k++) assert.ok((shares[k] as number) < (shares[k - 1] as number), JSON.stringify(shares));
  });

  it('does not flood an instance of low weight (warming up) when the others are busy', () => {
    // A closed loop of 8 calls, each held 5 steps: the weight-1 instance stays near 1/201.
    const router = new Router({ random: seededRandom(5) });
    router.setInstances('svc', [instance('svc', 'a'), instance('svc', 'b'), instance('svc', 'new', { weight: '1' })]);
    const inFlight: { end: () => void; until: number }[] = [];
    let calls = 0;
    let toNew = 0;
    for (let t = 0; t < 5000; t++) {
      for (const f of inFlight.filter((x) => x.until <= t)) f.end();
      inFlight.splice(0, inFlight.length, ...inFlight.filter((x) => x.until > t));
      while (inFlight.length < 8) {
        const inst = router.pick('svc', tags());
        calls++;
        if (inst.id === 'new') toNew++;
        inFlight.push({ end: router.callStarted(inst), until: t + 5 });
      }
    }
    assert.ok(toNew <= (2 * calls) / 201, `${toNew} of ${calls}`);
  });

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

describe('createLoadBalancer', () => {
  it('refuses a type it does not know, naming the types, instead of returning no balancer', () => {
    // What the case-sensitive "roundRobin" became when a Router was given it unchecked.
    const config = { type: 'roundrobin' } as unknown as Parameters<typeof createLoadBalancer>[0];
    assert.throws(
      () => createLoadBalancer(config, endpoints([1]), Math.random),
      (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'MESHLET_BAD_OPTION');
        assert.match(
          (e as Error).message,
          /^loadBalancer\.type: "roundrobin" must be one of roundRobin, random, leastRequests, consistentHash$/,
        );
        return true;
      },
    );
  });
});
