import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseRuleDocument, RuleValidationError } from '@meshlet/core';
import { assertRuleRefused } from '@meshlet/core/testing';
import { Ajv2020 } from 'ajv/dist/2020.js';
import {
  isConcurrencyRule,
  parsePathTemplate,
  parseRateLimitSection,
  type RateLimitRule,
  type RateLimitSection,
  ratelimitRuleKind,
  type TokenBucketRule,
} from '../src/index.js';

const schema = JSON.parse(readFileSync(new URL('../../schema/ratelimit.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true }).compile(schema);

/** Asserts the section is refused with RuleValidationError at `path`. */
const refused = (section: unknown, path: string, reason?: RegExp): void =>
  assertRuleRefused(() => parseRateLimitSection(section, 'ratelimit'), path, reason);

const one = (rule: Record<string, unknown>) => ({ rules: [{ name: 'r', rate: 10, ...rule }] });
/** A concurrency rule named "r", for the "exactly one form" cases. */
const slots = (rule: Record<string, unknown>) => ({ rules: [{ name: 'r', concurrency: 2, ...rule }] });

function bucket(rule: RateLimitRule | undefined): TokenBucketRule {
  assert.ok(rule !== undefined && !isConcurrencyRule(rule), 'a token bucket rule');
  return rule;
}

describe('ratelimit rules', () => {
  it('parses every scope with defaults filled in', () => {
    const section = parseRateLimitSection(
      {
        rules: [
          { name: 'service', rate: 100 },
          { name: 'orders', api: { method: 'POST', path: '/orders/{id}' }, rate: 10, unit: 'minute', burst: 5 },
          {
            name: 'free-tier',
            when: [{ tag: 'user-tier', op: 'equals', value: 'free' }],
            by: ['user-id'],
            rate: 2,
            per: '500ms',
            burst: 4,
            mode: 'distributed',
          },
        ],
      },
      'ratelimit',
    );
    const [service, orders, free] = section.rules;
    assert.deepEqual(service, { name: 'service', when: [], by: [], rate: 100, perMs: 1000, burst: 100, mode: 'local' });
    assert.deepEqual(orders?.api, { method: 'POST', path: '/orders/{id}' });
    assert.equal(bucket(orders).perMs, 60_000);
    assert.equal(bucket(free).perMs, 500);
    assert.equal(free?.mode, 'distributed');
    assert.deepEqual(free?.by, ['user-id']);
  });

  it('is the ratelimit section of a rule document', () => {
    const doc = parseRuleDocument(JSON.stringify({ service: 'orders', ratelimit: one({}) }), [ratelimitRuleKind]);
    assert.equal((doc.sections.get('ratelimit') as RateLimitSection).rules[0]?.name, 'r');
    assert.throws(
      () => parseRuleDocument(JSON.stringify({ service: 'orders', ratelimit: one({ rate: -1 }) }), [ratelimitRuleKind]),
      /ratelimit\.rules\[0\]\.rate/,
    );
  });

  it('refuses bad input naming the field', () => {
    refused(one({ rate: -5 }), 'ratelimit.rules[0].rate', /greater than 0/);
    refused(one({ rate: 0 }), 'ratelimit.rules[0].rate');
    refused(one({ burst: 0 }), 'ratelimit.rules[0].burst', /at least 1/);
    refused(one({ burst: 2.5 }), 'ratelimit.rules[0].burst', /whole number/);
    refused(one({ unit: 'fortnight' }), 'ratelimit.rules[0].unit', /"second", "minute", "hour"/);
    refused(one({ unit: 'second', per: '1s' }), 'ratelimit.rules[0].per', /not both/);
    refused(one({ per: '10 seconds' }), 'ratelimit.rules[0].per');
    refused(one({ per: '25h' }), 'ratelimit.rules[0].per');
    refused(one({ mode: 'global' }), 'ratelimit.rules[0].mode');
    refused(one({ burts: 3 }), 'ratelimit.rules[0].burts', /unknown field/);
    refused(one({ rate: '10' }), 'ratelimit.rules[0].rate', /number/);
    refused(one({ name: 'has space' }), 'ratelimit.rules[0].name');
    refused(one({ api: { method: 'FETCH', path: '/a' } }), 'ratelimit.rules[0].api.method');
    refused(one({ api: { path: 'orders' } }), 'ratelimit.rules[0].api.path', /start with/);
    refused(one({ api: { path: '/a/**/b' } }), 'ratelimit.rules[0].api.path', /last segment/);
    refused(one({ api: { path: '/a/{id' } }), 'ratelimit.rules[0].api.path');
    refused(one({ api: { path: '/a//b' } }), 'ratelimit.rules[0].api.path', /empty segment/);
    refused(one({ api: { path: '/a/{id}/b/{id}' } }), 'ratelimit.rules[0].api.path', /twice/);
    refused(one({ api: { path: '/a/{x}{y}' } }), 'ratelimit.rules[0].api.path', /side by side/);
    refused(one({ when: [{ tag: 'x', op: 'like', value: 'y' }] }), 'ratelimit.rules[0].when[0].op');
    refused(one({ by: ['a', 'a'] }), 'ratelimit.rules[0].by[1]', /twice/);
    refused(
      {
        rules: [
          { name: 'r', rate: 1 },
          { name: 'r', rate: 2 },
        ],
      },
      'ratelimit.rules[1].name',
      /unique/,
    );
    refused({ rule: [] }, 'ratelimit.rule');
    refused({}, 'ratelimit.rules');
  });

  it('parses a concurrency rule: requests in flight, always local', () => {
    const section = parseRateLimitSection(
      {
        rules: [
          { name: 'reports', api: { method: 'GET', path: '/reports/**' }, concurrency: 2 },
          { name: 'per-user', by: ['user-id'], concurrency: 100000, mode: 'local' },
        ],
      },
      'ratelimit',
    );
    assert.deepEqual(section.rules, [
      { name: 'reports', api: { method: 'GET', path: '/reports/**' }, when: [], by: [], concurrency: 2, mode: 'local' },
      { name: 'per-user', when: [], by: ['user-id'], concurrency: 100000, mode: 'local' },
    ]);
    assert.equal(isConcurrencyRule(section.rules[0] as RateLimitRule), true);
    assert.equal(isConcurrencyRule(bucket(parseRateLimitSection(one({}), 'ratelimit').rules[0])), false);
  });

  it('takes exactly one of rate and concurrency, naming the field', () => {
    refused({ rules: [{ name: 'r' }] }, 'ratelimit.rules[0].rate', /"rate" .*or "concurrency"/);
    refused(one({ concurrency: 2 }), 'ratelimit.rules[0].rate', /not both/);
    refused(slots({ unit: 'second' }), 'ratelimit.rules[0].unit', /not both/);
    refused(slots({ per: '1s' }), 'ratelimit.rules[0].per', /not both/);
    refused(slots({ burst: 2 }), 'ratelimit.rules[0].burst', /not both/);
    refused(slots({ concurrency: 0 }), 'ratelimit.rules[0].concurrency', /between 1 and 100000/);
    refused(slots({ concurrency: 100001 }), 'ratelimit.rules[0].concurrency', /between 1 and 100000/);
    refused(slots({ concurrency: 1.5 }), 'ratelimit.rules[0].concurrency', /whole number/);
    refused(slots({ concurrency: '2' }), 'ratelimit.rules[0].concurrency', /number/);
    refused(slots({ mode: 'distributed' }), 'ratelimit.rules[0].mode', /only "local"/);
  });

  it('matches path templates', () => {
    const orders = parsePathTemplate('/orders/{id}', 'p');
    assert.equal(orders('/orders/42'), true);
    assert.equal(orders('/orders/42/'), true);
    assert.equal(orders('/orders'), false);
    assert.equal(orders('/orders/42/items'), false);
    const rest = parsePathTemplate('/static/**', 'p');
    assert.equal(rest('/static'), true);
    assert.equal(rest('/static/a/b.css'), true);
    assert.equal(rest('/staticx'), false);
    const dotted = parsePathTemplate('/v1.0/*/x', 'p');
    assert.equal(dotted('/v1.0/a/x'), true);
    assert.equal(dotted('/v1a0/a/x'), false, 'a dot is a literal');
    // The template syntax is core's PathTemplate, the same as auth and breaker rules read.
    const express = parsePathTemplate('/orders/:id', 'p');
    assert.equal(express('/orders/42'), true);
    assert.equal(express('/orders'), false);
    const mixed = parsePathTemplate('/files/{name}.{ext}', 'p');
    assert.equal(mixed('/files/a.tar.gz'), true);
    assert.equal(mixed('/files/readme'), false);
    assert.throws(
      () => parsePathTemplate('/a/{x}/{x}', 'p'),
      (e: unknown) => e instanceof RuleValidationError && e.path === 'p',
    );
  });

  it('agrees with its JSON Schema', () => {
    const valid: unknown[] = [
      { rules: [] },
      one({}),
      one({ unit: 'hour', burst: 1, mode: 'distributed' }),
      one({ per: '250ms' }),
      one({ api: { path: '/orders/{id}/items/*' } }),
      one({ api: { method: '*', path: '/static/**' } }),
      one({ api: { path: '/orders/:id/' } }),
      one({ api: { path: '/files/{name}.{ext}' } }),
      one({
        when: [
          { tag: 'caller', op: 'in', values: ['a', 'b'] },
          { tag: 'x', op: 'exists' },
        ],
        by: ['user-id'],
      }),
      one({ when: [{ tag: 'n', op: 'range', min: 1 }] }),
      slots({}),
      slots({ concurrency: 100000, mode: 'local', by: ['user-id'], api: { path: '/reports/**' } }),
      slots({ concurrency: 1, when: [{ tag: 'x', op: 'exists' }] }),
    ];
    const invalid: unknown[] = [
      {},
      { rules: [], extra: 1 },
      one({ rate: -1 }),
      one({ rate: 0 }),
      one({ burst: 0 }),
      one({ burst: 1.5 }),
      one({ unit: 'fortnight' }),
      one({ unit: 'second', per: '1s' }),
      one({ per: '1 s' }),
      one({ mode: 'global' }),
      one({ burts: 1 }),
      one({ name: '' }),
      one({ api: { path: 'x' } }),
      one({ api: { path: '/a/**/b' } }),
      one({ api: { path: '/a//b' } }),
      one({ api: { path: '/a/{x}{y}' } }),
      one({ api: { method: 'get', path: '/a' } }),
      one({ by: ['a', 'a'] }),
      one({ when: [{ tag: 'x', op: 'equals' }] }),
      one({ when: [{ tag: 'x', op: 'range' }] }),
      { rules: [{ rate: 1 }] },
      { rules: [{ name: 'r' }] },
      one({ concurrency: 2 }),
      slots({ unit: 'second' }),
      slots({ per: '1s' }),
      slots({ burst: 2 }),
      slots({ concurrency: 0 }),
      slots({ concurrency: 100001 }),
      slots({ concurrency: 1.5 }),
      slots({ concurrency: '2' }),
      slots({ mode: 'distributed' }),
    ];
    for (const doc of valid) {
      assert.equal(validate(doc), true, `schema refused ${JSON.stringify(doc)}: ${JSON.stringify(validate.errors)}`);
      assert.doesNotThrow(() => parseRateLimitSection(doc, 'ratelimit'), `parser refused ${JSON.stringify(doc)}`);
    }
    for (const doc of invalid) {
      assert.equal(validate(doc), false, `schema accepted ${JSON.stringify(doc)}`);
      assert.throws(() => parseRateLimitSection(doc, 'ratelimit'), RuleValidationError, `parser accepted ${JSON.stringify(doc)}`);
    }
  });
});
