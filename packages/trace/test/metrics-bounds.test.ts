// The call metrics are bounded whatever the callers claim: distinct services (server side:
// callers, unauthenticated without auth), series in all, labels as core's checkTag allows;
// label values are escaped so no line of the exposition can be forged; a scrape that fails
// is a 500, never an exception thrown out of a node:http listener.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import { ManualClock, MemoryLogger } from '@meshlet/core';
import {
  CALL_METRICS_DEFAULTS,
  CallMetrics,
  createTracing,
  escapeLabel,
  MAX_ERROR_TYPES_PER_SERIES,
  prometheusHandler,
} from '../src/index.js';

/** Every line of a Prometheus text exposition: a comment, or a sample of the given prefix. */
const SAMPLE = /^[a-z_]+(\{([a-z_]+="([^"\\\n\r]|\\["\\n])*",?)*\})? [0-9.e+-]+$/;
const wellFormed = (text: string, prefix: string) =>
  text
    .split('\n')
    .slice(0, -1)
    .every(
      (line) =>
        line.startsWith(`# HELP ${prefix}`) || line.startsWith(`# TYPE ${prefix}`) || (line.startsWith(prefix) && SAMPLE.test(line)),
    );

/** A response that records what the handler wrote. */
function fakeResponse() {
  const got: { status?: number; body?: string | undefined; headers?: Record<string, unknown> } = {};
  const res = {
    headersSent: false,
    writeHead(status: number, headers: Record<string, unknown>) {
      got.status = status;
      got.headers = headers;
      this.headersSent = true;
      return this;
    },
    end(body?: string) {
      got.body = body;
      return this;
    },
    destroy() {
      got.status = -1;
    },
  };
  return { res: res as unknown as ServerResponse, got };
}
const GET = { method: 'GET' } as IncomingMessage;

describe('call metrics bounds', () => {
  it('20,000 distinct callers of 400 bytes: at most maxServices series and _other, the exposition bounded, the overflow counted and logged once a minute', async () => {
    const clock = new ManualClock();
    const logger = new MemoryLogger();
    const tracing = createTracing({ service: 'orders', clock, logger, sampleRatio: 0 });
    for (let i = 0; i < 20_000; i++) {
      const span = tracing.startServerSpan({}, 'GET', '/x', { caller: `c${i}${'x'.repeat(400)}` });
      span.end(200);
    }
    const metrics = tracing.serverMetrics as CallMetrics;
    const snap = metrics.snapshot();
    assert.equal(snap.length, CALL_METRICS_DEFAULTS.maxServices + 1);
    const other = snap.find((s) => s.service === '_other');
    assert.equal(other?.requests, 20_000 - CALL_METRICS_DEFAULTS.maxServices);
    assert.equal(metrics.overflowed, 20_000 - CALL_METRICS_DEFAULTS.maxServices);
    const text = metrics.render();
    // 257 series of about 21 lines of 470 bytes: under 3 MB, where it was 200 MB.
    assert.ok(text.length < 3_000_000, `${text.length} bytes`);
    assert.match(text, /^meshlet_server_overflow_total 19744$/m);
    assert.ok(wellFormed(text, 'meshlet_server'));
    const told = logger.entries.filter((e) => e.fields?.code === 'MESHLET_METRICS_OVERFLOW');
    assert.equal(told.length, 1);
    assert.equal(told[0]?.fields?.bound, 'services');
    clock.advance(60_000);
    tracing.startServerSpan({}, 'GET', '/x', { caller: 'one-more' }).end(200);
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_METRICS_OVERFLOW').length, 2);
    await tracing.shutdown();
  });

  it('a service or API label that checkTag refuses (over 512 bytes, a control character) is counted under _other', () => {
    const m = new CallMetrics({ prefix: 'p' });
    m.add('a'.repeat(512), 'GET /', 1, undefined);
    m.add('a'.repeat(513), 'GET /', 1, undefined);
    m.add('gw\r\n# HELP injected', 'GET /', 1, undefined);
    m.add('gw', `GET /${'b'.repeat(600)}`, 1, undefined);
    m.add('gw', 'GET /\u0000', 1, undefined);
    assert.deepEqual(
      m.snapshot().map((s) => [s.service.length, s.api, s.requests]),
      [
        [512, 'GET /', 1],
        [6, 'GET /', 2],
        [2, '_other', 2],
      ],
    );
    assert.equal(m.overflowed, 4);
  });

  it('maxSeries bounds the series in all: past it, only (_other, _other) is made', () => {
    const m = new CallMetrics({ prefix: 'p', maxSeries: 10, maxServices: 100 });
    for (let s = 0; s < 20; s++) for (let a = 0; a < 20; a++) m.add(`svc${s}`, `GET /${a}`, 1, undefined);
    const snap = m.snapshot();
    assert.equal(snap.length, 11);
    assert.deepEqual(snap.at(-1) && [snap.at(-1)?.service, snap.at(-1)?.api, snap.at(-1)?.requests], ['_other', '_other', 390]);
    assert.equal(m.overflowed, 390);
    // A series made before the bound still counts its own calls.
    m.add('svc0', 'GET /3', 1, undefined);
    assert.equal(m.snapshot().find((s) => s.service === 'svc0' && s.api === 'GET /3')?.requests, 2);
  });

  it('maxApisPerService folds a service’s APIs as before, without counting an overflow', () => {
    const m = new CallMetrics({ prefix: 'p', maxApisPerService: 2 });
    for (let a = 0; a < 5; a++) m.add('users', `GET /${a}`, 1, undefined);
    assert.deepEqual(
      m.snapshot().map((s) => [s.api, s.requests]),
      [
        ['GET /0', 1],
        ['GET /1', 1],
        ['_other', 3],
      ],
    );
    assert.equal(m.overflowed, 0);
    assert.doesNotMatch(m.render(), /overflow_total/);
  });

  it('a series keeps at most MAX_ERROR_TYPES_PER_SERIES error types; the rest are counted under error_type="_other", the overflow counted', () => {
    const m = new CallMetrics({ prefix: 'meshlet_client' });
    for (let i = 0; i < 5000; i++) m.add('users', 'POST /pkg.S/M', 1, `CODE_${i}`);
    const [s] = m.snapshot();
    const types = Object.keys(s?.errors ?? {});
    assert.equal(types.length, MAX_ERROR_TYPES_PER_SERIES + 1);
    assert.equal(s?.errors._other, 5000 - MAX_ERROR_TYPES_PER_SERIES);
    assert.equal(m.overflowed, 5000 - MAX_ERROR_TYPES_PER_SERIES);
    m.add('users', 'POST /pkg.S/M', 1, 'CODE_0');
    assert.equal(m.snapshot()[0]?.errors.CODE_0, 2, 'a type already kept is still counted as itself');
  });

  it('tracing options take maxServices and maxSeries, within their bounds', async () => {
    const t = createTracing({ service: 'web', metrics: { maxServices: 1, maxSeries: 3 } });
    t.serverMetrics?.add('a', 'GET', 1, undefined);
    t.serverMetrics?.add('b', 'GET', 1, undefined);
    assert.deepEqual(
      t.serverMetrics?.snapshot().map((s) => s.service),
      ['a', '_other'],
    );
    await t.shutdown();
    assert.throws(() => createTracing({ service: 'web', metrics: { maxServices: 0 } }), /metrics\.maxServices: 0 must be a whole number/);
    assert.throws(
      () => createTracing({ service: 'web', metrics: { maxSeries: 1e12 } }),
      /metrics\.maxSeries: 1000000000000 must be a whole number/,
    );
  });
});

describe('label escaping', () => {
  it('escapes backslash, double quote and line feed; replaces a carriage return and every other control character', () => {
    assert.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.equal(escapeLabel('a\rb'), 'a\ufffdb');
    assert.equal(escapeLabel('\u0000\u0007\t\u001b\u007f\u0085\u009f'), '\ufffd'.repeat(7));
    assert.equal(escapeLabel('plain é ✓'), 'plain é ✓');
  });

  it('a label with \\r and \\n cannot start a line of its own', () => {
    // Straight through record: as a caller of tracing.startServerSpan could give it.
    const m = new CallMetrics({ prefix: 'p' });
    m.add('svc', 'GET /x', 1, 'bad\r\n# HELP injected "quoted" \\');
    const text = m.render();
    assert.ok(!text.includes('\r'));
    assert.ok(text.split('\n').every((l) => !l.startsWith('# HELP injected')));
    assert.match(text, /error_type="bad\ufffd\\n# HELP injected \\"quoted\\" \\\\"/);
    assert.ok(wellFormed(text, 'p_'));
  });
});

describe('metrics handler', () => {
  it('a source that throws is a 500 with a short body, never an exception', () => {
    const handler = prometheusHandler(
      { render: () => 'ok 1\n' },
      {
        render: () => {
          throw new RangeError('Invalid string length');
        },
      },
    );
    const { res, got } = fakeResponse();
    assert.doesNotThrow(() => handler(GET, res));
    assert.equal(got.status, 500);
    assert.equal(got.body, 'metrics unavailable\n');
  });

  it('tracing.metricsHandler(): 500 and logged once a minute with a code when rendering fails; 200 otherwise', async () => {
    const clock = new ManualClock();
    const logger = new MemoryLogger();
    const tracing = createTracing({ service: 'orders', clock, logger });
    const handler = tracing.metricsHandler();
    const ok = fakeResponse();
    handler(GET, ok.res);
    assert.equal(ok.got.status, 200);
    const metrics = tracing.serverMetrics as CallMetrics & { render(): string };
    metrics.render = () => {
      throw new RangeError('Invalid string length');
    };
    for (let i = 0; i < 3; i++) {
      const { res, got } = fakeResponse();
      assert.doesNotThrow(() => handler(GET, res));
      assert.equal(got.status, 500);
    }
    const told = logger.entries.filter((e) => e.fields?.code === 'MESHLET_METRICS_RENDER_FAILED');
    assert.equal(told.length, 1);
    assert.match(String(told[0]?.fields?.error), /RangeError: Invalid string length/);
    await tracing.shutdown();
  });

  it('a response that throws as well (headers already sent) is destroyed, still nothing thrown', () => {
    const handler = prometheusHandler({
      render: () => {
        throw new Error('boom');
      },
    });
    const { res, got } = fakeResponse();
    (res as unknown as { headersSent: boolean }).headersSent = true;
    assert.doesNotThrow(() => handler(GET, res));
    assert.equal(got.status, -1);
  });
});
