// Concurrency rules: at most N matching requests in flight, slots given back by release().
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, RuleValidationError } from '@meshlet/core';
import {
  ConcurrencySlots,
  type LimitedRequest,
  RateLimit,
  RateLimiter,
  type RedisCommand,
  RedisTokenBuckets,
  rejection,
} from '../src/index.js';
import { req, section, sync } from './limiter-helpers.js';

/** Decides and asserts it was allowed; returns its release. */
function admit(limiter: RateLimiter, request: LimitedRequest): () => void {
  const d = sync(limiter.decide(request));
  assert.equal(d.allowed, true, `refused by ${d.rule?.name}`);
  assert.ok(d.allowed);
  return d.release;
}

function refusedBy(limiter: RateLimiter, request: LimitedRequest): string {
  const d = sync(limiter.decide(request));
  assert.equal(d.allowed, false, 'expected a refusal');
  assert.ok(!d.allowed);
  return d.rule.name;
}

describe('RateLimiter (concurrency rules)', () => {
  it('admits N in flight, refuses the next with a 429 naming the rule, admits again after a release', () => {
    const limiter = new RateLimiter({ service: 'reports' });
    limiter.setRules(section([{ name: 'two-reports', api: { method: 'GET', path: '/reports/{id}' }, concurrency: 2 }]));
    const first = admit(limiter, req('GET', '/reports/1'));
    admit(limiter, req('GET', '/reports/2'));
    assert.equal(limiter.stats.inFlight, 2);

    const third = sync(limiter.decide(req('GET', '/reports/3')));
    assert.ok(!third.allowed);
    assert.equal(third.retryAfterSeconds, 1);
    assert.deepEqual(third.rule, { name: 'two-reports', scope: 'api', concurrency: 2, mode: 'local' });
    const r = rejection(third, 'reports');
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '1');
    assert.deepEqual(JSON.parse(r.body), {
      error: 'rate_limited',
      code: 'MESHLET_RATE_LIMITED',
      service: 'reports',
      rule: 'two-reports',
      scope: 'api',
      limit: '2 in flight',
      retryAfterSeconds: 1,
    });
    admit(limiter, req('POST', '/reports/1'))(); // other methods are not counted

    first();
    assert.equal(limiter.stats.inFlight, 1);
    admit(limiter, req('GET', '/reports/4'));
    assert.equal(refusedBy(limiter, req('GET', '/reports/5')), 'two-reports');
    assert.deepEqual({ allowed: limiter.stats.allowed, refused: limiter.stats.refused }, { allowed: 4, refused: 2 });
  });

  it('gives a slot back once however often release is called', () => {
    const limiter = new RateLimiter({ service: 'reports' });
    limiter.setRules(section([{ name: 'one', concurrency: 2 }]));
    const a = admit(limiter, req('GET', '/'));
    const b = admit(limiter, req('GET', '/'));
    a();
    a();
    a();
    assert.equal(limiter.stats.inFlight, 1, 'a second and third call change nothing');
    admit(limiter, req('GET', '/'));
    assert.equal(refusedBy(limiter, req('GET', '/')), 'one');
    b();
    assert.equal(limiter.stats.inFlight, 1);
  });

  it('a request that holds no slot gets a release that does nothing', () => {
    const limiter = new RateLimiter({ service: 'reports' });
    limiter.setRules(section([{ name: 'reports', api: { path: '/reports' }, concurrency: 1 }]));
    const held = admit(limiter, req('GET', '/reports'));
    admit(limiter, req('GET', '/other'))();
    assert.equal(limiter.stats.inFlight, 1);
    assert.equal(refusedBy(limiter, req('GET', '/reports')), 'reports');
    held();
    assert.equal(limiter.stats.inFlight, 0);
  });

  it('splits slots by tag values; requests without the tag share one set', () => {
    const limiter = new RateLimiter({ service: 'reports' });
    limiter.setRules(section([{ name: 'per-user', by: ['user-id'], concurrency: 1 }]));
    const ann = admit(limiter, req('GET', '/', { 'user-id': 'ann' }));
    admit(limiter, req('GET', '/', { 'user-id': 'bob' }));
    assert.equal(refusedBy(limiter, req('GET', '/', { 'user-id': 'ann' })), 'per-user');
    admit(limiter, req('GET', '/'));
    assert.equal(refusedBy(limiter, req('GET', '/')), 'per-user');
    assert.equal(refusedBy(limiter, req('GET', '/', { 'user-id': 'x'.repeat(10_000) })), 'per-user', 'an oversized value shares too');
    ann();
    admit(limiter, req('GET', '/', { 'user-id': 'ann' }));
  });

  it('takes slots and tokens only when every matching rule admits', () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ service: 'reports', clock });
    limiter.setRules(
      section([
        { name: 'tokens', rate: 1, unit: 'hour', burst: 2 },
        { name: 'slots', concurrency: 1 },
      ]),
    );
    const held = admit(limiter, req('GET', '/'));
    // Slots full: refused without spending the one token left.
    assert.equal(refusedBy(limiter, req('GET', '/')), 'slots');
    held();
    const second = admit(limiter, req('GET', '/'));
    second();
    // Tokens gone: refused without taking the free slot.
    assert.equal(refusedBy(limiter, req('GET', '/')), 'tokens');
    assert.equal(limiter.stats.inFlight, 0);
  });

  it('keeps slots held across a reload; a new number applies at once; a removed rule no longer limits', () => {
    const limiter = new RateLimiter({ service: 'reports' });
    limiter.setRules(section([{ name: 'slots', concurrency: 2 }]));
    const a = admit(limiter, req('GET', '/'));
    const b = admit(limiter, req('GET', '/'));
    limiter.setRules(section([{ name: 'slots', concurrency: 2 }]));
    assert.equal(refusedBy(limiter, req('GET', '/')), 'slots', 'same rule: the two held slots still count');
    limiter.setRules(section([{ name: 'slots', concurrency: 3 }]));
    const c = admit(limiter, req('GET', '/'));
    assert.equal(refusedBy(limiter, req('GET', '/')), 'slots');
    limiter.setRules(section([{ name: 'slots', concurrency: 1 }]));
    a();
    b();
    assert.equal(refusedBy(limiter, req('GET', '/')), 'slots', 'one still held against a limit of 1');
    c();
    const d = admit(limiter, req('GET', '/'));
    limiter.setRules(section([{ name: 'other', rate: 1, unit: 'hour', burst: 5 }]));
    assert.equal(limiter.stats.inFlight, 0, 'the removed rule is no longer counted');
    d(); // a release after its rule was removed is harmless
    assert.equal(limiter.stats.inFlight, 0);
  });

  it('with a distributed rule: Redis refusing leaves no slot held; Redis admitting holds it until release', async () => {
    const clock = new ManualClock(0);
    let admitted = false;
    const send: RedisCommand = async () => (admitted ? [1, 0, 0] : [0, 5000, 1]);
    const limiter = new RateLimiter({ service: 'reports', clock, redis: new RedisTokenBuckets({ send, clock }) });
    limiter.setRules(
      section([
        { name: 'slots', concurrency: 1 },
        { name: 'shared', rate: 1, unit: 'hour', burst: 10, mode: 'distributed' },
      ]),
    );
    const refused = await limiter.decide(req('GET', '/'));
    assert.equal(refused.rule?.name, 'shared');
    assert.equal(limiter.stats.inFlight, 0);
    admitted = true;
    const allowed = await limiter.decide(req('GET', '/'));
    assert.ok(allowed.allowed);
    assert.equal(limiter.stats.inFlight, 1);
    assert.equal((await limiter.decide(req('GET', '/'))).rule?.name, 'slots');
    allowed.release();
    assert.equal(limiter.stats.inFlight, 0);
  });

  it('@RateLimit refuses a concurrency limit: a method cannot say when its request ends', () => {
    // Typed options have no `concurrency`; plain JavaScript can still pass it.
    const options = { concurrency: 2 } as unknown as Parameters<typeof RateLimit>[0];
    assert.throws(
      () => RateLimit(options)(Object.prototype, 'm', { value: () => 1 }),
      (err: unknown) => err instanceof RuleValidationError && err.path === '@RateLimit.concurrency',
    );
  });
});

describe('ConcurrencySlots', () => {
  it('counts per key and forgets a key whose slots are all back', () => {
    const slots = new ConcurrencySlots(2);
    slots.take('a');
    slots.take('a');
    slots.take('b');
    assert.deepEqual([slots.hasFree('a'), slots.hasFree('b'), slots.total], [false, true, 3]);
    slots.give('a');
    slots.give('a');
    slots.give('a'); // more gives than takes cannot go below zero
    assert.deepEqual([slots.held('a'), slots.total], [0, 1]);
    assert.throws(() => new ConcurrencySlots(0), RangeError);
  });
});
