import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryKvStore, MemoryLogger, RuleWatcher } from '@meshlet/core';
import { ruleKinds } from 'meshlet';
import { RE2JS } from 're2js';
import { TsfReadOnlyError, TsfRuleStore, tsfRuleKey } from '../src/index.js';
import { at, edited, fixture } from './fixtures.js';

const NS = 'namespace-n1';
const identity = { serviceName: 'orders', namespaceId: NS, groupId: 'group-o1' };
const ROUTE = tsfRuleKey.route(NS, 'user-service');
const LIMIT = tsfRuleKey.ratelimit(NS, 'user-service');
const BREAKER = tsfRuleKey.circuitbreaker(NS, 'orders', NS, 'user-service');

function setup() {
  const kv = new InMemoryKvStore();
  const logger = new MemoryLogger();
  const store = new TsfRuleStore({ kv, identity, kinds: ruleKinds, logger });
  const watcher = new RuleWatcher({ kv: store, service: 'user-service', kinds: ruleKinds, logger }).start();
  const weights = () =>
    (
      watcher.document?.sections.get('route') as { rules: { destinations: { weight: number }[] }[] } | undefined
    )?.rules[0]?.destinations.map((d) => d.weight);
  return { kv, logger, store, watcher, weights };
}

describe('TsfRuleStore', () => {
  it('presents TSF’s keys as one Meshlet document that RuleWatcher applies', async () => {
    const { kv, watcher } = setup();
    await watcher.ready;
    assert.equal(watcher.status.revision, 0);
    await kv.put(ROUTE, fixture('route.yaml'));
    await kv.put(LIMIT, fixture('ratelimit.yaml'));
    await kv.put(BREAKER, fixture('circuitbreaker.yaml'));
    assert.deepEqual([...(watcher.document?.sections.keys() ?? [])], ['route', 'ratelimit', 'breaker']);
    await kv.delete(LIMIT);
    assert.deepEqual([...(watcher.document?.sections.keys() ?? [])], ['route', 'breaker']);
  });

  for (const [what, text, path, reason] of [
    ['bad YAML', 'ruleList: [unclosed\n  - x: {', '', /not valid YAML/],
    [
      'weights not summing to 100',
      edited('route.yaml', (d) => {
        (((d[0] as { ruleList: unknown[] }).ruleList[0] as { destList: unknown[] }).destList[0] as Record<string, unknown>).destWeight = 70;
      }),
      '[0].ruleList[0].destList',
      /sum to 90/,
    ],
    [
      'an unknown operator',
      edited('route.yaml', (d) => {
        (((d[0] as { ruleList: unknown[] }).ruleList[0] as { tagList: unknown[] }).tagList[0] as Record<string, unknown>).tagOperator =
          'LIKE';
      }),
      '[0].ruleList[0].tagList[0].tagOperator',
      /must be one of/,
    ],
  ] as const) {
    it(`keeps the previous route in force on ${what}, naming the key and field`, async () => {
      const { kv, logger, store, watcher, weights } = setup();
      await kv.put(ROUTE, fixture('route.yaml'));
      await kv.put(LIMIT, fixture('ratelimit.yaml'));
      assert.deepEqual(weights(), [80, 20]);
      const good = store.status.find((s) => s.key === ROUTE)?.inForce;
      await kv.put(ROUTE, text);
      assert.deepEqual(weights(), [80, 20]);
      const status = store.status.find((s) => s.key === ROUTE);
      assert.equal(status?.inForce, good);
      assert.equal(status?.error?.key, ROUTE);
      assert.equal(status?.error?.path, path);
      assert.match(status?.error?.reason ?? '', reason);
      const logged = logger.entries.find((e) => e.level === 'error' && e.fields?.key === ROUTE);
      assert.equal(logged?.fields?.code, 'MESHLET_BAD_TSF_RULE');
      assert.equal(logged?.fields?.path, path);
      // Other keys still apply while the route is broken.
      await kv.put(
        LIMIT,
        edited('ratelimit.yaml', (d) => (((d.rules as Record<string, unknown>[])[0] as Record<string, unknown>).quota = 5)),
      );
      assert.equal((watcher.document?.sections.get('ratelimit') as { rules: { rate: number }[] } | undefined)?.rules[0]?.rate, 5);
      // And a fixed route applies again.
      await kv.put(
        ROUTE,
        edited('route.yaml', (d) => {
          const dests = ((d[0] as { ruleList: unknown[] }).ruleList[0] as { destList: Record<string, unknown>[] }).destList;
          (dests[0] as Record<string, unknown>).destWeight = 50;
          (dests[1] as Record<string, unknown>).destWeight = 50;
        }),
      );
      assert.deepEqual(weights(), [50, 50]);
      assert.equal(store.status.find((s) => s.key === ROUTE)?.error, undefined);
    });
  }

  it('refuses a conversion Meshlet’s own parser would refuse, against the TSF key', async () => {
    const { kv, store, weights } = setup();
    await kv.put(ROUTE, fixture('route.yaml'));
    // 17 destinations: valid TSF, over Meshlet's 16-group bound.
    await kv.put(
      ROUTE,
      edited('route.yaml', (d) => {
        const rule = (d[0] as { ruleList: Record<string, unknown>[] }).ruleList[0] as Record<string, unknown>;
        rule.destList = Array.from({ length: 17 }, (_, i) => ({
          destWeight: i === 0 ? 84 : 1,
          destItemList: [{ destItemField: 'TSF_GROUP_ID', destItemValue: `g${i}` }],
        }));
      }),
    );
    assert.deepEqual(weights(), [80, 20]);
    assert.match(store.status.find((s) => s.key === ROUTE)?.error?.reason ?? '', /route\.rules\[0\]\.destinations: at most 16/);
  });

  it('refuses a key over a document bound alone: its previous conversion stays and the other keys still apply', async () => {
    const { kv, logger, store, watcher, weights } = setup();
    await kv.put(ROUTE, fixture('route.yaml'));
    await kv.put(LIMIT, fixture('ratelimit.yaml'));
    const good = store.status.find((s) => s.key === ROUTE)?.inForce;
    // IN over 1001 users: valid TSF, and a converted `values` array over the document's 1000 elements.
    const users = Array.from({ length: 1001 }, (_, i) => `user${i}`).join(',');
    await kv.put(
      ROUTE,
      edited('route.yaml', (d) => (at(d, 0, 'ruleList', 1, 'tagList', 0).tagValue = users)),
    );
    const status = store.status.find((s) => s.key === ROUTE);
    assert.equal(status?.inForce, good);
    assert.equal(status?.error?.code, 'MESHLET_BAD_TSF_RULE');
    assert.equal(status?.error?.limit, 'array');
    assert.match(status?.error?.reason ?? '', /route\.rules\[1\]\.when\[0\]\.values: array longer than 1000 elements/);
    assert.ok(logger.entries.some((e) => e.level === 'error' && e.fields?.key === ROUTE && e.fields?.limit === 'array'));
    assert.deepEqual(weights(), [80, 20]);
    // The emergency rate-limit change still applies; the watcher never saw a document it refuses.
    await kv.put(
      LIMIT,
      edited('ratelimit.yaml', (d) => (at(d, 'rules', 1).quota = 5)),
    );
    assert.equal((watcher.document?.sections.get('ratelimit') as { rules: { rate: number }[] } | undefined)?.rules[1]?.rate, 5);
    assert.equal(watcher.status.rejected, 0);
  });

  it('refuses the key that would take the composed document over a bound, keeping the others', async () => {
    const { kv, store, watcher } = setup();
    // Each key holds 6 regexes of 100 RE2 instructions: each alone under the document's
    // 1,000, the two together over it.
    const regexTags = (extra: Record<string, unknown>) =>
      Array.from({ length: 6 }, (_, i) => ({ tagType: 'U', tagField: `q${i}`, tagOperator: 'REGEX', tagValue: '(?s).{97}z', ...extra }));
    await kv.put(
      ROUTE,
      edited('route.yaml', (d) => (at(d, 0, 'ruleList', 1).tagList = regexTags({}))),
    );
    await kv.put(LIMIT, fixture('ratelimit.yaml'));
    const limitInForce = store.status.find((s) => s.key === LIMIT)?.inForce;
    await kv.put(
      LIMIT,
      edited('ratelimit.yaml', (d) => {
        at(d, 'rules', 1).conditions = regexTags({});
        delete at(d, 'rules', 1).conditionExpression;
      }),
    );
    const status = store.status.find((s) => s.key === LIMIT);
    assert.equal(status?.inForce, limitInForce);
    assert.equal(status?.error?.limit, 'regexBudget');
    assert.match(status?.error?.reason ?? '', /with the other TSF keys of this service in force/);
    assert.equal(store.status.find((s) => s.key === ROUTE)?.error, undefined);
    assert.equal((watcher.document?.sections.get('route') as { rules: unknown[] } | undefined)?.rules.length, 2);
    assert.equal((watcher.document?.sections.get('ratelimit') as { rules: { rate: number }[] } | undefined)?.rules[1]?.rate, 100);
    assert.equal(watcher.status.rejected, 0);
  });

  it('compiles a changed key’s regex once to convert it and once to check the document it composes', async (t) => {
    const kv = new InMemoryKvStore();
    const store = new TsfRuleStore({ kv, identity, kinds: ruleKinds });
    const documents: string[] = [];
    store.watch('meshlet/rules/user-service', (entries) => documents.push(entries[0]?.value ?? ''));
    await kv.put(LIMIT, fixture('ratelimit.yaml'));
    const compiles = t.mock.method(RE2JS, 'compile').mock;
    // route.yaml holds one REGEX tag.
    await kv.put(ROUTE, fixture('route.yaml'));
    assert.equal(compiles.callCount(), 2);
    assert.deepEqual(Object.keys(JSON.parse(documents.at(-1) ?? '{}')), ['service', 'route', 'ratelimit']);
  });

  it('reports unknown TSF fields once per revision, and applies the rest', async () => {
    const { kv, logger, weights } = setup();
    await kv.put(
      ROUTE,
      edited('route.yaml', (d) => ((d[0] as Record<string, unknown>).priorityMode = 'STRICT')),
    );
    assert.deepEqual(weights(), [80, 20]);
    const notices = logger.entries.filter(
      (e) => e.fields?.code === 'MESHLET_TSF_FIELD_NOT_APPLIED' && e.fields?.path === '[0].priorityMode',
    );
    assert.equal(notices.length, 1);
  });

  it('is read-only under meshlet/rules/ and passes other keys through', async () => {
    const { kv, store } = setup();
    await assert.rejects(store.put('meshlet/rules/user-service', '{}'), TsfReadOnlyError);
    await store.put('meshlet/apis/orders', 'x');
    assert.equal((await kv.get('meshlet/apis/orders'))?.value, 'x');
    await kv.put(ROUTE, fixture('route.yaml'));
    const entry = await store.get('meshlet/rules/user-service');
    assert.equal(JSON.parse(entry?.value ?? '{}').service, 'user-service');
  });
});
