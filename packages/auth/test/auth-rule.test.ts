import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { InMemoryKvStore, MemoryLogger, parseRuleDocument, RULES_PREFIX, RuleWatcher } from '@meshlet/core';
import { assertRuleRefused } from '@meshlet/core/testing';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Authorizer, type AuthSection, authRuleKind, parseAuthSection } from '../src/index.js';

const schema = JSON.parse(readFileSync(new URL('../../schema/auth.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true, strict: false, validateFormats: false }).compile(schema);

/** Asserts the section is refused with RuleValidationError at `path`. */
const refused = (section: unknown, path: string, reason?: RegExp): void =>
  assertRuleRefused(() => parseAuthSection(section, 'auth'), path, reason);

const one = (rule: Record<string, unknown>) => ({ rules: [{ name: 'r', action: 'deny', ...rule }] });

const VALID: unknown[] = [
  {},
  { default: 'deny' },
  { default: 'allow', rules: [] },
  one({}),
  one({ services: ['checkout', 'cart'], namespaces: ['prod'] }),
  one({ identity: 'anonymous' }),
  one({ identity: 'verified', action: 'allow' }),
  one({ apis: [{ path: '/refunds/{id}' }, { method: 'POST', path: '/files/{name}.{ext}' }, { method: '*', path: '/static/**' }] }),
  one({ apis: [{ method: 'DELETE', path: '/users/:id' }] }),
  one({
    when: [
      { tag: 'source.service', op: 'equals', value: 'checkout' },
      { tag: 'user-tier', op: 'in', values: ['vip'] },
    ],
  }),
  one({
    description: 'why',
    when: [
      { tag: 'x', op: 'exists' },
      { tag: 'n', op: 'range', min: 1 },
    ],
  }),
];

const INVALID: [unknown, string, RegExp?][] = [
  [[], 'auth', /object/],
  [{ rulez: [] }, 'auth.rulez', /unknown field/],
  [{ default: 'maybe' }, 'auth.default', /"allow", "deny"/],
  [{ rules: {} }, 'auth.rules', /array/],
  [one({ action: 'permit' }), 'auth.rules[0].action', /"allow", "deny"/],
  [{ rules: [{ name: 'r' }] }, 'auth.rules[0].action'],
  [{ rules: [{ action: 'deny' }] }, 'auth.rules[0].name', /string/],
  [one({ name: 'has space' }), 'auth.rules[0].name'],
  [one({ caller: 'checkout' }), 'auth.rules[0].caller', /unknown field/],
  [one({ services: [] }), 'auth.rules[0].services', /not be empty/],
  [one({ services: ['bad_name'] }), 'auth.rules[0].services[0]', /service name/],
  [one({ services: 'checkout' }), 'auth.rules[0].services', /array/],
  [one({ namespaces: [''] }), 'auth.rules[0].namespaces[0]'],
  [one({ identity: 'signed' }), 'auth.rules[0].identity'],
  [one({ identity: 'anonymous', services: ['a'] }), 'auth.rules[0].identity', /anonymous/],
  [one({ apis: [] }), 'auth.rules[0].apis', /not be empty/],
  [one({ apis: [{ method: 'FETCH', path: '/a' }] }), 'auth.rules[0].apis[0].method'],
  [one({ apis: [{ method: 'get', path: '/a' }] }), 'auth.rules[0].apis[0].method'],
  [one({ apis: [{ path: 'a' }] }), 'auth.rules[0].apis[0].path', /start with/],
  [one({ apis: [{ path: '/a/**/b' }] }), 'auth.rules[0].apis[0].path', /last segment/],
  [one({ apis: [{ path: '/a/{x}{y}' }] }), 'auth.rules[0].apis[0].path', /side by side/],
  [one({ apis: [{ path: '/a', verb: 'GET' }] }), 'auth.rules[0].apis[0].verb', /unknown field/],
  [one({ when: [{ tag: 'x', op: 'like', value: 'y' }] }), 'auth.rules[0].when[0].op', /"equals"/],
  [one({ when: [{ tag: 'x', op: 'equals', value: 'y', values: [] }] }), 'auth.rules[0].when[0].values', /unknown field/],
  [one({ when: [{ tag: 'x', op: 'equals' }] }), 'auth.rules[0].when[0].value'],
];

describe('auth rules', () => {
  it('parses a section with defaults filled in', () => {
    const s = parseAuthSection(
      {
        default: 'deny',
        rules: [
          { name: 'ops', action: 'allow', services: ['ops'], apis: [{ path: '/admin/**' }] },
          { name: 'anon', action: 'deny', identity: 'anonymous', apis: [{ method: 'POST', path: '/users/:id/' }] },
        ],
      },
      'auth',
    );
    assert.equal(s.defaultAction, 'deny');
    assert.deepEqual(s.rules[0], {
      name: 'ops',
      action: 'allow',
      services: ['ops'],
      namespaces: [],
      identity: 'any',
      apis: [{ method: '*', path: '/admin/**' }],
      when: [],
    });
    assert.deepEqual(s.rules[1]?.apis, [{ method: 'POST', path: '/users/{id}' }]);
    assert.equal(parseAuthSection({}, 'auth').defaultAction, undefined);
  });

  it('refuses bad input with a RuleValidationError naming the field', () => {
    for (const [section, path, reason] of INVALID) refused(section, path, reason);
    refused(
      {
        rules: [
          { name: 'a', action: 'deny' },
          { name: 'a', action: 'allow' },
        ],
      },
      'auth.rules[1].name',
      /unique/,
    );
  });

  it('agrees with its JSON Schema', () => {
    for (const s of VALID) {
      assert.doesNotThrow(() => parseAuthSection(s, 'auth'), JSON.stringify(s));
      assert.equal(validate(s), true, `${JSON.stringify(s)}: ${JSON.stringify(validate.errors)}`);
    }
    for (const [s] of INVALID) assert.equal(validate(s), false, `schema accepted ${JSON.stringify(s)}`);
  });

  it('is the auth section of a rule document', () => {
    const doc = parseRuleDocument(JSON.stringify({ service: 'payment', auth: one({ services: ['checkout'] }) }), [authRuleKind]);
    assert.equal((doc.sections.get('auth') as AuthSection).rules[0]?.services[0], 'checkout');
    assert.throws(
      () => parseRuleDocument(JSON.stringify({ service: 'payment', auth: one({ services: ['checkout'], op: 1 }) }), [authRuleKind]),
      /auth\.rules\[0\]\.op: unknown field/,
    );
  });

  it('follows a RuleWatcher: a bad document leaves the last good rules in force', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const key = `${RULES_PREFIX}payment`;
    const watcher = new RuleWatcher({ kv, service: 'payment', kinds: [authRuleKind], logger });
    const authorizer = new Authorizer();
    authorizer.follow(watcher);
    watcher.start();
    await watcher.ready;
    const checkout = { service: 'checkout', namespace: 'prod', instance: 'c-1' };
    const refund = { method: 'POST', path: '/refunds/9' };
    assert.equal(authorizer.decide(checkout, refund).allowed, true, 'no document: allow by default');

    const good = { service: 'payment', auth: one({ name: 'no-checkout', services: ['checkout'], apis: [{ path: '/refunds/{id}' }] }) };
    await kv.put(key, JSON.stringify(good));
    assert.deepEqual(authorizer.decide(checkout, refund), {
      allowed: false,
      rule: 'no-checkout',
      reason: 'rule "no-checkout" denies this call',
    });

    const bad = {
      service: 'payment',
      auth: one({ name: 'no-checkout', services: ['checkout'], apis: [{ path: '/refunds/{id}' }], op: 'x' }),
    };
    await kv.put(key, JSON.stringify(bad));
    assert.equal(watcher.status.rejected, 1);
    assert.equal(watcher.status.lastError?.path, 'auth.rules[0].op');
    assert.equal(authorizer.decide(checkout, refund).rule, 'no-checkout', 'last good rules stay');
    assert.ok(logger.entries.some((e) => e.level === 'error' && e.fields?.path === 'auth.rules[0].op'));

    await kv.delete(key);
    assert.equal(authorizer.decide(checkout, refund).allowed, true, 'deleted document: no rules');
    watcher.close();
  });
});
