import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Condition, compileConditions, InMemoryKvStore, type Instance, MemoryLogger, RuleWatcher } from '@meshlet/core';
import { ruleKinds } from 'meshlet';
import { RE2JS } from 're2js';
import { parse } from 'yaml';
import {
  convertTsfAffinity,
  convertTsfFault,
  convertTsfLaneInfo,
  convertTsfLaneRule,
  convertTsfWarmup,
  readTsfWarmup,
  TsfFieldError,
  TsfLaneLimits,
  TsfLanes,
  type TsfLocalIdentity,
  TsfRuleError,
  TsfRuleStore,
  tsfLaneMetadata,
  tsfRuleKey,
} from '../src/index.js';
import { edited, fixture } from './fixtures.js';

const NS = 'namespace-n1';
const orders: TsfLocalIdentity = { serviceName: 'orders', namespaceId: NS, groupId: 'group-o1' };

function sink(): { paths: string[]; notice: (path: string, message: string) => void } {
  const paths: string[] = [];
  return { paths, notice: (path) => paths.push(path) };
}

function throwsField(fn: () => unknown, path: string, reason: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TsfFieldError, String(err));
    assert.equal(err.path, path);
    assert.match(err.reason, reason);
    return true;
  });
}

function meshletAccepts(name: string, section: unknown): void {
  const kind = ruleKinds.find((k) => k.name === name);
  assert.ok(kind);
  kind.parse(section, name);
}

interface FaultRuleOut {
  name: string;
  when: Condition[];
  percentage: number;
  delay?: number;
  abort?: number;
}

/** The odds of each outcome under Meshlet's first-match rule, as FaultInjector draws them. */
function outcomeOdds(rules: FaultRuleOut[], tags: Record<string, string>): Map<string, number> {
  const odds = new Map<string, number>();
  let remaining = 1;
  for (const r of rules) {
    if (!compileConditions(r.when)((t) => tags[t])) continue;
    const hit = remaining * (r.percentage / 100);
    const outcome = `${r.delay !== undefined ? 'delay' : ''}${r.abort !== undefined ? 'abort' : ''}`;
    odds.set(outcome, (odds.get(outcome) ?? 0) + hit);
    remaining -= hit;
  }
  return odds;
}

describe('TSF affinity', () => {
  it('turns the namespace switch into route.nearby, which Meshlet accepts', () => {
    const { paths, notice } = sink();
    const section = convertTsfAffinity(parse(fixture('affinity.yaml')), NS, notice);
    assert.deepEqual(section, { nearby: { enabled: true } });
    assert.deepEqual(paths, []);
    meshletAccepts('route', section);
    assert.deepEqual(convertTsfAffinity({ namespaceId: NS, affinity: false }, NS, notice), { nearby: { enabled: false } });
  });

  it('refuses a document for another namespace or a non-boolean switch', () => {
    throwsField(() => convertTsfAffinity({ namespaceId: 'namespace-x', affinity: true }, NS, () => {}), 'namespaceId', /namespace-x/);
    throwsField(() => convertTsfAffinity({ affinity: 'sometimes' }, NS, () => {}), 'affinity', /true or false/);
  });
});

describe('TSF fault', () => {
  it('converts delays and aborts with TSF’s independent odds under Meshlet’s first match', () => {
    const { paths, notice } = sink();
    const section = convertTsfFault(parse(fixture('fault.yaml')), 'user-service', orders, notice) as { rules: FaultRuleOut[] };
    meshletAccepts('fault', section);
    assert.deepEqual(
      section.rules.map((r) => [r.name, r.percentage, r.delay, r.abort]),
      [
        ['fault-r-delay001', 100, 200, undefined],
        ['fault-r-abort001', 10, 50, 503],
        ['fault-r-abort001-delay', (0.4 / 0.9) * 100, 50, undefined],
        ['fault-r-abort001-abort', 20, undefined, 503],
      ],
    );
    // source.service.name = orders is this process: decided at conversion, no condition left.
    assert.deepEqual(section.rules[1]?.when, []);
    assert.deepEqual(section.rules[0]?.when, [{ tag: 'user', op: 'equals', value: 'tester' }]);
    // 50 % delay and 20 % abort, drawn independently, as TSF does.
    const odds = outcomeOdds(section.rules, {});
    const near = (a: number | undefined, b: number) => assert.ok(Math.abs((a ?? 0) - b) < 1e-9, `${a} != ${b}`);
    near(odds.get('delayabort'), 0.1);
    near(odds.get('delay'), 0.4);
    near(odds.get('abort'), 0.1);
    // The disabled rule is skipped without a notice: TSF turns it off the same way.
    assert.deepEqual(paths, []);
  });

  it('drops a rule whose source is another service, and reports a half-given fault', () => {
    const { paths, notice } = sink();
    const text = edited('fault.yaml', (d) => {
      const rules = (d[0] as { ruleList: { faultRule: Record<string, unknown> }[] }).ruleList;
      delete (rules[0] as { faultRule: Record<string, unknown> }).faultRule.delayPercentage;
    });
    const billing = { ...orders, serviceName: 'billing' };
    const section = convertTsfFault(parse(text), 'user-service', billing, notice) as { rules: FaultRuleOut[] };
    assert.deepEqual(
      section.rules.map((r) => r.name),
      [],
    );
    assert.deepEqual(paths, ['[0].ruleList[0].faultRule.delayPercentage', '[0].ruleList[0].faultRule', '[0].ruleList[1]']);
  });

  it('refuses percentages and statuses outside TSF’s bounds, naming the field', () => {
    const doc = parse(fixture('fault.yaml'));
    doc[0].ruleList[1].faultRule.abortPercentage = 120;
    throwsField(
      () => convertTsfFault(doc, 'user-service', orders, () => {}),
      '[0].ruleList[1].faultRule.abortPercentage',
      /between 0 and 100/,
    );
    doc[0].ruleList[1].faultRule.abortPercentage = 20;
    doc[0].ruleList[1].faultRule.abortHttpStatusCode = 302;
    throwsField(
      () => convertTsfFault(doc, 'user-service', orders, () => {}),
      '[0].ruleList[1].faultRule.abortHttpStatusCode',
      /between 400/,
    );
  });
});

describe('TSF warm-up', () => {
  it('converts a group’s WarmupSetting into Meshlet warm-up options', () => {
    const { paths, notice } = sink();
    assert.deepEqual(convertTsfWarmup(parse(fixture('warmup.yaml')), notice), { windowMs: 120_000, floor: 0, curvature: 2 });
    assert.deepEqual(paths, []);
    // enabledProtection defaults to true in TSF and has no Meshlet counterpart: reported.
    convertTsfWarmup({ enabled: true, warmupTime: 60, curvature: 1 }, notice);
    assert.deepEqual(paths, ['enabledProtection']);
    assert.equal(convertTsfWarmup({ enabled: false, warmupTime: 60 }, () => {}).windowMs, 0);
    throwsField(() => convertTsfWarmup({ enabled: true, warmupTime: 60, curvature: 9 }, () => {}), 'curvature', /between 1 and 5/);
    throwsField(() => convertTsfWarmup({ enabled: true, warmupTime: 0 }, () => {}), 'warmupTime', /above 0/);
  });

  it('reads the group’s key from the KV store, naming key and field on a bad document', async () => {
    const kv = new InMemoryKvStore();
    assert.equal(await readTsfWarmup(kv, NS, 'group-a'), undefined);
    await kv.put(tsfRuleKey.warmup(NS, 'group-a'), fixture('warmup.yaml'));
    await kv.put(tsfRuleKey.warmup(NS, 'group-ab'), 'enabled: true\nwarmupTime: 5\nenabledProtection: false\n');
    assert.deepEqual(await readTsfWarmup(kv, NS, 'group-a'), { windowMs: 120_000, floor: 0, curvature: 2 });
    assert.equal((await readTsfWarmup(kv, NS, 'group-ab'))?.windowMs, 5000);
    await kv.put(tsfRuleKey.warmup(NS, 'group-a'), 'enabled: true\nwarmupTime: soon\n');
    await assert.rejects(readTsfWarmup(kv, NS, 'group-a'), (err: unknown) => {
      assert.ok(err instanceof TsfRuleError);
      assert.equal(err.key, 'warmup/namespace-n1/group-a/data');
      assert.equal(err.path, 'warmupTime');
      return true;
    });
  });
});

describe('TSF lanes', () => {
  const instance = (id: string, group: string): Instance => ({
    id,
    service: 'user-service',
    address: '10.0.0.1',
    port: 8080,
    tags: [],
    metadata: { TSF_GROUP_ID: group },
    health: 'passing',
  });

  it('converts lane info and rules in tsf-go’s testdata shape', () => {
    const lane = convertTsfLaneInfo(parse(fixture('lane-info.yaml')), () => {});
    assert.equal(lane.id, 'lane-gray0001');
    assert.deepEqual(
      lane.groups.map((g) => [g.groupId, g.entrance]),
      [
        ['group-gateway', true],
        ['group-u-gray', false],
      ],
    );
    const rule = convertTsfLaneRule(parse(fixture('lane-rule.yaml')), () => {});
    assert.equal(rule.match, 'any');
    assert.deepEqual(rule.when[1], { tag: 'region', op: 'in', values: ['north', 'south'] });
    throwsField(
      () => convertTsfLaneRule({ ...parse(fixture('lane-rule.yaml')), ruleTagRelationship: 'XOR' }, () => {}),
      'ruleTagRelationship',
      /RELEATION_AND/,
    );
  });

  it('gives lane metadata, annotates instances by group and colours requests at an entrance', () => {
    const lanes = new TsfLanes();
    lanes.update(tsfRuleKey.laneInfoPrefix, [{ key: 'lane/info/lane-gray0001', value: fixture('lane-info.yaml'), revision: 1 }]);
    lanes.update(tsfRuleKey.laneRulePrefix, [{ key: 'lane/rule/lane-r-gvk6z4la', value: fixture('lane-rule.yaml'), revision: 2 }]);
    assert.deepEqual(tsfLaneMetadata(lanes, 'group-u-gray'), { lane: 'lane-gray0001' });
    assert.deepEqual(tsfLaneMetadata(lanes, 'group-u-base'), {});
    const [gray, base] = lanes.annotate([instance('a', 'group-u-gray'), instance('b', 'group-u-base')]);
    assert.equal(gray?.metadata.lane, 'lane-gray0001');
    assert.equal(base?.metadata.lane, undefined);
    const tags = (t: Record<string, string>) => (k: string) => t[k];
    assert.equal(lanes.laneFor('group-gateway', tags({ region: 'south' })), 'lane-gray0001');
    assert.equal(lanes.laneFor('group-gateway', tags({ user: 'test2233' })), 'lane-gray0001');
    assert.equal(lanes.laneFor('group-gateway', tags({ user: 'other' })), undefined);
    // Not an entrance: requests are coloured only where they enter the lane.
    assert.equal(lanes.laneFor('group-u-gray', tags({ user: 'test2233' })), undefined);
  });

  it('keeps a lane key’s previous conversion when its new value is malformed', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const lanes = new TsfLanes({ logger });
    const off = lanes.follow(kv);
    await kv.put('lane/info/lane-gray0001', fixture('lane-info.yaml'));
    await kv.put('lane/rule/lane-r-gvk6z4la', fixture('lane-rule.yaml'));
    await kv.put(
      'lane/info/lane-gray0001',
      edited('lane-info.yaml', (d) => (d.laneGroupList = 'none')),
    );
    assert.equal(lanes.laneOfGroup('group-u-gray'), 'lane-gray0001');
    const status = lanes.status.find((s) => s.key === 'lane/info/lane-gray0001');
    assert.equal(status?.error?.path, 'laneGroupList');
    assert.ok(logger.entries.some((e) => e.level === 'error' && e.fields?.key === 'lane/info/lane-gray0001'));
    await kv.delete('lane/info/lane-gray0001');
    assert.equal(lanes.laneOfGroup('group-u-gray'), undefined);
    off();
  });

  describe('bounds', () => {
    const INFO = { key: 'lane/info/l1', revision: 1, value: 'laneId: l1\nlaneGroupList:\n- {groupId: gw, entrance: true}\n' };
    // 100 RE2 instructions; 11 of them are over a rule document's 1,000.
    const BIG = '(?s).{97}z';
    const laneRule = (id: string, tags: readonly { op: string; value: string }[]) =>
      `ruleId: ${id}\nlaneId: l1\nenable: true\nruleTagRelationship: RELEATION_OR\nruleTagList:\n${tags
        .map((t) => `- {tagName: q, tagOperator: ${t.op}, tagValue: '${t.value}'}\n`)
        .join('')}`;
    const regexes = (n: number) => Array.from({ length: n }, () => ({ op: 'REGEX', value: BIG }));
    const setup = () => {
      const logger = new MemoryLogger();
      const lanes = new TsfLanes({ logger });
      lanes.update(tsfRuleKey.laneInfoPrefix, [INFO]);
      return { lanes, logger, error: (key: string) => lanes.status.find((s) => s.key === key)?.error };
    };

    it('refuses a lane rule over a per-key bound, naming key, field and bound; its previous rule stays in force', () => {
      const { lanes, logger, error } = setup();
      const key = 'lane/rule/r1';
      lanes.update(tsfRuleKey.laneRulePrefix, [{ key, revision: 1, value: laneRule('r1', [{ op: 'EQUAL', value: 'gray' }]) }]);
      assert.equal(
        lanes.laneFor('gw', (t) => (t === 'q' ? 'gray' : undefined)),
        'l1',
      );
      const users = Array.from({ length: 1001 }, (_, i) => `u${i}`).join(',');
      for (const [revision, tags, path, limit] of [
        [2, Array.from({ length: 33 }, () => ({ op: 'EQUAL', value: 'x' })), 'ruleTagList', 'tags'],
        [3, [{ op: 'IN', value: users }], 'ruleTagList[0].tagValue', 'array'],
        [4, regexes(11), 'ruleTagList[10].tagValue', 'regexBudget'],
      ] as const) {
        lanes.update(tsfRuleKey.laneRulePrefix, [{ key, revision, value: laneRule('r1', tags) }]);
        const err = error(key);
        assert.equal(err?.code, 'MESHLET_BAD_TSF_RULE');
        assert.equal(err?.key, key);
        assert.equal(err?.path, path);
        assert.equal(err?.limit, limit);
        assert.ok(logger.entries.some((e) => e.level === 'error' && e.fields?.key === key && e.fields?.limit === limit));
        assert.equal(lanes.status.find((s) => s.key === key)?.inForce, 1);
        assert.equal(
          lanes.laneFor('gw', (t) => (t === 'q' ? 'gray' : undefined)),
          'l1',
        );
      }
    });

    it('holds the lane rules in force to one regex budget: the key over it is refused, the others apply', () => {
      const { lanes, error } = setup();
      // 11 keys of one 100-instruction regex each: the 11th takes the total over 1,000.
      const entries = Array.from({ length: 11 }, (_, i) => ({
        key: `lane/rule/r${String(i).padStart(2, '0')}`,
        revision: 1,
        value: laneRule(`r${i}`, regexes(1)),
      }));
      lanes.update(tsfRuleKey.laneRulePrefix, entries);
      assert.equal(lanes.rules.length, 10);
      assert.equal(error('lane/rule/r10')?.limit, 'laneRegexBudget');
      assert.match(error('lane/rule/r10')?.reason ?? '', /more than 1000/);
      assert.equal(lanes.status.filter((s) => s.error).length, 1);
      // Deleting one frees its share: a new value of the refused key is admitted.
      const rest = entries.slice(1, 10);
      const r10 = (revision: number, tags: number) => ({ key: 'lane/rule/r10', revision, value: laneRule('r10', regexes(tags)) });
      lanes.update(tsfRuleKey.laneRulePrefix, [...rest, r10(2, 1)]);
      assert.equal(lanes.rules.length, 10);
      assert.equal(error('lane/rule/r10'), undefined);
      // A key's new value replaces its own share rather than adding to it.
      lanes.update(tsfRuleKey.laneRulePrefix, [...rest, r10(3, 2)]);
      assert.equal(error('lane/rule/r10')?.limit, 'laneRegexBudget');
      assert.equal(lanes.status.find((s) => s.key === 'lane/rule/r10')?.inForce, 2);
      lanes.update(tsfRuleKey.laneRulePrefix, [...rest.slice(1), r10(4, 2)]);
      assert.equal(error('lane/rule/r10'), undefined);
    });

    it('compiles a changed lane rule’s regexes once; the rules in force and lane info changes compile none', (t) => {
      const { lanes, error } = setup();
      const compiles = t.mock.method(RE2JS, 'compile').mock;
      const rule = (id: string, revision: number, patterns: readonly string[]) => ({
        key: `lane/rule/${id}`,
        revision,
        value: laneRule(
          id,
          patterns.map((value) => ({ op: 'REGEX', value })),
        ),
      });
      lanes.update(tsfRuleKey.laneRulePrefix, [rule('r1', 1, ['^a']), rule('r2', 1, ['^b', '^c'])]);
      assert.equal(compiles.callCount(), 3);
      lanes.update(tsfRuleKey.laneRulePrefix, [rule('r1', 2, ['^d']), rule('r2', 1, ['^b', '^c'])]);
      assert.equal(compiles.callCount(), 4);
      lanes.update(tsfRuleKey.laneInfoPrefix, [{ ...INFO, revision: 2 }]);
      assert.equal(compiles.callCount(), 4);
      assert.equal(error('lane/rule/r1'), undefined);
      assert.equal(
        lanes.laneFor('gw', (tag) => (tag === 'q' ? 'dz' : undefined)),
        'l1',
      );
      assert.equal(
        lanes.laneFor('gw', (tag) => (tag === 'q' ? 'az' : undefined)),
        undefined,
      );
    });

    it('holds the lane rules in force to TsfLaneLimits.maxRules', () => {
      const { lanes, error } = setup();
      const n = TsfLaneLimits.maxRules + 1;
      lanes.update(
        tsfRuleKey.laneRulePrefix,
        Array.from({ length: n }, (_, i) => ({
          key: `lane/rule/r${String(i).padStart(4, '0')}`,
          revision: 1,
          value: laneRule(`r${i}`, [{ op: 'EQUAL', value: `v${i}` }]),
        })),
      );
      assert.equal(lanes.rules.length, TsfLaneLimits.maxRules);
      assert.equal(error(`lane/rule/r${String(n - 1).padStart(4, '0')}`)?.limit, 'laneRules');
    });
  });
});

describe('TsfRuleStore with affinity and fault', () => {
  const ROUTE = tsfRuleKey.route(NS, 'user-service');
  const AFFINITY = tsfRuleKey.affinity(NS);
  const FAULT = tsfRuleKey.fault(NS, 'user-service');

  function setup() {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const store = new TsfRuleStore({ kv, identity: orders, kinds: ruleKinds, logger });
    const watcher = new RuleWatcher({ kv: store, service: 'user-service', kinds: ruleKinds, logger }).start();
    const route = () => watcher.document?.sections.get('route') as { rules: unknown[]; nearby?: { enabled?: boolean } } | undefined;
    return { kv, logger, store, watcher, route };
  }

  it('merges affinity into the route section, with or without TSF route rules', async () => {
    const { kv, watcher, route } = setup();
    await watcher.ready;
    await kv.put(AFFINITY, fixture('affinity.yaml'));
    assert.deepEqual(route(), { rules: [], nearby: { enabled: true } });
    await kv.put(ROUTE, fixture('route.yaml'));
    assert.equal(route()?.rules.length, 2);
    assert.deepEqual(route()?.nearby, { enabled: true });
    await kv.put(AFFINITY, 'namespaceId: namespace-n1\naffinity: false\n');
    assert.deepEqual(route()?.nearby, { enabled: false });
    await kv.delete(ROUTE);
    assert.deepEqual(route(), { rules: [], nearby: { enabled: false } });
  });

  it('applies the fault section and keeps it when a new fault document is malformed', async () => {
    const { kv, store, watcher } = setup();
    await kv.put(FAULT, fixture('fault.yaml'));
    const names = () => (watcher.document?.sections.get('fault') as { rules: { name: string }[] } | undefined)?.rules.map((r) => r.name);
    assert.equal(names()?.[0], 'fault-r-delay001');
    await kv.put(
      FAULT,
      edited('fault.yaml', (d) => {
        (
          (d[0] as { ruleList: { faultRule: Record<string, unknown> }[] }).ruleList[0] as { faultRule: Record<string, unknown> }
        ).faultRule.fixedDelay = 'long';
      }),
    );
    assert.equal(names()?.[0], 'fault-r-delay001');
    const status = store.status.find((s) => s.key === FAULT);
    assert.equal(status?.section, 'fault');
    assert.equal(status?.error?.path, '[0].ruleList[0].faultRule.fixedDelay');
  });

  it('keeps the previous affinity on a malformed affinity document, route rules unaffected', async () => {
    const { kv, store, route } = setup();
    await kv.put(AFFINITY, fixture('affinity.yaml'));
    await kv.put(AFFINITY, 'affinity: [yes\n');
    assert.deepEqual(route()?.nearby, { enabled: true });
    assert.equal(store.status.find((s) => s.key === AFFINITY)?.error?.path, '');
    await kv.put(ROUTE, fixture('route.yaml'));
    assert.equal(route()?.rules.length, 2);
  });
});
