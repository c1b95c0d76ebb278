import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Condition, type Instance, MemoryLogger, NoInstanceError, PER_REQUEST_CODES, pathTagValue, seededRandom } from '@meshlet/core';
import { type Destination, parseRouteSection, Router, type RouteSection } from '../src/index.js';
import { countBy, instance, tags } from './fixtures.js';

const SVC = 'user-service';
const fleet: Instance[] = [
  instance(SVC, 'a1', { version: 'v1.20' }),
  instance(SVC, 'a2', { version: 'v1.20' }),
  instance(SVC, 'b1', { version: 'v1.21' }),
  instance(SVC, 'b2', { version: 'v1.21' }),
  instance(SVC, 'c1', { version: 'v2' }),
];
const to = (version: string): Destination[] => [{ group: { version }, weight: 100 }];
const section = (raw: unknown): RouteSection => parseRouteSection(raw);

function routerWith(rules: unknown, instances: readonly Instance[] = fleet, seed = 1): Router {
  const router = new Router({ random: seededRandom(seed) });
  router.setInstances(SVC, instances);
  router.setRules(SVC, section(rules));
  return router;
}

const versionOf = (router: Router, t: Record<string, string>) => router.pick(SVC, tags(t)).metadata.version;

describe('rule routing', () => {
  // Each operator, with a request that matches and one that does not (missing tag included).
  const operators: [string, Condition, Record<string, string>, Record<string, string>[]][] = [
    ['equals', { tag: 'ua.family', op: 'equals', value: 'Chrome' }, { 'ua.family': 'Chrome' }, [{ 'ua.family': 'Firefox' }, {}]],
    ['notEquals', { tag: 'ua.family', op: 'notEquals', value: 'Chrome' }, { 'ua.family': 'Safari' }, [{ 'ua.family': 'Chrome' }, {}]],
    ['in', { tag: 'tier', op: 'in', values: ['gold', 'vip'] }, { tier: 'vip' }, [{ tier: 'free' }, {}]],
    ['notIn', { tag: 'tier', op: 'notIn', values: ['gold', 'vip'] }, { tier: 'free' }, [{ tier: 'gold' }, {}]],
    [
      'regex',
      { tag: 'user-agent', op: 'regex', pattern: '^Mozilla/5\\.0 .*Chrome/1[2-9][0-9]' },
      { 'user-agent': 'Mozilla/5.0 (X11) Chrome/126.0' },
      [{ 'user-agent': 'Mozilla/5.0 (X11) Chrome/99.0' }, {}],
    ],
    ['exists', { tag: 'canary', op: 'exists' }, { canary: '' }, [{ other: '1' }]],
    ['range', { tag: 'uid', op: 'range', min: 100, max: 199 }, { uid: '150' }, [{ uid: '200' }, { uid: 'abc' }, { uid: '' }, {}]],
  ];
  for (const [op, condition, yes, nos] of operators) {
    it(`routes on ${op}`, () => {
      const router = routerWith({ rules: [{ name: op, priority: 1, when: [condition], destinations: to('v1.21') }], default: to('v1.20') });
      for (let i = 0; i < 4; i++) assert.equal(versionOf(router, yes), 'v1.21');
      for (const no of nos) assert.equal(versionOf(router, no), 'v1.20', JSON.stringify(no));
    });
  }

  it('routes on request.path as the matcher compares it: /Beta/ by equals "/Beta", "/beta/" and in [...]', () => {
    // The tag as the context gives it (core's pathTagValue): folded, no trailing slash.
    const request = { 'request.path': pathTagValue('/Beta/') };
    const conditions: Condition[] = [
      { tag: 'request.path', op: 'equals', value: '/Beta' },
      { tag: 'request.path', op: 'equals', value: '/beta/' },
      { tag: 'request.path', op: 'in', values: ['/alpha', '/BETA/'] },
    ];
    for (const condition of conditions) {
      const rules = { rules: [{ name: 'beta', when: [condition], destinations: to('v2') }], default: to('v1.20') };
      const d = routerWith(rules).decide(SVC, tags(request));
      assert.deepEqual(pickOf(d), { via: 'rule', rule: 'beta', version: 'v2' }, JSON.stringify(condition));
      // Shadow mode finds the rule through the same index.
      assert.equal(routerWith({ ...rules, mode: 'shadow' }).decide(SVC, tags(request)).shadow, 'beta', JSON.stringify(condition));
    }
  });

  it('ANDs the conditions of a rule', () => {
    const when = [
      { tag: 'ua.family', op: 'equals', value: 'Chrome' },
      { tag: 'tier', op: 'in', values: ['vip'] },
    ];
    const router = routerWith({ rules: [{ name: 'both', priority: 1, when, destinations: to('v1.21') }], default: to('v1.20') });
    assert.equal(versionOf(router, { 'ua.family': 'Chrome', tier: 'vip' }), 'v1.21');
    assert.equal(versionOf(router, { 'ua.family': 'Chrome' }), 'v1.20');
  });

  it('answers destination.service itself', () => {
    const router = routerWith({
      rules: [
        {
          name: 'other',
          priority: 1,
          when: [{ tag: 'destination.service', op: 'equals', value: 'order-service' }],
          destinations: to('v2'),
        },
        { name: 'mine', priority: 2, when: [{ tag: 'destination.service', op: 'equals', value: SVC }], destinations: to('v1.21') },
      ],
    });
    assert.equal(versionOf(router, {}), 'v1.21');
  });

  it('takes the first matching rule by priority, lower first, ties in document order', () => {
    const all = [{ tag: 'ua.family', op: 'exists' }];
    const router = routerWith({
      rules: [
        { name: 'late', priority: 50, when: all, destinations: to('v2') },
        { name: 'first-of-tie', priority: 5, when: all, destinations: to('v1.21') },
        { name: 'second-of-tie', priority: 5, when: all, destinations: to('v1.20') },
        { name: 'specific', priority: 1, when: [{ tag: 'tier', op: 'equals', value: 'vip' }], destinations: to('v1.20') },
      ],
    });
    assert.equal(router.decide(SVC, tags({ 'ua.family': 'Chrome' })).rule, 'first-of-tie');
    assert.equal(versionOf(router, { 'ua.family': 'Chrome' }), 'v1.21');
    assert.equal(router.decide(SVC, tags({ 'ua.family': 'Chrome', tier: 'vip' })).rule, 'specific');
  });

  it('splits by weight within statistical bounds (seeded)', () => {
    const router = routerWith({
      rules: [
        {
          name: 'chrome-gray',
          priority: 1,
          when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
          destinations: [
            { group: { version: 'v1.21' }, weight: 20 },
            { group: { version: 'v1.20' }, weight: 80 },
          ],
        },
      ],
      default: to('v2'),
    });
    const n = 10_000;
    const seen = countBy(
      Array.from({ length: n }, () => versionOf(router, { 'ua.family': 'Chrome' })),
      (v) => v ?? '',
    );
    // Binomial(10 000, 0.2): sd = 40, so ±4 sd is ±160.
    assert.ok(Math.abs((seen['v1.21'] ?? 0) - 2000) <= 160, JSON.stringify(seen));
    assert.equal((seen['v1.21'] ?? 0) + (seen['v1.20'] ?? 0), n);
    // Non-Chrome traffic is untouched by the rule.
    assert.equal(versionOf(router, { 'ua.family': 'Firefox' }), 'v2');
  });

  it('reads each instance’s group keys once per rebuild, not once per distinct group', () => {
    // 1,000 instances, 200 groups on `v` and one on `v` and `shard`: counting reads of the
    // selector keys, which the table used to make groups × instances of (201,000).
    let reads = 0;
    const counted = (metadata: Record<string, string>) =>
      new Proxy(metadata, {
        get: (target, key) => {
          if (key === 'v' || key === 'shard') reads++;
          return Reflect.get(target, key);
        },
      });
    const instances = Array.from({ length: 1000 }, (_, i) => ({
      ...instance(SVC, `i${i}`),
      metadata: counted({ v: String(i % 250), shard: `s${i % 4}` }),
    }));
    const rules: { name: string; when: unknown[]; destinations: { group: Record<string, string>; weight: number }[] }[] = Array.from(
      { length: 20 },
      (_, r) => ({
        name: `r${r}`,
        when: [{ tag: 'u', op: 'equals', value: String(r) }],
        destinations: Array.from({ length: 10 }, (_, k) => ({ group: { v: String(r * 10 + k) }, weight: 10 })),
      }),
    );
    rules.push({
      name: 'two-keys',
      when: [{ tag: 'u', op: 'equals', value: 'both' }],
      destinations: [{ group: { v: '7', shard: 's1' }, weight: 100 }],
    });
    const router = routerWith({ rules }, instances);
    router.decide(SVC, tags({ u: '0' }));
    // Each key indexed once (2 × 1,000), then each group's own members checked (800 + 4).
    assert.ok(reads <= 3 * instances.length, `${reads} reads`);
    // The groups are what they were: v=7 is i7, i257, i507, i757; of those, shard s1 is i257 and i757.
    const two = new Set(Array.from({ length: 8 }, () => router.decide(SVC, tags({ u: 'both' })).instance.id));
    assert.deepEqual([...two].sort(), ['i257', 'i757']);
    for (let n = 0; n < 20; n++) {
      const v = Number(router.decide(SVC, tags({ u: '2' })).instance.metadata.v);
      assert.ok(v >= 20 && v < 30, String(v));
    }
  });

  it('never sends to a weight-0 group', () => {
    const router = routerWith({
      default: [
        { group: { version: 'v1.21' }, weight: 0 },
        { group: { version: 'v1.20' }, weight: 100 },
      ],
    });
    for (let i = 0; i < 1000; i++) assert.equal(versionOf(router, {}), 'v1.20');
  });

  it('spreads calls over every instance when there are no rules', () => {
    // Round robin named, so that "every instance" can be counted exactly.
    const router = new Router({ random: seededRandom(3), loadBalancer: { type: 'roundRobin' } });
    router.setInstances(SVC, fleet);
    const ids = countBy(
      Array.from({ length: 50 }, () => router.pick(SVC, tags()).id),
      (id) => id,
    );
    assert.deepEqual(ids, { a1: 10, a2: 10, b1: 10, b2: 10, c1: 10 });
  });

  it('falls through an empty group to the rule’s fallback, then to the default route', () => {
    const down = fleet.map((i) => (i.metadata.version === 'v1.21' ? { ...i, health: 'critical' as const } : i));
    const rule = { name: 'gray', priority: 1, when: [], destinations: to('v1.21') };
    const withFallback = routerWith({ rules: [{ ...rule, fallback: to('v2') }], default: to('v1.20') }, down);
    assert.deepEqual(pickOf(withFallback.decide(SVC, tags())), { via: 'fallback', rule: 'gray', version: 'v2' });
    const noFallback = routerWith({ rules: [rule], default: to('v1.20') }, down);
    assert.deepEqual(pickOf(noFallback.decide(SVC, tags())), { via: 'default', rule: 'gray', version: 'v1.20' });
    const emptyFallback = routerWith({ rules: [{ ...rule, fallback: to('v9') }], default: to('v1.20') }, down);
    assert.deepEqual(pickOf(emptyFallback.decide(SVC, tags())), { via: 'default', rule: 'gray', version: 'v1.20' });
  });

  it('tells of a rule group with no instance to route to: MESHLET_ROUTE_GROUP_EMPTY per first attempt (a per-request code), the group and where the call went on the decision', () => {
    const down = fleet.map((i) => (i.metadata.version === 'v1.21' ? { ...i, health: 'critical' as const } : i));
    const logger = new MemoryLogger();
    const router = new Router({ random: seededRandom(1), logger });
    router.setInstances(SVC, down);
    const rule = { name: 'gray', priority: 1, when: [], stickyBy: 'user-id', destinations: to('v1.21') };
    router.setRules(SVC, section({ rules: [{ ...rule, fallback: to('v2') }], default: to('v1.20') }));
    const viaFallback = router.decide(SVC, tags({ 'user-id': 'u1' }));
    assert.deepEqual(viaFallback.spanAttributes, {
      'io.meshlet.route.group': '{"version":"v1.21"}',
      'io.meshlet.route.fallback': 'fallback:{"version":"v2"}',
      'io.meshlet.route.sticky_by': 'user-id',
    });
    // One object per table, not one per decision.
    assert.equal(router.decide(SVC, tags({ 'user-id': 'u2' })).spanAttributes, viaFallback.spanAttributes);
    router.decideRetry(SVC, tags({ 'user-id': 'u1' }), new Set(['c1']));
    const told = logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_GROUP_EMPTY');
    assert.equal(told.length, 2, 'once per first attempt, not for the retry');
    assert.equal(told[0]?.level, 'warn');
    assert.deepEqual(told[0]?.fields, {
      code: 'MESHLET_ROUTE_GROUP_EMPTY',
      service: SVC,
      rule: 'gray',
      group: '{"version":"v1.21"}',
      registered: 2,
      healthy: 0,
      to: 'fallback:{"version":"v2"}',
    });
    // Per request: the mesh's logger throttles it (and counts it in meshlet_conditions_total).
    assert.ok(PER_REQUEST_CODES.includes('MESHLET_ROUTE_GROUP_EMPTY'));

    router.setRules(SVC, section({ rules: [rule], default: to('v1.20') }));
    const viaDefault = router.decide(SVC, tags({ 'user-id': 'u1' }));
    assert.equal(viaDefault.via, 'default');
    assert.deepEqual(viaDefault.spanAttributes, {
      'io.meshlet.route.group': '{"version":"v1.21"}',
      'io.meshlet.route.fallback': 'default:{"version":"v1.20"}',
    });
    assert.equal(
      logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_GROUP_EMPTY').at(-1)?.fields?.to,
      'default:{"version":"v1.20"}',
    );
  });

  it("a retry that has tried the group's every instance leaves it without calling it empty: the group, no fallback, nothing logged", () => {
    const logger = new MemoryLogger();
    const router = new Router({ random: seededRandom(1), logger });
    router.setInstances(SVC, fleet);
    router.setRules(
      SVC,
      section({ rules: [{ name: 'gray', priority: 1, when: [], destinations: to('v1.21'), fallback: to('v2') }], default: to('v1.20') }),
    );
    const retry = router.decideRetry(SVC, tags({}), new Set(['b1', 'b2']));
    assert.equal(retry?.via, 'fallback');
    assert.deepEqual(retry?.spanAttributes, { 'io.meshlet.route.group': '{"version":"v1.21"}' });
    router.setRules(SVC, section({ rules: [{ name: 'gray', priority: 1, when: [], destinations: to('v1.21') }], default: to('v1.20') }));
    const toDefault = router.decideRetry(SVC, tags({}), new Set(['b1', 'b2']));
    assert.equal(toDefault?.via, 'default');
    assert.deepEqual(toDefault?.spanAttributes, { 'io.meshlet.route.group': '{"version":"v1.21"}' });
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_GROUP_EMPTY').length, 0);
  });

  it('names the group a rule chose, and its stickyBy tag, on the decision (one object per group, not per decision)', () => {
    const logger = new MemoryLogger();
    const router = new Router({ random: seededRandom(1), logger });
    router.setInstances(SVC, fleet);
    router.setRules(SVC, section({ rules: [{ name: 'gray', when: [], stickyBy: 'user-id', destinations: to('v1.21') }] }));
    const first = router.decide(SVC, tags({ 'user-id': 'u1' }));
    assert.deepEqual(first.spanAttributes, { 'io.meshlet.route.group': '{"version":"v1.21"}', 'io.meshlet.route.sticky_by': 'user-id' });
    assert.equal(router.decide(SVC, tags({ 'user-id': 'u2' })).spanAttributes, first.spanAttributes);
    router.setRules(SVC, section({ rules: [{ name: 'plain', when: [], destinations: to('v2') }] }));
    assert.deepEqual(router.decide(SVC, tags()).spanAttributes, { 'io.meshlet.route.group': '{"version":"v2"}' });
    assert.equal(logger.entries.length, 0, 'nothing logged when the chosen group serves');
  });

  it('says why when nothing is left', () => {
    const down = fleet.map((i) => (i.metadata.version === 'v1.21' ? { ...i, health: 'critical' as const } : i));
    const router = routerWith(
      { rules: [{ name: 'gray', priority: 1, when: [], destinations: to('v1.21'), fallback: to('v9') }], default: to('v7') },
      down,
    );
    assert.throws(
      () => router.decide(SVC, tags()),
      (err: unknown) =>
        err instanceof NoInstanceError &&
        err.code === 'MESHLET_NO_INSTANCE' &&
        err.service === SVC &&
        err.message.includes('rule "gray" chose group {"version":"v1.21"} (0 of 2 instances healthy)') &&
        err.message.includes('its fallback group {"version":"v9"} (0 of 0 instances healthy)') &&
        err.message.includes('the default route group {"version":"v7"} (0 of 0 instances healthy)'),
    );
    const empty = new Router();
    assert.throws(() => empty.decide('ghost', tags()), /ghost: no instance is registered/);
  });

  it("puts the document's revision and the matched rule on the refusal's span attributes", () => {
    const down = fleet.map((i) => (i.metadata.version === 'v1.21' ? { ...i, health: 'critical' as const } : i));
    const router = new Router({ random: seededRandom(1) });
    router.setInstances(SVC, down);
    router.setRules(SVC, section({ rules: [{ name: 'gray', priority: 1, when: [], destinations: to('v1.21') }], default: to('v7') }), 42);
    const refusal = (r: Router) => {
      try {
        r.decide(SVC, tags());
      } catch (err) {
        return (err as { spanAttributes?: unknown }).spanAttributes;
      }
      return assert.fail('routed');
    };
    assert.deepEqual(refusal(router), { 'io.meshlet.rules.revision': 42, 'io.meshlet.route': 'gray' });
    // No rule matched, rules set directly (revision 0): neither is named.
    router.setRules(SVC, section({ rules: [], default: to('v7') }));
    assert.deepEqual(refusal(router), {});
  });

  it('leaves out instances the exclusion names, and refreshes when it changes', () => {
    const { excluded, listeners, exclusion } = mutableExclusion();
    const router = new Router({ exclusion, random: seededRandom(1) });
    router.setInstances(SVC, fleet.slice(0, 2));
    assert.deepEqual(new Set(Array.from({ length: 4 }, () => router.pick(SVC, tags()).id)), new Set(['a1', 'a2']));
    excluded.add('a1');
    for (const l of listeners) l();
    assert.deepEqual(new Set(Array.from({ length: 4 }, () => router.pick(SVC, tags()).id)), new Set(['a2']));
    router.close();
    assert.equal(listeners.size, 0);
  });

  it('names the instances it skipped as ejected on the decision (for the span), and nothing when none was', () => {
    const { excluded, listeners, exclusion } = mutableExclusion();
    const router = new Router({ exclusion, random: seededRandom(1) });
    router.setInstances(SVC, fleet.slice(0, 3));
    assert.equal(router.decide(SVC, tags()).spanAttributes, undefined);
    excluded.add('a1');
    excluded.add('a2');
    for (const l of listeners) l();
    const d = router.decide(SVC, tags());
    assert.equal(d.id, 'b1');
    assert.deepEqual(d.spanAttributes, { 'io.meshlet.route.ejected': 2, 'io.meshlet.route.ejected_ids': 'a1 a2' });
    // The same object for every call: made when the exclusion changed, not per call.
    assert.equal(router.decide(SVC, tags()).spanAttributes, d.spanAttributes);
    router.close();
  });

  it('counts every ejected instance but names ten at most (core namedIds)', () => {
    const { excluded, listeners, exclusion } = mutableExclusion();
    // Panic off: 12 of 13 ejected would otherwise route to all of them.
    const router = new Router({ exclusion, random: seededRandom(1), panicThresholdPercent: 0 });
    const many = Array.from({ length: 13 }, (_, i) => instance(SVC, `e${String(i).padStart(2, '0')}`, { version: 'v1' }));
    router.setInstances(SVC, many);
    for (const m of many.slice(0, 12)) excluded.add(m.id);
    for (const l of listeners) l();
    const d = router.decide(SVC, tags());
    assert.equal(d.id, 'e12');
    const named = many.slice(0, 10).map((m) => m.id);
    assert.deepEqual(d.spanAttributes, { 'io.meshlet.route.ejected': 12, 'io.meshlet.route.ejected_ids': `${named.join(' ')} …` });
    router.close();
  });

  it('honours an exclusion with every load balancer', () => {
    const { excluded, listeners, exclusion } = mutableExclusion();
    const balancers = [
      { type: 'roundRobin' },
      { type: 'random' },
      { type: 'leastRequests' },
      { type: 'consistentHash', hashTag: 'user' },
    ] as const;
    for (const loadBalancer of balancers) {
      excluded.clear();
      const router = new Router({ exclusion, loadBalancer, random: seededRandom(3) });
      router.setInstances(SVC, fleet.slice(0, 3));
      const users = Array.from({ length: 60 }, (_, i) => tags({ user: `u${i}` }));
      const before = new Set(users.map((t) => router.pick(SVC, t).id));
      assert.ok(before.has('a1'), `${loadBalancer.type}: a1 serves before it is excluded`);
      excluded.add('a1');
      for (const l of listeners) l();
      for (const t of users) assert.notEqual(router.pick(SVC, t).id, 'a1', `${loadBalancer.type} picked an excluded instance`);
      router.close();
    }
  });

  it('counts calls in flight only while they run', () => {
    const router = new Router({ loadBalancer: { type: 'leastRequests' }, random: seededRandom(9) });
    router.setInstances(SVC, fleet.slice(0, 2));
    const busy = router.pick(SVC, tags());
    const ends = Array.from({ length: 3 }, () => router.callStarted(busy));
    for (let i = 0; i < 20; i++) assert.notEqual(router.pick(SVC, tags()).id, busy.id);
    for (const end of ends) {
      end();
      end(); // a second end is ignored
    }
    const ids = new Set(Array.from({ length: 40 }, () => router.pick(SVC, tags()).id));
    assert.deepEqual(ids, new Set(['a1', 'a2']));
  });
});

function pickOf(d: { via: string; rule: string | undefined; instance: Instance }) {
  return { via: d.via, rule: d.rule, version: d.instance.metadata.version };
}

/** An InstanceExclusion a test changes by hand: add ids to `excluded`, then call the listeners. */
function mutableExclusion() {
  const excluded = new Set<string>();
  const listeners = new Set<() => void>();
  const exclusion = {
    isExcluded: (id: string) => excluded.has(id),
    subscribe: (l: () => void) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  return { excluded, listeners, exclusion };
}

describe('route rules in shadow mode (`route.mode: "shadow"`)', () => {
  it('routes as if the section were absent, and names the rule it would have applied', async () => {
    const { MemoryLogger } = await import('@meshlet/core');
    const logger = new MemoryLogger();
    // Round robin named: ten calls then reach each of the five instances exactly twice.
    const router = new Router({ random: seededRandom(1), logger, loadBalancer: { type: 'roundRobin' } });
    router.setInstances(SVC, fleet);
    const rules = {
      rules: [{ name: 'chrome-to-v2', when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }], destinations: to('v2') }],
      default: to('v1.20'),
    };
    router.setRules(SVC, section({ ...rules, mode: 'shadow' }));
    const chrome = Array.from({ length: 10 }, () => router.decide(SVC, tags({ 'ua.family': 'Chrome' })));
    // Round robin over every instance, not only v2: the rule is not enforced.
    assert.equal(new Set(chrome.map((d) => d.instance.id)).size, fleet.length);
    assert.deepEqual(new Set(chrome.map((d) => [d.rule, d.shadow].join('|'))), new Set(['|chrome-to-v2']));
    assert.equal(router.decide(SVC, tags({ 'ua.family': 'Firefox' })).shadow, '(default)');
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_SHADOW').length, 11);

    // Enforced, the same section routes Chrome to v2 only, with no shadow.
    router.setRules(SVC, section(rules));
    const enforced = router.decide(SVC, tags({ 'ua.family': 'Chrome' }));
    assert.deepEqual([enforced.instance.metadata.version, enforced.rule, enforced.shadow], ['v2', 'chrome-to-v2', undefined]);
  });

  it('evaluates no rule for a lane request, which enforcement would not apply one to', async () => {
    const { MemoryLogger } = await import('@meshlet/core');
    const logger = new MemoryLogger();
    const router = new Router({ random: seededRandom(1), logger });
    router.setInstances(SVC, [...fleet, instance(SVC, 'g1', { version: 'v2', lane: 'gray' })]);
    const rules = { rules: [{ name: 'all-to-v2', destinations: to('v2') }] };
    router.setRules(SVC, section({ ...rules, mode: 'shadow' }));
    const lane = router.decide(SVC, tags({ lane: 'gray' }));
    assert.deepEqual([lane.via, lane.instance.id, lane.rule, lane.shadow], ['lane', 'g1', undefined, undefined]);
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_SHADOW').length, 0);
    // Enforced, the rule is not applied to it either.
    router.setRules(SVC, section(rules));
    const enforced = router.decide(SVC, tags({ lane: 'gray' }));
    assert.deepEqual([enforced.via, enforced.rule], ['lane', undefined]);
  });

  it('refuses a mode that is neither enforce nor shadow, naming the field', () => {
    assert.throws(() => section({ mode: 'log-only' }), /route\.mode/);
  });
});
