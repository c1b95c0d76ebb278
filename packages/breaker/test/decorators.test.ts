import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { Breaker, breakerPolicy, CircuitBreaker, CircuitOpenError, Retry, RetryBudget, Timeout, TimeoutError } from '../src/index.js';

describe('decorators, standard (TC39) form', () => {
  it('@CircuitBreaker opens after failures, then throws CircuitOpenError or answers with the fallback', async () => {
    const clock = new ManualClock();
    const breaker = new Breaker(
      { level: 'service', service: 'pricing' },
      breakerPolicy({ consecutiveFailures: 2, sleepWindowMs: 1_000, probes: 1 }),
      { clock },
    );
    class Pricing {
      calls = 0;
      fail = true;
      @CircuitBreaker({ breaker })
      async price(sku: string): Promise<number> {
        this.calls++;
        if (this.fail) throw new Error(`upstream down for ${sku}`);
        return 42;
      }
      @CircuitBreaker({ clock, consecutiveFailures: 1, fallback: (_e: CircuitOpenError, sku: string) => `cached ${sku}` })
      async label(sku: string): Promise<string> {
        throw new Error(sku);
      }
    }
    const p = new Pricing();
    await assert.rejects(p.price('a'), /upstream down for a/);
    await assert.rejects(p.price('a'), /upstream down/);
    await assert.rejects(p.price('a'), (e: unknown) => e instanceof CircuitOpenError && e.service === 'pricing' && e.retryAfter === 1_000);
    assert.equal(p.calls, 2, 'the open circuit did not call the method');
    clock.advance(1_000);
    p.fail = false;
    assert.equal(await p.price('a'), 42, 'the probe goes through');
    assert.equal(breaker.state, 'closed');
    await assert.rejects(p.label('x'));
    assert.equal(await p.label('x'), 'cached x');
  });

  it('@Timeout rejects with TimeoutError on the clock and hands the method an aborting signal', async () => {
    const clock = new ManualClock();
    let seen: AbortSignal | undefined;
    class Slow {
      @Timeout({ ms: 50, clock, signalArg: 1 })
      async wait(_what: string, signal?: AbortSignal): Promise<string> {
        seen = signal;
        return new Promise(() => {});
      }
      @Timeout({ ms: 50, clock })
      async quick(): Promise<string> {
        return 'ok';
      }
    }
    const s = new Slow();
    const pending = s.wait('x');
    clock.advance(50);
    await assert.rejects(pending, (e: unknown) => e instanceof TimeoutError && e.code === 'MESHLET_TIMEOUT');
    assert.equal(seen?.aborted, true);
    assert.equal(await s.quick(), 'ok');
    assert.equal(clock.pendingTimers, 0);
  });

  it('@Retry retries with backoff on the clock, never an open circuit, and within a budget', async () => {
    const clock = new ManualClock();
    class Flaky {
      n = 0;
      @Retry({ maxRetries: 3, backoff: { baseMs: 0, maxMs: 0 }, clock })
      async get(): Promise<number> {
        if (++this.n < 3) throw new Error('flaky');
        return this.n;
      }
      open = 0;
      @Retry({ maxRetries: 3, clock })
      async broken(): Promise<never> {
        this.open++;
        throw new CircuitOpenError('service', 'x', undefined, 10);
      }
    }
    const f = new Flaky();
    assert.equal(await f.get(), 3);
    await assert.rejects(f.broken(), CircuitOpenError);
    assert.equal(f.open, 1);

    const budget = new RetryBudget({ percent: 0, minPerSecond: 0, windowMs: 1_000, clock });
    class Budgeted {
      n = 0;
      @Retry({ maxRetries: 3, budget, clock })
      async get(): Promise<never> {
        this.n++;
        throw new Error('down');
      }
    }
    const b = new Budgeted();
    await assert.rejects(b.get(), /down/);
    assert.equal(b.n, 1, 'an empty budget allows no retry');
  });

  it('stacks: @Retry over @CircuitBreaker over @Timeout', async () => {
    const clock = new ManualClock();
    class Client {
      n = 0;
      @Retry({ maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 }, clock })
      @CircuitBreaker({ clock, consecutiveFailures: 5 })
      @Timeout({ ms: 10, clock })
      async get(): Promise<string> {
        return ++this.n === 1 ? Promise.reject(new Error('first fails')) : 'second';
      }
    }
    assert.equal(await new Client().get(), 'second');
  });
});

describe('decorators, legacy experimentalDecorators form', () => {
  it('each decorator takes (prototype, key, descriptor) and returns a descriptor', async () => {
    const clock = new ManualClock();
    class Legacy {
      n = 0;
      async get(): Promise<number> {
        if (++this.n === 1) throw new Error('once');
        return this.n;
      }
      async hang(): Promise<never> {
        return new Promise(() => {});
      }
    }
    const proto = Legacy.prototype;
    const apply = (key: 'get' | 'hang', decorator: (t: object, k: string, d: PropertyDescriptor) => PropertyDescriptor) => {
      const d = Object.getOwnPropertyDescriptor(proto, key) as PropertyDescriptor;
      const out = decorator(proto, key, d);
      assert.equal(typeof out.value, 'function');
      assert.equal(out.enumerable, d.enumerable);
      Object.defineProperty(proto, key, out);
    };
    apply('get', Retry({ maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 }, clock }));
    apply('get', CircuitBreaker({ clock, consecutiveFailures: 3 }));
    apply('hang', Timeout({ ms: 5, clock }));
    const l = new Legacy();
    assert.equal(await l.get(), 2);
    const pending = l.hang();
    clock.advance(5);
    await assert.rejects(pending, TimeoutError);
  });

  it('refuses to decorate anything but a method', () => {
    assert.throws(() => (Timeout(5) as unknown as (t: object, k: string, d: PropertyDescriptor) => unknown)({}, 'x', { value: 5 }), {
      code: 'MESHLET_BAD_DECORATOR',
    });
  });
});

// Found by trying them: a negative threshold, a window of 10^12 calls, a misspelt field,
// -1 or 10^9 retries were all taken (a breaker that never opens, a method retried forever).
// The decorators' options are checked as a breaker rule's, RuleValidationError naming the field.
describe('decorator options, checked as a rule', () => {
  const refusals: readonly [string, () => unknown, string][] = [
    ['a negative failure rate', () => CircuitBreaker({ failureRateThreshold: -1 }), '@CircuitBreaker.failureRateThreshold'],
    ['a misspelt field', () => CircuitBreaker({ consecutiveFailure: 3 } as never), '@CircuitBreaker.consecutiveFailure'],
    ['a count window of 10^12 calls', () => CircuitBreaker({ window: { type: 'count', size: 1e12 } }), '@CircuitBreaker.window.size'],
    ['no probes', () => CircuitBreaker({ probes: 0 }), '@CircuitBreaker.probes'],
    [
      'a policy beside a given breaker',
      () => CircuitBreaker({ breaker: new Breaker({ level: 'service', service: 's' }, breakerPolicy()), probes: 2 }),
      '@CircuitBreaker.probes',
    ],
    ['a fallback that is a string', () => CircuitBreaker({ fallback: 'cached' as never }), '@CircuitBreaker.fallback'],
    ['-1 retries', () => Retry({ maxRetries: -1 }), '@Retry.maxRetries'],
    ['a billion retries', () => Retry({ maxRetries: 1e9 }), '@Retry.maxRetries'],
    ['no retry count', () => Retry({} as never), '@Retry.maxRetries'],
    ['a misspelt retry field', () => Retry({ maxRetries: 1, backof: { baseMs: 1 } } as never), '@Retry.backof'],
    ['a backoff under its base', () => Retry({ maxRetries: 1, backoff: { baseMs: 100, maxMs: 10 } }), '@Retry.backoff.maxMs'],
    ['shouldRetry that is true', () => Retry({ maxRetries: 1, shouldRetry: true as never }), '@Retry.shouldRetry'],
  ];
  for (const [what, make, field] of refusals)
    it(`refuses ${what}, naming ${field}`, () => {
      assert.throws(make, (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'MESHLET_BAD_RULE', (e as Error).message);
        assert.equal((e as { path?: string }).path, field, (e as Error).message);
        return true;
      });
    });

  it('takes what a rule takes', () => {
    assert.equal(typeof CircuitBreaker({ consecutiveFailures: 3, window: { type: 'count', size: 20 }, sleepWindowMs: 5_000 }), 'function');
    assert.equal(typeof Retry({ maxRetries: 0 }), 'function');
    assert.equal(typeof Retry({ maxRetries: 10, backoff: { baseMs: 0, maxMs: 60_000 } }), 'function');
  });
});
