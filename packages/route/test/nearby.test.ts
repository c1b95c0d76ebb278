import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Instance, MetaKey, seededRandom } from '@meshlet/core';
import { parseRouteSection, Router } from '../src/index.js';
import { instance, tags } from './fixtures.js';

const SVC = 'order-service';
const at = (id: string, zone: string, region: string) => instance(SVC, id, { [MetaKey.zone]: zone, [MetaKey.region]: region });
// The caller runs in zone z1 of region r1.
const fleet: Instance[] = [
  at('z1-a', 'z1', 'r1'),
  at('z1-b', 'z1', 'r1'),
  at('z1-c', 'z1', 'r1'),
  at('z1-d', 'z1', 'r1'),
  at('z2-a', 'z2', 'r1'),
  at('z2-b', 'z2', 'r1'),
  at('z3-a', 'z3', 'r2'),
  at('z3-b', 'z3', 'r2'),
];
const withDown = (down: readonly string[]) => fleet.map((i) => (down.includes(i.id) ? { ...i, health: 'critical' as const } : i));

function spread(router: Router): { level: string; ids: string[] } {
  const decisions = Array.from({ length: 40 }, () => router.decide(SVC, tags()));
  const levels = new Set(decisions.map((d) => d.level));
  assert.equal(levels.size, 1);
  return { level: [...levels][0] as string, ids: [...new Set(decisions.map((d) => d.instance.id))].sort() };
}

describe('nearby routing', () => {
  const router = new Router({ location: { zone: 'z1', region: 'r1' }, nearby: { minHealthyPercent: 50 }, random: seededRandom(5) });

  it('stays in the caller’s zone while it is healthy', () => {
    router.setInstances(SVC, fleet);
    assert.deepEqual(spread(router), { level: 'zone', ids: ['z1-a', 'z1-b', 'z1-c', 'z1-d'] });
  });

  it('stays at the threshold exactly (2 of 4 healthy = 50%)', () => {
    router.setInstances(SVC, withDown(['z1-a', 'z1-b']));
    assert.deepEqual(spread(router), { level: 'zone', ids: ['z1-c', 'z1-d'] });
  });

  it('fails over to the region under the threshold (1 of 4 = 25%)', () => {
    router.setInstances(SVC, withDown(['z1-a', 'z1-b', 'z1-c']));
    assert.deepEqual(spread(router), { level: 'region', ids: ['z1-d', 'z2-a', 'z2-b'] });
  });

  it('goes anywhere when the region is under the threshold too', () => {
    router.setInstances(SVC, withDown(['z1-a', 'z1-b', 'z1-c', 'z2-a']));
    // Region r1: 2 of 6 healthy, under 50%.
    assert.deepEqual(spread(router), { level: 'any', ids: ['z1-d', 'z2-b', 'z3-a', 'z3-b'] });
  });

  it('comes back to the zone when it recovers to the threshold', () => {
    router.setInstances(SVC, withDown(['z1-a', 'z1-b', 'z2-a']));
    assert.deepEqual(spread(router), { level: 'zone', ids: ['z1-c', 'z1-d'] });
  });

  it('counts instances left out by breakers as unhealthy', () => {
    const out = new Set(['z1-a', 'z1-b', 'z1-c']);
    const r = new Router({
      location: { zone: 'z1', region: 'r1' },
      exclusion: { isExcluded: (id) => out.has(id), subscribe: () => () => {} },
      random: seededRandom(5),
    });
    r.setInstances(SVC, fleet);
    assert.deepEqual(spread(r), { level: 'region', ids: ['z1-d', 'z2-a', 'z2-b'] });
  });

  it('uses the threshold of the service’s rules over the router’s, and can be turned off there', () => {
    router.setInstances(SVC, withDown(['z1-a', 'z1-b']));
    // Zone z1: 2 of 4 = 50%, under 60; region r1: 4 of 6 = 67%.
    router.setRules(SVC, parseRouteSection({ nearby: { minHealthyPercent: 60 } }));
    assert.equal(spread(router).level, 'region');
    router.setRules(SVC, parseRouteSection({ nearby: { enabled: false } }));
    assert.equal(spread(router).level, 'any');
    router.setRules(SVC, undefined);
  });

  it('applies inside the group a rule chose', () => {
    const versioned = fleet.map((i) => ({ ...i, metadata: { ...i.metadata, version: i.id.endsWith('a') ? 'v2' : 'v1' } }));
    router.setInstances(SVC, versioned);
    router.setRules(SVC, parseRouteSection({ default: [{ group: { version: 'v2' }, weight: 100 }] }));
    // v2 in z1 is z1-a alone: 1 of 1 healthy.
    assert.deepEqual(spread(router), { level: 'zone', ids: ['z1-a'] });
    router.setRules(SVC, undefined);
  });

  it('without a location, goes anywhere', () => {
    const r = new Router({ random: seededRandom(5) });
    r.setInstances(SVC, fleet);
    assert.equal(spread(r).level, 'any');
  });
});
