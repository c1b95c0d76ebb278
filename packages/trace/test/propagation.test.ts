import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSpanContextValid, propagation, ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { baggageWithinLimits, TracePropagation } from '../src/index.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const parentOf = (ctx: ReturnType<TracePropagation['extract']>) => trace.getSpanContext(ctx);

/** A context holding a remote sampled span, as a caller would have. */
function callerContext() {
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE, spanId: SPAN, traceFlags: TraceFlags.SAMPLED, isRemote: false });
}

describe('TracePropagation', () => {
  it('round-trips W3C traceparent, tracestate and baggage', () => {
    const p = new TracePropagation();
    const headers: Record<string, string> = {};
    let ctx = callerContext();
    ctx = propagation.setBaggage(ctx, propagation.createBaggage({ tenant: { value: 'acme' } }));
    p.inject(ctx, headers);
    assert.equal(headers.traceparent, `00-${TRACE}-${SPAN}-01`);
    assert.equal(headers.baggage, 'tenant=acme');
    assert.equal(headers.b3, undefined);

    const back = p.extract({ ...headers, tracestate: 'vendor=abc' });
    const sc = parentOf(back);
    assert.equal(sc?.traceId, TRACE);
    assert.equal(sc?.spanId, SPAN);
    assert.equal(sc?.isRemote, true);
    assert.equal(sc?.traceState?.get('vendor'), 'abc');
    assert.equal(propagation.getBaggage(back)?.getEntry('tenant')?.value, 'acme');
  });

  it('emits B3 single and multi by configuration, and extracts each back', () => {
    for (const emit of [['b3'], ['b3multi']] as const) {
      const p = new TracePropagation({ emit });
      const headers = new Headers();
      p.inject(callerContext(), headers);
      assert.equal(headers.has('traceparent'), false);
      if (emit[0] === 'b3') assert.equal(headers.get('b3'), `${TRACE}-${SPAN}-1`);
      else {
        assert.equal(headers.get('x-b3-traceid'), TRACE);
        assert.equal(headers.get('x-b3-spanid'), SPAN);
        assert.equal(headers.get('x-b3-sampled'), '1');
      }
      const sc = parentOf(p.extract(headers));
      assert.equal(sc?.traceId, TRACE);
      assert.equal(sc?.spanId, SPAN);
      assert.equal(sc?.traceFlags, TraceFlags.SAMPLED);
    }
  });

  it('lists the headers it writes', () => {
    assert.deepEqual(new TracePropagation({ emit: ['w3c', 'b3multi'], baggage: false }).fields.slice(0, 2), ['traceparent', 'tracestate']);
    assert.ok(new TracePropagation({ emit: ['b3multi'] }).fields.includes('x-b3-traceid'));
  });

  it('extracts W3C first: a valid traceparent wins over B3 headers', () => {
    const p = new TracePropagation();
    const b3Trace = '1'.repeat(32);
    const sc = parentOf(
      p.extract({
        traceparent: `00-${TRACE}-${SPAN}-01`,
        b3: `${b3Trace}-${'2'.repeat(16)}-1`,
        'x-b3-traceid': b3Trace,
        'x-b3-spanid': '3'.repeat(16),
      }),
    );
    assert.equal(sc?.traceId, TRACE);
  });

  it('falls back to B3 when the traceparent is malformed, and to B3 multi when the single header is', () => {
    const p = new TracePropagation();
    const single = parentOf(p.extract({ traceparent: 'garbage', b3: `${TRACE}-${SPAN}-1` }));
    assert.equal(single?.traceId, TRACE);
    const multi = parentOf(p.extract({ b3: 'not-b3', 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' }));
    assert.equal(multi?.spanId, SPAN);
  });

  it('ignores malformed traceparents without throwing', () => {
    const p = new TracePropagation();
    for (const bad of [
      '',
      'garbage',
      `00-${'0'.repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `ff-${TRACE}-${SPAN}-01`,
      `00-${TRACE.toUpperCase()}-${SPAN}-01`,
      `00-${TRACE}-${SPAN}`,
      '\u0000\u00ff',
    ]) {
      const sc = parentOf(p.extract({ traceparent: bad }));
      assert.ok(sc === undefined || !isSpanContextValid(sc), `accepted ${JSON.stringify(bad)}`);
    }
    assert.equal(parentOf(p.extract({ traceparent: ['x', 'y'] })), undefined);
  });

  it('drops a baggage header over the W3C limits, whole', () => {
    const p = new TracePropagation();
    const within = Array.from({ length: 180 }, (_, i) => `k${i}=v`).join(',');
    assert.equal(propagation.getBaggage(p.extract({ baggage: within }))?.getAllEntries().length, 180);
    const tooMany = `${within},k180=v`;
    const tooLong = `a=${'x'.repeat(8200)}`;
    const memberTooLong = `a=${'x'.repeat(4095)},b=c`;
    for (const baggage of [tooMany, tooLong, memberTooLong]) {
      assert.equal(baggageWithinLimits(baggage), false);
      assert.equal(propagation.getBaggage(p.extract({ baggage })), undefined);
    }
    // The trace context still comes through when the baggage is dropped.
    assert.equal(parentOf(p.extract({ traceparent: `00-${TRACE}-${SPAN}-01`, baggage: tooMany }))?.traceId, TRACE);
  });

  it('does not read or write baggage when turned off', () => {
    const p = new TracePropagation({ baggage: false });
    assert.equal(propagation.getBaggage(p.extract({ baggage: 'a=b' })), undefined);
    const headers: Record<string, string> = {};
    p.inject(propagation.setBaggage(callerContext(), propagation.createBaggage({ a: { value: 'b' } })), headers);
    assert.equal(headers.baggage, undefined);
  });
});
