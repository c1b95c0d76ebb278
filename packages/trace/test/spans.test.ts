import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock, MeshletError, NoInstanceError } from '@meshlet/core';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { createTracing, GovernanceErrorType, type Tracing } from '../src/index.js';
import { byName, memoryExporter } from './servers.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

function setup(extra: { sampleRatio?: number } = {}) {
  const exporter = memoryExporter();
  const clock = new ManualClock(1_000);
  const tracing = createTracing({ service: 'orders', version: '1.2.0', exporters: [exporter], clock, ...extra });
  const spans = async () => {
    await tracing.forceFlush();
    return exporter.getFinishedSpans();
  };
  return { tracing, exporter, clock, spans };
}

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

describe('client spans', () => {
  it('follow the HTTP client conventions: name, required attributes, redacted url, peer service', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    const span = tracing.startClientSpan(ROOT_CONTEXT, {
      method: 'POST',
      url: 'http://alice:secret@10.0.0.7:8081/api/orders?id=1&sig=abc',
      service: 'orders-db',
      route: 'gray-v2',
      lane: 'canary',
      limiter: 'allowed',
      breaker: 'closed',
      instance: 'orders-db-8081',
      rulesRevision: 57,
    });
    span.end(201);
    const [s] = await spans();
    assert.ok(s);
    assert.equal(s.name, 'POST');
    assert.equal(s.kind, SpanKind.CLIENT);
    assert.deepEqual(s.attributes, {
      'http.request.method': 'POST',
      'server.address': '10.0.0.7',
      'server.port': 8081,
      'url.full': 'http://REDACTED:REDACTED@10.0.0.7:8081/api/orders?id=1&sig=REDACTED',
      'service.peer.name': 'orders-db',
      'io.meshlet.route': 'gray-v2',
      'io.meshlet.lane': 'canary',
      'io.meshlet.limiter': 'allowed',
      'io.meshlet.breaker': 'closed',
      'io.meshlet.instance': 'orders-db-8081',
      'io.meshlet.rules.revision': 57,
      'http.response.status_code': 201,
    });
    assert.equal(s.status.code, SpanStatusCode.UNSET);
    assert.equal(s.resource.attributes['service.name'], 'orders');
    assert.equal(s.resource.attributes['service.version'], '1.2.0');
  });

  it('record a retry as http.request.resend_count, default ports by scheme, and non-standard methods as _OTHER', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'https://pay.internal/x', attempt: 2 }).end(200);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'PURGE', url: 'http://cache/x' }).end(200);
    const [retry, purge] = await spans();
    assert.equal(retry?.attributes['http.request.resend_count'], 2);
    assert.equal(retry?.attributes['server.port'], 443);
    assert.equal(purge?.name, '_OTHER');
    assert.equal(purge?.attributes['http.request.method_original'], 'PURGE');
    assert.equal(purge?.attributes['server.port'], 80);
  });

  it('count 4xx and 5xx as errors with the status code as error.type', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/x' }).end(404);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/x' }).end(503);
    const [nf, unavailable] = await spans();
    assert.equal(nf?.status.code, SpanStatusCode.ERROR);
    assert.equal(nf?.attributes['error.type'], '404');
    assert.equal(unavailable?.attributes['error.type'], '503');
  });

  it('put governance outcomes in error.type', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    const outcomes: [unknown, string][] = [
      [new NoInstanceError('pay'), GovernanceErrorType.noInstance],
      [new MeshletError('MESHLET_CIRCUIT_OPEN', 'open'), 'circuit_open'],
      [new MeshletError('MESHLET_RATE_LIMITED', 'limited'), 'rate_limited'],
      [new MeshletError('MESHLET_AUTH_DENIED', 'denied'), 'auth_denied'],
      [new DOMException('slow', 'TimeoutError'), 'timeout'],
      [new MeshletError('MESHLET_DEADLINE', "the caller's deadline passed"), 'timeout'],
      [new TypeError('fetch failed'), 'TypeError'],
      // A network failure: its code from the allow-list, on the cause (fetch) or the error itself.
      [new TypeError('fetch failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) }), 'ECONNREFUSED'],
      [new TypeError('fetch failed', { cause: Object.assign(new Error('closed'), { code: 'UND_ERR_SOCKET' }) }), 'UND_ERR_SOCKET'],
      [Object.assign(new Error('reset'), { code: 'ECONNRESET' }), 'ECONNRESET'],
      // A code not on the list (a remote value could be anything) keeps the class name.
      [new TypeError('fetch failed', { cause: { code: 'EVIL_<script>' } }), 'TypeError'],
      ['a string', '_OTHER'],
    ];
    for (const [error] of outcomes)
      tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://pay/x', service: 'pay' }).end({ error });
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://pay/x' }).end({ errorType: GovernanceErrorType.rateLimited });
    const got = (await spans()).map((s) => s.attributes['error.type']);
    assert.deepEqual(got, [...outcomes.map(([, t]) => t), 'rate_limited']);
    assert.equal((await spans())[0]?.status.message, new NoInstanceError('pay').message);
  });

  it('end only once, and inject the span itself as the parent', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    const span = tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/x' });
    const headers = new Headers();
    span.inject(headers);
    span.end(200);
    span.end(500);
    const [s] = await spans();
    assert.equal((await spans()).length, 1);
    assert.equal(s?.attributes['http.response.status_code'], 200);
    assert.equal(headers.get('traceparent'), `00-${s?.spanContext().traceId}-${s?.spanContext().spanId}-01`);
  });
});

describe('server spans', () => {
  it('continue the caller trace, named {method} {route}, with the server attributes', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    const span = tracing.startServerSpan({ traceparent: `00-${TRACE}-${SPAN}-01`, host: 'orders:8080' }, 'GET', '/orders/:id', {
      target: '/orders/42?x=1',
      rulesRevision: 12,
    });
    span.end(200);
    const [s] = await spans();
    assert.equal(s?.name, 'GET /orders/:id');
    assert.equal(s?.kind, SpanKind.SERVER);
    assert.equal(s?.spanContext().traceId, TRACE);
    assert.equal(s?.parentSpanContext?.spanId, SPAN);
    assert.deepEqual(s?.attributes, {
      'http.request.method': 'GET',
      'url.scheme': 'http',
      'url.path': '/orders/42',
      'http.route': '/orders/:id',
      'io.meshlet.rules.revision': 12,
      'server.address': 'orders',
      'server.port': 8080,
      'http.response.status_code': 200,
    });
  });

  it('take the route when the framework knows it, and treat 4xx as no error but 5xx as one', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    const a = tracing.startServerSpan({}, 'GET', undefined);
    a.setRoute('/users/{id}');
    a.end(404);
    tracing.startServerSpan({}, 'POST', '/pay').end(502);
    tracing.startServerSpan({}, 'POST', '/pay').end(200, new MeshletError('MESHLET_TIMEOUT', 'slow'));
    const [nf, bad, timeout] = await spans();
    assert.equal(nf?.name, 'GET /users/{id}');
    assert.equal(nf?.attributes['http.route'], '/users/{id}');
    assert.equal(nf?.status.code, SpanStatusCode.UNSET);
    assert.equal(nf?.attributes['error.type'], undefined);
    assert.equal(bad?.status.code, SpanStatusCode.ERROR);
    assert.equal(bad?.attributes['error.type'], '502');
    assert.equal(timeout?.attributes['error.type'], 'timeout');
  });

  it('start a new trace on a malformed traceparent, and the request goes on', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    tracing.startServerSpan({ traceparent: `00-${TRACE}-zzzz-01` }, 'GET', '/').end(200);
    const [s] = await spans();
    assert.equal(s?.parentSpanContext, undefined);
    assert.notEqual(s?.spanContext().traceId, TRACE);
    assert.match(s?.spanContext().traceId ?? '', /^[0-9a-f]{32}$/);
  });

  it('make client spans started inside run() its children', async () => {
    const { tracing, spans } = setup();
    open.push(tracing);
    const server = tracing.startServerSpan({}, 'GET', '/a');
    await server.run(async () => {
      await Promise.resolve();
      tracing.startClientSpan(undefined, { method: 'GET', url: 'http://b/x' }).end(200);
    });
    server.end(200);
    const all = await spans();
    const client = byName(all, 'GET');
    const srv = byName(all, 'GET /a');
    assert.equal(client.parentSpanContext?.spanId, srv.spanContext().spanId);
    assert.equal(client.spanContext().traceId, srv.spanContext().traceId);
  });
});

describe('sampling', () => {
  it('is parent-based: a sampled caller is followed at ratio 0, an unsampled one at ratio 1', async () => {
    const off = setup({ sampleRatio: 0 });
    open.push(off.tracing);
    off.tracing.startServerSpan({}, 'GET', '/new').end(200);
    off.tracing.startServerSpan({ traceparent: `00-${TRACE}-${SPAN}-01` }, 'GET', '/sampled').end(200);
    assert.deepEqual(
      (await off.spans()).map((s) => s.name),
      ['GET /sampled'],
    );

    const on = setup({ sampleRatio: 1 });
    open.push(on.tracing);
    const unsampled = on.tracing.startServerSpan({ traceparent: `00-${TRACE}-${SPAN}-00` }, 'GET', '/x');
    assert.equal(unsampled.recording, false);
    // The decision travels on: the child is not sampled either.
    const headers: Record<string, string> = {};
    on.tracing.startClientSpan(unsampled.context, { method: 'GET', url: 'http://b/' }).inject(headers);
    assert.match(headers.traceparent ?? '', new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
    unsampled.end(200);
    assert.equal((await on.spans()).length, 0);
  });

  it('rejects a ratio outside 0..1', () => {
    assert.throws(() => createTracing({ service: 's', sampleRatio: 1.5 }), { code: 'MESHLET_BAD_OPTION' });
    assert.throws(() => createTracing({ service: 's', sampleRatio: Number.NaN }), { code: 'MESHLET_BAD_OPTION' });
  });

  it('uses the injected id generator, so ratio sampling is deterministic', async () => {
    const exporter = memoryExporter();
    let n = 0;
    // TraceIdRatioBasedSampler compares the XOR of the id's four 32-bit words with ratio * 2^32.
    const ids = ['00000000000000000000000000000001', 'ffffffff000000000000000000000000'];
    const tracing = createTracing({
      service: 's',
      sampleRatio: 0.5,
      exporters: [exporter],
      idGenerator: { generateTraceId: () => ids[n++ % 2] as string, generateSpanId: () => '0123456789abcdef' },
    });
    open.push(tracing);
    const first = tracing.startServerSpan({}, 'GET', '/1');
    const second = tracing.startServerSpan({}, 'GET', '/2');
    assert.equal(first.recording, true);
    assert.equal(second.recording, false);
    assert.equal(trace.getSpanContext(second.context)?.traceFlags, TraceFlags.NONE);
  });
});
