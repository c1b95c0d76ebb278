import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContext, runWithContext, withTags } from '@meshlet/core';
import {
  AuthDeniedError,
  Authorize,
  Authorizer,
  bindVerifiedCaller,
  Deny,
  forbidden,
  parseAuthSection,
  type VerifiedIdentity,
  verifiedCaller,
} from '../src/index.js';

const caller = (service: string, namespace = 'prod'): VerifiedIdentity => ({
  service,
  namespace,
  instance: `${service}-1`,
  issuedAt: 0,
  expiresAt: 30_000,
  keyId: 'k1',
  audience: '',
});
const GET = (path: string) => ({ method: 'GET', path });
const POST = (path: string) => ({ method: 'POST', path });

describe('Authorizer', () => {
  const section = parseAuthSection(
    {
      rules: [
        { name: 'ops-admin', action: 'allow', services: ['ops'], apis: [{ path: '/admin/**' }] },
        { name: 'no-admin', action: 'deny', apis: [{ path: '/admin/**' }] },
        { name: 'no-checkout-refunds', action: 'deny', services: ['checkout'], apis: [{ method: 'POST', path: '/refunds/{id}' }] },
        { name: 'staging-out', action: 'deny', namespaces: ['staging'] },
        { name: 'anon-writes', action: 'deny', identity: 'anonymous', apis: [{ method: 'POST', path: '/**' }] },
        { name: 'vip-only', action: 'deny', apis: [{ path: '/vip/{x}' }], when: [{ tag: 'user-tier', op: 'notEquals', value: 'vip' }] },
        { name: 'no-spoofed-source', action: 'deny', when: [{ tag: 'source.service', op: 'equals', value: 'legacy' }] },
      ],
    },
    'auth',
  );
  const a = new Authorizer({}, section);
  const ruleOf = (c: VerifiedIdentity | undefined, req: { method: string; path: string }, tags: Record<string, string> = {}) => {
    const d = a.decide(c, req, (t) => tags[t]);
    return `${d.allowed ? 'allow' : 'deny'}:${d.rule ?? '(default)'}`;
  };

  it('lets the first matching rule in document order decide', () => {
    assert.equal(ruleOf(caller('ops'), GET('/admin/users')), 'allow:ops-admin');
    assert.equal(ruleOf(caller('cart'), GET('/admin/users')), 'deny:no-admin');
    assert.equal(ruleOf(undefined, GET('/admin')), 'deny:no-admin');
    assert.equal(ruleOf(caller('checkout'), POST('/refunds/7')), 'deny:no-checkout-refunds');
    assert.equal(ruleOf(caller('checkout'), GET('/refunds/7')), 'allow:(default)');
    assert.equal(ruleOf(caller('checkout', 'staging'), GET('/refunds/7')), 'deny:staging-out');
    assert.equal(ruleOf(undefined, POST('/orders')), 'deny:anon-writes');
    assert.equal(ruleOf(caller('cart'), POST('/orders')), 'allow:(default)');
    assert.equal(ruleOf(caller('cart'), GET('/vip/1'), { 'user-tier': 'free' }), 'deny:vip-only');
    assert.equal(ruleOf(caller('cart'), GET('/vip/1'), { 'user-tier': 'vip' }), 'allow:(default)');
  });

  it('reads source.* tags from the verified identity, never from the tag lookup', () => {
    assert.equal(ruleOf(caller('legacy'), GET('/x')), 'deny:no-spoofed-source');
    // A client that types source.service into its tags does not become that service.
    assert.equal(ruleOf(caller('cart'), GET('/x'), { 'source.service': 'legacy' }), 'allow:(default)');
    assert.equal(ruleOf(undefined, GET('/x'), { 'source.service': 'legacy' }), 'allow:(default)');
  });

  it('applies the default action: allow unless the section or the option says deny', () => {
    const deny = new Authorizer({ defaultAction: 'deny' });
    assert.deepEqual(deny.decide(caller('a'), GET('/')), { allowed: false, rule: undefined, reason: 'no rule matched; denied by default' });
    deny.setRules(parseAuthSection({ default: 'allow' }, 'auth'));
    assert.equal(deny.decide(caller('a'), GET('/')).allowed, true, 'the section wins over the option');
    const allow = new Authorizer(
      {},
      parseAuthSection({ default: 'deny', rules: [{ name: 'ok', action: 'allow', services: ['a'] }] }, 'auth'),
    );
    assert.equal(allow.decide(caller('a'), GET('/')).allowed, true);
    assert.equal(allow.decide(caller('b'), GET('/')).allowed, false);
    assert.equal(allow.decide(undefined, GET('/')).allowed, false);
    allow.setRules(undefined);
    assert.equal(allow.decide(undefined, GET('/')).allowed, true, 'no section: the option (allow)');
  });

  it('counts decisions, denials by rule', () => {
    const c = new Authorizer(
      {},
      parseAuthSection({ rules: [{ name: 'no-x', action: 'deny', services: ['x'] }], default: 'allow' }, 'auth'),
    );
    c.decide(caller('x'), GET('/'));
    c.decide(caller('x'), GET('/'));
    c.decide(caller('y'), GET('/'));
    assert.equal(c.stats.allowed, 1);
    assert.equal(c.stats.denied, 2);
    assert.deepEqual([...c.stats.deniedBy], [['no-x', 2]]);
  });

  it('in shadow mode, allows what it would deny, naming the rule, and counts it', () => {
    const rules = [
      { name: 'no-x', action: 'deny', services: ['x'] },
      { name: 'y-ok', action: 'allow', services: ['y'] },
    ];
    const c = new Authorizer({}, parseAuthSection({ mode: 'shadow', rules, default: 'deny' }, 'auth'));
    const byRule = c.decide(caller('x'), GET('/'));
    const byDefault = c.decide(caller('z'), GET('/'));
    const allowed = c.decide(caller('y'), GET('/'));
    assert.deepEqual(
      [byRule, byDefault, allowed].map((d) => [d.allowed, d.shadow]),
      [
        [true, 'no-x'],
        [true, '(default)'],
        [true, undefined],
      ],
    );
    assert.match(byRule.reason, /shadow mode: rule "no-x" denies this call \(not enforced\)/);
    assert.deepEqual([c.stats.allowed, c.stats.denied, c.stats.shadowDenied], [3, 0, 2]);
    // The same rules enforced deny again.
    c.setRules(parseAuthSection({ rules, default: 'deny' }, 'auth'));
    assert.equal(c.decide(caller('x'), GET('/')).allowed, false);
    assert.throws(() => parseAuthSection({ mode: 'audit', rules }, 'auth'), /auth\.mode/);
  });

  it('builds a 403 naming the rule, and an error carrying the decision', () => {
    const d = a.decide(caller('checkout'), POST('/refunds/7'));
    const f = forbidden(d, 'payment');
    assert.equal(f.status, 403);
    assert.equal(f.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(f.body), {
      error: 'forbidden',
      code: 'MESHLET_AUTH_DENIED',
      service: 'payment',
      rule: 'no-checkout-refunds',
      reason: 'rule "no-checkout-refunds" denies this call',
    });
    const err = new AuthDeniedError(d);
    assert.equal(err.code, 'MESHLET_AUTH_DENIED');
    assert.match(err.message, /no-checkout-refunds/);
    assert.equal(JSON.parse(forbidden(new Authorizer({ defaultAction: 'deny' }).decide(undefined, GET('/')), 's').body).rule, '(default)');
  });
});

describe('@Authorize / @Deny', () => {
  const as = <T>(identity: VerifiedIdentity | undefined, fn: () => T): T => {
    const ctx = createContext({ caller: { service: 'billing' } /* unsigned header: must not count */ });
    bindVerifiedCaller(ctx, identity);
    return runWithContext(ctx, fn);
  };

  class Refunds {
    @Authorize({ services: ['billing'], namespaces: ['prod'] })
    async refund(id: string): Promise<string> {
      return `refunded ${id}`;
    }

    @Deny({ name: 'no-checkout', services: ['checkout'] })
    list(): string {
      return 'list';
    }
  }

  it('lets only the matching verified caller run an @Authorize method (TC39 form)', async () => {
    const r = new Refunds();
    assert.equal(await as(caller('billing'), () => r.refund('1')), 'refunded 1');
    await assert.rejects(
      as(caller('billing', 'staging'), () => r.refund('1')),
      (e: unknown) => e instanceof AuthDeniedError && e.decision.rule === 'refund' && /does not allow this caller$/.test(e.decision.reason),
    );
    // The context's caller says billing (from the unsigned header), but nothing was verified:
    // the refusal says so (a stranger with auth off got "does not allow this caller" only).
    await assert.rejects(
      as(undefined, () => r.refund('1')),
      (e: unknown) => e instanceof AuthDeniedError && /no verified caller .*is the mesh's auth on/.test(e.decision.reason),
    );
    assert.equal(verifiedCaller(createContext()), undefined);
  });

  it('lets the verified caller run an @Authorize method inside withTags (the same request, the same caller)', async () => {
    const r = new Refunds();
    assert.equal(await as(caller('billing'), () => withTags({ tier: 'vip' }, () => r.refund('2'))), 'refunded 2');
    await assert.rejects(
      as(undefined, () => withTags({ tier: 'vip' }, () => r.refund('2'))),
      AuthDeniedError,
    );
  });

  it('refuses the callers a @Deny method names, synchronously', () => {
    const r = new Refunds();
    assert.equal(
      as(caller('cart'), () => r.list()),
      'list',
    );
    assert.equal(
      as(undefined, () => r.list()),
      'list',
    );
    assert.throws(
      () => as(caller('checkout'), () => r.list()),
      (e: unknown) => e instanceof AuthDeniedError && e.decision.rule === 'no-checkout',
    );
  });

  it('works as a legacy experimentalDecorators decorator (target, key, descriptor)', () => {
    class Legacy {
      remove(id: string): string {
        return `removed ${id}`;
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(Legacy.prototype, 'remove') as PropertyDescriptor;
    Object.defineProperty(Legacy.prototype, 'remove', Authorize({ identity: 'verified' })(Legacy.prototype, 'remove', descriptor));
    const l = new Legacy();
    assert.equal(
      as(caller('any'), () => l.remove('1')),
      'removed 1',
    );
    assert.throws(() => as(undefined, () => l.remove('1')), AuthDeniedError);
  });

  // Found by trying it: a misspelt field (`service` for `services`) was dropped, which left a
  // rule that matched every caller, so @Authorize let anyone run the method, the anonymous too.
  it('refuses a spec with a misspelt field or no matcher at all, instead of letting every caller in', () => {
    const decorate = (spec: object) => () =>
      Authorize(spec as never)(async function refund() {}, { kind: 'method', name: 'refund' } as ClassMethodDecoratorContext);
    assert.throws(decorate({ service: ['billing'] }), (e: unknown) => (e as { path?: string }).path === '@Authorize.service');
    assert.throws(decorate({ name: 'refund' }), (e: unknown) => (e as { path?: string }).path === '@Authorize');
    assert.throws(decorate({}), (e: unknown) => (e as { path?: string }).path === '@Authorize');
    assert.throws(
      () => Deny({ namespace: ['staging'] } as never)(function list() {}, { kind: 'method', name: 'list' } as ClassMethodDecoratorContext),
      (e: unknown) => (e as { path?: string }).path === '@Deny.namespace',
    );
  });

  it('validates its spec at decoration with the rule parser', () => {
    assert.throws(
      () => Authorize({ services: ['bad_name'] })(function f() {}, { kind: 'method', name: 'f' } as ClassMethodDecoratorContext),
      /@Authorize\.services\[0\]/,
    );
    assert.throws(() => Deny({})({}, 'x', { value: 1 }), /goes on a method/);
  });
});
