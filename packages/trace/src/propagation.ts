import {
  type Context,
  INVALID_SPANID,
  INVALID_TRACEID,
  isSpanContextValid,
  ROOT_CONTEXT,
  type SpanContext,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from '@opentelemetry/api';
import { isTracingSuppressed, TraceState, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import { baggageWithinLimits } from './baggage-limits.js';

/** A trace header format: W3C trace context, B3 single header (`b3`), B3 multi header (`X-B3-*`). */
export type PropagationFormat = 'w3c' | 'b3' | 'b3multi';

export interface PropagationOptions {
  /** Formats written on outbound calls. Default `['w3c']`; Spring Boot 2 (Sleuth) estates want `['b3multi']` or `['w3c', 'b3multi']`. */
  readonly emit?: readonly PropagationFormat[];
  /** Carry W3C `baggage` in and out. Default true. */
  readonly baggage?: boolean;
}

/** Request headers as node:http gives them (lower-case names) or a WHATWG Headers. */
export type InboundHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;
/** Headers of an outbound request: a WHATWG Headers or a plain record. */
export type OutboundHeaders = Headers | Record<string, string>;

const getter: TextMapGetter<InboundHeaders> = {
  get(carrier, key) {
    if (carrier instanceof Headers) return carrier.get(key) ?? undefined;
    const v = carrier[key];
    return v === undefined ? undefined : typeof v === 'string' ? v : [...v];
  },
  keys(carrier) {
    return carrier instanceof Headers ? [...carrier.keys()] : Object.keys(carrier);
  },
};

// Hides the single `b3` header so that B3Propagator falls back to the multi-header form.
const withoutB3Single: TextMapGetter<InboundHeaders> = {
  get: (carrier, key) => (key === 'b3' ? undefined : getter.get(carrier, key)),
  keys: (carrier) => getter.keys(carrier).filter((k) => k !== 'b3'),
};

const setter: TextMapSetter<OutboundHeaders> = {
  set(carrier, key, value) {
    if (carrier instanceof Headers) carrier.set(key, value);
    else carrier[key] = value;
  },
};

const hasValidSpan = (ctx: Context): boolean => {
  const sc = trace.getSpanContext(ctx);
  return sc !== undefined && isSpanContextValid(sc);
};

// A version-00 traceparent with the flags W3C defines (00, 01), as the W3C propagator's
// pattern reads it: lower-case hex, nothing before or after.
const SIMPLE_TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

/**
 * The caller's trace context when the headers are the common simple case, read without
 * the propagators: a plain header record (node's `req.headers`) with no baggage, and
 * either a version-00 `traceparent` (with a `tracestate` or none; W3C wins over B3, so B3
 * headers are not read) or no trace header at all (ROOT_CONTEXT). The same context as
 * `TracePropagation.extract` gives then (a test holds them equal); its span context is
 * valid by construction. Undefined for anything else: the propagators read it.
 * `TracePropagation.extract` tries it first, so HTTP and gRPC servers alike read the
 * common case without the propagators.
 */
export function simpleParent(headers: InboundHeaders): Context | undefined {
  if (headers instanceof Headers) return undefined;
  const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
  if (record.baggage !== undefined) return undefined;
  const tp = record.traceparent;
  if (tp === undefined) return record.b3 === undefined && record['x-b3-traceid'] === undefined ? ROOT_CONTEXT : undefined;
  if (typeof tp !== 'string' || tp.length !== 55 || !SIMPLE_TRACEPARENT.test(tp)) return undefined;
  const traceId = tp.slice(3, 35);
  const spanId = tp.slice(36, 52);
  if (traceId === INVALID_TRACEID || spanId === INVALID_SPANID) return undefined;
  const state = record.tracestate;
  if (state !== undefined && typeof state !== 'string') return undefined;
  const sc: SpanContext = { traceId, spanId, traceFlags: tp.charCodeAt(54) === 49 ? 1 : 0, isRemote: true };
  if (state) sc.traceState = new TraceState(state);
  return trace.setSpanContext(ROOT_CONTEXT, sc);
}

/**
 * Reads and writes trace headers. Extraction accepts W3C, B3 single and B3 multi, in that
 * order, and the first valid one wins: OpenTelemetry's CompositePropagator runs every
 * propagator and lets the last one win, which would let a stale B3 header added by an old
 * proxy override a good traceparent. A malformed header is ignored (the request starts a
 * new trace); nothing here throws on input.
 */
export class TracePropagation {
  readonly #w3c = new W3CTraceContextPropagator();
  readonly #baggage = new W3CBaggagePropagator();
  readonly #b3Single = new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER });
  readonly #b3Multi = new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER });
  readonly #emit: readonly PropagationFormat[];
  readonly #withBaggage: boolean;
  readonly #w3cOnly: boolean;
  /** Every header name this propagation may write. */
  readonly fields: readonly string[];

  constructor(options: PropagationOptions = {}) {
    this.#emit = [...new Set<PropagationFormat>(options.emit ?? ['w3c'])];
    this.#withBaggage = options.baggage ?? true;
    this.#w3cOnly = this.#emit.length === 1 && this.#emit[0] === 'w3c';
    const fields: string[] = [];
    for (const f of this.#emit) {
      if (f === 'w3c') fields.push(...this.#w3c.fields());
      else if (f === 'b3') fields.push(...this.#b3Single.fields());
      else fields.push(...this.#b3Multi.fields());
    }
    if (this.#withBaggage) fields.push(...this.#baggage.fields());
    this.fields = fields;
  }

  /** The remote parent (and baggage) carried by `headers`, on top of `base`. */
  extract(headers: InboundHeaders, base: Context = ROOT_CONTEXT): Context {
    // The common case (a plain traceparent or none, no baggage) without the propagators.
    if (base === ROOT_CONTEXT) {
      const simple = simpleParent(headers);
      if (simple !== undefined) return simple;
    }
    return this.extractByPropagators(headers, base);
  }

  /**
   * `extract` without its `simpleParent` shortcut: the propagators alone (W3C, B3 single,
   * B3 multi, baggage). For a caller that has asked `simpleParent` already and been told
   * no (the HTTP SERVER span, which keeps the answer for the sampler), so that it is not
   * asked twice; it gives the same context as `extract` in every case.
   */
  extractByPropagators(headers: InboundHeaders, base: Context = ROOT_CONTEXT): Context {
    let ctx = base;
    const w3c = this.#w3c.extract(base, headers, getter);
    if (hasValidSpan(w3c)) ctx = w3c;
    else {
      const b3 = this.#b3Single.extract(base, headers, getter);
      if (hasValidSpan(b3)) ctx = b3;
      else if (getter.get(headers, 'b3') !== undefined) {
        const multi = this.#b3Single.extract(base, headers, withoutB3Single);
        if (hasValidSpan(multi)) ctx = multi;
      }
    }
    if (this.#withBaggage) {
      const raw = getter.get(headers, 'baggage');
      const header = Array.isArray(raw) ? raw.join(',') : raw;
      if (header && baggageWithinLimits(header)) ctx = this.#baggage.extract(ctx, { baggage: header }, getter);
    }
    return ctx;
  }

  /**
   * Writes `span` (a span started under `parent`) and `parent`'s baggage into `headers`,
   * as `inject(trace.setSpanContext(parent, span), headers)` would, without building that
   * context. Only for W3C alone (the default); returns false, having written nothing, for
   * the other formats.
   */
  injectSpan(span: SpanContext, parent: Context, headers: OutboundHeaders): boolean {
    if (!this.#w3cOnly) return false;
    if (isTracingSuppressed(parent) || !isSpanContextValid(span)) return true;
    return this.injectValid(span, parent, headers);
  }

  /**
   * `injectSpan` for a span context known valid, under a parent where tracing is not
   * suppressed (the head sampler's decision: ids drawn by its generator or checked on the
   * parent), without checking either again.
   */
  injectValid(span: SpanContext, parent: Context, headers: OutboundHeaders): boolean {
    if (!this.#w3cOnly) return false;
    const flags = span.traceFlags;
    const hex = flags === 1 ? '01' : flags === 0 ? '00' : flags < 16 ? `0${flags.toString(16)}` : flags.toString(16);
    const traceparent = `00-${span.traceId}-${span.spanId}-${hex}`;
    if (headers instanceof Headers) headers.set('traceparent', traceparent);
    else headers.traceparent = traceparent;
    if (span.traceState) setter.set(headers, 'tracestate', span.traceState.serialize());
    // The root context carries no baggage: nothing to look up.
    if (this.#withBaggage && parent !== ROOT_CONTEXT) this.#baggage.inject(parent, headers, setter);
    return true;
  }

  /** Writes the span in `context` (and its baggage) into `headers` in every configured format. */
  inject(context: Context, headers: OutboundHeaders): void {
    for (const f of this.#emit) {
      if (f === 'w3c') this.#w3c.inject(context, headers, setter);
      else if (f === 'b3') this.#b3Single.inject(context, headers, setter);
      else this.#b3Multi.inject(context, headers, setter);
    }
    if (this.#withBaggage) this.#baggage.inject(context, headers, setter);
  }
}
