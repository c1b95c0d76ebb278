// A route rule's `stickyBy`: the group is chosen by a hash of the tag's value, salted by
// the rule's name, so one user stays in one group. The hash is deterministic: the spreads
// below are fixed outcomes, and their tolerances say how good a spread the hash must give.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Instance, MemoryLogger, PER_REQUEST_CODES, type RandomSource, seededRandom } from '@meshlet/core';
import { parseRouteSection, Router } from '../src/index.js';
import { instance, tags } from './fixtures.js';

const SVC = 'user-service';
const fleet: Instance[] = [
  instance(SVC, 'a1', { version: 'v1.20' }),
  instance(SVC, 'b1', { version: 'v1.21' }),
  instance(SVC, 'c1', { version: 'v2' }),
];
const IDS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

/** A random source that fails the test if it is asked: the sticky path must not draw. */
const noDraw: RandomSource = () => {
  throw new Error('drew at random');
};

function gray(v121: number, name = 'chrome-gray', extra: Record<string, unknown> = {}) {
  return parseRouteSection({
    rules: [
      {
        name,
        stickyBy: 'user-id',
        destinations: [
          { group: { version: 'v1.21' }, weight: v121 },
          { group: { version: 'v1.20' }, weight: 100 - v121 },
        ],
        ...extra,
      },
    ],
    default: [{ group: { version: 'v1.20' }, weight: 100 }],
    // Draws nothing (round robin without the tag), so `noDraw` checks the group choice alone.
    loadBalancer: { type: 'consistentHash', hashTag: 'user-id' },
  });
}

function routerWith(section: ReturnType<typeof parseRouteSection>, random: RandomSource = noDraw, logger?: MemoryLogger): Router {
  const router = new Router({ random, ...(logger ? { logger } : {}) });
  router.setInstances(SVC, fleet);
  router.setRules(SVC, section);
  return router;
}

const versionOf = (router: Router, user: string) => router.pick(SVC, tags({ 'user-id': user })).metadata.version;
const usersOn = (router: Router, version: string) => new Set(IDS.filter((u) => versionOf(router, u) === version));

describe('sticky route rules (`stickyBy`)', () => {
  it('spreads 10,000 user ids within 1 point of a 20/80 split (2.5 standard deviations of a fair draw)', () => {
    const n = usersOn(routerWith(gray(20)), 'v1.21').size;
    assert.ok(Math.abs(n - 2000) <= 100, `v1.21 has ${n} of 10,000 users`);
  });

  it('spreads 10,000 user ids evenly over ten 10% groups (each within 4 standard deviations)', () => {
    const tenths = Array.from({ length: 10 }, (_, k) => instance(SVC, `t${k}`, { version: `t${k}` }));
    const router = new Router({ random: noDraw });
    router.setInstances(SVC, tenths);
    router.setRules(
      SVC,
      parseRouteSection({
        rules: [{ name: 'tenths', stickyBy: 'user-id', destinations: tenths.map((i) => ({ group: i.metadata, weight: 10 })) }],
        loadBalancer: { type: 'consistentHash', hashTag: 'user-id' },
      }),
    );
    const counts = new Map<string, number>();
    for (const u of IDS) counts.set(versionOf(router, u) ?? '', (counts.get(versionOf(router, u) ?? '') ?? 0) + 1);
    assert.equal(counts.size, 10);
    for (const [group, c] of counts) assert.ok(Math.abs(c - 1000) <= 120, `${group} has ${c} of 10,000 users`);
  });

  it('sends the same user to the same group on every call, drawing nothing', () => {
    const router = routerWith(gray(20));
    for (const u of IDS.slice(0, 200)) {
      const first = versionOf(router, u);
      for (let k = 0; k < 50; k++) assert.equal(versionOf(router, u), first, u);
    }
    const d = router.decide(SVC, tags({ 'user-id': 'user-1' }));
    assert.equal(d.via, 'rule');
    assert.equal(d.rule, 'chrome-gray');
  });

  it('keeps every user of the 20% group when it grows to 30%, and moves only users at the edge when it shrinks back', () => {
    const router = routerWith(gray(20));
    const at20 = usersOn(router, 'v1.21');
    router.setRules(SVC, gray(30));
    const at30 = usersOn(router, 'v1.21');
    for (const u of at20) assert.ok(at30.has(u), `${u} left v1.21 when it grew`);
    assert.ok(Math.abs(at30.size - 3000) <= 120, `v1.21 has ${at30.size} of 10,000 users at 30%`);
    router.setRules(SVC, gray(20));
    assert.deepEqual(usersOn(router, 'v1.21'), at20, 'back at 20%, the same users');
  });

  it('splits independently under two rule names (about 20% of 20% in both)', () => {
    const a = usersOn(routerWith(gray(20, 'gray-a')), 'v1.21');
    const b = usersOn(routerWith(gray(20, 'gray-b')), 'v1.21');
    const both = [...a].filter((u) => b.has(u)).length;
    // Unsalted, both would be the same 2,000 users. A fair draw: 400, standard deviation 19.6.
    assert.ok(Math.abs(both - 400) <= 80, `${both} of 10,000 users in both 20% groups`);
  });

  it('draws at random when the request lacks the tag or it is empty, and says so once per call (not per retry)', () => {
    const draws = [0.1, 0.9, 0.1, 0.9];
    let k = 0;
    const scripted: RandomSource = () => draws[k++ % draws.length] as number;
    const logger = new MemoryLogger();
    const router = routerWith(gray(20), scripted, logger);
    assert.equal(router.pick(SVC, tags({})).metadata.version, 'v1.21'); // 0.1 → 10, in [0, 20)
    assert.equal(router.pick(SVC, tags({})).metadata.version, 'v1.20'); // 0.9 → 90
    assert.equal(router.pick(SVC, tags({ 'user-id': '' })).metadata.version, 'v1.21');
    assert.equal(router.pick(SVC, tags({ 'user-id': '' })).metadata.version, 'v1.20');
    assert.equal(k, 4, 'one draw per decision');
    router.decideRetry(SVC, tags({}), new Set(['b1']));
    const told = logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_STICKY_TAG_ABSENT');
    assert.equal(told.length, 4);
    assert.deepEqual(told[0]?.fields, { code: 'MESHLET_ROUTE_STICKY_TAG_ABSENT', service: SVC, rule: 'chrome-gray', tag: 'user-id' });
    // Per request: a client decides how often, so the mesh's logger throttles it.
    assert.ok(PER_REQUEST_CODES.includes('MESHLET_ROUTE_STICKY_TAG_ABSENT'));
  });

  it('reads the same tag in `when`: a request without it goes to the default, untold', () => {
    const logger = new MemoryLogger();
    const router = routerWith(gray(100, 'identified', { when: [{ tag: 'user-id', op: 'exists' }] }), seededRandom(1), logger);
    assert.equal(router.decide(SVC, tags({ 'user-id': 'user-7' })).via, 'rule');
    const anonymous = router.decide(SVC, tags({}));
    assert.equal(anonymous.via, 'default');
    assert.equal(anonymous.instance.metadata.version, 'v1.20');
    assert.equal(logger.entries.length, 0);
  });

  it("uses the user's point for the fallback too: each user keeps one fallback group, and the fallback's weights hold", () => {
    const down = fleet.map((i) => (i.metadata.version === 'v1.21' ? { ...i, health: 'critical' as const } : i));
    const fallback = [
      { group: { version: 'v2' }, weight: 50 },
      { group: { version: 'v1.20' }, weight: 50 },
    ];
    const router = routerWith(gray(20, 'chrome-gray', { fallback }));
    const grayUsers = [...usersOn(router, 'v1.21')];
    router.setInstances(SVC, down);
    let onV2 = 0;
    for (const u of grayUsers) {
      const d = router.decide(SVC, tags({ 'user-id': u }));
      assert.equal(d.via, 'fallback');
      for (let k = 0; k < 5; k++) assert.equal(versionOf(router, u), d.instance.metadata.version, u);
      if (d.instance.metadata.version === 'v2') onV2++;
    }
    // The point as it is would put the 20% group's users all in the fallback's first 50%.
    const share = onV2 / grayUsers.length;
    assert.ok(Math.abs(share - 0.5) <= 0.05, `${onV2} of ${grayUsers.length} on v2`);
    // The users of the 80% group are where they were.
    for (const u of IDS.slice(0, 500)) if (!grayUsers.includes(u)) assert.equal(versionOf(router, u), 'v1.20');
  });
});
