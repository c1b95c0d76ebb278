// The trace context a request's context keeps (to pass on as it came when no tracing is
// configured): only valid W3C trace context, which any outbound call can carry (gRPC
// metadata throws outside printable ASCII).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContext, keptTraceContext, MAX_TRACESTATE_CHARS, MemoryLogger, validTraceparent } from '../src/index.js';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('keptTraceContext', () => {
  it('keeps a trace context only when it is valid W3C: a traceparent as the W3C propagator reads it, a tracestate of at most 512 printable characters', () => {
    const drops: string[] = [];
    const note = (header: string, reason: string) => drops.push(`${header}: ${reason}`);
    // Any flags (a Level 2 random flag, 02, too), and a later version with its extra fields.
    for (const good of [
      TRACEPARENT,
      `${TRACEPARENT.slice(0, -2)}02`,
      `${TRACEPARENT.slice(0, -2)}ff`,
      `01${TRACEPARENT.slice(2)}`,
      `cc${TRACEPARENT.slice(2)}-what-comes`,
    ])
      assert.equal(validTraceparent(good), true, good);
    for (const bad of [
      `${TRACEPARENT}\tx`,
      `${TRACEPARENT}-x`,
      `${TRACEPARENT} `,
      TRACEPARENT.toUpperCase(),
      `ff${TRACEPARENT.slice(2)}`,
      `01${TRACEPARENT.slice(2)}-${'x'.repeat(600)}`,
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
    ])
      assert.equal(validTraceparent(bad), false, bad);
    const whole = { traceparent: TRACEPARENT, tracestate: 'a=b' };
    assert.equal(keptTraceContext(whole, note), whole);
    assert.equal(keptTraceContext({ traceparent: `${TRACEPARENT}\tx`, tracestate: 'a=b' }, note), undefined);
    const long = { traceparent: TRACEPARENT, tracestate: `a=${'b'.repeat(MAX_TRACESTATE_CHARS - 1)}` };
    assert.deepEqual(keptTraceContext(long, note), { traceparent: TRACEPARENT });
    const latin1 = { traceparent: TRACEPARENT, tracestate: 'a=\u00e9' };
    assert.deepEqual(keptTraceContext(latin1, note), { traceparent: TRACEPARENT });
    const atBound = { traceparent: TRACEPARENT, tracestate: `a=${'b'.repeat(MAX_TRACESTATE_CHARS - 2)}` };
    assert.equal(keptTraceContext(atBound, note), atBound);
    assert.deepEqual(
      drops.map((d) => d.split(':')[0]),
      ['traceparent', 'tracestate', 'tracestate'],
    );
  });

  it('is what createContext keeps of the trace it is given, the rest told to its logger (MESHLET_HEADER_DROPPED)', () => {
    const logger = new MemoryLogger();
    assert.equal(createContext({ trace: { traceparent: `${TRACEPARENT}\u00e9` }, logger }).trace, undefined);
    assert.deepEqual(createContext({ trace: { traceparent: TRACEPARENT, tracestate: 'a=\tb' }, logger }).trace, {
      traceparent: TRACEPARENT,
    });
    assert.deepEqual(
      logger.entries.map((e) => [e.fields?.code, e.fields?.header]),
      [
        ['MESHLET_HEADER_DROPPED', 'traceparent'],
        ['MESHLET_HEADER_DROPPED', 'tracestate'],
      ],
    );
  });
});
