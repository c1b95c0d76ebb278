// `meshlet explain` on the trace logs of two real meshes on 127.0.0.1: a call routed by a
// named rule, and a request a limit rule refused.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileKvStore, InMemoryRegistry, RuleRepository } from '@meshlet/core';
import { listen, testInstance } from '@meshlet/core/testing';
import { readTraceLog } from '@meshlet/trace';
import { CircuitOpenError, createMesh, type Mesh, fetch as meshFetch } from 'meshlet';
import { decisionsOf, type SpanRules } from '../src/explain-command.js';
import { runCli } from '../src/index.js';

const ROUTED = '4bf92f3577b34da6a3ce929d0e0e4736';
const REFUSED = '0af7651916cd43dd8448eb211c80319c';
const NO_ROUTE = '5b8efff798038103d269b633813fc60c';
const traceparent = (trace: string) => `00-${trace}-00f067aa0ba902b7-01`;

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, {
    env: {},
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    interactive: false,
    ask: async () => undefined,
  });
  return { code, out, err };
}

describe('meshlet explain', () => {
  let dir: string;
  const meshes: Mesh[] = [];
  let gatewayUrl = '';
  let gatewayRevision = 0;
  let emptyRevision = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-explain-'));
    const registry = new InMemoryRegistry();
    // A rule directory, so that `explain --dir` can read the versions the spans name.
    const rules = new FileKvStore(join(dir, 'rules'));
    const start = async (service: string, version: string, downstream?: string) => {
      const mesh = createMesh({
        service,
        version,
        instanceId: `${service}-1`,
        registry,
        rules,
        tracing: { log: { path: join(dir, `${service}.jsonl`) }, batch: { delayMs: 10 } },
      });
      meshes.push(mesh);
      const server = createServer(
        mesh.httpHandler(async (_req, res) => {
          if (!downstream) return void res.end('ok');
          // A service whose route rule sends every call to a group with no instance.
          if (_req.url === '/empty') {
            res.statusCode = 503;
            return void res.end(await meshFetch('http://empty-service/x').then(String, (err: Error) => err.message));
          }
          res.end(await (await meshFetch(`http://${downstream}/users/7`)).text());
        }),
      );
      server.listen(0, '127.0.0.1');
      await mesh.serve(server, { signals: [], deregisterDelayMs: 0, drainTimeoutMs: 1_000 });
      return mesh;
    };
    await start('user-service', '1.21.0');
    const gateway = await start('gateway', '1.0.0', 'user-service');
    gatewayUrl = `http://127.0.0.1:${gateway.instance?.port}/`;
    await gateway.rules.apply(
      JSON.stringify({
        service: 'user-service',
        route: { rules: [{ name: 'all-to-v1.21', destinations: [{ group: { version: '1.21.0' }, weight: 100 }] }] },
      }),
      { author: 'test' },
    );
    await gateway.rules.apply(
      JSON.stringify({
        service: 'gateway',
        ratelimit: { rules: [{ name: 'one-a-minute', api: { method: 'GET', path: '/' }, rate: 1, unit: 'minute', burst: 1 }] },
      }),
      { author: 'alice', reason: 'one a minute on GET /' },
    );
    await registry.register(testInstance('empty-service', 'empty-1', 1, { metadata: { version: '1.21.0' } }));
    await gateway.rules.apply(
      JSON.stringify({
        service: 'empty-service',
        // The rule's group and the default route are both empty: routing refuses the call.
        route: {
          rules: [{ name: 'to-v9', destinations: [{ group: { version: '9' }, weight: 100 }] }],
          default: [{ group: { version: '9' }, weight: 100 }],
        },
      }),
      { author: 'test' },
    );
    await gateway.rulesInForce('user-service');
    await gateway.rulesInForce('gateway');
    await gateway.rulesInForce('empty-service');
    emptyRevision = (await new RuleRepository({ kv: rules, kinds: [] }).current('empty-service')).revision;
    assert.equal((await globalThis.fetch(`${gatewayUrl}empty`, { headers: { traceparent: traceparent(NO_ROUTE) } })).status, 503);
    assert.equal((await globalThis.fetch(gatewayUrl, { headers: { traceparent: traceparent(ROUTED) } })).status, 200);
    assert.equal((await globalThis.fetch(gatewayUrl, { headers: { traceparent: traceparent(REFUSED) } })).status, 429);
    // Shutdown flushes the trace logs.
    gatewayRevision = (await new RuleRepository({ kv: rules, kinds: [] }).current('gateway')).revision;
    for (const m of meshes.reverse()) await m.shutdown();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const logs = () => [join(dir, 'gateway.jsonl'), join(dir, 'user-service.jsonl')];

  it('names the route rule and the instance of a call, hop by hop', async () => {
    const r = await cli(['explain', ROUTED, ...logs()]);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.split('\n');
    assert.equal(lines[0], `trace ${ROUTED}`);
    assert.match(lines[1] ?? '', /^ {2}gateway server .*→ 200/);
    assert.match(r.out, /limit: admitted/);
    assert.match(
      r.out,
      // The rules line: once the CLIENT span carries the called service's revision (governed-fetch).
      /^ {4}gateway client .*\n( {6}rules: user-service at revision \d+\n)? {6}route: rule "all-to-v1\.21" chose group \{"version":"1\.21\.0"\}\n {6}instance: user-service-1/m,
    );
    assert.match(r.out, /^ {6}user-service server .*→ 200/m);
  });

  it('names the limit rule that refused a request', async () => {
    const r = await cli(['explain', REFUSED, ...logs(), '--json']);
    assert.equal(r.code, 0, r.err);
    const { hops } = JSON.parse(r.out) as { hops: { service: string; side: string; status: number; decisions: string[] }[] };
    assert.equal(hops.length, 1, 'refused at the gateway: nothing was called');
    assert.deepEqual([hops[0]?.service, hops[0]?.side, hops[0]?.status], ['gateway', 'server', 429]);
    assert.deepEqual(hops[0]?.decisions, [`rules: gateway at revision ${gatewayRevision}`, 'limit: one-a-minute refused it (429)']);
  });

  it('with the rule store, tells the revision as its version, author and reason, and the rule with its condition', async () => {
    const r = await cli(['explain', REFUSED, ...logs(), '--json', '--dir', join(dir, 'rules')]);
    assert.equal(r.code, 0, r.err);
    const { hops } = JSON.parse(r.out) as { hops: { decisions: string[] }[] };
    const [rules, limit] = hops[0]?.decisions ?? [];
    assert.match(
      rules ?? '',
      new RegExp(`^rules: gateway version 1 \\(revision ${gatewayRevision}\\), apply by alice at .*Z — "one a minute on GET /"$`),
    );
    assert.equal(limit, 'limit: one-a-minute refused it (429) — when api GET /');
  });

  it("names the rules revision and the route rule of a call routing refused, and prints the span's status message", async () => {
    const r = await cli(['explain', NO_ROUTE, ...logs(), '--json']);
    assert.equal(r.code, 0, r.err);
    const { hops } = JSON.parse(r.out) as { hops: { service: string; side: string; decisions: string[] }[] };
    const client = hops.find((h) => h.side === 'client');
    assert.deepEqual(client?.decisions.slice(0, 3), [
      `rules: empty-service at revision ${emptyRevision}`,
      'route: rule "to-v9" chose the destination group',
      'no instance to send to',
    ]);
    assert.match(
      client?.decisions[3] ?? '',
      /^status: empty-service: nothing left to route to: rule "to-v9" chose group \{"version":"9"\} \(0 of 0 instances healthy\)/,
    );
  });

  it('says so when the trace is not in the logs, or the id is not one', async () => {
    const missing = await cli(['explain', 'f'.repeat(32), ...logs()]);
    assert.equal(missing.code, 5);
    assert.match(missing.err, /no span in/);
    const bad = await cli(['explain', 'not-a-trace', ...logs()]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /trace id: 32 hex digits/);
  });
});

describe('meshlet explain: shadow decisions of every kind', () => {
  const cases: ReadonlyArray<[string, string]> = [
    ['ratelimit:one-cart:would-refuse', 'shadow: ratelimit rule "one-cart" would refuse (not enforced)'],
    ['route:all-to-v9:would-route', 'shadow: route rule "all-to-v9" would route (not enforced)'],
    ['breaker:service:would-reject', 'shadow: service breaker would reject (not enforced)'],
    ['breaker:instance:would-exclude', 'shadow: instance breaker would exclude (not enforced)'],
    ['breaker:timeout:would-time-out', 'shadow: breaker timeoutMs would time out (not enforced)'],
    ['fault:slow:would-delay-300ms+would-abort-503', 'shadow: fault rule "slow" would delay 300ms and would abort 503 (not enforced)'],
  ];
  it('every note of a span that lists several', () => {
    const decisions = decisionsOf({
      traceId: 'a'.repeat(32),
      spanId: 'b'.repeat(16),
      parentSpanId: undefined,
      name: 'GET',
      kind: 2,
      service: 'front',
      startTimeUnixNano: 0n,
      durationMs: 1,
      attributes: { 'io.meshlet.shadow': 'breaker:service:would-reject fault:f:would-abort-500' },
    });
    assert.deepEqual(
      decisions.filter((d) => d.startsWith('shadow:')),
      ['shadow: service breaker would reject (not enforced)', 'shadow: fault rule "f" would abort 500 (not enforced)'],
    );
  });
  for (const [note, line] of cases) {
    it(note, () => {
      const decisions = decisionsOf({
        traceId: 'a'.repeat(32),
        spanId: 'b'.repeat(16),
        parentSpanId: undefined,
        name: 'GET',
        kind: 2,
        service: 'front',
        startTimeUnixNano: 0n,
        durationMs: 1,
        attributes: { 'io.meshlet.shadow': note },
      });
      assert.ok(decisions.includes(line), JSON.stringify(decisions));
    });
  }
});

describe('meshlet explain: the rule, its version and its condition', () => {
  const doc = {
    service: 'user-service',
    route: {
      rules: [
        {
          name: 'chrome-to-v1.21',
          when: [
            { tag: 'ua.family', op: 'equals', value: 'Chrome' },
            { tag: 'user', op: 'in', values: ['ana', 'bo'] },
          ],
          destinations: [{ group: { version: '1.21.0' }, weight: 100 }],
        },
      ],
    },
    auth: { rules: [{ name: 'no-refunds', action: 'deny', services: ['checkout'], apis: [{ method: 'POST', path: '/refunds/{id}' }] }] },
  };
  const rules: SpanRules = {
    service: 'user-service',
    revision: 57,
    version: { version: 3, author: 'alice', at: Date.UTC(2026, 0, 2), reason: 'gray', action: 'apply', document: JSON.stringify(doc) },
    sections: doc,
  };
  const span = (kind: number, service: string, attributes: Record<string, unknown>) => ({
    traceId: 'a'.repeat(32),
    spanId: 'b'.repeat(16),
    parentSpanId: undefined,
    name: 'GET',
    kind,
    service,
    startTimeUnixNano: 0n,
    durationMs: 1,
    attributes,
  });

  it("a CLIENT span: the called service's version, and the route rule's condition", () => {
    const client = span(3, 'gateway', {
      'service.peer.name': 'user-service',
      'io.meshlet.route': 'chrome-to-v1.21',
      'io.meshlet.rules.revision': 57,
    });
    assert.deepEqual(decisionsOf(client, rules).slice(0, 2), [
      'rules: user-service version 3 (revision 57), apply by alice at 2026-01-02T00:00:00.000Z — "gray"',
      'route: rule "chrome-to-v1.21" chose the destination group — when ua.family equals "Chrome" and user in ["ana", "bo"]',
    ]);
    assert.equal(decisionsOf(client)[0], 'rules: user-service at revision 57', 'without a store: the revision alone');
  });

  it('a CLIENT span: the group the route rule chose, sticky by its tag, and where an empty group sent the call', () => {
    const routed = (extra: Record<string, unknown>) =>
      decisionsOf(span(3, 'gateway', { 'service.peer.name': 'user-service', 'io.meshlet.route': 'chrome-to-v1.21', ...extra }))[0];
    assert.equal(
      routed({ 'io.meshlet.route.group': '{"version":"1.21"}', 'io.meshlet.route.sticky_by': 'user-id' }),
      'route: rule "chrome-to-v1.21" chose group {"version":"1.21"} (sticky by user-id)',
    );
    assert.equal(
      routed({ 'io.meshlet.route.group': '{"version":"1.21"}' }),
      'route: rule "chrome-to-v1.21" chose group {"version":"1.21"}',
    );
    assert.equal(
      routed({ 'io.meshlet.route.group': '{"version":"1.21"}', 'io.meshlet.route.fallback': 'fallback:{"version":"1.20"}' }),
      'route: rule "chrome-to-v1.21" chose group {"version":"1.21"}, which had no instance to route to: sent to its fallback, group {"version":"1.20"}',
    );
    assert.equal(
      routed({ 'io.meshlet.route.group': '{"version":"1.21"}', 'io.meshlet.route.fallback': 'default:{}' }),
      'route: rule "chrome-to-v1.21" chose group {"version":"1.21"}, which had no instance to route to: sent to the default route, every instance',
    );
  });

  it('a SERVER span: the auth rule that denied, with its callers and APIs', () => {
    const server = span(2, 'user-service', {
      'io.meshlet.auth': 'no-refunds:denied',
      'io.meshlet.rules.revision': 57,
      'error.type': 'auth_denied',
    });
    assert.ok(
      decisionsOf(server, rules).includes('auth: rule "no-refunds" denied it (403) — when api POST /refunds/{id}; caller checkout'),
      JSON.stringify(decisionsOf(server, rules)),
    );
    assert.ok(
      decisionsOf(span(2, 'x', { 'io.meshlet.auth': '(default):denied' })).includes(
        "auth: denied by the default of this service's auth rules (403)",
      ),
    );
  });

  it('a CLIENT span: the breaker rule that decided, with its thresholds and version', () => {
    const doc = {
      ...rules,
      sections: {
        breaker: {
          rules: [
            { level: 'service', window: { type: 'count', size: 20 }, failureRateThreshold: 50, consecutiveFailures: 0 },
            { level: 'api', apis: [{ method: 'POST', path: '/orders' }], window: { type: 'count', size: 10 }, failureRateThreshold: 30 },
          ],
        },
      },
    };
    const open = span(3, 'gateway', {
      'service.peer.name': 'user-service',
      'io.meshlet.breaker': 'open',
      'io.meshlet.rules.revision': 57,
      'error.type': 'circuit_open',
      'http.request.method': 'GET',
      'url.full': 'http://127.0.0.1:1/orders',
    });
    assert.ok(
      decisionsOf(open, doc).includes(
        'breaker: service breaker of user-service open — failure rate ≥ 50% over 20 calls; open 30 s, then 3 probes (rules version 3) — the call was refused without being sent',
      ),
      JSON.stringify(decisionsOf(open, doc)),
    );
    const apiRefused = span(3, 'gateway', {
      'service.peer.name': 'user-service',
      'io.meshlet.breaker': 'closed',
      'io.meshlet.rules.revision': 57,
      'error.type': 'circuit_open',
      'http.request.method': 'POST',
      'url.full': 'http://127.0.0.1:1/orders',
    });
    assert.ok(
      decisionsOf(apiRefused, doc).some((l) =>
        l.startsWith('breaker: api breaker of user-service POST /orders open — failure rate ≥ 30% over 10 calls or 5 failures in a row'),
      ),
      JSON.stringify(decisionsOf(apiRefused, doc)),
    );
    assert.ok(decisionsOf(open).includes('breaker: open — the call was refused without being sent'), 'without a store: the state alone');
  });
});

describe('meshlet explain: the breaker that refused, as the span names it', () => {
  const breaker = {
    rules: [
      { level: 'service', window: { type: 'count', size: 20 }, failureRateThreshold: 50, consecutiveFailures: 0 },
      { level: 'api', apis: [{ method: 'GET', path: '/orders/{id}' }], window: { type: 'count', size: 10 }, failureRateThreshold: 30 },
      { level: 'instance', consecutiveFailures: 3 },
    ],
  };
  const rulesWith = (section: unknown): SpanRules => ({
    service: 'orders',
    revision: 7,
    version: { version: 3, author: 'alice', at: Date.UTC(2026, 0, 2), action: 'apply', document: '{}' },
    sections: { breaker: section },
  });
  const client = (attributes: Record<string, unknown>) => ({
    traceId: 'a'.repeat(32),
    spanId: 'b'.repeat(16),
    parentSpanId: undefined,
    name: 'GET',
    kind: 3,
    service: 'shop',
    startTimeUnixNano: 0n,
    durationMs: 1,
    attributes: { 'service.peer.name': 'orders', 'io.meshlet.rules.revision': 7, 'http.request.method': 'GET', ...attributes },
  });
  const breakerLines = (decisions: string[]) => decisions.filter((d) => d.startsWith('breaker:'));

  it('an api breaker: its API, state and thresholds, and the rules version — not inferred from the path', () => {
    const span = client({
      'error.type': 'circuit_open',
      // The path matches no API rule (the caller named its API itself, as gRPC and `api` do): inference could not find it.
      'url.full': 'http://orders/v2/orders/42',
      'io.meshlet.breaker': 'closed',
      'io.meshlet.circuit.level': 'api',
      'io.meshlet.circuit.api': 'GET /orders/{id}',
      'io.meshlet.circuit.state': 'open',
    });
    const decisions = decisionsOf(span, rulesWith(breaker));
    assert.deepEqual(breakerLines(decisions), [
      'breaker: refused by the api breaker of orders GET /orders/{id} (open) — failure rate ≥ 30% over 10 calls or 5 failures in a row; open 30 s, then 3 probes (rules version 3, revision 7) — the call was not sent',
    ]);
    assert.ok(!decisions.some((d) => d.startsWith('route:')), 'refused before routing: no route line');
    assert.deepEqual(breakerLines(decisionsOf(span)), [
      'breaker: refused by the api breaker of orders GET /orders/{id} (open) (rules revision 7) — the call was not sent',
    ]);
  });

  it('a service breaker, half-open with its probes out', () => {
    const span = client({
      'error.type': 'circuit_open',
      'url.full': 'http://orders/orders/42',
      'io.meshlet.breaker': 'half_open',
      'io.meshlet.circuit.level': 'service',
      'io.meshlet.circuit.state': 'half_open',
    });
    assert.deepEqual(breakerLines(decisionsOf(span, rulesWith(breaker))), [
      'breaker: refused by the service breaker of orders (half-open) — failure rate ≥ 50% over 20 calls; open 30 s, then 3 probes (rules version 3, revision 7) — the call was not sent',
    ]);
  });

  it("a refusal the fallback answered: the refusing breaker and the fallback's status, no route line", () => {
    const span = client({
      'url.full': 'http://orders/orders/42',
      'http.response.status_code': 299,
      'io.meshlet.breaker': 'open',
      'io.meshlet.circuit.level': 'service',
      'io.meshlet.circuit.state': 'open',
      'io.meshlet.fallback': 'breaker',
    });
    const decisions = decisionsOf(span, rulesWith(breaker));
    assert.deepEqual(breakerLines(decisions), [
      'breaker: refused by the service breaker of orders (open) — failure rate ≥ 50% over 20 calls; open 30 s, then 3 probes (rules version 3, revision 7) — the call was not sent; the fallback answered 299',
    ]);
    assert.ok(!decisions.some((d) => d.startsWith('route:')), 'refused before routing: no route line');
  });

  it('instance breakers: every instance routing offered refused, or some refused and the attempt went elsewhere', () => {
    const none = client({
      'error.type': 'no_instance',
      'url.full': 'http://orders/orders/42',
      'io.meshlet.circuit.level': 'instance',
      'io.meshlet.circuit.instances': 'orders-1 orders-2',
    });
    assert.deepEqual(breakerLines(decisionsOf(none, rulesWith(breaker))), [
      'breaker: refused by the instance breakers of orders (orders-1 orders-2) — failure rate ≥ 50% over 10 s (at least 10 calls) or 3 failures in a row; open 30 s, then 3 probes (rules version 3, revision 7) — no instance routing offered was left to send to',
    ]);
    const elsewhere = client({
      'url.full': 'http://127.0.0.1:1/orders/42',
      'http.response.status_code': 200,
      'io.meshlet.instance': 'orders-3',
      'io.meshlet.circuit.instances': 'orders-1',
    });
    assert.ok(
      decisionsOf(elsewhere).includes('breaker: the instance breakers of orders-1 refused the pick; sent to orders-3 instead'),
      JSON.stringify(decisionsOf(elsewhere)),
    );
  });

  it('the bulkhead and the outbound adaptive limit: refused before routing, told as limits', () => {
    for (const [errorType, line] of [
      ['BulkheadFullError', 'limit: the bulkhead of calls to orders was full — the call was not sent'],
      [
        'OutboundLimitError',
        'limit: the adaptive limit of calls to orders (ratelimit.outboundAdaptive) refused it — the call was not sent',
      ],
    ] as const) {
      const decisions = decisionsOf(client({ 'error.type': errorType, 'url.full': 'http://orders/orders/42' }));
      assert.ok(decisions.includes(line), JSON.stringify(decisions));
      assert.ok(!decisions.some((d) => d.startsWith('route:') || d.startsWith('error:')), JSON.stringify(decisions));
    }
  });

  it('routing skipped instances whose breakers are open', () => {
    const span = client({
      'url.full': 'http://127.0.0.1:1/orders/42',
      'http.response.status_code': 200,
      'io.meshlet.instance': 'orders-3',
      'io.meshlet.route.ejected': 2,
      'io.meshlet.route.ejected_ids': 'u-1 u-2',
    });
    assert.ok(decisionsOf(span).includes('route: 2 instances skipped: breaker open (u-1 u-2)'), JSON.stringify(decisionsOf(span)));
    const one = client({ 'url.full': 'http://127.0.0.1:1/orders/42', 'io.meshlet.instance': 'orders-3', 'io.meshlet.route.ejected': 1 });
    assert.ok(decisionsOf(one).includes('route: 1 instance skipped: breaker open'), JSON.stringify(decisionsOf(one)));
  });

  it('a breaker section in shadow mode: the api breaker that would have refused, with its thresholds', () => {
    const span = client({
      'url.full': 'http://127.0.0.1:1/orders/42',
      'http.response.status_code': 503,
      'io.meshlet.instance': 'orders-1',
      'io.meshlet.shadow': 'breaker:api:would-reject',
      'io.meshlet.circuit.shadow_api': 'GET /orders/{id}',
    });
    assert.ok(
      decisionsOf(span, rulesWith({ ...breaker, mode: 'shadow' })).includes(
        'shadow: api breaker of orders GET /orders/{id} would reject (not enforced) — failure rate ≥ 30% over 10 calls or 5 failures in a row; open 30 s, then 3 probes',
      ),
      JSON.stringify(decisionsOf(span, rulesWith({ ...breaker, mode: 'shadow' }))),
    );
  });
});

describe('meshlet explain: a call a real API breaker refused', () => {
  it("the refused call's span names the api breaker, its state and the revision; explain tells the rule from them", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-explain-breaker-'));
    const upstream = await listen((_req, res) => {
      res.statusCode = 503;
      res.end('down');
    });
    try {
      const registry = new InMemoryRegistry();
      await registry.register(testInstance('orders', 'orders-1', upstream.port));
      const rules = new FileKvStore(join(dir, 'rules'));
      const log = join(dir, 'shop.jsonl');
      const shop = createMesh({ service: 'shop', registry, rules, tracing: { log: { path: log }, batch: { delayMs: 10 } } });
      await shop.rules.apply(
        JSON.stringify({
          service: 'orders',
          breaker: {
            rules: [
              // A service breaker that never opens here: the refusal must be told as the api breaker's.
              { level: 'service', consecutiveFailures: 100 },
              { level: 'api', apis: [{ method: 'GET', path: '/orders/{id}' }], consecutiveFailures: 2, sleepWindowMs: 60_000 },
            ],
          },
        }),
        { author: 'alice', reason: 'protect orders' },
      );
      await shop.rulesInForce('orders');
      const revision = (await new RuleRepository({ kv: rules, kinds: [] }).current('orders')).revision;
      for (let i = 0; i < 2; i++) assert.equal((await shop.fetch('http://orders/orders/42')).status, 503);
      await assert.rejects(shop.fetch('http://orders/orders/43'), (e: unknown) => e instanceof CircuitOpenError && e.level === 'api');
      await shop.close(); // flushes the trace log

      const { spans } = await readTraceLog([log]);
      // The calls that were sent name the api breaker they passed.
      const sent = spans.filter((s) => s.attributes['http.response.status_code'] === 503);
      assert.deepEqual(
        sent.map((s) => s.attributes['io.meshlet.breaker.api']),
        ['GET /orders/{id}', 'GET /orders/{id}'],
      );
      const passed = await cli(['explain', (sent[0] as (typeof sent)[number]).traceId, log, '--json', '--dir', join(dir, 'rules')]);
      assert.equal(passed.code, 0, passed.err);
      const passedHops = (JSON.parse(passed.out) as { hops: { decisions: string[] }[] }).hops;
      assert.deepEqual(
        passedHops[0]?.decisions.filter((d) => d.startsWith('breaker:')),
        [
          `breaker: service breaker of orders closed — failure rate ≥ 50% over 10 s (at least 10 calls) or 100 failures in a row; open 30 s, then 3 probes (rules version 1)`,
          `breaker: passed the api breaker of orders GET /orders/{id} — failure rate ≥ 50% over 10 s (at least 10 calls) or 2 failures in a row; open 60 s, then 3 probes (rules version 1)`,
        ],
      );
      const refused = spans.filter((s) => s.attributes['error.type'] === 'circuit_open');
      assert.equal(refused.length, 1, 'one span for the refused call');
      const span = refused[0] as (typeof refused)[number];
      assert.deepEqual(
        Object.fromEntries(
          [
            'io.meshlet.circuit.level',
            'io.meshlet.circuit.api',
            'io.meshlet.circuit.state',
            'io.meshlet.breaker',
            'io.meshlet.rules.revision',
          ].map((k) => [k, span.attributes[k]]),
        ),
        {
          'io.meshlet.circuit.level': 'api',
          'io.meshlet.circuit.api': 'GET /orders/{id}',
          'io.meshlet.circuit.state': 'open',
          'io.meshlet.breaker': 'closed',
          'io.meshlet.rules.revision': revision,
        },
      );
      const r = await cli(['explain', span.traceId, log, '--json', '--dir', join(dir, 'rules')]);
      assert.equal(r.code, 0, r.err);
      const { hops } = JSON.parse(r.out) as { hops: { decisions: string[] }[] };
      assert.deepEqual(hops[0]?.decisions.slice(1, 2), [
        `breaker: refused by the api breaker of orders GET /orders/{id} (open) — failure rate ≥ 50% over 10 s (at least 10 calls) or 2 failures in a row; open 60 s, then 3 probes (rules version 1, revision ${revision}) — the call was not sent`,
      ]);
      // The span's status message: the refusal's own words (its wait read on the real clock).
      assert.match(hops[0]?.decisions[2] ?? '', /^status: orders GET \/orders\/\{id\}: api circuit breaker is open; retry after \d+ ms/);
      assert.equal(hops[0]?.decisions.length, 3);
    } finally {
      await upstream.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('meshlet explain: who timed an attempt out', () => {
  it("blames the breaker rule's timeoutMs only when the mesh timed the attempt, else the caller's deadline", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-explain-timeout-'));
    let arrived: () => void = () => {};
    // Never answers: each attempt ends by a timeout, the rule's or the caller's.
    const upstream = await listen(() => arrived());
    try {
      const registry = new InMemoryRegistry();
      await registry.register(testInstance('orders', 'orders-1', upstream.port));
      await registry.register(testInstance('stock', 'stock-1', upstream.port));
      const rules = new FileKvStore(join(dir, 'rules'));
      const log = join(dir, 'shop.jsonl');
      const shop = createMesh({ service: 'shop', registry, rules, tracing: { log: { path: log }, batch: { delayMs: 10 } } });
      await shop.rules.apply(JSON.stringify({ service: 'orders', breaker: { timeoutMs: 50, rules: [] } }), {
        author: 'alice',
      });
      await shop.rulesInForce('orders');
      await assert.rejects(shop.fetch('http://orders/orders/1'), (e: Error & { code?: string }) => e.code === 'MESHLET_TIMEOUT');
      // stock has no rules: the caller gives up once the request is in (AbortSignal.timeout's TimeoutError).
      const caller = new AbortController();
      const inFlight = new Promise<void>((r) => {
        arrived = r;
      });
      const call = shop.fetch('http://stock/items/1', { signal: caller.signal });
      await inFlight;
      caller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
      await assert.rejects(call);
      await shop.close(); // flushes the trace log

      const { spans } = await readTraceLog([log]);
      const timedOut = (peer: string) => {
        const span = spans.find((s) => s.attributes['service.peer.name'] === peer && s.attributes['error.type'] === 'timeout');
        assert.ok(span, `a timeout span to ${peer}`);
        return span;
      };
      const byRule = timedOut('orders');
      const byCaller = timedOut('stock');
      assert.equal(byRule.attributes['io.meshlet.timeout_ms'], 50);
      assert.equal(byCaller.attributes['io.meshlet.timeout_ms'], undefined);
      const timeoutLines = (span: typeof byRule) => decisionsOf(span).filter((d) => d.startsWith('timed out'));
      assert.deepEqual(timeoutLines(byRule), ['timed out: no answer within 50 ms (breaker rule timeoutMs)']);
      assert.deepEqual(timeoutLines(byCaller), ["timed out: the caller's deadline or abort (not a breaker rule)"]);
    } finally {
      await upstream.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('meshlet explain: a shared limit bucket and a retry’s reason', () => {
  const span = (kind: number, attributes: Record<string, unknown>) => ({
    traceId: 'a'.repeat(32),
    spanId: 'b'.repeat(16),
    parentSpanId: undefined,
    name: 'GET',
    kind,
    service: 'front',
    startTimeUnixNano: 0n,
    durationMs: 1,
    attributes,
  });

  it('says a refusal came from the shared bucket of requests without the rule’s `by` tags', () => {
    const shared = decisionsOf(span(2, { 'io.meshlet.limiter': 'per-user:rejected', 'io.meshlet.limiter.bucket': 'shared' }));
    assert.ok(
      shared.includes('limit: per-user refused it (429) from its shared bucket (requests without its `by` tags count together)'),
      JSON.stringify(shared),
    );
    assert.ok(decisionsOf(span(2, { 'io.meshlet.limiter': 'per-user:rejected' })).includes('limit: per-user refused it (429)'));
  });

  it('names why an attempt was a retry', () => {
    const retried = decisionsOf(span(3, { 'http.request.resend_count': 1, 'io.meshlet.instance': 'a', 'io.meshlet.retry': 'stale' }));
    assert.ok(retried.includes('retry: attempt 2 (after stale)'), JSON.stringify(retried));
  });

  it('prints the status message on one line, control characters escaped', () => {
    const lines = decisionsOf({ ...span(3, { 'error.type': 'Error' }), statusMessage: 'boom\nnext\u001b[2Jline' });
    assert.ok(lines.includes('status: boom next\\x1b[2Jline'), JSON.stringify(lines));
  });
});
