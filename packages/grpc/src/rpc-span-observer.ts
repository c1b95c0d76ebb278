import type { Attempt, AttemptObserver, AttemptResult, Clock } from '@meshlet/core';
import type { Context } from '@opentelemetry/api';
import { apiOf, type GrpcAttemptResult, type RpcClientSpan, rpcSpan, type SpanPorts, statusOfError } from './governance.js';
import type { GrpcClientPorts, RouteChoice } from './ports.js';
import { statusName } from './status-map.js';

/** What the observer reads of the ports: the span's, and the call metrics with the clock that times them. */
export type SpanObserverPorts = SpanPorts & Pick<GrpcClientPorts, 'recordCall'> & { readonly clock?: Clock | undefined };

/** What the span observer reads from a unary call (`UnaryCall`) or a stream (`MeshCall`): the parent of its spans. */
interface SpanParent {
  /** The context active when the call was made: its attempts' spans are children of it. */
  readonly parent: Context | undefined;
}

/**
 * The CLIENT span of each unary attempt (and of a stream, one attempt from its start to its
 * end), as the outermost observer of the attempt chain
 * (core's `AttemptObserver`), so it covers everything below it (a fault's delay): `started`
 * starts the span (rpc.* attributes, the route decision's rule, lane and revision, the
 * attempt's number), takes its trace context and keeps it on the record (`attempt.span`),
 * where the transport finds the trace context for the attempt's metadata; `settled` ends it with the
 * result's `code` and `details` (an error's status by `statusOfError`), adding what the
 * layers below put on the record (its attributes, shadow notes). With `recordCall` (and a
 * `clock`), each attempt is also counted and timed in the client call metrics, sampled or
 * not, as HTTP's attempt spans do: the start in the record's `spanStart`. It reaches trace
 * only through the ports (`startClientSpan`, `recordCall`), so @meshlet/grpc imports no sibling.
 */
export function rpcSpanObserver(ports: SpanObserverPorts): AttemptObserver {
  const { recordCall, clock } = ports;
  const timed = recordCall !== undefined && clock !== undefined;
  return {
    started(attempt: Attempt): void {
      const call = attempt.call as Attempt['call'] & SpanParent;
      const target = attempt.target;
      const span = rpcSpan(ports, call.parent, call.path, call.service, target as RouteChoice, attempt.number, target.instance);
      attempt.span = span;
      if (timed) attempt.spanStart = clock.now();
      // Its trace context now, for the transport's metadata: a propagator's throw is this observer's.
      span?.capture();
    },
    settled(attempt: Attempt, result: AttemptResult | undefined, error: unknown): void {
      const span = attempt.span as RpcClientSpan | undefined;
      if (span === undefined) return;
      attempt.span = undefined;
      let code: number;
      let details: string;
      if (result !== undefined) {
        const r = result as GrpcAttemptResult;
        code = r.code;
        details = r.details;
      } else {
        const s = statusOfError(error);
        code = s.code;
        details = s.details;
      }
      span.end(code, details, attempt);
      const start = attempt.spanStart;
      if (timed && start !== undefined) {
        attempt.spanStart = undefined;
        const call = attempt.call as Attempt['call'] & { readonly path: string };
        recordCall(call.service, apiOf(call.path), clock.now() - start, code === 0 ? undefined : statusName(code));
      }
    },
  };
}
