import type { TraceHeaders } from './context.js';
import { PRINTABLE_ASCII } from './grpc-metadata.js';

// A version-00 traceparent with the flags W3C defines (00, 01), as @meshlet/trace's
// propagator reads one (its SIMPLE_TRACEPARENT; core imports no sibling).
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;
const INVALID_TRACE_ID = '00000000000000000000000000000000';
const INVALID_SPAN_ID = '0000000000000000';

/** The longest `tracestate` a context keeps: W3C's 512 characters, which every vendor must propagate. */
export const MAX_TRACESTATE_CHARS = 512;

/** Whether `value` is a valid W3C version-00 traceparent (its trace and span ids not all zeros). */
export function validTraceparent(value: string): boolean {
  return (
    value.length === 55 && TRACEPARENT.test(value) && value.slice(3, 35) !== INVALID_TRACE_ID && value.slice(36, 52) !== INVALID_SPAN_ID
  );
}

/**
 * The trace context a request's context keeps, to pass on as it came when no tracing is
 * configured: the traceparent only when it is a valid W3C version-00 one (else nothing: a
 * tracestate means nothing without it); the tracestate only when it is at most 512
 * characters of printable ASCII (an HTTP header value may hold a TAB or Latin-1, which gRPC
 * metadata refuses by throwing). What is left out is told to `dropped` (its name and why,
 * never its value). `trace` itself when all of it passes.
 */
export function keptTraceContext(trace: TraceHeaders, dropped: (header: string, reason: string) => void): TraceHeaders | undefined {
  if (!validTraceparent(trace.traceparent)) {
    dropped('traceparent', 'not a valid W3C version-00 traceparent');
    return undefined;
  }
  const state = trace.tracestate;
  if (state === undefined || state === '') return trace;
  if (state.length <= MAX_TRACESTATE_CHARS && PRINTABLE_ASCII.test(state)) return trace;
  dropped('tracestate', `over ${MAX_TRACESTATE_CHARS} characters or not printable ASCII`);
  return { traceparent: trace.traceparent };
}
