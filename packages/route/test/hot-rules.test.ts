import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryKvStore, MemoryLogger, RULES_PREFIX, RuleRepository, RuleWatcher, seededRandom } from '@meshlet/core';
import { Router, routeRuleKind } from '../src/index.js';
import { instance, tags } from './fixtures.js';

const SVC = 'user-service';
const KEY = `${RULES_PREFIX}${SVC}`;
const fleet = [
  instance(SVC, 'v1-a', { version: 'v1' }),
  instance(SVC, 'v1-b', { version: 'v1' }),
  instance(SVC, 'v2-a', { version: 'v2' }),
  instance(SVC, 'v2-b', { version: 'v2' }),
];
const chrome = tags({ 'ua.family': 'Chrome' });

const doc = (route: unknown) => JSON.stringify({ service: SVC, route });
const grayToV2 = doc({
  rules: [
    {
      name: 'chrome-v2',
      priority: 1,
      when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
      destinations: [{ group: { version: 'v2' }, weight: 100 }],
    },
  ],
  default: [{ group: { version: 'v1' }, weight: 100 }],
});
const allV1 = doc({ default: [{ group: { version: 'v1' }, weight: 100 }] });
const split = doc({
  default: [
    { group: { version: 'v1' }, weight: 50 },
    { group: { version: 'v2' }, weight: 50 },
  ],
});

function setup() {
  const kv = new InMemoryKvStore();
  const logger = new MemoryLogger();
  const watcher = new RuleWatcher({ kv, service: SVC, kinds: [routeRuleKind], logger }).start();
  const router = new Router({ random: seededRandom(1) });
  router.setInstances(SVC, fleet);
  router.follow(watcher);
  return { kv, logger, watcher, router };
}

describe('rules applied hot through core’s RuleWatcher', () => {
  it('takes a new document on the next decision', async () => {
    const { kv, router, watcher } = setup();
    assert.equal(router.decide(SVC, chrome).via, 'default');
    await kv.put(KEY, grayToV2);
    assert.deepEqual([router.decide(SVC, chrome).rule, router.pick(SVC, chrome).metadata.version], ['chrome-v2', 'v2']);
    await kv.delete(KEY);
    assert.equal(router.decide(SVC, chrome).rule, undefined);
    watcher.close();
  });

  it('says on every decision which revision of the rule document decided it, retries and lanes included', async () => {
    const { kv, router, watcher } = setup();
    assert.equal(router.decide(SVC, chrome).revision, 0, 'no document yet');
    const repo = new RuleRepository({ kv, kinds: [routeRuleKind] });
    await repo.apply(grayToV2, { author: 'ana' });
    const first = (await repo.current(SVC)).revision;
    const d = router.decide(SVC, chrome);
    assert.deepEqual([d.rule, d.revision], ['chrome-v2', first]);
    assert.equal(router.decideRetry(SVC, chrome, new Set([d.instance.id]))?.revision, first);
    assert.equal(router.decide(SVC, tags({})).revision, first, 'the default route of that document');
    await repo.apply(allV1, { author: 'bo' });
    const second = (await repo.current(SVC)).revision;
    assert.ok(second > first);
    assert.equal(router.decide(SVC, chrome).revision, second);
    // The store revision names the version: what explain prints.
    assert.equal((await repo.versionAt(SVC, second))?.version, 2);
    watcher.close();
  });

  const bad: [string, string, string, RegExp][] = [
    ['bad JSON', '{"service": "user-service", "route": {', '', /not valid JSON/],
    [
      'an unknown operator',
      doc({
        rules: [
          { name: 'r', priority: 1, when: [{ tag: 'ua.family', op: 'like', value: 'C%' }], destinations: [{ group: {}, weight: 100 }] },
        ],
      }),
      'route.rules[0].when[0].op',
      /must be one of/,
    ],
    [
      'weights not summing to 100',
      doc({
        rules: [
          {
            name: 'r',
            priority: 1,
            destinations: [
              { group: { version: 'v1' }, weight: 20 },
              { group: { version: 'v2' }, weight: 70 },
            ],
          },
        ],
      }),
      'route.rules[0].destinations',
      /weights must sum to 100 \(they sum to 90\)/,
    ],
    [
      'a regex that is too long',
      doc({
        rules: [
          {
            name: 'r',
            priority: 1,
            when: [{ tag: 'ua', op: 'regex', pattern: `^${'a'.repeat(300)}$` }],
            destinations: [{ group: {}, weight: 100 }],
          },
        ],
      }),
      'route.rules[0].when[0].pattern',
      /regex longer than 256 characters/,
    ],
  ];
  for (const [why, text, path, reason] of bad) {
    it(`rejects ${why}, names the field, logs once, and keeps the old rules`, async () => {
      const { kv, router, watcher, logger } = setup();
      await kv.put(KEY, grayToV2);
      const inForce = watcher.status.revision;
      await kv.put(KEY, text);
      const status = watcher.status;
      assert.equal(status.rejected, 1);
      assert.equal(status.revision, inForce);
      assert.equal(status.lastError?.path, path);
      assert.match(status.lastError?.message ?? '', reason);
      const errors = logger.entries.filter((e) => e.level === 'error');
      assert.equal(errors.length, 1);
      assert.equal(errors[0]?.fields?.code, 'MESHLET_BAD_RULE');
      for (let i = 0; i < 10; i++) assert.equal(router.pick(SVC, chrome).metadata.version, 'v2');
      watcher.close();
    });
  }

  it('rolls back to the previous rules in one call (RuleRepository)', async () => {
    const { kv, router, watcher } = setup();
    const repo = new RuleRepository({ kv, kinds: [routeRuleKind] });
    await repo.apply(allV1, { author: 'ops' });
    await repo.apply(grayToV2, { author: 'ops' });
    assert.equal(router.pick(SVC, chrome).metadata.version, 'v2');
    await repo.rollback(SVC, { author: 'ops' });
    assert.equal(router.pick(SVC, chrome).metadata.version, 'v1');
    watcher.close();
  });

  it('loses no request while rules and instances change under concurrent load', async () => {
    const { kv, router, watcher } = setup();
    // What each accepted revision allows a Chrome request to reach.
    const allowed = new Map<number, readonly string[]>([[0, ['v1', 'v2']]]);
    let nextAllowed: readonly string[] = [];
    // Recorded in the same synchronous step that applies the rules, before any worker runs.
    watcher.subscribe((_doc, revision) => allowed.set(revision, allowed.get(revision) ?? nextAllowed));
    const docs: [string, readonly string[] | undefined][] = [
      [grayToV2, ['v2']],
      [allV1, ['v1']],
      [split, ['v1', 'v2']],
      ['{ not json', undefined], // rejected: the previous revision's rules stay
    ];
    const total = 10_000;
    let done = 0;
    let swaps = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (done < total) {
        const revision = watcher.status.revision;
        try {
          const version = router.pick(SVC, chrome).metadata.version ?? '';
          if (!allowed.get(revision)?.includes(version)) failures.push(`revision ${revision} sent to ${version}`);
        } catch (err) {
          failures.push(String(err));
        }
        done++;
        await Promise.resolve();
      }
    };
    const swapper = async () => {
      const random = seededRandom(99);
      while (done < total) {
        const [text, versions] = docs[swaps % docs.length] as [string, readonly string[] | undefined];
        if (versions) nextAllowed = versions;
        await kv.put(KEY, text);
        // Instances churn too: one of each version is always passing.
        router.setInstances(
          SVC,
          fleet.map((i) => (i.id.endsWith('b') && random() < 0.5 ? { ...i, health: 'critical' as const } : i)),
        );
        swaps++;
        await Promise.resolve();
      }
    };
    await Promise.all([...Array.from({ length: 16 }, worker), swapper()]);
    assert.deepEqual(failures, []);
    assert.ok(done >= total);
    assert.ok(swaps > 100, `only ${swaps} swaps`);
    assert.equal(watcher.status.rejected, Math.floor(swaps / 4));
    watcher.close();
  });
});
