import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  InMemoryKvStore,
  ManualClock,
  MemoryLogger,
  parseRuleDocument,
  RULES_PREFIX,
  RuleValidationError,
  RuleWatcher,
  seededRandom,
} from '@meshlet/core';
import { assertRuleRefused } from '@meshlet/core/testing';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { applyFault, FAULT_HEADER, FaultInjector, faultAttributes, faultRuleKind, NO_FAULT, parseFaultSection } from '../src/index.js';

const schema = JSON.parse(readFileSync(new URL('../../schema/fault.schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv2020({ allErrors: true }).compile(schema);

/** Asserts the section is refused with RuleValidationError at `path`. */
const refused = (section: unknown, path: string, reason?: RegExp): void =>
  assertRuleRefused(() => parseFaultSection(section, 'fault'), path, reason);

const rule = (r: Record<string, unknown>) => ({ rules: [{ name: 'r', percentage: 10, abort: 503, ...r }] });
const tagsOf = (t: Record<string, string>) => (k: string) => t[k];

describe('fault rules', () => {
  it('parses delay, abort, both, and conditions', () => {
    const s = parseFaultSection(
      {
        rules: [
          { name: 'slow', percentage: 25, delay: 300 },
          { name: 'broken-chrome', when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }], percentage: 0.5, abort: 503 },
          { name: 'both', percentage: 100, delay: 10, abort: 429 },
        ],
      },
      'fault',
    );
    assert.deepEqual(s.rules[0], { name: 'slow', when: [], percentage: 25, delay: 300 });
    assert.equal(s.rules[1]?.when.length, 1);
    assert.deepEqual(s.rules[2], { name: 'both', when: [], percentage: 100, delay: 10, abort: 429 });
  });

  it('is the fault section of a rule document', () => {
    const doc = parseRuleDocument(JSON.stringify({ service: 'orders', fault: rule({}) }), [faultRuleKind]);
    assert.ok(doc.sections.get('fault'));
    assert.throws(
      () => parseRuleDocument(JSON.stringify({ service: 'orders', fault: rule({ abort: 200 }) }), [faultRuleKind]),
      (e: unknown) => e instanceof RuleValidationError && e.path === 'fault.rules[0].abort',
    );
  });

  it('refuses bad sections naming the field', () => {
    refused([], 'fault', /object/);
    refused({ rules: [], extra: 1 }, 'fault.extra', /unknown field/);
    refused({ rules: {} }, 'fault.rules', /array/);
    refused(rule({ name: '' }), 'fault.rules[0].name', /use 1 to 64 letters/);
    refused(rule({ percentage: 101 }), 'fault.rules[0].percentage');
    refused(rule({ percentage: '10' }), 'fault.rules[0].percentage');
    refused(rule({ delay: -1 }), 'fault.rules[0].delay');
    refused(rule({ delay: 1.5 }), 'fault.rules[0].delay', /whole/);
    refused(rule({ delay: 60_001 }), 'fault.rules[0].delay');
    refused(rule({ abort: 302 }), 'fault.rules[0].abort');
    refused({ rules: [{ name: 'r', percentage: 10 }] }, 'fault.rules[0]', /delay.*abort/);
    refused(rule({ when: [{ tag: 'a', op: 'nope' }] }), 'fault.rules[0].when[0].op');
    refused(rule({ typo: 1 }), 'fault.rules[0].typo', /unknown field/);
    refused({ rules: [rule({}).rules[0], rule({}).rules[0]] }, 'fault.rules[1].name', /duplicate/);
    refused({ ...rule({}), mode: 'dry-run' }, 'fault.mode');
    refused({ ...rule({}), mode: 1 }, 'fault.mode');
    // The name is the x-meshlet-fault header value of an abort: route's rule-name characters only.
    for (const name of ['drill €', 'drill 1', 'a\r\nset-cookie: x=1', 'nul\u0000', '-leading', '.hidden', 'é', 'x'.repeat(65)])
      refused(rule({ name }), 'fault.rules[0].name');
    refused(rule({ name: 'drill €' }), 'fault.rules[0].name', /letters, digits/);
  });

  it('every name the parser accepts answers an abort, never throws at call time', async () => {
    const names = ['r', 'R2', 'chrome-503', 'a.b_c-d', '9', 'x'.repeat(64), 'drill €', 'a b', 'a\r\nb', 'tab\t', 'ü', '', '_x'];
    let accepted = 0;
    for (const name of names) {
      let section: ReturnType<typeof parseFaultSection>;
      try {
        section = parseFaultSection({ rules: [{ name, percentage: 100, abort: 503 }] }, 'fault');
      } catch (err) {
        assert.ok(err instanceof RuleValidationError && err.path === 'fault.rules[0].name', JSON.stringify(name));
        continue;
      }
      accepted++;
      const injector = new FaultInjector();
      injector.setRules('orders', section);
      const res = await applyFault(injector.decide('orders', tagsOf({})), { clock: new ManualClock() });
      assert.equal(res?.status, 503, JSON.stringify(name));
      assert.equal(res?.headers.get(FAULT_HEADER), name);
    }
    assert.equal(accepted, 6);
  });

  it('the JSON Schema agrees with the parser', () => {
    const valid = [
      { rules: [] },
      rule({}),
      rule({ abort: undefined, delay: 0 }),
      rule({ delay: 60_000, abort: 599, percentage: 0 }),
      { ...rule({}), mode: 'shadow' },
      { ...rule({}), mode: 'enforce' },
      rule({ name: 'A.b_c-9' }),
      rule({ name: 'x'.repeat(64) }),
      rule({
        when: [
          { tag: 'x', op: 'in', values: ['a'] },
          { tag: 'y', op: 'exists' },
          { tag: 'z', op: 'range', min: 1 },
        ],
      }),
    ];
    const invalid = [
      {},
      { rules: [], extra: 1 },
      rule({ name: '' }),
      rule({ percentage: -1 }),
      rule({ percentage: 100.5 }),
      rule({ delay: 2.5 }),
      rule({ abort: 399 }),
      rule({ abort: 600 }),
      { rules: [{ name: 'r', percentage: 10 }] },
      rule({ when: [{ tag: 'x', op: 'equals' }] }),
      rule({ when: [{ tag: 'x', op: 'range' }] }),
      rule({ typo: true }),
      rule({ name: 'drill €' }),
      rule({ name: 'a b' }),
      rule({ name: '-a' }),
      rule({ name: 'x'.repeat(65) }),
      { ...rule({}), mode: 'log' },
      { rules: Array.from({ length: 101 }, (_, i) => ({ name: `r${i}`, percentage: 1, abort: 500 })) },
    ];
    for (const raw of valid) {
      const doc = JSON.parse(JSON.stringify(raw)) as unknown;
      assert.doesNotThrow(() => parseFaultSection(doc, 'fault'), JSON.stringify(doc));
      assert.equal(validate(doc), true, `schema refused ${JSON.stringify(doc)}: ${JSON.stringify(validate.errors)}`);
    }
    for (const raw of invalid) {
      const doc = JSON.parse(JSON.stringify(raw)) as unknown;
      assert.throws(() => parseFaultSection(doc, 'fault'), RuleValidationError, JSON.stringify(doc));
      assert.equal(validate(doc), false, `schema accepted ${JSON.stringify(doc)}`);
    }
  });
});

describe('FaultInjector', () => {
  it('is off unless a rule says so, and draws nothing then', () => {
    const injector = new FaultInjector();
    let draws = 0;
    const random = () => {
      draws++;
      return 0;
    };
    assert.equal(injector.active('orders'), false);
    assert.equal(injector.decide('orders', tagsOf({}), random), NO_FAULT);
    assert.equal(draws, 0);
  });

  it('affects the configured share of matching calls, exactly on a seeded random', () => {
    const injector = new FaultInjector();
    injector.setRules(
      'orders',
      parseFaultSection(
        { rules: [{ name: 'gray-abort', when: [{ tag: 'lane', op: 'equals', value: 'gray' }], percentage: 20, abort: 503 }] },
        'fault',
      ),
    );
    const random = seededRandom(42);
    let aborted = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) if (injector.decide('orders', tagsOf({ lane: 'gray' }), random).abortStatus === 503) aborted++;
    // The seed fixes the count; the band says what it means.
    assert.ok(aborted > n * 0.18 && aborted < n * 0.22, `${aborted}`);
    assert.equal(
      injector.decide('orders', tagsOf({ lane: 'blue' }), () => 0),
      NO_FAULT,
    );
    assert.equal(
      injector.decide('orders', tagsOf({}), () => 0),
      NO_FAULT,
    );
  });

  it('takes the first rule that applies, in order; 100% and 0% draw nothing', () => {
    const injector = new FaultInjector();
    injector.setRules(
      'orders',
      parseFaultSection(
        {
          rules: [
            { name: 'never', percentage: 0, abort: 500 },
            { name: 'sometimes', percentage: 50, delay: 100 },
            { name: 'always', percentage: 100, delay: 5, abort: 504 },
          ],
        },
        'fault',
      ),
    );
    assert.deepEqual(
      injector.decide('orders', tagsOf({}), () => 0.2),
      { rule: 'sometimes', delayMs: 100 },
    );
    let draws = 0;
    const high = () => {
      draws++;
      return 0.9;
    };
    assert.deepEqual(injector.decide('orders', tagsOf({}), high), { rule: 'always', delayMs: 5, abortStatus: 504 });
    assert.equal(draws, 1, 'only the 50% rule draws');
  });

  it('serves many services, each with its own rules, like the Router', () => {
    const injector = new FaultInjector();
    injector.setRules('orders', parseFaultSection({ rules: [{ name: 'o', percentage: 100, abort: 503 }] }, 'fault'));
    injector.setRules('users', parseFaultSection({ rules: [{ name: 'u', percentage: 100, abort: 500 }] }, 'fault'));
    assert.equal(injector.decide('orders', tagsOf({})).rule, 'o');
    assert.equal(injector.decide('users', tagsOf({})).rule, 'u');
    assert.equal(injector.decide('stock', tagsOf({})), NO_FAULT);
    injector.setRules('orders', undefined);
    assert.equal(injector.active('orders'), false);
    assert.equal(injector.decide('users', tagsOf({})).rule, 'u');
  });

  it('follows the fault section of the rule document, hot', async () => {
    const kv = new InMemoryKvStore();
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [faultRuleKind], logger: new MemoryLogger() }).start();
    const injector = new FaultInjector();
    injector.follow(watcher);
    await kv.put(`${RULES_PREFIX}orders`, JSON.stringify({ service: 'orders', fault: rule({ percentage: 100 }) }));
    await watcher.ready;
    await new Promise((r) => setImmediate(r));
    assert.equal(injector.decide('orders', tagsOf({})).abortStatus, 503);
    await kv.put(`${RULES_PREFIX}orders`, JSON.stringify({ service: 'orders' }));
    await new Promise((r) => setImmediate(r));
    assert.equal(injector.active('orders'), false);
    watcher.close();
  });
});

describe('applyFault', () => {
  it('waits the delay on the clock, then lets the call go', async () => {
    const clock = new ManualClock();
    let done = false;
    const p = applyFault({ rule: 'slow', delayMs: 300 }, { clock }).then((r) => {
      done = true;
      return r;
    });
    clock.advance(299);
    await Promise.resolve();
    assert.equal(done, false);
    clock.advance(1);
    assert.equal(await p, undefined);
  });

  it('answers an abort with the status and a header naming the rule', async () => {
    const res = await applyFault({ rule: 'broken', abortStatus: 503 }, { clock: new ManualClock() });
    assert.equal(res?.status, 503);
    assert.equal(res?.headers.get(FAULT_HEADER), 'broken');
  });

  it('ends the delay when the caller aborts', async () => {
    const clock = new ManualClock();
    const ac = new AbortController();
    const p = applyFault({ rule: 'slow', delayMs: 1000 }, { clock, signal: ac.signal });
    ac.abort(new Error('caller gave up'));
    await assert.rejects(p, /caller gave up/);
    assert.equal(clock.pendingTimers, 0);
  });

  it('describes a decision for spans and metrics', () => {
    assert.deepEqual(faultAttributes({ rule: 'r', delayMs: 5, abortStatus: 500 }), {
      'io.meshlet.fault.rule': 'r',
      'io.meshlet.fault.delay_ms': 5,
      'io.meshlet.fault.abort_status': 500,
    });
    assert.deepEqual(faultAttributes(NO_FAULT), {});
  });
});

describe('fault rules in shadow mode (`fault.mode: "shadow"`)', () => {
  const cases: ReadonlyArray<{
    name: string;
    rule: Record<string, unknown>;
    draw: number;
    shadow: string | undefined;
  }> = [
    { name: 'an abort that hits', rule: { percentage: 10, abort: 503 }, draw: 0.05, shadow: 'would-abort-503' },
    { name: 'a delay that hits', rule: { percentage: 10, delay: 300 }, draw: 0.05, shadow: 'would-delay-300ms' },
    { name: 'both, at 100%', rule: { percentage: 100, delay: 20, abort: 429 }, draw: 0.99, shadow: 'would-delay-20ms+would-abort-429' },
    { name: 'a draw that misses', rule: { percentage: 10, abort: 503 }, draw: 0.5, shadow: undefined },
    {
      name: 'a rule that does not match',
      rule: { percentage: 100, abort: 503, when: [{ tag: 'lane', op: 'exists' }] },
      draw: 0,
      shadow: undefined,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.shadow ?? 'nothing'} reported, nothing injected`, async () => {
      const logger = new MemoryLogger();
      const injector = new FaultInjector({ logger });
      injector.setRules('orders', parseFaultSection({ mode: 'shadow', rules: [{ name: 'r', ...c.rule }] }, 'fault'));
      const d = injector.decide('orders', tagsOf({}), () => c.draw);
      assert.equal(d.shadow, c.shadow);
      assert.equal(d.delayMs, undefined);
      assert.equal(d.abortStatus, undefined);
      const clock = new ManualClock();
      // Nothing waited on the clock, nothing made up: the call is sent as it is.
      assert.equal(await applyFault(d, { clock }), undefined);
      assert.equal(clock.now(), 0);
      const logged = logger.entries.filter((e) => e.fields?.code === 'MESHLET_FAULT_SHADOW');
      assert.equal(logged.length, c.shadow ? 1 : 0);
      assert.equal(injector.shadowed, c.shadow ? 1 : 0);
      assert.deepEqual(faultAttributes(d), c.shadow ? { 'io.meshlet.shadow': `fault:r:${c.shadow}` } : {});
    });
  }

  it('enforced again, the same section injects', () => {
    const injector = new FaultInjector();
    const rules = [{ name: 'r', percentage: 100, abort: 503 }];
    injector.setRules('orders', parseFaultSection({ mode: 'shadow', rules }, 'fault'));
    assert.equal(injector.decide('orders', tagsOf({})).abortStatus, undefined);
    injector.setRules('orders', parseFaultSection({ rules }, 'fault'));
    assert.deepEqual(injector.decide('orders', tagsOf({})), { rule: 'r', abortStatus: 503 });
  });
});
