// Admission under the adaptive limit: load shedding by class, the `adaptive` rule section
// (parser and JSON Schema), and the RateLimiter's refusals (503 or 429, no token spent).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ManualClock, MemoryLogger, RuleValidationError } from '@meshlet/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import {
  AdaptiveConcurrency,
  type AdaptiveSection,
  DEFAULT_ADAPTIVE_SECTION,
  OVERLOAD_LOG_INTERVAL_MS,
  parseAdaptiveSection,
  parseRateLimitSection,
  RateLimiter,
  type RedisCommand,
  RedisTokenBuckets,
  rejection,
} from '../src/index.js';
import { req, sync } from './limiter-helpers.js';

const schema = JSON.parse(readFileSync(new URL('../../schema/ratelimit.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true }).compile(schema);

/** A limit pinned at `n` (floor = ceiling), so that admission alone is under test. */
const pinned = (n: number, extra: Record<string, unknown> = {}): AdaptiveSection =>
  parseAdaptiveSection({ minLimit: n, maxLimit: n, initialLimit: n, ...extra }, 'ratelimit.adaptive');

const tags = (t: Record<string, string>) => (k: string) => t[k];

describe('AdaptiveConcurrency: load shedding by class', () => {
  const classes = [
    { name: 'critical', when: [{ tag: 'priority', op: 'equals', value: 'critical' }], share: 1 },
    { name: 'batch', when: [{ tag: 'priority', op: 'equals', value: 'batch' }], share: 0.5 },
  ];

  it('refuses the lower class first as the limit fills: batch at 50%, default at 80%, critical only at the limit', () => {
    const a = new AdaptiveConcurrency(pinned(10, { classes, defaultShare: 0.8 }), { clock: new ManualClock() });
    // In flight → which classes are admitted (each probe request is cancelled at once).
    const table: [number, { critical: boolean; default: boolean; batch: boolean }][] = [
      [0, { critical: true, default: true, batch: true }],
      [4, { critical: true, default: true, batch: true }],
      [5, { critical: true, default: true, batch: false }],
      [7, { critical: true, default: true, batch: false }],
      [8, { critical: true, default: false, batch: false }],
      [9, { critical: true, default: false, batch: false }],
      [10, { critical: false, default: false, batch: false }],
    ];
    const held: (() => void)[] = [];
    for (const [inFlight, expected] of table) {
      while (held.length < inFlight) {
        const got = a.tryAcquire(tags({ priority: 'critical' }));
        assert.ok(got.admitted);
        held.push(got.cancel);
      }
      assert.equal(a.inFlight, inFlight);
      for (const cls of ['critical', 'default', 'batch'] as const) {
        const got = a.tryAcquire(tags(cls === 'default' ? {} : { priority: cls }));
        assert.equal(got.admitted, expected[cls], `${cls} with ${inFlight} of 10 in flight`);
        if (got.admitted) got.cancel();
        else assert.equal(got.className, cls);
      }
    }
    const stats = a.stats;
    assert.deepEqual(
      stats.classes.map((c) => [c.name, c.refused]),
      [
        ['critical', 1],
        ['batch', 5],
        ['default', 3],
      ],
    );
    for (const release of held) release();
    assert.equal(a.inFlight, 0);
  });

  it('a class with a small share keeps at least one slot, so it is shed, never starved outright', () => {
    const a = new AdaptiveConcurrency(pinned(3, { classes, defaultShare: 1 }), { clock: new ManualClock() });
    const first = a.tryAcquire(tags({ priority: 'batch' }));
    assert.ok(first.admitted, 'floor(3 x 0.5) = 1 slot');
    assert.equal(a.tryAcquire(tags({ priority: 'batch' })).admitted, false);
  });

  it('release records the RTT once; cancel and a second release record nothing', () => {
    const clock = new ManualClock();
    const a = new AdaptiveConcurrency({ ...DEFAULT_ADAPTIVE_SECTION, probeSamples: 2 }, { clock });
    const r1 = a.tryAcquire(tags({}));
    const r2 = a.tryAcquire(tags({}));
    const r3 = a.tryAcquire(tags({}));
    assert.ok(r1.admitted && r2.admitted && r3.admitted);
    clock.advance(40);
    r1.release();
    r1.release();
    r2.cancel();
    assert.equal(a.stats.mode, 'probe', 'one sample of two');
    r3.release();
    assert.equal(a.stats.mode, 'track');
    assert.equal(a.stats.minRttMs, 40);
    assert.equal(a.inFlight, 0);
  });

  it('keeps its measurements across a reload that changes only classes or status', () => {
    const clock = new ManualClock();
    const a = new AdaptiveConcurrency({ ...DEFAULT_ADAPTIVE_SECTION, probeSamples: 1 }, { clock });
    const r = a.tryAcquire(tags({}));
    assert.ok(r.admitted);
    clock.advance(7);
    r.release();
    assert.equal(a.stats.minRttMs, 7);
    a.reconfigure({ ...DEFAULT_ADAPTIVE_SECTION, probeSamples: 1, status: 429 });
    assert.equal(a.stats.minRttMs, 7, 'same algorithm numbers: state kept');
    a.reconfigure({ ...DEFAULT_ADAPTIVE_SECTION, probeSamples: 1, tolerance: 2 });
    assert.equal(a.stats.minRttMs, 0, 'new numbers: measured again');
  });
});

describe('ratelimit.adaptive rule section', () => {
  it('parses defaults and bounded fields', () => {
    const s = parseRateLimitSection({ adaptive: {} }, 'ratelimit');
    assert.deepEqual(s.rules, []);
    assert.equal(s.adaptive?.status, 503);
    assert.equal(s.adaptive?.minLimit, 3);
    assert.equal(s.adaptive?.maxLimit, 1000);
    assert.equal(s.adaptive?.enabled, true);
    const t = parseRateLimitSection({ rules: [], adaptive: { status: 429, minLimit: 5, maxLimit: 50, initialLimit: 5 } }, 'ratelimit');
    assert.equal(t.adaptive?.status, 429);
  });

  it('names the field of every bad value', () => {
    const cases: [unknown, string][] = [
      [{ status: 500 }, 'ratelimit.adaptive.status'],
      [{ minLimit: 0 }, 'ratelimit.adaptive.minLimit'],
      [{ minLimit: 10, maxLimit: 5 }, 'ratelimit.adaptive.maxLimit'],
      [{ initialLimit: 2 }, 'ratelimit.adaptive.initialLimit'],
      [{ maxLimit: 100001 }, 'ratelimit.adaptive.maxLimit'],
      [{ tolerance: 0.9 }, 'ratelimit.adaptive.tolerance'],
      [{ windowMs: 0 }, 'ratelimit.adaptive.windowMs'],
      [{ probeIntervalMs: 10 }, 'ratelimit.adaptive.probeIntervalMs'],
      [{ probeSamples: 1000 }, 'ratelimit.adaptive.probeSamples'],
      [{ quantile: 0 }, 'ratelimit.adaptive.quantile'],
      [{ defaultShare: 0 }, 'ratelimit.adaptive.defaultShare'],
      [{ limit: 5 }, 'ratelimit.adaptive.limit'],
      [{ classes: [{ name: 'b', when: [], share: 0.5 }] }, 'ratelimit.adaptive.classes[0].when'],
      [{ classes: [{ name: 'b', when: [{ tag: 'p', op: 'exists' }], share: 1.5 }] }, 'ratelimit.adaptive.classes[0].share'],
      [{ classes: [{ name: 'default', when: [{ tag: 'p', op: 'exists' }], share: 1 }] }, 'ratelimit.adaptive.classes[0].name'],
      [
        {
          classes: [
            { name: 'b', when: [{ tag: 'p', op: 'exists' }], share: 1 },
            { name: 'b', when: [{ tag: 'q', op: 'exists' }], share: 1 },
          ],
        },
        'ratelimit.adaptive.classes[1].name',
      ],
      [
        { classes: [{ name: 'b', when: [{ tag: 'p', op: 'regex', pattern: '(' }], share: 1 }] },
        'ratelimit.adaptive.classes[0].when[0].pattern',
      ],
    ];
    for (const [adaptive, path] of cases) {
      assert.throws(
        () => parseRateLimitSection({ adaptive }, 'ratelimit'),
        (e: unknown) => e instanceof RuleValidationError && e.path === path,
        `${JSON.stringify(adaptive)} should fail at ${path}`,
      );
    }
  });

  it('agrees with its JSON Schema', () => {
    const cls = { name: 'batch', when: [{ tag: 'priority', op: 'equals', value: 'batch' }], share: 0.5 };
    const valid: unknown[] = [
      { adaptive: {} },
      { rules: [], adaptive: { enabled: false } },
      { adaptive: { status: 429, minLimit: 1, maxLimit: 100000, initialLimit: 1, tolerance: 10, windowMs: 60000 } },
      { adaptive: { quantile: 0.9, probeIntervalMs: 1000, probeJitter: 0, probeSamples: 256, stuckWindows: 1 } },
      { adaptive: { classes: [cls], defaultShare: 0.9 } },
    ];
    const invalid: unknown[] = [
      { adaptive: { status: 500 } },
      { adaptive: { minLimit: 0 } },
      { adaptive: { maxLimit: 100001 } },
      { adaptive: { tolerance: 0.5 } },
      { adaptive: { windowMs: 60001 } },
      { adaptive: { probeIntervalMs: 999 } },
      { adaptive: { probeSamples: 257 } },
      { adaptive: { defaultShare: 0 } },
      { adaptive: { extra: 1 } },
      { adaptive: { classes: [{ ...cls, share: 0 }] } },
      { adaptive: { classes: [{ ...cls, when: [] }] } },
      { adaptive: { classes: [{ ...cls, name: 'default' }] } },
      { adaptive: { classes: [{ name: 'x', share: 1 }] } },
      { adaptive: { enabled: 'yes' } },
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

describe('RateLimiter with an adaptive limit', () => {
  it('refuses over the limit with a 503 naming the class, before any token is spent', () => {
    const limiter = new RateLimiter({ service: 'orders', clock: new ManualClock() });
    limiter.setRules(
      parseRateLimitSection(
        { rules: [{ name: 'ten', rate: 10, burst: 10 }], adaptive: { minLimit: 2, maxLimit: 2, initialLimit: 2 } },
        'ratelimit',
      ),
    );
    const a = sync(limiter.decide(req('GET', '/o')));
    const b = sync(limiter.decide(req('GET', '/o')));
    assert.ok(a.allowed && b.allowed);
    const c = sync(limiter.decide(req('GET', '/o')));
    assert.ok(!c.allowed);
    const r = rejection(c, 'orders');
    assert.equal(r.status, 503);
    assert.deepEqual(JSON.parse(r.body), {
      error: 'overloaded',
      code: 'MESHLET_OVERLOADED',
      service: 'orders',
      rule: 'adaptive',
      scope: 'service',
      limit: '2 in flight',
      retryAfterSeconds: 1,
      class: 'default',
    });
    assert.equal(limiter.stats.adaptive?.inFlight, 2);
    assert.equal(limiter.stats.adaptive?.refused, 1);
    assert.equal(limiter.stats.refused, 1);
    a.release();
    b.release();
    // The refused request took no token: 8 more fit the bucket of 10, two at a time.
    for (let i = 0; i < 4; i++) {
      const x = sync(limiter.decide(req('GET', '/o')));
      const y = sync(limiter.decide(req('GET', '/o')));
      assert.ok(x.allowed && y.allowed, `pair ${i}`);
      x.release();
      y.release();
    }
    const eleventh = sync(limiter.decide(req('GET', '/o')));
    assert.ok(!eleventh.allowed);
    assert.equal(eleventh.rule.name, 'ten', 'the bucket refuses the 11th');
    assert.equal(limiter.stats.adaptive?.inFlight, 0, 'and gives its adaptive slot back');
  });

  it('is on from the option until a rule turns it off; a rule can set 429', () => {
    const limiter = new RateLimiter({ service: 's', clock: new ManualClock(), adaptive: pinned(1) });
    const first = sync(limiter.decide(req('GET', '/')));
    assert.ok(first.allowed);
    const second = sync(limiter.decide(req('GET', '/')));
    assert.ok(!second.allowed);
    assert.equal(rejection(second, 's').status, 503);

    limiter.setRules(parseRateLimitSection({ adaptive: { minLimit: 1, maxLimit: 1, initialLimit: 1, status: 429 } }, 'ratelimit'));
    const third = sync(limiter.decide(req('GET', '/')));
    assert.ok(!third.allowed, 'the slot is still held across the reload');
    assert.equal(rejection(third, 's').status, 429);

    limiter.setRules(parseRateLimitSection({ adaptive: { enabled: false } }, 'ratelimit'));
    assert.equal(limiter.adaptive, undefined);
    assert.ok(sync(limiter.decide(req('GET', '/'))).allowed);
    assert.equal(limiter.stats.adaptive, undefined);

    limiter.setRules(undefined);
    assert.ok(limiter.adaptive, 'no rule: the option again');
    first.release();
  });

  it('holds its slot across a distributed decision: released with the request, given back when Redis refuses', async () => {
    const clock = new ManualClock();
    let admitted = true;
    const send: RedisCommand = async () => (admitted ? [1, 0, 0] : [0, 5000, 0]);
    const limiter = new RateLimiter({ service: 's', clock, redis: new RedisTokenBuckets({ send, clock }) });
    limiter.setRules(
      parseRateLimitSection(
        {
          rules: [{ name: 'shared', rate: 1, unit: 'hour', burst: 10, mode: 'distributed' }],
          adaptive: { minLimit: 2, maxLimit: 2, initialLimit: 2 },
        },
        'ratelimit',
      ),
    );
    const pending = limiter.decide(req('GET', '/'));
    assert.ok(pending instanceof Promise, 'a distributed rule asks Redis');
    assert.equal(limiter.stats.adaptive?.inFlight, 1, 'the adaptive slot is held while Redis answers');
    const d = await pending;
    assert.ok(d.allowed);
    d.release();
    assert.equal(limiter.stats.adaptive?.inFlight, 0);
    admitted = false;
    const refused = await limiter.decide(req('GET', '/'));
    assert.ok(!refused.allowed);
    assert.equal(refused.rule.name, 'shared');
    assert.equal(limiter.stats.adaptive?.inFlight, 0, 'refused by Redis: the adaptive slot went back');
  });

  it('logs refusals at most once per interval, with their count', () => {
    const clock = new ManualClock();
    const logger = new MemoryLogger();
    const limiter = new RateLimiter({ service: 's', clock, logger, adaptive: pinned(1) });
    const held = sync(limiter.decide(req('GET', '/')));
    assert.ok(held.allowed);
    for (let i = 0; i < 5; i++) assert.equal(sync(limiter.decide(req('GET', '/'))).allowed, false);
    const lines = () => logger.entries.filter((e) => e.fields?.code === 'MESHLET_OVERLOADED');
    assert.equal(lines().length, 1, 'five refusals, one line');
    assert.equal(lines()[0]?.fields?.refused, 1);
    clock.advance(OVERLOAD_LOG_INTERVAL_MS - 1);
    assert.equal(sync(limiter.decide(req('GET', '/'))).allowed, false);
    assert.equal(lines().length, 1);
    clock.advance(1);
    assert.equal(sync(limiter.decide(req('GET', '/'))).allowed, false);
    assert.equal(lines().length, 2);
    assert.equal(lines()[1]?.fields?.refused, 6, 'the refusals since the last line, this one included');
    held.release();
  });
});
