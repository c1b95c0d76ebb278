import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { createTracing, MAX_REQUEST_VALUE_CHARS, type Tracing } from '../src/index.js';
import { memoryExporter } from './servers.js';

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

const long = 'q'.repeat(64 * 1024);
const bounded = (v: unknown, start: string) => {
  assert.equal(typeof v, 'string');
  const s = v as string;
  assert.equal(s.length, MAX_REQUEST_VALUE_CHARS);
  assert.ok(s.startsWith(start), s.slice(0, 60));
  assert.ok(s.endsWith('…'));
};

describe('attribute values a request decides', () => {
  it(`are cut to ${MAX_REQUEST_VALUE_CHARS} characters, marked with …: url.full (a query, a split URL's path), url.path, http.route, server.address`, async () => {
    const out = memoryExporter();
    const tracing = createTracing({ service: 'a', exporters: [out], clock: new ManualClock(0) });
    open.push(tracing);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `http://inventory/search?filter=${long}` }).end(414);
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: { origin: 'http://inventory', path: `/${long}`, search: '' } }).end(414);
    const server = tracing.startServerSpan({ host: `${'h'.repeat(64 * 1024)}:8080` }, 'GET', `/r/${long}`, { target: `/p/${long}?x=1` });
    server.end(200);
    const late = tracing.startServerSpan({}, 'GET', undefined, { target: '/p' });
    late.setRoute(`/late/${long}`);
    late.end(200);
    await tracing.forceFlush();
    const [query, path, srv, routed] = out.getFinishedSpans();
    bounded(query?.attributes['url.full'], 'http://inventory/search?filter=qqq');
    bounded(path?.attributes['url.full'], 'http://inventory/qqq');
    bounded(srv?.attributes['url.path'], '/p/qqq');
    bounded(srv?.attributes['http.route'], '/r/qqq');
    bounded(srv?.attributes['server.address'], 'hhh');
    assert.equal(srv?.attributes['server.port'], 8080);
    bounded(routed?.attributes['http.route'], '/late/qqq');
  });

  it('keeps a value at the bound whole, and never cuts a surrogate pair', async () => {
    const out = memoryExporter();
    const tracing = createTracing({ service: 'b', exporters: [out], clock: new ManualClock(0) });
    open.push(tracing);
    const exact = `/${'p'.repeat(MAX_REQUEST_VALUE_CHARS - 1)}`;
    const pair = `/${'p'.repeat(MAX_REQUEST_VALUE_CHARS - 3)}😀tail`;
    tracing.startServerSpan({}, 'GET', undefined, { target: exact }).end(200);
    tracing.startServerSpan({}, 'GET', undefined, { target: pair }).end(200);
    await tracing.forceFlush();
    const [a, b] = out.getFinishedSpans();
    assert.equal(a?.attributes['url.path'], exact);
    assert.equal(b?.attributes['url.path'], `/${'p'.repeat(MAX_REQUEST_VALUE_CHARS - 3)}…`);
  });
});
