import {
  type Attributes,
  type AttributeValue,
  type Context,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { Attr, boundedRequestValue, errorAttributesOf, errorTypeOf, normalizeMethod } from './attributes.js';
import { ClientSpanRecord } from './client-span-record.js';
import type { HeadDecision } from './head-sampling.js';
import type { OutboundHeaders } from './propagation.js';
import { redactUrl } from './redact-url.js';
import type { SpanDeps } from './span-deps.js';

/** Meshlet's governance decisions for a call, recorded as `io.meshlet.*` attributes. */
export interface MeshletDecisions {
  /** The route rule that picked the destination. */
  readonly route?: string;
  readonly lane?: string;
  /** Limiter decision, e.g. `allowed`, `rejected`, or `<limiter>:allowed`. */
  readonly limiter?: string;
  /** Breaker state seen: `closed`, `open`, `half_open`. */
  readonly breaker?: string;
  /** The API key of the api breaker the call passed (`GET /orders/{id}`). */
  readonly breakerApi?: string;
  /** The instance id the attempt went to. */
  readonly instance?: string;
  /**
   * A rule in shadow mode would have decided otherwise: `<kind>:<rule>:<would-be outcome>`;
   * several kinds on one attempt are space-separated.
   */
  readonly shadow?: string;
  /**
   * Store revision of the called service's rule document in force (RouteDecision's
   * `revision`), as `io.meshlet.rules.revision`; 0 or absent: none, not written.
   */
  readonly rulesRevision?: number;
}

/**
 * A URL its caller has already split: the origin (`http://host:port`, no user info) and
 * the path and query of an already-parsed URL. Saves the span parsing the whole URL
 * again on every attempt; the origin's parse is reused across calls.
 */
export interface SplitUrl {
  readonly origin: string;
  /** A parsed URL's `pathname`. */
  readonly path: string;
  /** A parsed URL's `search`: `?…`, or empty. */
  readonly search: string;
}

/** One physical attempt of an outbound call. */
export interface ClientCall extends MeshletDecisions {
  readonly method: string;
  /** The URL actually sent to (the instance's), or the logical one when nothing was sent. */
  readonly url: URL | string | SplitUrl;
  /** The logical destination service (`service.peer.name`), when the call went through discovery. */
  readonly service?: string;
  /** 0 for the first attempt, n for the n-th retry (`http.request.resend_count`). */
  readonly attempt?: number;
  /** The API for metrics, e.g. `GET /users/{id}`. Default: method and path. */
  readonly api?: string;
}

/**
 * How an attempt ended: the response status, or what stopped it. `errorType` overrides the
 * `error.type` derived from `error` (see GovernanceErrorType).
 */
export type ClientOutcome = number | { readonly statusCode?: number; readonly error?: unknown; readonly errorType?: string };

/** A CLIENT span for one attempt: inject its headers, then end it once. */
export interface ClientSpan {
  /** The context with this span, as parent of anything started inside the attempt. */
  readonly context: Context;
  /** Whether the span is being recorded (sampled). */
  readonly recording: boolean;
  /** Writes this span's trace headers (and baggage) into the outbound request's headers. */
  inject(headers: OutboundHeaders): void;
  setAttribute(key: string, value: AttributeValue): void;
  /** Ends the span and records the metrics; later calls are ignored. */
  end(outcome: ClientOutcome): void;
}

/** What the span and its metrics read of the target URL. */
interface Target {
  readonly hostname: string;
  /** `hostname[:port]`, the port only when not the scheme's default. */
  readonly host: string;
  readonly port: number;
  readonly pathname: string;
  /** `url.full`, redacted, bounded (boundedRequestValue). */
  readonly full: string;
}

export interface OriginParts {
  readonly hostname: string;
  readonly host: string;
  readonly port: number;
  /** The origin as URL serialises it (no trailing slash). */
  readonly href: string;
}

// Origins are instances' addresses: few, and reused by every call. Bounded all the same.
const ORIGINS_KEPT = 1024;
const origins = new Map<string, OriginParts>();

export function originParts(origin: string): OriginParts {
  let parts = origins.get(origin);
  if (parts) return parts;
  const url = new URL(origin);
  parts = { hostname: url.hostname, host: url.host, port: portOf(url), href: `${url.protocol}//${url.host}` };
  if (origins.size >= ORIGINS_KEPT) origins.clear();
  origins.set(origin, parts);
  return parts;
}

const portOf = (url: URL) => (url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);

function targetOf(given: URL | string | SplitUrl): Target {
  if (typeof given !== 'string' && !(given instanceof URL)) {
    const o = originParts(given.origin);
    // A query may carry a signature to redact: that case takes the general path.
    if (given.search === '')
      return {
        hostname: o.hostname,
        host: o.host,
        port: o.port,
        pathname: given.path,
        full: boundedRequestValue(`${o.href}${given.path}`),
      };
    given = `${given.origin}${given.path}${given.search}`;
  }
  const url = typeof given === 'string' ? new URL(given) : given;
  return { hostname: url.hostname, host: url.host, port: portOf(url), pathname: url.pathname, full: boundedRequestValue(redactUrl(url)) };
}

export function startClientSpan(deps: SpanDeps, parent: Context, call: ClientCall): ClientSpan {
  return startDecidedSpan(deps, parent, deps.sampler.decide(parent), call);
}

/** `startClientSpan` once the head sampler has decided (undefined: tracing suppressed under `parent`). */
export function startDecidedSpan(deps: SpanDeps, parent: Context, decision: HeadDecision | undefined, call: ClientCall): ClientSpan {
  const target = targetOf(call.url);
  const method = normalizeMethod(call.method);
  // Attributes are set once the span exists, in one setAttributes, and only when it
  // records: given to startSpan, OpenTelemetry would check them twice (once for the
  // sampler, once for the span) and build them for an unsampled span too. Meshlet's
  // samplers (parent-based, by trace id ratio) do not read attributes.
  // Sampling is decided first. An unsampled attempt only carries the trace context on (a
  // non-recording span over a span context); a sampled one is Meshlet's own span record,
  // its attributes set without OpenTelemetry's per-attribute checks (see ClientSpanRecord).
  let span: Span;
  if (decision === undefined) span = deps.tracer.startSpan(method, { kind: SpanKind.CLIENT }, parent);
  else if ((decision.context.traceFlags & TraceFlags.SAMPLED) === 0) span = trace.wrapSpanContext(decision.context);
  else span = new ClientSpanRecord(deps.records, method, decision.context, decision.parent, clientAttributes(call, target, method));
  return new ClientSpanHandle(deps, span, parent, call, target, method);
}

/** A CLIENT span's attributes at its start, in order (the head-sampled interceptor's spans are made with the same). */
export function clientAttributes(call: ClientCall, target: Pick<Target, 'hostname' | 'port' | 'full'>, method: string): Attributes {
  const attributes: Attributes = {
    [Attr.httpRequestMethod]: method,
    [Attr.serverAddress]: target.hostname,
    [Attr.serverPort]: target.port,
    [Attr.urlFull]: target.full,
  };
  if (method !== call.method) attributes[Attr.httpRequestMethodOriginal] = call.method;
  if (call.service !== undefined) attributes[Attr.servicePeerName] = call.service;
  if (call.attempt) attributes[Attr.httpRequestResendCount] = call.attempt;
  if (call.route !== undefined) attributes[Attr.meshletRoute] = call.route;
  if (call.lane !== undefined) attributes[Attr.meshletLane] = call.lane;
  if (call.limiter !== undefined) attributes[Attr.meshletLimiter] = call.limiter;
  if (call.breaker !== undefined) attributes[Attr.meshletBreaker] = call.breaker;
  if (call.breakerApi !== undefined) attributes[Attr.meshletBreakerApi] = call.breakerApi;
  if (call.shadow !== undefined) attributes[Attr.meshletShadow] = call.shadow;
  if (call.instance !== undefined) attributes[Attr.meshletInstance] = call.instance;
  if (call.rulesRevision) attributes[Attr.meshletRulesRevision] = call.rulesRevision;
  return attributes;
}

class ClientSpanHandle implements ClientSpan {
  readonly #deps: SpanDeps;
  readonly #span: Span;
  readonly #parent: Context;
  readonly #call: ClientCall;
  readonly #target: Target;
  readonly #method: string;
  readonly #start: number;
  #context: Context | undefined;
  #ended = false;

  constructor(deps: SpanDeps, span: Span, parent: Context, call: ClientCall, target: Target, method: string) {
    this.#deps = deps;
    this.#span = span;
    this.#parent = parent;
    this.#call = call;
    this.#target = target;
    this.#method = method;
    this.#start = deps.clock.now();
  }

  get context(): Context {
    this.#context ??= trace.setSpan(this.#parent, this.#span);
    return this.#context;
  }

  get recording(): boolean {
    return this.#span.isRecording();
  }

  inject(headers: OutboundHeaders): void {
    // Straight from the span context when the formats allow: no context built per attempt.
    if (!this.#deps.propagation.injectSpan(this.#span.spanContext(), this.#parent, headers))
      this.#deps.propagation.inject(this.context, headers);
  }

  setAttribute(key: string, value: AttributeValue): void {
    this.#span.setAttribute(key, value);
  }

  end(outcome: ClientOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    const { statusCode, error, errorType: given } = typeof outcome === 'number' ? { statusCode: outcome } : outcome;
    const span = this.#span;
    let errorType: string | undefined;
    if (statusCode !== undefined) {
      span.setAttribute(Attr.httpResponseStatusCode, statusCode);
      // Client side: 4xx is an error too (the conventions' client status rule).
      if (statusCode >= 400) errorType = String(statusCode);
    }
    if (given !== undefined) errorType = given;
    else if (error !== undefined) errorType = errorTypeOf(error);
    if (errorType !== undefined) {
      span.setAttribute(Attr.errorType, errorType);
      const message = error instanceof Error ? error.message : undefined;
      span.setStatus(message ? { code: SpanStatusCode.ERROR, message } : { code: SpanStatusCode.ERROR });
      // What the error knows of the decision (a refusing breaker's level and API).
      const decided = errorAttributesOf(error);
      if (decided !== undefined) for (const k in decided) span.setAttribute(k, decided[k] as string | number);
    }
    span.end();
    const durationMs = this.#deps.clock.now() - this.#start;
    const service = this.#call.service ?? this.#target.host;
    const metrics = this.#deps.clientMetrics;
    if (metrics) {
      if (this.#call.api !== undefined) metrics.add(service, this.#call.api, durationMs, errorType);
      else metrics.addPath(service, this.#method, this.#target.pathname, durationMs, errorType);
    }
    this.#deps.clientDuration?.record(
      durationMs / 1000,
      durationAttributes(this.#method, this.#target.hostname, service, statusCode, errorType),
    );
  }
}

/** The attributes of an attempt's `http.client.request.duration` (OpenTelemetry's histogram). */
export function durationAttributes(
  method: string,
  hostname: string,
  service: string,
  status: number | undefined,
  errorType: string | undefined,
): Attributes {
  const attrs: Attributes = {
    [Attr.httpRequestMethod]: method,
    [Attr.serverAddress]: hostname,
    [Attr.servicePeerName]: service,
  };
  if (status !== undefined) attrs[Attr.httpResponseStatusCode] = status;
  if (errorType !== undefined) attrs[Attr.errorType] = errorType;
  return attrs;
}
