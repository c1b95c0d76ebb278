import {
  type Attributes,
  type AttributeValue,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { runInContext, TRACING_KEY } from './active-context.js';
import { Attr, boundedRequestValue, errorTypeOf, type GovernanceErrorType, normalizeMethod } from './attributes.js';
import { type InboundHeaders, simpleParent } from './propagation.js';
import type { SpanDeps } from './span-deps.js';
import { SpanRecord } from './span-record.js';

/** What else is known of an inbound request. */
export interface ServerRequestInfo {
  /** The request target (path and query), e.g. node's `req.url`. */
  readonly target?: string;
  /** Default `http`. */
  readonly scheme?: string;
  /** The calling service, when known (for per-caller server metrics). */
  readonly caller?: string;
  /**
   * Store revision of this service's rule document in force (its auth and limits decide
   * the request), as `io.meshlet.rules.revision`; 0 or absent: none, not written.
   */
  readonly rulesRevision?: number;
}

/** The SERVER span of one inbound request. */
export interface ServerSpan {
  /** The context with this span: the parent of every client span made while handling the request. */
  readonly context: Context;
  readonly recording: boolean;
  /** Sets `http.route` (a template such as `/users/:id`) and renames the span `{method} {route}`; frameworks know it after routing. */
  setRoute(route: string): void;
  setAttribute(key: string, value: AttributeValue): void;
  /** Runs `fn` with this span active, so spans started inside it are its children. */
  run<T>(fn: () => T): T;
  /**
   * Records that governance answered the request itself (`rate_limited`, `auth_denied`):
   * `end` puts it in `error.type` and the server metrics. The span status stays unset for
   * a 4xx, as the conventions have it for the server side.
   */
  setOutcome(errorType: GovernanceErrorType): void;
  /** Ends the span with the response status (5xx is an error on the server side; 4xx is not). */
  end(statusCode: number, error?: unknown): void;
  /**
   * Ends the span of a request whose answer was never finished: the connection closed
   * first (the caller gave up, or the socket was destroyed). An error, `error.type`
   * `client_closed`; `http.response.status_code` only when a status was sent (`sentStatus`),
   * never node's default 200 for an answer that did not go out.
   */
  endUnanswered(sentStatus?: number): void;
}

/** `error.type` of a request whose connection closed before its answer was finished. */
export const CLIENT_CLOSED = 'client_closed';

const headerValue = (headers: InboundHeaders, name: string): string | undefined => {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const v = headers[name];
  return typeof v === 'string' ? v : v?.[0];
};

/**
 * The SERVER span of an inbound request. With the Tracing's span recording (a Tracing made
 * by `createTracing`): sampling is decided first, as OpenTelemetry's tracer would decide it
 * (the head sampler); an unsampled request gets only its span context, a sampled one is
 * Meshlet's own span record (SpanRecord, kind SERVER) — the same name, attributes, ids,
 * flags, tracestate, parent and status as the tracer's span (a test holds them equal).
 * Without it, or with tracing suppressed: OpenTelemetry's tracer.
 */
export function startServerSpan(
  deps: SpanDeps,
  headers: InboundHeaders,
  method: string,
  route: string | undefined,
  info: ServerRequestInfo = {},
  owner?: object,
): ServerSpan {
  // A route may be the request's path folded (apiOfPath): bounded as the path is.
  if (route !== undefined) route = boundedRequestValue(route);
  // simpleParent once: its answer is the sampler's hint too, and when it says no the
  // propagators alone read the headers (extract would ask simpleParent again).
  const simple = simpleParent(headers);
  const parent = simple ?? deps.propagation.extractByPropagators(headers, ROOT_CONTEXT);
  const m = normalizeMethod(method);
  const recording = deps.spanRecording;
  const decision = recording?.sampler.decide(parent, SpanKind.SERVER, simple !== undefined);
  if (recording === undefined || decision === undefined) return tracerServerSpan(deps, parent, headers, method, m, route, info, owner);
  let span: Span;
  if ((decision.context.traceFlags & TraceFlags.SAMPLED) === 0) {
    // Not recorded: the span context alone, without attributes; the metrics are recorded all the same.
    span = trace.wrapSpanContext(decision.context);
  } else {
    const attributes = serverAttributes(headers, method, m, route, info);
    span = new SpanRecord(recording, SpanKind.SERVER, route ? `${m} ${route}` : m, decision, attributes, Object.keys(attributes).length);
  }
  return new ServerSpanHandle(deps, span, contextOf(parent, span, owner), m, route, info.caller);
}

/**
 * The request's context: its SERVER span, and the Tracing that made it (`TRACING_KEY`), so
 * that `@Traced()` inside records through the tracing serving the request.
 */
function contextOf(parent: Context, span: Span, owner: object | undefined): Context {
  const ctx = trace.setSpan(parent, span);
  return owner === undefined ? ctx : ctx.setValue(TRACING_KEY, owner);
}

/** The SERVER span's attributes at its start, in order (what OpenTelemetry's tracer would be given). */
function serverAttributes(
  headers: InboundHeaders,
  method: string,
  m: string,
  route: string | undefined,
  info: ServerRequestInfo,
): Attributes {
  const attributes: Attributes = { [Attr.httpRequestMethod]: m, [Attr.urlScheme]: info.scheme ?? 'http' };
  if (m !== method) attributes[Attr.httpRequestMethodOriginal] = method;
  if (info.target !== undefined) {
    const q = info.target.indexOf('?');
    attributes[Attr.urlPath] = boundedRequestValue(q < 0 ? info.target : info.target.slice(0, q));
  }
  if (route !== undefined) attributes[Attr.httpRoute] = route;
  if (info.rulesRevision) attributes[Attr.meshletRulesRevision] = info.rulesRevision;
  const host = headerValue(headers, 'host');
  if (host) {
    if (host !== lastHost.header) lastHost = hostParts(host);
    attributes[Attr.serverAddress] = lastHost.address;
    if (lastHost.port !== undefined) attributes[Attr.serverPort] = lastHost.port;
  }
  return attributes;
}

interface HostParts {
  readonly header: string;
  readonly address: string;
  readonly port: number | undefined;
}

/** `host[:port]`; an IPv6 literal is bracketed. */
function hostParts(host: string): HostParts {
  const colon = host.lastIndexOf(':');
  if (colon <= host.lastIndexOf(']')) return { header: host, address: boundedRequestValue(host), port: undefined };
  const port = Number(host.slice(colon + 1));
  return { header: host, address: boundedRequestValue(host.slice(0, colon)), port: Number.isInteger(port) ? port : undefined };
}

// A service is called under one Host (or a few): the last one's parts are kept.
let lastHost: HostParts = hostParts('');

/** The SERVER span through OpenTelemetry's tracer (head-sampled first: an unsampled request builds no span). */
function tracerServerSpan(
  deps: SpanDeps,
  parent: Context,
  headers: InboundHeaders,
  method: string,
  m: string,
  route: string | undefined,
  info: ServerRequestInfo,
  owner: object | undefined,
): ServerSpan {
  // Head sampling first: a request that will not be recorded (its caller did not sample,
  // or ratio 0) gets the span context OpenTelemetry's tracer would give it, without the
  // tracer and without building its attributes; its metrics are recorded all the same.
  const unsampled = deps.sampler.unsampledServer(parent);
  if (unsampled !== undefined) {
    const span = trace.wrapSpanContext(unsampled);
    return new ServerSpanHandle(deps, span, contextOf(parent, span, owner), m, route, info.caller);
  }
  const attributes = serverAttributes(headers, method, m, route, info);
  const span = deps.tracer.startSpan(route ? `${m} ${route}` : m, { kind: SpanKind.SERVER, attributes }, parent);
  return new ServerSpanHandle(deps, span, contextOf(parent, span, owner), m, route, info.caller);
}

class ServerSpanHandle implements ServerSpan {
  readonly context: Context;
  readonly #deps: SpanDeps;
  readonly #span: Span;
  readonly #method: string;
  readonly #caller: string | undefined;
  readonly #start: number;
  #route: string | undefined;
  #outcome: GovernanceErrorType | undefined;
  #ended = false;

  constructor(deps: SpanDeps, span: Span, context: Context, method: string, route: string | undefined, caller: string | undefined) {
    this.#deps = deps;
    this.#span = span;
    this.context = context;
    this.#method = method;
    this.#route = route;
    this.#caller = caller;
    this.#start = deps.clock.now();
  }

  get recording(): boolean {
    return this.#span.isRecording();
  }

  setRoute(given: string): void {
    const route = boundedRequestValue(given);
    this.#route = route;
    this.#span.setAttribute(Attr.httpRoute, route);
    this.#span.updateName(`${this.#method} ${route}`);
  }

  setAttribute(key: string, value: AttributeValue): void {
    this.#span.setAttribute(key, value);
  }

  setOutcome(errorType: GovernanceErrorType): void {
    this.#outcome = errorType;
  }

  run<T>(fn: () => T): T {
    return runInContext(this.context, fn);
  }

  end(statusCode: number, error?: unknown): void {
    let errorType: string | undefined = this.#outcome;
    if (error !== undefined) errorType = errorTypeOf(error);
    else if (statusCode >= 500) errorType = String(statusCode);
    const failed = error !== undefined || statusCode >= 500;
    this.#finish(statusCode, errorType, failed, error instanceof Error ? error.message : undefined);
  }

  endUnanswered(sentStatus?: number): void {
    this.#finish(sentStatus, CLIENT_CLOSED, true, undefined);
  }

  #finish(statusCode: number | undefined, errorType: string | undefined, failed: boolean, message: string | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    const span = this.#span;
    if (statusCode !== undefined) span.setAttribute(Attr.httpResponseStatusCode, statusCode);
    if (errorType !== undefined) span.setAttribute(Attr.errorType, errorType);
    if (failed) span.setStatus(message ? { code: SpanStatusCode.ERROR, message } : { code: SpanStatusCode.ERROR });
    span.end();
    const durationMs = this.#deps.clock.now() - this.#start;
    const api = this.#route ? `${this.#method} ${this.#route}` : this.#method;
    this.#deps.serverMetrics?.record({ service: this.#caller ?? '', api, durationMs, errorType });
    if (this.#deps.serverDuration) {
      const attrs: Attributes = { [Attr.httpRequestMethod]: this.#method };
      if (statusCode !== undefined) attrs[Attr.httpResponseStatusCode] = statusCode;
      if (this.#route) attrs[Attr.httpRoute] = this.#route;
      if (errorType !== undefined) attrs[Attr.errorType] = errorType;
      this.#deps.serverDuration.record(durationMs / 1000, attrs);
    }
  }
}
