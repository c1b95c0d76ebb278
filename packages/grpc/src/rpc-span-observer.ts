import type { Attempt, AttemptObserver, AttemptResult } from '@meshlet/core';
import type { Context } from '@opentelemetry/api';
import { type GrpcAttemptResult, type RpcClientSpan, rpcSpan, type SpanPorts, statusOfError } from './governance.js';
import type { RouteChoice } from './ports.js';

/** What the span observer reads from a unary call (`UnaryCall`): the parent of its spans. */
interface SpanParent {
  /** The context active when the call was made: its attempts' spans are children of it. */
  readonly parent: Context | undefined;
}

/**
 * The CLIENT span of each unary attempt, as the outermost observer of the attempt chain
 * (core's `AttemptObserver`), so it covers everything below it (a fault's delay): `started`
 * starts the span (rpc.* attributes, the route decision's rule, lane and revision, the
 * attempt's number), takes its trace context and keeps it on the record (`attempt.span`),
 * where the transport finds the trace context for the attempt's metadata; `settled` ends it with the
 * result's `code` and `details` (an error's status by `statusOfError`), adding what the
 * layers below put on the record (its attributes, shadow notes). It reaches trace only
 * through the ports (`startClientSpan`), so @meshlet/grpc imports no sibling.
 */
export function rpcSpanObserver(ports: SpanPorts): AttemptObserver {
  return {
    started(attempt: Attempt): void {
      const call = attempt.call as Attempt['call'] & SpanParent;
      const target = attempt.target;
      const span = rpcSpan(ports, call.parent, call.path, call.service, target as RouteChoice, attempt.number, target.instance);
      attempt.span = span;
      // Its trace context now, for the transport's metadata: a propagator's throw is this observer's.
      span?.capture();
    },
    settled(attempt: Attempt, result: AttemptResult | undefined, error: unknown): void {
      const span = attempt.span as RpcClientSpan | undefined;
      if (span === undefined) return;
      attempt.span = undefined;
      if (result !== undefined) {
        const r = result as GrpcAttemptResult;
        span.end(r.code, r.details, attempt);
      } else {
        const s = statusOfError(error);
        span.end(s.code, s.details, attempt);
      }
    },
  };
}
