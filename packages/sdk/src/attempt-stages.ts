import { type AttemptChain, type AttemptHandler, type AttemptStage, type Clock, composeAttempt, sendAttempt } from '@meshlet/core';
import { faultInterceptor } from '@meshlet/fault';
import { type Tracing, withoutAppTracing } from '@meshlet/trace';
import type { GovernedCallDeps } from './governed-fetch.js';

/**
 * A protocol's CLIENT span stage for the mesh's tracing: HTTP's `clientSpanInterceptor`,
 * gRPC's `rpcSpanObserver`; `clock` is the executor's, which the attempts' `startedAt` is read on.
 */
export type SpanStage = (tracing: Tracing, clock: Clock) => AttemptStage;

/** What the attempt stages read from the mesh. */
export type AttemptStageDeps = Pick<GovernedCallDeps, 'tracing' | 'router' | 'faults' | 'clock'>;

/**
 * The per-attempt stages of a governed call, outermost first, the same for HTTP and gRPC
 * but for the span: the CLIENT span (trace, an observer: outermost, so it covers
 * everything the attempt does, a fault's delay too, and carries what the others note),
 * the in-flight count (route, an observer: least-requests sees the attempt until it
 * settles), fault injection (fault, an interceptor around the send: innermost, so an
 * injected answer is counted in flight and traced like a real one), then the protocol's
 * transport. No span stage without tracing.
 */
export function attemptStages(deps: AttemptStageDeps, span: SpanStage): AttemptStage[] {
  const stages: AttemptStage[] = [];
  if (deps.tracing) stages.push(span(deps.tracing, deps.clock));
  stages.push(deps.router.inFlight);
  stages.push(faultInterceptor({ faults: deps.faults, clock: deps.clock }));
  return stages;
}

/**
 * The transport of a traced attempt: the mesh's CLIENT span stage wrote its trace context,
 * so an application's own OpenTelemetry client instrumentation (undici's, http's, gRPC's)
 * runs with tracing suppressed for it: no second CLIENT span, no second `traceparent`
 * (which a callee drops with the first). Free without an OpenTelemetry context manager.
 */
const sendWithoutAppTracing: AttemptHandler = (attempt) => withoutAppTracing(sendAttempt, attempt);

/**
 * The attempt chain of one protocol, composed once per mesh. The observers are told by the
 * chain and settled by the executor after its await: no promise of theirs per attempt. One
 * that throws (a span exporter's bug) does not fail the call: logged as
 * `MESHLET_ATTEMPT_OBSERVER_FAILED`, once per interval (the mesh's throttled logger). With
 * tracing, the transport runs with an application's OpenTelemetry tracing suppressed; without
 * it the application's instrumentation is the only record of the call and is left alone.
 */
export function meshAttemptChain(deps: AttemptStageDeps & Pick<GovernedCallDeps, 'logger'>, span: SpanStage): AttemptChain {
  const { logger } = deps;
  return composeAttempt(attemptStages(deps, span), {
    ...(deps.tracing ? { last: sendWithoutAppTracing } : {}),
    onError: (error: unknown) =>
      logger.warn('a per-attempt observer threw; the call went on without it', {
        code: 'MESHLET_ATTEMPT_OBSERVER_FAILED',
        error: error instanceof Error ? error.message : String(error),
      }),
  });
}
