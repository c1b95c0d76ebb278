import type { CallExecutor } from '@meshlet/breaker';
import {
  CALLER_HEADER,
  type Clock,
  currentContext,
  getTag,
  type Instance,
  instanceOrigin,
  type Logger,
  type MeshContext,
  NoInstanceError,
  SystemTag,
  type TagLookup,
} from '@meshlet/core';
import { applyFault, type FaultInjector, faultAttributes, NO_FAULT, requestTagsOf, type TagPropagation } from '@meshlet/dialects';
import type { Bulkheads } from '@meshlet/ratelimit';
import type { RouteDecision, Router } from '@meshlet/route';
import type { Tracing } from '@meshlet/trace';
import type { ServiceDirectory } from './service-directory.js';

export type Fetch = typeof globalThis.fetch;
type FetchInput = Parameters<Fetch>[0];

export interface GovernedFetchDeps {
  readonly directory: ServiceDirectory;
  readonly router: Router;
  readonly executor: CallExecutor;
  readonly tracing: Tracing | undefined;
  readonly bulkheads: Bulkheads | undefined;
  /** Writes the request's tags in the configured dialects, by scope. */
  readonly propagation: TagPropagation;
  /** Fault rules of a destination, if it has any. */
  readonly faults: (service: string) => FaultInjector | undefined;
  /** The encoded identity of this service, sent as the caller header on every governed call. */
  readonly callerHeader: () => string;
  /** The signed identity for a destination (the audience), when auth is on. */
  readonly identityHeader: ((service: string) => [name: string, value: string]) | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The client that sends the request; global fetch by default. */
  readonly send: Fetch;
}

/** Tags of the outbound call itself, under TSF's names too, for rules on the call's API. */
const DESTINATION_PATH = 'destination.interface';
const DESTINATION_METHOD = 'request.http.method';

/**
 * The tags routing sees: the request's, plus the destination and the call's path and
 * method. Read at call time, so a tag set just before the call counts.
 */
function routingTags(ctx: MeshContext, service: string, path: string, method: string): TagLookup {
  return (tag) => {
    if (tag === SystemTag.destinationService) return service;
    if (tag === DESTINATION_PATH) return path;
    if (tag === DESTINATION_METHOD) return method;
    return getTag(tag, ctx);
  };
}

/**
 * Builds a fetch with the WHATWG signature that governs calls to services. A URL whose
 * host is a service in the registry is routed (rules, lanes, nearby, balancer, open
 * instance breakers left out), passed through the service and API breakers, sent with
 * timeout and retries to other instances as the service's rules say, traced per
 * attempt, and carries the current request's tags and this service's identity. Any other
 * URL is passed to `send` untouched. A service URL's port, if any, is ignored.
 */
export function governedFetch(deps: GovernedFetchDeps): Fetch {
  const { directory, router, executor, tracing, bulkheads, send, logger, propagation, clock } = deps;

  return async function fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request ? request.url : input instanceof URL ? input.href : String(input));
    const service = url.hostname;
    if (!(await directory.isService(service))) return send(input, init);
    await directory.ensure(service);

    const ctx = currentContext();
    const method = (init?.method ?? request?.method ?? 'GET').toUpperCase();
    const tags = routingTags(ctx, service, url.pathname, method);
    // As in fetch itself, init.headers replace a Request's headers rather than merge.
    const headers = new Headers(init?.headers ?? request?.headers);
    const scoped = requestTagsOf(ctx);
    if (ctx.tags.size > 0 || scoped?.passThrough.size) {
      const out = propagation.emit(ctx.tags, scoped?.scopes, scoped?.passThrough);
      for (const d of out.dropped) logger.warn('tag not sent', { code: 'MESHLET_TAG_DROPPED', key: d.key, reason: d.reason, service });
      // Never overwrite what the application set itself.
      for (const [k, v] of Object.entries(out.headers)) if (!headers.has(k)) headers.set(k, v);
    }
    headers.set(CALLER_HEADER, deps.callerHeader());
    if (deps.identityHeader) headers.set(...deps.identityHeader(service));
    if (!tracing && ctx.trace && !headers.has('traceparent')) {
      // No tracing configured: pass the caller's trace context on as it came.
      headers.set('traceparent', ctx.trace.traceparent);
      if (ctx.trace.tracestate) headers.set('tracestate', ctx.trace.tracestate);
    }
    const body = init?.body ?? request?.body ?? null;
    // A stream can be read once: such a request is never retried.
    const retryable = !(body instanceof ReadableStream);
    const signal = init?.signal ?? request?.signal ?? undefined;
    let decision: RouteDecision | undefined;
    let attempt = 0;

    const pick = (tried: ReadonlySet<string>): Instance | undefined => {
      if (tried.size === 0) {
        decision = router.decide(service, tags);
        return decision.instance;
      }
      // A retry: ask again until routing offers an instance not tried yet (round robin moves
      // on; a hash-affine balancer will not, and then there is no other instance to try).
      for (let i = 0; i < 4; i++) {
        let next: RouteDecision;
        try {
          next = router.decide(service, tags);
        } catch (err) {
          if (err instanceof NoInstanceError) return undefined;
          throw err;
        }
        if (!tried.has(next.instance.id)) {
          decision = next;
          return next.instance;
        }
      }
      return undefined;
    };

    const sendAttempt = async (instance: Instance, attemptSignal: AbortSignal | undefined): Promise<Response> => {
      const target = new URL(`${instanceOrigin(instance)}${url.pathname}${url.search}`);
      const span = tracing?.startClientSpan(undefined, {
        method,
        url: target,
        service,
        attempt: attempt++,
        instance: instance.id,
        ...(decision?.rule ? { route: decision.rule } : {}),
        ...(decision?.lane ? { lane: decision.lane } : {}),
      });
      // No copy per attempt: fetch copies the headers when called, and each attempt's span
      // writes its own traceparent over the last one's.
      span?.inject(headers);
      const end = router.callStarted(instance);
      try {
        const fault = deps.faults(service)?.decide(tags) ?? NO_FAULT;
        if (fault !== NO_FAULT) {
          for (const [k, v] of Object.entries(faultAttributes(fault))) span?.setAttribute(k, v);
          const injected = await applyFault(fault, { clock, ...(attemptSignal ? { signal: attemptSignal } : {}) });
          if (injected) {
            span?.end(injected.status);
            return injected;
          }
        }
        const res = await send(request ? new Request(target, request) : target, {
          ...init,
          method,
          headers,
          ...(attemptSignal ? { signal: attemptSignal } : {}),
        });
        span?.end(res.status);
        return res;
      } catch (error) {
        span?.end({ error });
        throw error;
      } finally {
        end();
      }
    };

    const call = () =>
      executor.call({ service, method, path: url.pathname, ...(signal ? { signal } : {}), retryable, pick, send: sendAttempt });
    try {
      return await (bulkheads ? bulkheads.execute(service, call, signal) : call());
    } catch (error) {
      // Rejected before anything was sent (breaker open, no instance, bulkhead full): a span
      // for the logical call, so traces and metrics show the rejection.
      if (attempt === 0 && tracing) tracing.startClientSpan(undefined, { method, url, service }).end({ error });
      throw error;
    }
  };
}
