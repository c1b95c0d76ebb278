import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseRuleDocument, RuleValidationError } from '@meshlet/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseRouteSection, routeRuleKind } from '../src/index.js';

const schema = JSON.parse(readFileSync(new URL('../../schema/route.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);

const gray = {
  rules: [
    {
      name: 'chrome-gray',
      priority: 10,
      when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
      destinations: [
        { group: { version: 'v1.21' }, weight: 20 },
        { group: { version: 'v1.20' }, weight: 80 },
      ],
      fallback: [{ group: { version: 'v1.20' }, weight: 100 }],
    },
  ],
  default: [{ group: { version: 'v1.20' }, weight: 100 }],
  loadBalancer: { type: 'consistentHash', hashTag: 'user-id', virtualNodes: 100 },
  nearby: { enabled: true, minHealthyPercent: 60 },
};

const clone = <T>(x: T): T => structuredClone(x);

const valid: [string, unknown][] = [
  ['the gray-release example', gray],
  ['an empty section', {}],
  ['no rules, only a default', { default: [{ group: {}, weight: 100 }] }],
  [
    'every operator',
    {
      rules: [
        {
          name: 'ops',
          priority: 0,
          when: [
            { tag: 'a', op: 'equals', value: 'x' },
            { tag: 'b', op: 'notEquals', value: 'x' },
            { tag: 'c', op: 'in', values: ['x', 'y'] },
            { tag: 'd', op: 'notIn', values: ['x'] },
            { tag: 'e', op: 'regex', pattern: '^Chrome/[0-9]+' },
            { tag: 'f', op: 'exists' },
            { tag: 'g', op: 'range', min: 1, max: 9 },
            { tag: 'h', op: 'range', max: 9 },
          ],
          destinations: [
            { group: { version: 'a' }, weight: 0 },
            { group: { version: 'b' }, weight: 100 },
          ],
        },
      ],
    },
  ],
  ['round robin', { loadBalancer: { type: 'roundRobin' } }],
  ['a sticky rule', { rules: [{ name: 'sticky', stickyBy: 'user-id', destinations: [{ group: {}, weight: 100 }] }] }],
];

/** [why, document, path the parser must name, also rejected by the schema?] */
const invalid: [string, unknown, string, boolean][] = [
  ['not an object', [], 'route', true],
  ['unknown top-level field', { rule: [] }, 'route.rule', true],
  ['rule without a name', { rules: [{ priority: 1, destinations: [{ group: {}, weight: 100 }] }] }, 'route.rules[0].name', true],
  [
    'negative priority',
    { rules: [{ name: 'r', priority: -1, destinations: [{ group: {}, weight: 100 }] }] },
    'route.rules[0].priority',
    true,
  ],
  [
    'unknown rule field',
    { rules: [{ name: 'r', priority: 1, destinations: [{ group: {}, weight: 100 }], weigth: 1 }] },
    'route.rules[0].weigth',
    true,
  ],
  (() => {
    const d = clone(gray);
    (d.rules[0] as { when: unknown[] }).when[0] = { tag: 'ua.family', op: 'startsWith', value: 'C' };
    return ['unknown operator', d, 'route.rules[0].when[0].op', true] as [string, unknown, string, boolean];
  })(),
  (() => {
    const d = clone(gray);
    (d.rules[0] as { destinations: { weight: number }[] }).destinations[1] = { group: { version: 'v1.20' }, weight: 70 } as never;
    return ['weights not summing to 100', d, 'route.rules[0].destinations', false] as [string, unknown, string, boolean];
  })(),
  ['weight over 100', { default: [{ group: {}, weight: 101 }] }, 'route.default[0].weight', true],
  [
    'fractional weight',
    {
      default: [
        { group: {}, weight: 50.5 },
        { group: {}, weight: 49.5 },
      ],
    },
    'route.default[0].weight',
    true,
  ],
  ['empty destinations', { default: [] }, 'route.default', true],
  ['non-string group value', { default: [{ group: { version: 1 }, weight: 100 }] }, 'route.default[0].group.version', true],
  ['bad metadata key', { default: [{ group: { 'a b': 'x' }, weight: 100 }] }, 'route.default[0].group.a b', true],
  // As a stored document is read: JSON.parse makes "__proto__" an own key (an object literal would not).
  [
    'a "__proto__" metadata key (it would vanish: every instance)',
    JSON.parse('{"default":[{"group":{"__proto__":"canary"},"weight":100}]}'),
    'route.default[0].group.__proto__',
    true,
  ],
  (() => {
    const d = clone(gray);
    (d.rules[0] as { when: unknown[] }).when[0] = { tag: 'ua', op: 'regex', pattern: 'a'.repeat(300) };
    return ['regex too long', d, 'route.rules[0].when[0].pattern', true] as [string, unknown, string, boolean];
  })(),
  (() => {
    const d = clone(gray);
    (d.rules[0] as { when: unknown[] }).when[0] = { tag: 'ua', op: 'regex', pattern: '(?=a)a' };
    return ['a regex RE2 cannot express (lookaround)', d, 'route.rules[0].when[0].pattern', false] as [string, unknown, string, boolean];
  })(),
  [
    'duplicate rule names',
    { rules: [0, 1].map(() => ({ name: 'r', priority: 1, destinations: [{ group: {}, weight: 100 }] })) },
    'route.rules[1].name',
    false,
  ],
  ['unknown balancer', { loadBalancer: { type: 'leastConn' } }, 'route.loadBalancer.type', true],
  ['consistent hash without a tag', { loadBalancer: { type: 'consistentHash' } }, 'route.loadBalancer.hashTag', true],
  ['hashTag on round robin', { loadBalancer: { type: 'roundRobin', hashTag: 'x' } }, 'route.loadBalancer.hashTag', true],
  ...(
    [
      ['that is empty', ''],
      ['that is 129 characters', 'x'.repeat(129)],
      ['that is not a string', 7],
    ] as [string, unknown][]
  ).map(([why, stickyBy]): [string, unknown, string, boolean] => [
    `a stickyBy tag ${why} (a tag name is 1-128 characters, as in a condition)`,
    { rules: [{ name: 'r', stickyBy, destinations: [{ group: {}, weight: 100 }] }] },
    'route.rules[0].stickyBy',
    true,
  ]),
  ['threshold over 100', { nearby: { minHealthyPercent: 120 } }, 'route.nearby.minHealthyPercent', true],
  [
    'range without bounds',
    { rules: [{ name: 'r', priority: 1, when: [{ tag: 'n', op: 'range' }], destinations: [{ group: {}, weight: 100 }] }] },
    'route.rules[0].when[0]',
    true,
  ],
];

describe('route section', () => {
  for (const [why, doc] of valid) {
    it(`accepts ${why}, and so does the schema`, () => {
      assert.doesNotThrow(() => parseRouteSection(doc));
      assert.equal(validate(doc), true, JSON.stringify(validate.errors));
    });
  }

  for (const [why, doc, path, bySchema] of invalid) {
    it(`rejects ${why}, naming ${path}`, () => {
      assert.throws(
        () => parseRouteSection(doc),
        (err: unknown) => err instanceof RuleValidationError && err.path === path && err.code === 'MESHLET_BAD_RULE',
      );
      // Sums, uniqueness and regex safety are beyond JSON Schema: only the parser catches them.
      assert.equal(validate(doc), !bySchema);
    });
  }

  it('parses the gray-release example into typed rules', () => {
    const section = parseRouteSection(gray);
    assert.deepEqual(section.rules[0]?.destinations, [
      { group: { version: 'v1.21' }, weight: 20 },
      { group: { version: 'v1.20' }, weight: 80 },
    ]);
    assert.deepEqual(section.loadBalancer, { type: 'consistentHash', hashTag: 'user-id', virtualNodes: 100 });
    assert.deepEqual(section.nearby, { enabled: true, minHealthyPercent: 60 });
    assert.equal(section.rules[0]?.stickyBy, undefined);
    assert.equal(parseRouteSection({ ...gray, rules: [{ ...gray.rules[0], stickyBy: 'user-id' }] }).rules[0]?.stickyBy, 'user-id');
  });

  it('a selector keeps every metadata key it was given, "constructor" and "prototype" too', () => {
    const text = '{"default":[{"group":{"constructor":"a","prototype":"b","version":"v1"},"weight":100}]}';
    const group = parseRouteSection(JSON.parse(text)).default?.[0]?.group;
    assert.deepEqual(Object.entries(group ?? {}), [
      ['constructor', 'a'],
      ['prototype', 'b'],
      ['version', 'v1'],
    ]);
    assert.throws(
      () =>
        parseRuleDocument(`{"service":"orders","route":{"rules":[],"default":[{"group":{"__proto__":"canary"},"weight":100}]}}`, [
          routeRuleKind,
        ]),
      (err: unknown) => err instanceof RuleValidationError && err.path === 'route.default[0].group.__proto__',
    );
  });

  it('is the `route` kind of core’s rule document', () => {
    const doc = parseRuleDocument(JSON.stringify({ service: 'user-service', route: gray }), [routeRuleKind], 'user-service');
    assert.equal((doc.sections.get('route') as ReturnType<typeof parseRouteSection>).rules[0]?.name, 'chrome-gray');
    assert.throws(
      () =>
        parseRuleDocument(JSON.stringify({ service: 'user-service', route: { default: [{ group: {}, weight: 99 }] } }), [routeRuleKind]),
      /route\.default: weights must sum to 100 \(they sum to 99\)/,
    );
  });
});
