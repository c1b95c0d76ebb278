import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContext, ManualClock, RuleValidationError, runWithContext } from '@meshlet/core';
import { declaredRateLimits, RateLimit, RateLimitedError, rejection } from '../src/index.js';

describe('@RateLimit', () => {
  it('limits a method as a standard decorator; over the limit the method does not run', async () => {
    const clock = new ManualClock(0);
    let ran = 0;
    class Orders {
      @RateLimit({ name: 'orders.create', rate: 1, unit: 'second', burst: 2, clock })
      async create(id: number): Promise<number> {
        ran++;
        return id;
      }
    }
    const orders = new Orders();
    assert.equal(await orders.create(1), 1);
    assert.equal(await new Orders().create(2), 2, 'shared by every instance');
    await assert.rejects(orders.create(3), (err: unknown) => {
      assert.ok(err instanceof RateLimitedError);
      assert.equal(err.code, 'MESHLET_RATE_LIMITED');
      assert.equal(err.decision.rule.name, 'orders.create');
      assert.equal(err.retryAfterSeconds, 1);
      assert.equal(rejection(err.decision, 'orders').status, 429);
      return true;
    });
    assert.equal(ran, 2);
    clock.advance(1000);
    assert.equal(await orders.create(4), 4);
    assert.ok(declaredRateLimits().some((r) => r.name === 'orders.create'));
  });

  it('works as a legacy experimentalDecorators decorator (target, key, descriptor)', () => {
    const clock = new ManualClock(0);
    class Legacy {
      greet(name: string): string {
        return `hi ${name}`;
      }
    }
    const descriptor = Object.getOwnPropertyDescriptor(Legacy.prototype, 'greet') as PropertyDescriptor;
    const decorated = RateLimit({ rate: 1, unit: 'minute', burst: 1, clock })(Legacy.prototype, 'greet', descriptor);
    Object.defineProperty(Legacy.prototype, 'greet', decorated);
    const legacy = new Legacy();
    assert.equal(legacy.greet('ann'), 'hi ann');
    assert.throws(
      () => legacy.greet('bob'),
      (err: unknown) => err instanceof RateLimitedError && err.decision.rule.name === 'greet' && err.retryAfterSeconds === 60,
    );
  });

  it("splits the limit by the current request's tags", () => {
    const clock = new ManualClock(0);
    class Api {
      @RateLimit({ rate: 1, unit: 'hour', burst: 1, by: ['user-id'], clock })
      get(): string {
        return 'ok';
      }
    }
    const api = new Api();
    const as = (user: string) => runWithContext(createContext({ tags: [['user-id', user]] }), () => api.get());
    assert.equal(as('ann'), 'ok');
    assert.equal(as('bob'), 'ok');
    assert.throws(() => as('ann'), RateLimitedError);
  });

  it('refuses bad options at decoration, with the rule errors', () => {
    assert.throws(
      () => RateLimit({ rate: -1 })(Object.prototype, 'm', { value: () => 1 }),
      (err: unknown) => err instanceof RuleValidationError && err.path === '@RateLimit.rate',
    );
    assert.throws(
      () => RateLimit({ rate: 1, burst: 0 })(Object.prototype, 'm', { value: () => 1 }),
      (err: unknown) => err instanceof RuleValidationError && err.path === '@RateLimit.burst',
    );
    assert.throws(() => RateLimit({ rate: 1 })(Object.prototype, 'm', { get: () => 1 }), TypeError);
  });
});
