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
} from '@meshlet/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { type BreakerRules, breakerRuleKind, CallExecutor, parseBreakerRules } from '../src/index.js';

const schema = new Ajv2020({ allErrors: true, strict: false }).compile(
  JSON.parse(readFileSync(new URL('../../schema/breaker.schema.json', import.meta.url), 'utf8')),
);

const good = {
  rules: [
    {
      level: 'service',
      failureRateThreshold: 60,
      window: { type: 'time', ms: 10_000, buckets: 10 },
      fallback: { status: 503, body: { error: 'busy' } },
    },
    {
      level: 'api',
      apis: [
        { method: 'GET', path: '/users/{id}' },
        { method: '*', path: '/admin/**' },
      ],
      consecutiveFailures: 3,
    },
    { level: 'instance', consecutiveFailures: 5, sleepWindowMs: 10_000, probes: 2, maxEjectionPercent: 34 },
  ],
  timeoutMs: 2_000,
  retry: { maxRetries: 2, backoff: { baseMs: 20, maxMs: 200 }, budget: { percent: 20, minPerSecond: 5 } },
  failureStatuses: ['5xx', 429],
};

const rejects = (section: unknown, path: string, reason: RegExp) =>
  assert.throws(
    () => parseBreakerRules(section, 'breaker'),
    (e: unknown) => e instanceof RuleValidationError && e.code === 'MESHLET_BAD_RULE' && e.path === path && reason.test(e.reason),
    `${JSON.stringify(section)} → ${path}`,
  );

describe('breaker rules', () => {
  it('parses every level, with defaults filled in', () => {
    const r = parseBreakerRules(good, 'breaker');
    assert.equal(r.service?.policy.failureRateThreshold, 60);
    assert.equal(r.service?.policy.probes, 3, 'default');
    assert.deepEqual(r.service?.fallback, { status: 503, body: { error: 'busy' }, bodyText: '{"error":"busy"}' });
    assert.deepEqual(
      r.apis[0]?.apis.map((a) => `${a.method} ${a.path}`),
      ['GET /users/{id}', '* /admin/**'],
    );
    assert.equal(r.instance?.maxEjectionPercent, 34);
    assert.equal(r.retry?.budget.windowMs, 10_000);
    assert.equal(r.classifier.response(429), true);
    assert.equal(r.classifier.response(503), true);
    assert.equal(r.classifier.response(404), false);
    assert.deepEqual(parseBreakerRules({}, 'breaker').apis, []);
  });

  it("reads templates with core's PathTemplate and keys APIs by the canonical spelling", () => {
    const r = parseBreakerRules(
      {
        rules: [
          {
            level: 'api',
            apis: [
              { method: 'GET', path: '/users/:id/' },
              { method: 'GET', path: '/files/{name}.{ext}' },
            ],
          },
        ],
      },
      'breaker',
    );
    assert.deepEqual(
      r.apis[0]?.apis.map((a) => `${a.method} ${a.path}`),
      ['GET /users/{id}', 'GET /files/{name}.{ext}'],
    );
    rejects(
      {
        rules: [
          { level: 'api', apis: [{ method: 'GET', path: '/a/{id}' }] },
          { level: 'api', apis: [{ method: 'GET', path: '/a/:id' }] },
        ],
      },
      'breaker.rules[1].apis[0]',
      /GET \/a\/\{id\} is already covered/,
    );
    rejects({ rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a//b' }] }] }, 'breaker.rules[0].apis[0].path', /empty segment/);
    rejects({ rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/{x}/b/{x}' }] }] }, 'breaker.rules[0].apis[0].path', /twice/);
    rejects({ rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/{x}{y}' }] }] }, 'breaker.rules[0].apis[0].path', /side by side/);
  });

  it('rejects bad input with a RuleValidationError naming the field', () => {
    rejects({ rules: [{ level: 'service', failureRateThreshold: 150 }] }, 'breaker.rules[0].failureRateThreshold', /between 0 and 100/);
    rejects({ rules: [{ level: 'service', window: { type: 'time', ms: -5 } }] }, 'breaker.rules[0].window.ms', /between 1 and/);
    rejects({ rules: [{ level: 'service', window: { type: 'count', size: -1 } }] }, 'breaker.rules[0].window.size', /between 1 and/);
    rejects({ rules: [{ level: 'cluster' }] }, 'breaker.rules[0].level', /one of "service", "api", "instance"/);
    rejects({ rules: [{ level: 'SERVICE' }] }, 'breaker.rules[0].level', /one of/);
    rejects({ rules: [{ level: 'service', threshold: 5 }] }, 'breaker.rules[0].threshold', /unknown field/);
    rejects({ rules: [{ level: 'api' }] }, 'breaker.rules[0].apis', /needs the list/);
    rejects({ rules: [{ level: 'api', apis: [{ method: 'GET', path: 'users' }] }] }, 'breaker.rules[0].apis[0].path', /start with/);
    rejects({ rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/**/b' }] }] }, 'breaker.rules[0].apis[0].path', /last segment/);
    rejects(
      {
        rules: [
          { level: 'api', apis: [{ method: 'GET', path: '/a' }] },
          { level: 'api', apis: [{ method: 'GET', path: '/a' }] },
        ],
      },
      'breaker.rules[1].apis[0]',
      /already covered/,
    );
    rejects({ rules: [{ level: 'service' }, { level: 'service' }] }, 'breaker.rules[1].level', /second/);
    rejects({ rules: [{ level: 'service', maxEjectionPercent: 10 }] }, 'breaker.rules[0].maxEjectionPercent', /only for level "instance"/);
    rejects({ rules: [{ level: 'instance', fallback: { status: 503 } }] }, 'breaker.rules[0].fallback', /not for level/);
    rejects({ rules: [{ level: 'service', probes: 0 }] }, 'breaker.rules[0].probes', /between 1/);
    rejects({ timeoutMs: 0 }, 'breaker.timeoutMs', /between 1/);
    rejects({ retry: { maxRetries: 50 } }, 'breaker.retry.maxRetries', /between 0 and 10/);
    rejects({ retry: { backoff: { baseMs: 100, maxMs: 10 } } }, 'breaker.retry.backoff.maxMs', /at least baseMs/);
    rejects({ retry: { budget: { percent: 101 } } }, 'breaker.retry.budget.percent', /between 0 and 100/);
    rejects({ failureStatuses: ['3xx'] }, 'breaker.failureStatuses[0]', /status code/);
    rejects(
      { rules: [{ level: 'instance', sleepWindowMs: 10_000, maxSleepWindowMs: 5_000 }] },
      'breaker.rules[0].maxSleepWindowMs',
      /at least sleepWindowMs \(10000\)/,
    );
  });

  it('maxSleepWindowMs makes the sleep grow with repeated trips; absent, it stays flat', () => {
    const rules = parseBreakerRules({ rules: [{ level: 'instance', sleepWindowMs: 1_000, maxSleepWindowMs: 2_500 }] }, 'breaker');
    assert.equal(rules.instance?.policy.maxSleepWindowMs, 2_500);
    assert.equal(parseBreakerRules({ rules: [{ level: 'instance' }] }, 'breaker').instance?.policy.maxSleepWindowMs, undefined);
  });

  it('the JSON Schema accepts exactly what the parser accepts', () => {
    const cases: unknown[] = [
      good,
      {},
      { rules: [] },
      { rules: [{ level: 'instance' }] },
      { rules: [{ level: 'api', apis: [{ method: 'POST', path: '/' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'POST', path: '/**' }] }] },
      { rules: [{ level: 'service', window: { type: 'count', size: 50 }, slowCallThresholdMs: 500, slowCallRateThreshold: 80 }] },
      { failureStatuses: [500, '4xx'] },
      { rules: [{ level: 'service', failureRateThreshold: 150 }] },
      { rules: [{ level: 'service', window: { type: 'time', ms: -5 } }] },
      { rules: [{ level: 'service', window: { type: 'time', size: 5 } }] },
      { rules: [{ level: 'cluster' }] },
      { rules: [{ level: 'SERVICE' }] },
      { rules: [{ level: 'api' }] },
      { rules: [{ level: 'service', apis: [{ method: 'GET', path: '/a' }] }] },
      { rules: [{ level: 'api', apis: [] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/{x}y' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/**/b' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/:id/' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/files/{name}.{ext}' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/*/b' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a/{x}{y}' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/a//b' }] }] },
      { rules: [{ level: 'api', apis: [{ method: 'get', path: '/a' }] }] },
      { rules: [{ level: 'instance', fallback: { status: 503 } }] },
      { rules: [{ level: 'instance', sleepWindowMs: 1000, maxSleepWindowMs: 300000 }] },
      { rules: [{ level: 'instance', maxSleepWindowMs: 0 }] },
      { rules: [{ level: 'service', maxEjectionPercent: 5 }] },
      { rules: [{ level: 'service', fallback: { status: 700 } }] },
      { rules: [{ level: 'service', fallback: { status: 503, headers: { 'bad header': 'x' } } }] },
      { timeoutMs: 1.5 },
      { retry: { maxRetries: 2, extra: 1 } },
      { failureStatuses: ['3xx'] },
      { unknown: 1 },
      { mode: 'shadow', rules: [{ level: 'service' }], timeoutMs: 100 },
      { mode: 'enforce' },
      { mode: 'dry-run' },
      { mode: 1 },
      { rules: [{ level: 'service', fallback: { status: 204, body: '' } }] },
      { rules: [{ level: 'service', fallback: { status: 204 } }] },
      { rules: [{ level: 'service', fallback: { status: 503, headers: { 'x-a': 'line\r\nbreak' } } }] },
      { rules: [{ level: 'service', fallback: { status: 503, headers: { 'x-a': 'café' } } }] },
      { rules: [{ level: 'service', fallback: { status: 503, headers: { 'x-a': '€' } } }] },
      JSON.parse('{"rules":[{"level":"service","fallback":{"status":503,"headers":{"__proto__":"x"}}}]}'),
      [],
    ];
    for (const c of cases) {
      let parses = true;
      try {
        parseBreakerRules(c, 'breaker');
      } catch {
        parses = false;
      }
      assert.equal(schema(c), parses, JSON.stringify(c));
    }
  });

  it('through RuleWatcher, a bad document is rejected and the last good rules stay in force', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [breakerRuleKind], logger }).start();
    const key = `${RULES_PREFIX}orders`;
    await kv.put(key, JSON.stringify({ service: 'orders', breaker: good }));
    const executor = new CallExecutor();
    const unfollow = executor.follow(watcher);
    const inForce = watcher.section(breakerRuleKind);
    const serviceBreaker = executor.breaker('service', 'orders');
    assert.ok(serviceBreaker);
    assert.equal(inForce?.instance?.maxEjectionPercent, 34);
    for (const bad of [
      { rules: [{ level: 'service', failureRateThreshold: 120 }] },
      { rules: [{ level: 'service', window: { type: 'time', ms: -1 } }] },
      { rules: [{ level: 'rack' }] },
    ]) {
      await kv.put(key, JSON.stringify({ service: 'orders', breaker: bad }));
      assert.equal(watcher.section(breakerRuleKind), inForce);
    }
    assert.equal(watcher.status.rejected, 3);
    assert.equal(executor.breaker('service', 'orders'), serviceBreaker, 'the executor still runs the last good rules');
    unfollow();
    assert.equal(watcher.status.lastError?.path, 'breaker.rules[0].level');
    watcher.close();
  });

  it('is a RuleKind named breaker', () => {
    const d = parseRuleDocument(JSON.stringify({ service: 'orders', breaker: { timeoutMs: 100 } }), [breakerRuleKind]);
    assert.equal((d.sections.get('breaker') as BreakerRules).timeoutMs, 100);
  });
});

describe('breaker fallbacks: nothing the parser accepts throws when the circuit opens', () => {
  /** A service rule with this fallback, as JSON text: JSON.parse makes "__proto__" an own key, as a stored document does. */
  const section = (fallbackJson: string): unknown =>
    JSON.parse(`{"rules":[{"level":"service","consecutiveFailures":1,"sleepWindowMs":60000,"fallback":${fallbackJson}}]}`);

  it('refuses a body with 204, 205 and 304, a bad header name or value, and a header named __proto__', () => {
    for (const status of [204, 205, 304]) {
      for (const body of ['"busy"', '""', 'null', '{"busy":true}'])
        rejects(section(`{"status":${status},"body":${body}}`), 'breaker.rules[0].fallback.body', /has no body/);
      assert.doesNotThrow(() => parseBreakerRules(section(`{"status":${status}}`), 'breaker'));
    }
    rejects(section('{"status":503,"headers":{"bad header":"x"}}'), 'breaker.rules[0].fallback.headers.bad header', /not a header name/);
    rejects(section('{"status":503,"headers":{"__proto__":"x"}}'), 'breaker.rules[0].fallback.headers.__proto__', /__proto__/);
    for (const value of ['1\\r\\nset-cookie: x=1', 'a\\nb', 'a\\u0000b', 'busy \\u20ac', '\\u0100', 'a\\u0001b', 'a\\u007fb'])
      rejects(section(`{"status":503,"headers":{"x-msg":"${value}"}}`), 'breaker.rules[0].fallback.headers.x-msg', /not a header value/);
  });

  it('every fallback in the table is refused, or answers an open circuit', async () => {
    const table = [
      '{"status":503}',
      '{"status":200,"body":"ok"}',
      '{"status":204}',
      '{"status":205}',
      '{"status":304,"headers":{"etag":"\\"v1\\""}}',
      '{"status":204,"body":"busy"}',
      '{"status":205,"body":{"busy":true}}',
      '{"status":304,"body":""}',
      '{"status":503,"body":null}',
      '{"status":599,"body":{"error":"busy"},"headers":{"retry-after":"1","x-note":"caf\\u00e9\\tok"}}',
      '{"status":503,"headers":{"retry-after":"1\\r\\nset-cookie: x=1"}}',
      '{"status":503,"headers":{"x-msg":"busy \\u20ac"}}',
      '{"status":503,"headers":{"x-nul":"a\\u0000"}}',
      '{"status":503,"headers":{"bad:name":"x"}}',
      '{"status":503,"headers":{"__proto__":"x","retry-after":"1"}}',
      '{"status":503,"headers":{"constructor":"x"}}',
    ];
    let accepted = 0;
    for (const json of table) {
      let rules: BreakerRules;
      try {
        rules = parseBreakerRules(section(json), 'breaker');
      } catch (err) {
        assert.ok(err instanceof RuleValidationError && err.path.startsWith('breaker.rules[0].fallback'), `${json}: ${String(err)}`);
        continue;
      }
      accepted++;
      const f = rules.service?.fallback;
      assert.ok(f);
      // Every header given is kept: none dropped on the way (as "__proto__" was).
      const given = (JSON.parse(json) as { headers?: Record<string, string> }).headers ?? {};
      assert.equal(Object.keys(f.headers ?? {}).length, Object.keys(given).length, json);
      assert.doesNotThrow(() => new Response(f.bodyText ?? null, { status: f.status, ...(f.headers ? { headers: f.headers } : {}) }), json);
      const executor = new CallExecutor({ clock: new ManualClock(), random: () => 0.5 });
      executor.setRules('orders', rules);
      executor.setInstances('orders', ['a']);
      const call = () =>
        executor.call({
          service: 'orders',
          method: 'GET',
          path: '/x',
          pick: (tried: ReadonlySet<string>) => (tried.has('a') ? undefined : { id: 'a' }),
          send: async () => new Response('x', { status: 503 }),
        });
      await call(); // trips the breaker
      const res = await call();
      assert.equal(res.status, f.status, json);
      assert.equal(res.headers.get('x-meshlet-fallback'), 'circuit-open', json);
      for (const [k, v] of Object.entries(f.headers ?? {})) assert.equal(res.headers.get(k), v.trim(), json);
    }
    assert.equal(accepted, 8);
  });
});
