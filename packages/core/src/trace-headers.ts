import type { TraceHeaders } from './context.js';
import { PRINTABLE_ASCII } from './grpc-metadata.js';

// A traceparent as W3C Trace Context reads it (OpenTelemetry's W3C propagator's rule):
// version, trace id, span id and flags in lower-case hex; a version other than 00 may carry
// more fields after them (a later version's), 00 none; version ff is invalid.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[\x20-\x7e]*)?$/;
const INVALID_TRACE_ID = '00000000000000000000000000000000';
const INVALID_SPAN_ID = '0000000000000000';

/** The longest `tracestate` a context keeps: W3C's 512 characters, which every vendor must propagate. */
export const MAX_TRACESTATE_CHARS = 512;
/** The longest `traceparent` kept: version 00's is 55; a later version's extra fields, bounded. */
const MAX_TRACEPARENT_CHARS = 512;

/** Whether `value` is a valid W3C traceparent (any flags; a later version's extra fields; its ids not all zeros). */
export function validTraceparent(value: string): boolean {
  if (value.length > MAX_TRACEPARENT_CHARS) return false;
  const m = TRACEPARENT.exec(value);
  return m !== null && m[1] !== 'ff' && (m[1] !== '00' || m[4] === undefined) && m[2] !== INVALID_TRACE_ID && m[3] !== INVALID_SPAN_ID;
}

/**
 * The trace context a request's context keeps, to pass on as it came when no tracing is
 * configured: the traceparent only when it is a valid W3C one (else nothing: a
 * tracestate means nothing without it); the tracestate only when it is at most 512
 * characters of printable ASCII (an HTTP header value may hold a TAB or Latin-1, which gRPC
 * metadata refuses by throwing). What is left out is told to `dropped` (its name and why,
 * never its value). `trace` itself when all of it passes.
 */
export function keptTraceContext(trace: TraceHeaders, dropped: (header: string, reason: string) => void): TraceHeaders | undefined {
  if (!validTraceparent(trace.traceparent)) {
    dropped('traceparent', 'not a valid W3C traceparent');
    return undefined;
  }
  const state = trace.tracestate;
  if (state === undefined || state === '') return trace;
  if (state.length <= MAX_TRACESTATE_CHARS && PRINTABLE_ASCII.test(state)) return trace;
  dropped('tracestate', `over ${MAX_TRACESTATE_CHARS} characters or not printable ASCII`);
  return { traceparent: trace.traceparent };
}
