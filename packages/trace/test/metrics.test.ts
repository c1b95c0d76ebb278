import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, MeshletError } from '@meshlet/core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { apiOfPath, CallMetrics, CLIENT_CALL_METRICS_HELP, createTracing, SERVER_CALL_METRICS_HELP } from '../src/index.js';
import { listen } from './servers.js';

describe('metrics', () => {
  it('count requests, errors by error.type and latency per destination service and API', async () => {
    const clock = new ManualClock();
    const tracing = createTracing({ service: 'web', clock });
    const call = (ms: number, outcome: Parameters<ReturnType<typeof tracing.startClientSpan>['end']>[0], api = 'GET /users/{id}') => {
      const span = tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://10.0.0.1:8080/users/1', service: 'users', api });
      clock.advance(ms);
      span.end(outcome);
    };
    call(0.4, 200);
    call(3, 200);
    call(30, 503);
    call(0, { error: new MeshletError('MESHLET_CIRCUIT_OPEN', 'open') });
    call(2, 200, 'POST /users');
    const [users, post] = tracing.clientMetrics?.snapshot() ?? [];
    assert.equal(users?.service, 'users');
    assert.equal(users?.requests, 4);
    assert.deepEqual(users?.errors, { '503': 1, circuit_open: 1 });
    assert.equal(users?.sumSeconds, (0.4 + 3 + 30) / 1000);
    // Cumulative buckets: <=0.5 ms holds 0.4 and 0; <=5 ms adds 3; <=50 ms adds 30.
    assert.deepEqual(users?.buckets.slice(0, 7), [2, 2, 2, 3, 3, 3, 4]);
    assert.equal(post?.requests, 1);

    const text = tracing.clientMetrics?.render() ?? '';
    assert.match(text, /^# TYPE meshlet_client_requests_total counter$/m);
    assert.match(text, /^meshlet_client_requests_total\{service="users",api="GET \/users\/\{id\}"\} 4$/m);
    assert.match(text, /^meshlet_client_errors_total\{service="users",api="GET \/users\/\{id\}",error_type="circuit_open"\} 1$/m);
    assert.match(text, /^meshlet_client_request_duration_seconds_bucket\{service="users",api="GET \/users\/\{id\}",le="\+Inf"\} 4$/m);
    assert.match(text, /^meshlet_client_request_duration_seconds_count\{service="users",api="POST \/users"\} 1$/m);
    await tracing.shutdown();
  });

  it('addPath (the last series remembered) counts as add with apiOfPath, calls to several services, methods and paths interleaved', () => {
    const byPath = new CallMetrics({ prefix: 'p', maxApisPerService: 3 });
    const byApi = new CallMetrics({ prefix: 'p', maxApisPerService: 3 });
    const services = ['users', 'orders'];
    const methods = ['GET', 'POST'];
    const paths = ['/users/1', '/users/2', '/a', '/b', '/c', '/users/3/items', '/a'];
    let seed = 7;
    for (let i = 0; i < 3000; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const service = services[seed % 2] as string;
      const method = methods[(seed >>> 3) % 2] as string;
      // Runs of the same call, as real traffic has, and changes in one part at a time.
      const path = paths[Math.floor(i / 3) % paths.length] as string;
      const ms = (seed >>> 8) % 100;
      const errorType = ms > 90 ? '503' : undefined;
      byPath.addPath(service, method, path, ms, errorType);
      byApi.add(service, apiOfPath(method, path), ms, errorType);
    }
    assert.equal(byPath.render(), byApi.render());
    assert.match(byPath.render(), /api="_other"/);
  });

  it('serves Prometheus text over node:http, server side keyed by route and caller', async () => {
    const tracing = createTracing({ service: 'web' });
    const s = tracing.startServerSpan({}, 'GET', '/health', { caller: 'gateway' });
    s.end(500);
    const server = await listen(tracing.metricsHandler());
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      const body = await res.text();
      assert.match(body, /^meshlet_server_requests_total\{service="gateway",api="GET \/health"\} 1$/m);
      assert.match(body, /^meshlet_server_errors_total\{service="gateway",api="GET \/health",error_type="500"\} 1$/m);
    } finally {
      await server.close();
      await tracing.shutdown();
    }
  });

  it('says in HELP what each side counts: calls made by called service, requests served by calling service and route', () => {
    const tracing = createTracing({ service: 'web', metrics: {} });
    const client = tracing.clientMetrics?.render() ?? '';
    const server = tracing.serverMetrics?.render() ?? '';
    for (const [text, help] of [
      [client, CLIENT_CALL_METRICS_HELP],
      [server, SERVER_CALL_METRICS_HELP],
    ] as const) {
      const side = text === client ? 'meshlet_client' : 'meshlet_server';
      assert.ok(text.includes(`# HELP ${side}_requests_total ${help.requests}\n`), text);
      assert.ok(text.includes(`# HELP ${side}_errors_total ${help.errors}\n`), text);
      assert.ok(text.includes(`# HELP ${side}_request_duration_seconds ${help.duration}\n`), text);
    }
    assert.match(server, /^# HELP meshlet_server_requests_total Requests served, by calling service \(""/m);
    assert.match(server, /the route, or the method when the framework gives no route/);
    assert.match(client, /^# HELP meshlet_client_requests_total Calls made .*by called service/m);
  });

  it('bounds the APIs per service and escapes label values', () => {
    const m = new CallMetrics({ prefix: 'x', maxApisPerService: 2 });
    for (const api of ['GET /a', 'GET /b', 'GET /c', 'GET /d']) m.record({ service: 's"\\', api, durationMs: 1 });
    assert.deepEqual(
      m.snapshot().map((s) => [s.api, s.requests]),
      [
        ['GET /a', 1],
        ['GET /b', 1],
        ['_other', 2],
      ],
    );
    assert.match(m.render(), /x_requests_total\{service="s\\"\\\\",api="_other"\} 2/);
  });

  it('can be turned off', async () => {
    const tracing = createTracing({ service: 'web', metrics: false });
    assert.equal(tracing.clientMetrics, undefined);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://a/' }).end(200);
    await tracing.shutdown();
  });
});

describe('apiOfPath', () => {
  it('folds segments that look like ids, and leaves words alone', () => {
    const cases: [string, string][] = [
      ['/users/42', 'GET /users/{id}'],
      ['/users/42/orders/7', 'GET /users/{id}/orders/{id}'],
      ['/items/3F2504E0-4F89-11D3-9A0C-0305E82C3301', 'GET /items/{id}'],
      ['/files/a1b2c3d4e5f6a7b8c9d0', 'GET /files/{id}'],
      ['/v2/internationalization', 'GET /v2/internationalization'],
      ['/health', 'GET /health'],
    ];
    for (const [path, api] of cases) assert.equal(apiOfPath('GET', path), api, path);
  });
});
