import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Instance, ManualClock, seededRandom } from '@meshlet/core';
import { applyWarmup, BASE_WEIGHT_META, nextWarmupChangeAt, REGISTERED_AT_META, Router, WarmupFeed, warmupWeight } from '../src/index.js';

const MIN = 60_000;
const inst = (id: string, metadata: Record<string, string>): Instance => ({
  id,
  service: 'orders',
  address: '10.0.0.1',
  port: 8080,
  tags: [],
  metadata,
  health: 'passing',
});

describe('warm-up weight', () => {
  it('ramps linearly in steps from the floor to full over the window', () => {
    const o = { windowMs: 10 * MIN, floor: 0.1 };
    assert.equal(warmupWeight(100, 0, o), 10);
    assert.equal(warmupWeight(100, 0.99 * MIN, o), 10); // still in the first step
    assert.equal(warmupWeight(100, 1 * MIN, o), 19);
    assert.equal(warmupWeight(100, 5 * MIN, o), 55);
    assert.equal(warmupWeight(100, 9.99 * MIN, o), 91);
    assert.equal(warmupWeight(100, 10 * MIN, o), 100);
    assert.equal(warmupWeight(100, 60 * MIN, o), 100);
  });

  it('a curvature above 1 holds the weight low for longer', () => {
    const half = { windowMs: 10 * MIN, floor: 0 };
    assert.equal(warmupWeight(100, 5 * MIN, half), 50);
    assert.equal(warmupWeight(100, 5 * MIN, { ...half, curvature: 2 }), 25);
  });

  it('is never below 1, never above full, and a clock-skewed future registration is at the floor', () => {
    assert.equal(warmupWeight(3, 0, { windowMs: MIN, floor: 0 }), 1);
    assert.equal(warmupWeight(100, -5 * MIN, { windowMs: MIN, floor: 0.2 }), 20);
    assert.equal(warmupWeight(100, 0, { windowMs: 0 }), 100);
  });

  it('refuses nonsense options', () => {
    assert.throws(() => warmupWeight(100, 0, { windowMs: -1 }), { code: 'MESHLET_BAD_OPTION', message: /^windowMs: -1 must be/ });
    assert.throws(() => warmupWeight(100, 0, { windowMs: 1, floor: 2 }), { code: 'MESHLET_BAD_OPTION', message: /^floor: 2 must be/ });
    assert.throws(() => warmupWeight(100, 0, { windowMs: 1, steps: 0 }), { code: 'MESHLET_BAD_OPTION', message: /^steps: 0 must be/ });
    // A misspelt window was a warm-up silently off.
    assert.throws(() => warmupWeight(100, 0, { durationMs: 1 } as never), {
      code: 'MESHLET_BAD_OPTION',
      message: /^options\.durationMs: unknown key/,
    });
  });
});

describe('applyWarmup and nextWarmupChangeAt', () => {
  const clock = new ManualClock(1_000 * MIN);
  const options = { windowMs: 10 * MIN, floor: 0.1 };
  const old = inst('old', { [REGISTERED_AT_META]: String(clock.now() - 60 * MIN) });
  const fresh = inst('fresh', { [REGISTERED_AT_META]: String(clock.now() - 2.5 * MIN), weight: '200' });
  const unknown = inst('unknown', { [REGISTERED_AT_META]: 'yesterday' });

  it('lowers only warming instances, keeps the others as they are', () => {
    const out = applyWarmup([old, fresh, unknown], clock.now(), options);
    assert.equal(out[0], old);
    assert.equal(out[2], unknown, 'an unreadable registration time never starves an instance');
    assert.equal(out[1]?.metadata.weight, String(Math.round(200 * (0.1 + 0.9 * 0.2))));
    assert.equal(out[1]?.metadata[BASE_WEIGHT_META], '200');
  });

  it('re-applying to an adjusted list gives the same weights, and a warmed instance gets its own weight back', () => {
    const once = applyWarmup([fresh], clock.now(), options);
    assert.deepEqual(applyWarmup(once, clock.now(), options), once);
    const later = applyWarmup(once, clock.now() + 10 * MIN, options);
    assert.equal(later[0]?.metadata.weight, '200');
    assert.equal(later[0]?.metadata[BASE_WEIGHT_META], undefined);
  });

  it('schedules one timer: the earliest step boundary of any warming instance', () => {
    const a = inst('a', { [REGISTERED_AT_META]: String(clock.now() - 2.5 * MIN) }); // next step at +0.5 min
    const b = inst('b', { [REGISTERED_AT_META]: String(clock.now() - 0.2 * MIN) }); // next step at +0.8 min
    assert.equal(nextWarmupChangeAt([old, b, a], clock.now(), options), clock.now() + 0.5 * MIN);
    assert.equal(nextWarmupChangeAt([old, unknown], clock.now(), options), undefined);
    // The last step ends at full weight.
    const c = inst('c', { [REGISTERED_AT_META]: String(clock.now() - 9.5 * MIN) });
    assert.equal(nextWarmupChangeAt([c], clock.now(), options), clock.now() + 0.5 * MIN);
  });

  it('a registration time more than one window ahead is unreadable: not warmed, no timer', () => {
    const ahead = (ms: number) => inst('ahead', { [REGISTERED_AT_META]: String(clock.now() + ms) });
    const far = ahead(30 * 24 * 60 * MIN); // a host whose clock is 30 days ahead
    assert.equal(applyWarmup([far], clock.now(), options)[0], far);
    assert.equal(nextWarmupChangeAt([far], clock.now(), options), undefined);
    // Up to one window ahead is a clock a little ahead: held at the floor until then.
    const near = ahead(10 * MIN);
    assert.equal(applyWarmup([near], clock.now(), options)[0]?.metadata.weight, '10');
    assert.equal(nextWarmupChangeAt([near], clock.now(), options), clock.now() + 11 * MIN);
  });

  it('re-fed at each change, the weights walk up to full and the timer stops', () => {
    const c = new ManualClock(clock.now());
    const registry = [old, fresh];
    const seen: string[] = [];
    const feed = () => {
      const fed = applyWarmup(registry, c.now(), options);
      seen.push(fed[1]?.metadata.weight ?? '');
      const at = nextWarmupChangeAt(registry, c.now(), options);
      if (at !== undefined) c.setTimeout(feed, at - c.now());
    };
    feed();
    c.advance(20 * MIN);
    // 200 × (0.1 + 0.9 × k/10) for steps k = 2..9, then full.
    assert.deepEqual(seen, ['56', '74', '92', '110', '128', '146', '164', '182', '200']);
    assert.equal(c.pendingTimers, 0);
  });
});

describe('WarmupFeed, in front of Router.setInstances', () => {
  const fed = () => {
    const lists: { service: string; weights: string[] }[] = [];
    return {
      lists,
      sink: {
        setInstances: (service: string, instances: readonly Instance[]) =>
          lists.push({ service, weights: instances.map((i) => i.metadata.weight ?? '-') }),
      },
    };
  };

  it('feeds warm-up weights, re-feeds once when the ramp moves, and stops on a new list or close', () => {
    const clock = new ManualClock(1_000 * MIN);
    const { lists, sink } = fed();
    const feed = new WarmupFeed(sink, { clock, warmup: { windowMs: 10 * MIN, floor: 0.1 } });
    const fresh = inst('fresh', { [REGISTERED_AT_META]: String(clock.now()) });
    feed.setInstances('orders', [fresh]);
    assert.deepEqual(lists, [{ service: 'orders', weights: ['10'] }]);
    clock.advance(MIN);
    assert.deepEqual(lists.at(-1), { service: 'orders', weights: ['19'] }, 'the next step, fed by the timer');
    feed.setInstances('orders', []);
    clock.advance(MIN);
    assert.deepEqual(lists.at(-1), { service: 'orders', weights: [] }, 'a new list replaces the timer of the old');
    feed.setInstances('orders', [fresh]);
    const n = lists.length;
    feed.close();
    clock.advance(10 * MIN);
    assert.equal(lists.length, n, 'nothing fed after close');
  });

  it('sets no timer for an instance registered days ahead', () => {
    const clock = new ManualClock(1_000 * MIN);
    const { lists, sink } = fed();
    const feed = new WarmupFeed(sink, { clock, warmup: { windowMs: 10 * MIN } });
    feed.setInstances('orders', [inst('ahead', { [REGISTERED_AT_META]: String(clock.now() + 40 * 24 * 60 * MIN) })]);
    assert.deepEqual(lists, [{ service: 'orders', weights: ['-'] }]);
    assert.equal(clock.pendingTimers, 0);
  });

  it('passes lists on untouched without warm-up, setting no timer', () => {
    const clock = new ManualClock(1_000 * MIN);
    const { lists, sink } = fed();
    const list = [inst('fresh', { [REGISTERED_AT_META]: String(clock.now()) })];
    new WarmupFeed(sink, { clock, warmup: { windowMs: 0 } }).setInstances('orders', list);
    new WarmupFeed(sink, { clock }).setInstances('orders', list);
    clock.advance(60 * MIN);
    assert.deepEqual(lists, [
      { service: 'orders', weights: ['-'] },
      { service: 'orders', weights: ['-'] },
    ]);
  });

  it('ramps a new instance’s share of calls under the default balancer', () => {
    const clock = new ManualClock(1_000 * MIN);
    const router = new Router({ clock, random: seededRandom(17) });
    const feed = new WarmupFeed(router, { clock, warmup: { windowMs: 10 * MIN, floor: 0.1 } });
    feed.setInstances('orders', [inst('old', {}), inst('fresh', { [REGISTERED_AT_META]: String(clock.now()) })]);
    const n = 4000;
    const share = (p: number, what: string) => {
      let fresh = 0;
      for (let i = 0; i < n; i++) if (router.pick('orders', () => undefined).id === 'fresh') fresh++;
      // Within 4 standard deviations of binomial(n, p).
      const sd = Math.sqrt(n * p * (1 - p));
      assert.ok(Math.abs(fresh - n * p) <= 4 * sd, `${what}: ${fresh} of ${n}, expected ${(n * p).toFixed(0)} ± ${(4 * sd).toFixed(0)}`);
    };
    share(10 / 110, 'at registration, weight 10 against 100');
    clock.advance(5 * MIN);
    share(55 / 155, 'half-way, weight 55 against 100');
    clock.advance(5 * MIN);
    share(1 / 2, 'warmed up');
    feed.close();
  });
});
