import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ruleKinds } from 'meshlet';
import { parse } from 'yaml';
import {
  convertTsfAuthority,
  convertTsfBreaker,
  convertTsfRateLimit,
  convertTsfRoute,
  TsfFieldError,
  type TsfLocalIdentity,
  type TsfNotice,
  tsfMetadata,
} from '../src/index.js';
import { at, fixture } from './fixtures.js';

const orders: TsfLocalIdentity = { serviceName: 'orders', namespaceId: 'namespace-n1', groupId: 'group-o1' };
const userService: TsfLocalIdentity = { serviceName: 'user-service', namespaceId: 'namespace-n1', groupId: 'group-a' };

function collect(): { notices: Omit<TsfNotice, 'key'>[]; sink: (path: string, message: string) => void } {
  const notices: Omit<TsfNotice, 'key'>[] = [];
  return { notices, sink: (path, message) => notices.push({ path, message }) };
}

/** Meshlet's own parser for a section: the conversion must be a document it accepts. */
function meshletAccepts(name: string, section: unknown): void {
  const kind = ruleKinds.find((k) => k.name === name);
  assert.ok(kind);
  kind.parse(section, name);
}

function throwsField(fn: () => unknown, path: string, reason: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TsfFieldError, String(err));
    assert.equal(err.path, path);
    assert.match(err.reason, reason);
    return true;
  });
}

describe('TSF route → Meshlet route section', () => {
  it('converts the literal TSF document: weights by TSF_GROUP_ID, tags, fallback, bookkeeping ignored', () => {
    const { notices, sink } = collect();
    const section = convertTsfRoute(parse(fixture('route.yaml')), 'user-service', orders, sink);
    assert.deepEqual(section, {
      rules: [
        {
          // source.service.name EQUAL orders is this caller: decided at conversion, no condition left.
          name: 'route-r-ba2pbnxv',
          when: [],
          destinations: [
            { group: { TSF_GROUP_ID: 'group-a' }, weight: 80 },
            { group: { TSF_GROUP_ID: 'group-b' }, weight: 20 },
          ],
          fallback: [{ group: {}, weight: 100 }],
        },
        {
          name: 'route-r-vip00001',
          when: [
            { tag: 'user', op: 'in', values: ['vip', 'svip'] },
            { tag: 'destination.interface', op: 'regex', pattern: '^/users/.*' },
          ],
          destinations: [{ group: { TSF_PROG_VERSION: '2.0' }, weight: 100 }],
          fallback: [{ group: {}, weight: 100 }],
        },
      ],
    });
    meshletAccepts('route', section);
    // The billing-only rule never matches calls from orders, and says so.
    assert.deepEqual(
      notices.map((n) => n.path),
      ['[0].ruleList[2]'],
    );
    assert.match(notices[0]?.message ?? '', /source\.service\.name EQUAL "billing" is false .*"orders"/);
  });

  it('refuses weights that do not sum to 100, naming the list', () => {
    const doc = parse(fixture('route.yaml'));
    at(doc, 0, 'ruleList', 0, 'destList', 1).destWeight = 10;
    throwsField(() => convertTsfRoute(doc, 'user-service', orders, () => {}), '[0].ruleList[0].destList', /sum to 100 \(they sum to 90\)/);
  });

  it('refuses an unknown operator, naming the tag', () => {
    const doc = parse(fixture('route.yaml'));
    at(doc, 0, 'ruleList', 1, 'tagList', 0).tagOperator = 'CONTAINS';
    throwsField(
      () => convertTsfRoute(doc, 'user-service', orders, () => {}),
      '[0].ruleList[1].tagList[0].tagOperator',
      /EQUAL, NOT_EQUAL, IN, NOT_IN, REGEX/,
    );
  });

  it('refuses a regex RE2 cannot express with core’s check, naming tagValue; accepts one that only backtracking made slow', () => {
    const doc = parse(fixture('route.yaml'));
    at(doc, 0, 'ruleList', 1, 'tagList', 1).tagValue = '(a)\\1';
    throwsField(
      () => convertTsfRoute(doc, 'user-service', orders, () => {}),
      '[0].ruleList[1].tagList[1].tagValue',
      /not expressible in RE2/,
    );
    at(doc, 0, 'ruleList', 1, 'tagList', 1).tagValue = '(a+)+$';
    assert.doesNotThrow(() => convertTsfRoute(doc, 'user-service', orders, () => {}));
  });

  it('reports an unknown field and does not apply it', () => {
    const doc = parse(fixture('route.yaml'));
    at(doc, 0, 'ruleList', 0).matchMode = 'OR';
    const { notices, sink } = collect();
    convertTsfRoute(doc, 'user-service', orders, sink);
    assert.ok(notices.some((n) => n.path === '[0].ruleList[0].matchMode' && /unknown TSF field/.test(n.message)));
  });

  it('keeps no fallback when fallbackStatus is false', () => {
    const doc = parse(fixture('route.yaml'));
    at(doc, 0).fallbackStatus = false;
    const section = convertTsfRoute(doc, 'user-service', orders, () => {}) as { rules: Record<string, unknown>[] };
    assert.equal(section.rules[0]?.fallback, undefined);
  });

  it('refuses a selector on __proto__, constructor or prototype rather than select every instance', () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const doc = parse(fixture('route.yaml'));
      at(doc, 0, 'ruleList', 1, 'destList', 0, 'destItemList', 0).destItemField = key;
      throwsField(
        () => convertTsfRoute(doc, 'user-service', orders, () => {}),
        '[0].ruleList[1].destList[0].destItemList[0].destItemField',
        new RegExp(`"${key}" cannot be a metadata key`),
      );
    }
  });

  it('refuses a document for another service', () => {
    throwsField(
      () => convertTsfRoute(parse(fixture('route.yaml')), 'billing', orders, () => {}),
      '[0].microserviceName',
      /key is for "billing"/,
    );
  });
});

describe('TSF rate limit → Meshlet ratelimit section', () => {
  it('converts quota per duration; destination.interface is the request path; source tags from tsf-metadata', () => {
    const { notices, sink } = collect();
    const section = convertTsfRateLimit(parse(fixture('ratelimit.yaml')), userService, sink);
    assert.deepEqual(section, {
      rules: [
        {
          name: 'ratelimit-a1b2c3d4',
          when: [{ tag: 'request.path', op: 'equals', value: '/limited' }],
          rate: 2,
          per: '60s',
          burst: 2,
          mode: 'local',
        },
        {
          // No limitMode: TSF's default CLUSTER.
          name: 'ratelimit-e5f6g7h8',
          when: [
            { tag: 'source.service.name', op: 'in', values: ['billing', 'invoices'] },
            { tag: 'user-tier', op: 'notEquals', value: 'vip' },
          ],
          rate: 100,
          per: '1s',
          burst: 100,
          mode: 'distributed',
        },
      ],
    });
    assert.deepEqual(notices, []);
    meshletAccepts('ratelimit', section);
  });

  it('converts THREAD limits to concurrency rules: concurrentThreads in flight per instance, a QPS period reported', () => {
    // As TSF's console writes a THREAD rule to ratelimit/<namespace>/<service>/data.
    const yaml = `
rules:
- id: ratelimit-9f8e7d6c
  name: reports-in-flight
  limitMode: CLUSTER
  conditionModel: THREAD
  duration: 1
  quota: 100
  concurrentThreads: 8
  ruleStatus: true
  conditions:
  - tagType: S
    tagField: destination.interface
    tagOperator: EQUAL
    tagValue: /reports/export
  conditionExpression: '{1}'
- id: ratelimit-1a2b3c4d
  name: any-in-flight
  limitMode: STANDALONE
  conditionModel: THREAD
  concurrentThreads: 200
  ruleStatus: true
`;
    const { notices, sink } = collect();
    const section = convertTsfRateLimit(parse(yaml), userService, sink);
    assert.deepEqual(section, {
      rules: [
        { name: 'ratelimit-9f8e7d6c', when: [{ tag: 'request.path', op: 'equals', value: '/reports/export' }], concurrency: 8 },
        { name: 'ratelimit-1a2b3c4d', concurrency: 200 },
      ],
    });
    assert.deepEqual(notices, [
      { path: '.rules[0].duration', message: 'a THREAD limit counts requests in flight (concurrentThreads); not applied' },
      { path: '.rules[0].quota', message: 'a THREAD limit counts requests in flight (concurrentThreads); not applied' },
    ]);
    meshletAccepts('ratelimit', section);
  });

  it('a THREAD rule needs concurrentThreads, bounded by the largest concurrency Meshlet takes', () => {
    const doc = parse(fixture('ratelimit.yaml'));
    at(doc, 'rules', 0).conditionModel = 'thread';
    throwsField(() => convertTsfRateLimit(doc, userService, () => {}), '.rules[0].concurrentThreads', /./);
    at(doc, 'rules', 0).concurrentThreads = 100_001;
    throwsField(() => convertTsfRateLimit(doc, userService, () => {}), '.rules[0].concurrentThreads', /100000/);
  });

  it('refuses unknown condition models and OR expressions rather than guess', () => {
    const doc = parse(fixture('ratelimit.yaml'));
    at(doc, 'rules', 0).conditionModel = 'CPU';
    throwsField(() => convertTsfRateLimit(doc, userService, () => {}), '.rules[0].conditionModel', /not supported/);
    const doc2 = parse(fixture('ratelimit.yaml'));
    at(doc2, 'rules', 1).conditionExpression = '{1} OR {2}';
    throwsField(() => convertTsfRateLimit(doc2, userService, () => {}), '.rules[1].conditionExpression', /other than AND/);
  });
});

describe('TSF circuit breaker → Meshlet breaker section', () => {
  it('converts an API rule with TSF defaults for the omitted fields', () => {
    const section = convertTsfBreaker(parse(fixture('circuitbreaker.yaml')), 'user-service', () => {});
    assert.deepEqual(section, {
      rules: [
        {
          level: 'api',
          window: { type: 'time', ms: 20_000, buckets: 10 },
          failureRateThreshold: 50,
          minimumCalls: 4,
          consecutiveFailures: 0,
          slowCallThresholdMs: 60_000, // TSF default
          slowCallRateThreshold: 50, // TSF default
          sleepWindowMs: 5_000,
          probes: 3,
          apis: [{ method: 'GET', path: '/flaky' }],
        },
      ],
      failureStatuses: ['4xx', '5xx'],
    });
    meshletAccepts('breaker', section);
  });

  it('gives a SERVICE rule without strategies TSF’s default strategy', () => {
    const section = convertTsfBreaker({ isolationLevel: 'SERVICE', targetServiceName: 'user-service' }, 'user-service', () => {});
    assert.deepEqual((section as { rules: unknown[] }).rules[0], {
      level: 'service',
      window: { type: 'time', ms: 10_000, buckets: 10 },
      failureRateThreshold: 50,
      minimumCalls: 10,
      consecutiveFailures: 0,
      slowCallThresholdMs: 60_000,
      slowCallRateThreshold: 50,
      sleepWindowMs: 60_000,
      probes: 3,
    });
    meshletAccepts('breaker', section);
  });

  it('refuses values outside TSF’s bounds and an API rule without APIs', () => {
    const doc = parse(fixture('circuitbreaker.yaml'));
    at(doc, 'strategyList', 0).failureRateThreshold = 0;
    throwsField(() => convertTsfBreaker(doc, 'user-service', () => {}), '.strategyList[0].failureRateThreshold', /between 1 and 100/);
    const doc2 = parse(fixture('circuitbreaker.yaml'));
    at(doc2, 'strategyList', 0).apiList = [];
    throwsField(() => convertTsfBreaker(doc2, 'user-service', () => {}), '.strategyList[0].apiList', /at least one API/);
  });
});

describe('TSF authority → Meshlet auth section', () => {
  it('converts a block list: matching callers denied, the rest allowed', () => {
    const section = convertTsfAuthority(parse(fixture('authority.yaml')), userService, () => {});
    assert.deepEqual(section, {
      default: 'allow',
      rules: [
        {
          name: 'auth-rule-gvk79dyo',
          description: 'no-billing',
          action: 'deny',
          when: [
            { tag: 'source.service.name', op: 'equals', value: 'billing' },
            { tag: 'user', op: 'equals', value: 'test2233' },
          ],
        },
      ],
    });
    meshletAccepts('auth', section);
  });

  it('converts an allow list to allow rules with default deny, and refuses an unknown type', () => {
    const doc = parse(fixture('authority.yaml'));
    at(doc, 0).type = 'W';
    const section = convertTsfAuthority(doc, userService, () => {}) as { default: string; rules: { action: string }[] };
    assert.equal(section.default, 'deny');
    assert.equal(section.rules[0]?.action, 'allow');
    at(doc, 0).type = 'X';
    throwsField(() => convertTsfAuthority(doc, userService, () => {}), '[0].type', /B, W or D/);
  });
});

describe('tsfMetadata', () => {
  it('writes every TSF Meta key, as TSF’s SDKs register them', () => {
    assert.deepEqual(
      tsfMetadata({ applicationId: 'application-a1', groupId: 'group-a', namespaceId: 'namespace-n1', progVersion: '1.0', zone: 'sh-1' }),
      {
        TSF_APPLICATION_ID: 'application-a1',
        TSF_PROG_VERSION: '1.0',
        TSF_GROUP_ID: 'group-a',
        TSF_NAMESPACE_ID: 'namespace-n1',
        TSF_INSTNACE_ID: '',
        TSF_REGION: '',
        TSF_ZONE: 'sh-1',
        TSF_SDK_VERSION: 'meshlet-0.1.0',
        protocol: 'http',
        zone: 'sh-1',
      },
    );
    assert.throws(() => tsfMetadata({ applicationId: 'a', groupId: '', namespaceId: 'n' }), /groupId/);
  });
});
