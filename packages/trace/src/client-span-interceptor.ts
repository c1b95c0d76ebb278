import { type Attempt, type AttemptHandler, type AttemptInterceptor, type AttemptResult, originOf } from '@meshlet/core';
import type { ClientCall, ClientSpan } from './client-span.js';
import type { OutboundHeaders } from './propagation.js';
import type { Tracing } from './tracing.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The span's io.meshlet.shadow: route's note first (the decision's), then the attempt's in the order they arose. */
function shadowOf(attempt: Attempt): string | undefined {
  const route = attempt.target.shadow;
  const notes = attempt.notes;
  if (route === undefined) return notes?.join(' ');
  const first = `route:${route}:would-route`;
  return notes === undefined ? first : `${first} ${notes.join(' ')}`;
}

/** What the layers below the span added while the attempt ran: fault attributes, later shadow notes. */
function addLate(span: ClientSpan, attempt: Attempt, notesBefore: number): void {
  attempt.settled?.();
  const attributes = attempt.attributes;
  if (attributes !== undefined) for (const k in attributes) span.setAttribute(k, attributes[k] as string | number);
  if ((attempt.notes?.length ?? 0) > notesBefore) span.setAttribute('io.meshlet.shadow', shadowOf(attempt) as string);
}

/**
 * The CLIENT span of each attempt, as the outermost interceptor of the outbound chain
 * (`chainAttempt` in core): started from the attempt record (route rule, lane, instance,
 * attempt number, breaker state, shadow notes so far), its trace context written into the
 * call's headers, ended with the result's status or the error. What the interceptors
 * inside it add (a fault's attributes, a shadow note) is set on the span when the attempt
 * settles, before it ends. Outermost, so the span covers a fault's delay as the call's
 * own time, as it did when the SDK drove each attempt itself.
 */
export function clientSpanInterceptor(tracing: Pick<Tracing, 'startClientSpan'>): AttemptInterceptor {
  return async <R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler): Promise<R> => {
    const { call, target } = attempt;
    // Already split: the span need not parse the URL again.
    const spanCall: Mutable<ClientCall> = {
      method: call.method,
      url: { origin: originOf(target.instance), path: call.path, search: call.search },
      service: call.service,
      attempt: attempt.number,
      instance: target.id,
    };
    if (target.rule) spanCall.route = target.rule;
    if (target.lane) spanCall.lane = target.lane;
    if (target.revision) spanCall.rulesRevision = target.revision;
    if (attempt.breaker !== undefined) spanCall.breaker = attempt.breaker;
    const notesBefore = attempt.notes?.length ?? 0;
    // Most attempts have no shadow note: nothing is built for them.
    if (target.shadow !== undefined || notesBefore > 0) spanCall.shadow = shadowOf(attempt) as string;
    const span = tracing.startClientSpan(undefined, spanCall);
    // No copy per attempt: the clients copy the headers when called, and each attempt's
    // span writes its own traceparent over the last one's. Inject only sets names.
    span.inject(call.headers as OutboundHeaders);
    let res: R;
    try {
      res = await next(attempt);
    } catch (error) {
      addLate(span, attempt, notesBefore);
      span.end({ error });
      throw error;
    }
    addLate(span, attempt, notesBefore);
    span.end(res.status);
    return res;
  };
}
