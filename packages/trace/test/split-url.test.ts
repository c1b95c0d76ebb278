import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { CallMetrics, createTracing, type Tracing } from '../src/index.js';
import { memoryExporter } from './servers.js';

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

describe('client spans from a split URL', () => {
  it('record the same attributes and metrics as the whole URL', async () => {
    const cases: [origin: string, path: string, search: string][] = [
      ['http://10.0.0.7:8081', '/api/users/42', ''],
      ['http://10.0.0.7:80', '/x', ''],
      ['https://[::1]:443', '/a%20b', ''],
      ['http://Pay.Internal:9', '/', ''],
      ['http://10.0.0.7:8081', '/q', '?id=1&sig=abc'],
    ];
    const wholeOut = memoryExporter();
    const splitOut = memoryExporter();
    const clientMetrics = (t: Tracing) => t.clientMetrics?.snapshot().map((s) => [s.service, s.api, s.requests]);
    const whole = createTracing({ service: 'a', exporters: [wholeOut], clock: new ManualClock(0) });
    const split = createTracing({ service: 'a', exporters: [splitOut], clock: new ManualClock(0) });
    open.push(whole, split);
    for (const [origin, path, search] of cases) {
      // Twice: the second reuses the origin's parse.
      for (let i = 0; i < 2; i++) {
        whole.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `${origin}${path}${search}` }).end(200);
        split.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: { origin, path, search } }).end(200);
      }
    }
    await whole.forceFlush();
    await split.forceFlush();
    const spans = splitOut.getFinishedSpans();
    assert.equal(spans.length, cases.length * 2);
    assert.deepEqual(
      spans.map((s) => s.attributes),
      wholeOut.getFinishedSpans().map((s) => s.attributes),
    );
    assert.equal(spans[6]?.attributes['url.full'], 'http://pay.internal:9/');
    assert.equal(spans[2]?.attributes['url.full'], 'http://10.0.0.7/x');
    assert.equal(spans[2]?.attributes['server.port'], 80);
    assert.match(String(spans[8]?.attributes['url.full']), /sig=REDACTED/);
    assert.deepEqual(clientMetrics(split), clientMetrics(whole));
  });
});

describe('CallMetrics series', () => {
  it('keeps series apart by service and API, in the order first seen', () => {
    const m = new CallMetrics({ prefix: 'x', maxApisPerService: 1 });
    for (const [service, api] of [
      ['a', 'GET /1'],
      ['b', 'GET /1'],
      ['a', 'GET /1'],
      ['a', 'GET /2'],
      // Would be 'a GET /1' too if the series were keyed by one string. (A control
      // character, which a NUL separator would need, is not a label: metrics-bounds.test.)
      ['a GET', '/1'],
    ]) {
      m.record({ service: service as string, api: api as string, durationMs: 1 });
    }
    assert.deepEqual(
      m.snapshot().map((s) => [s.service, s.api, s.requests]),
      [
        ['a', 'GET /1', 2],
        ['b', 'GET /1', 1],
        ['a', '_other', 1],
        ['a GET', '/1', 1],
      ],
    );
  });
});
