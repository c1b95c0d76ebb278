import { performance } from 'node:perf_hooks';
import {
  type Attempt,
  type AttemptInterceptor,
  type AttemptObserver,
  type AttemptResult,
  aroundObserver,
  type Clock,
  originOf,
  shadowOf,
  systemClock,
} from '@meshlet/core';
import { type Attributes, type Context, SpanStatusCode, TraceFlags } from '@opentelemetry/api';
import { activeContext } from './active-context.js';
import { Attr, boundedRequestValue, errorAttributesOf, errorTypeOf, normalizeMethod } from './attributes.js';
import {
  type ClientCall,
  type ClientSpan,
  clientAttributes,
  durationAttributes,
  type OriginParts,
  originParts,
  startDecidedSpan,
} from './client-span.js';
import { ClientSpanRecord } from './client-span-record.js';
import type { HeadDecision } from './head-sampling.js';
import { flat, keyValueJson, keyValuesJson } from './otlp-json.js';
import type { OutboundHeaders } from './propagation.js';
import { injectDecided, SPAN_DEPS, type SpanDeps } from './span-deps.js';
import type { Tracing } from './tracing.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * What the layers below the span added while the attempt ran: fault attributes, later
 * shadow notes; and routing's own. The record's `settled` hook (a shadow deadline's note)
 * ran before.
 */
function addLate(span: Pick<ClientSpan, 'setAttribute'>, attempt: Attempt, notesBefore: number, routedAtStart = false): void {
  const routed = routedAtStart ? undefined : attempt.target.spanAttributes;
  if (routed !== undefined) for (const k in routed) span.setAttribute(k, routed[k] as string | number);
  const attributes = attempt.attributes;
  if (attributes !== undefined) for (const k in attributes) span.setAttribute(k, attributes[k] as string | number);
  if ((attempt.notes?.length ?? 0) > notesBefore) span.setAttribute('io.meshlet.shadow', shadowOf(attempt) as string);
}

/** The span's view of an attempt: route rule, lane, instance, attempt number, breaker state, shadow notes so far. */
function spanCallOf(attempt: Attempt): ClientCall {
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
  if (attempt.api !== undefined) spanCall.breakerApi = attempt.api;
  // Most attempts have no shadow note: nothing is built for them.
  if (target.shadow !== undefined || (attempt.notes?.length ?? 0) > 0) spanCall.shadow = shadowOf(attempt) as string;
  return spanCall;
}

/** Starts the attempt's span handle: trace context into the call's headers; the span kept on the record until it settles. */
function startSpan(span: ClientSpan, attempt: Attempt): void {
  // No copy per attempt: the clients copy the headers when called, and each attempt's
  // span writes its own traceparent over the last one's. Inject only sets names.
  span.inject(attempt.call.headers as OutboundHeaders);
  attempt.span = span;
  attempt.spanNotes = attempt.notes?.length ?? 0;
}

/** Ends a span handle the attempt started: what the layers below added, then the status or the error. */
function endSpan(span: ClientSpan, attempt: Attempt, result: AttemptResult | undefined, error: unknown): void {
  addLate(span, attempt, attempt.spanNotes ?? 0);
  attempt.spanNotes = undefined;
  span.end(result !== undefined ? result.status : { error });
}

/**
 * The CLIENT span of each attempt, as the outermost observer of the outbound chain
 * (`composeAttempt` in core): started from the attempt record (route rule, lane, instance,
 * attempt number, breaker state, shadow notes so far), its trace context written into the
 * call's headers, ended with the result's status or the error when the chain settles the
 * attempt. What the stages inside it add (a fault's attributes, a shadow note) is set on
 * the span then, before it ends. Outermost, so the span covers a fault's delay as the
 * call's own time. The span (or, unsampled, its start time) waits on the record
 * (`attempt.span`, `attempt.spanStart`): no promise, closure or lookup per attempt.
 *
 * With a Tracing made by `createTracing`, sampling is decided first, and an unsampled
 * attempt builds no span at all: its trace context is written into the headers straight
 * from the decision, and the call metrics are recorded when it settles (see
 * `headSampledObserver`). Any other Tracing gets `startClientSpan` per attempt.
 *
 * `attemptClock`: the clock the attempts' `startedAt` is read on (the executor's, the
 * mesh's). When it is the Tracing's own, an unsampled attempt's call metrics are timed from
 * that reading instead of a clock read of their own.
 */
export function clientSpanObserver(tracing: Pick<Tracing, 'startClientSpan'>, attemptClock?: Clock): AttemptObserver {
  const deps = (tracing as { readonly [SPAN_DEPS]?: SpanDeps })[SPAN_DEPS];
  if (deps !== undefined) return headSampledObserver(deps, attemptClock !== undefined && attemptClock === deps.clock);
  return {
    started(attempt: Attempt): void {
      startSpan(tracing.startClientSpan(undefined, spanCallOf(attempt)), attempt);
    },
    settled(attempt: Attempt, result: AttemptResult | undefined, error: unknown): void {
      const span = attempt.span as ClientSpan | undefined;
      if (span === undefined) return;
      attempt.span = undefined;
      endSpan(span, attempt, result, error);
    },
  };
}

/**
 * `clientSpanObserver` in the around form too (core's `aroundObserver`): an interceptor
 * `(attempt, next)` for a chain of interceptors, that is also the observer, which
 * `composeAttempt` tells directly (no promise of its own).
 */
export function clientSpanInterceptor(
  tracing: Pick<Tracing, 'startClientSpan'>,
  attemptClock?: Clock,
): AttemptInterceptor & AttemptObserver {
  return aroundObserver(clientSpanObserver(tracing, attemptClock));
}

/**
 * The CLIENT span observer over a Tracing's own parts. The same spans, headers and metrics
 * as `startClientSpan` per attempt (a test holds them equal); what differs is what an
 * unsampled attempt costs: a span context and a traceparent, no span handle, no span, no
 * URL parts, no attribute or call object; the metrics when it settles, timed from the
 * attempt's `startedAt` when it is on this clock (`sharedStart`: one clock read an attempt,
 * not two; a third of the unsampled attempt's own time was its two reads).
 */
function headSampledObserver(deps: SpanDeps, sharedStart: boolean): AttemptObserver {
  const { sampler, clock } = deps;
  const recordsMetrics = deps.clientMetrics !== undefined || deps.clientDuration !== undefined;
  return {
    started(attempt: Attempt): void {
      const parent = activeContext();
      const decision = sampler.decide(parent);
      if (decision === undefined) {
        startSpan(startDecidedSpan(deps, parent, decision, spanCallOf(attempt)), attempt);
        return;
      }
      if ((decision.context.traceFlags & TraceFlags.SAMPLED) !== 0) {
        const { target, call } = attempt;
        // A query (its signature redacted in url.full) or a shadow note: the general path.
        if (call.search !== '' || target.shadow !== undefined || (attempt.notes?.length ?? 0) > 0)
          startSpan(startDecidedSpan(deps, parent, decision, spanCallOf(attempt)), attempt);
        else startSampled(deps, attempt, parent, decision);
        return;
      }
      injectDecided(deps, parent, decision.context, undefined, attempt.call.headers as OutboundHeaders);
      if (recordsMetrics) attempt.spanStart = sharedStart && attempt.startedAt !== undefined ? attempt.startedAt : nowOf(clock);
    },
    settled(attempt: Attempt, result: AttemptResult | undefined, error: unknown): void {
      const span = attempt.span;
      const start = attempt.spanStart;
      const status = result?.status;
      if (span !== undefined) {
        attempt.span = undefined;
        attempt.spanStart = undefined;
        if (span instanceof ClientSpanRecord)
          endSampled(deps, span, attempt, start as number, status, result === undefined ? error : undefined);
        else endSpan(span as ClientSpan, attempt, result, error);
        return;
      }
      if (start === undefined) return;
      attempt.spanStart = undefined;
      if (status !== undefined) recordCall(deps, attempt, start, status, errorTypeOfStatus(status));
      else recordCall(deps, attempt, start, undefined, error === undefined ? undefined : errorTypeOf(error));
    },
  };
}

/** The error.type of a response status: client side, 4xx is an error too (the conventions' client status rule). */
const errorTypeOfStatus = (status: number): string | undefined => (status >= 400 ? String(status) : undefined);

/**
 * A sampled attempt without a query or shadow note (the usual one): Meshlet's span record
 * made straight from the attempt, with the attributes `startClientSpan` gives it (in the
 * same order), ended as its handle would end it (`endSampled`, when the attempt settles).
 */
function startSampled(deps: SpanDeps, attempt: Attempt, parent: Context, decision: HeadDecision): void {
  const { call, target } = attempt;
  const method = normalizeMethod(call.method);
  const origin = originParts(originOf(target.instance));
  const url = urlOf(origin.href, call.path);
  const made = madeJson(attempt, method, origin, url[0]);
  const whole = attributesOf(url, made, attempt, method, origin);
  // The attributes object is the one made for this URL and kind of attempt, shared by its
  // spans (frozen): the record keeps what is set later on its own (see ClientSpanRecord).
  const span = new ClientSpanRecord(
    deps.records,
    method,
    decision.context,
    decision.parent,
    whole.attributes,
    whole.json,
    deps.sampler.validIds,
    whole.bytes,
    true,
  );
  // On the system clock, the record's own reading (see clockAt).
  attempt.spanStart = clockAt(deps, span.startMs);
  injectDecided(deps, parent, decision.context, span, call.headers as OutboundHeaders);
  // Ended by the observer's `settled` (endSampled), from the record.
  attempt.span = span;
}

// `url.full` and its OTLP JSON by origin and path: building the URL and its JSON per
// attempt would flatten and escape the same string again each time. Paths with ids are
// many: bounded per origin, and in all.
const URLS_PER_ORIGIN = 256;
const ORIGINS_KEPT = 1024;
/**
 * URLs and kinds of attempt kept in all, whatever their origins: past it the whole cache
 * starts again. The per-origin and per-URL bounds alone would let 1024 × 256 × 16 entries
 * (a few KB each) pile up.
 */
export const URL_ATTRIBUTES_KEPT = 16_384;
let kept = 0;

/** Counts one entry put in the cache; past URL_ATTRIBUTES_KEPT, empties it first. */
function keepOne(): void {
  if (kept >= URL_ATTRIBUTES_KEPT) {
    urls.clear();
    kept = 0;
  }
  kept++;
}

/** Entries the cache holds now, at most URL_ATTRIBUTES_KEPT (for tests). */
export function urlAttributesKept(): number {
  let n = 0;
  for (const byPath of urls.values()) for (const url of byPath.values()) n += 1 + url[2].size;
  return n;
}
/** A sampled attempt's attributes (frozen), as JSON (flat) and as its UTF-8, for one URL and kind of attempt. */
interface MadeAttributes {
  readonly attributes: Attributes;
  readonly json: string;
  readonly bytes: readonly Uint8Array[];
}

/** `url.full`, its OTLP JSON, and the whole attributes' JSON and bytes by kind of attempt to it (what the trace log copies). */
type UrlEntry = readonly [full: string, json: string, byMade: Map<MadeJson, MadeAttributes>];
const urls = new Map<string, Map<string, UrlEntry>>();
const KINDS_PER_URL = 16;

/** `made.before`, the URL's JSON and `made.after` joined, flat and as UTF-8: kept with the URL per kind of attempt (an instance's). */
function attributesOf(url: UrlEntry, made: MadeJson, attempt: Attempt, method: string, origin: OriginParts): MadeAttributes {
  const byMade = url[2];
  let whole = byMade.get(made);
  if (whole === undefined) {
    const json = flat(`${made.before}${url[1]}${made.after}`);
    whole = { attributes: Object.freeze(sampledAttributes(attempt, method, origin, url[0])), json, bytes: [Buffer.from(json, 'utf8')] };
    if (byMade.size >= KINDS_PER_URL) byMade.clear();
    keepOne();
    byMade.set(made, whole);
  }
  return whole;
}

/** `url.full`, its OTLP JSON, and that JSON as UTF-8. */
function urlOf(href: string, path: string): UrlEntry {
  let byPath = urls.get(href);
  if (byPath === undefined) {
    if (urls.size >= ORIGINS_KEPT) urls.clear();
    byPath = new Map();
    urls.set(href, byPath);
  }
  let url = byPath.get(path);
  if (url === undefined) {
    // The attribute as given; its JSON (lone surrogates escaped) flat.
    const full = boundedRequestValue(`${href}${path}`);
    const json = flat(keyValueJson(Attr.urlFull, full));
    url = [full, json, new Map()];
    if (byPath.size >= URLS_PER_ORIGIN) byPath.clear();
    keepOne();
    byPath.set(path, url);
  }
  return url;
}

/** The JSON of a sampled attempt's attributes around `url.full` (which changes with the path), for one kind of attempt. */
interface MadeJson {
  readonly method: string;
  readonly callMethod: string;
  readonly service: string;
  readonly number: number;
  readonly rule: string | undefined;
  readonly lane: string | undefined;
  readonly breaker: string | undefined;
  readonly api: string | undefined;
  readonly id: string;
  readonly revision: number | undefined;
  /** Routing's attributes (Attempt's target.spanAttributes): one object per routing table, compared by identity. */
  readonly routed: Readonly<Record<string, string | number>> | undefined;
  /** method, server.address, server.port, and the comma before url.full. */
  readonly before: string;
  /** The comma after url.full, then the rest. */
  readonly after: string;
}

// The last kind of attempt seen per instance: most attempts to an instance are alike
// (same method, rule, lane, breaker state, first attempt), so their JSON is built once.
const madeByInstance = new WeakMap<Attempt['target']['instance'], MadeJson>();

/** A sampled attempt's attributes, as `startClientSpan` gives them (made once per URL and kind of attempt). */
function sampledAttributes(attempt: Attempt, method: string, origin: OriginParts, full: string): Attributes {
  const attributes = clientAttributes(spanCallOf(attempt), { hostname: origin.hostname, port: origin.port, full }, method);
  // Routing's (the group a rule chose, an ejected instance): one object per routing table,
  // so they join the attributes made once for this kind of attempt, not set per span at its end.
  const routed = attempt.target.spanAttributes;
  if (routed !== undefined) for (const k in routed) attributes[k] = routed[k] as string | number;
  return attributes;
}

function madeJson(attempt: Attempt, method: string, origin: OriginParts, full: string): MadeJson {
  const { call, target } = attempt;
  const last = madeByInstance.get(target.instance);
  if (
    last !== undefined &&
    last.method === method &&
    last.callMethod === call.method &&
    last.service === call.service &&
    last.number === attempt.number &&
    last.rule === target.rule &&
    last.lane === target.lane &&
    last.breaker === attempt.breaker &&
    last.api === attempt.api &&
    last.id === target.id &&
    last.revision === target.revision &&
    last.routed === target.spanAttributes
  )
    return last;
  // The same encoder as the trace log's, over the attributes before and after url.full.
  const attributes = sampledAttributes(attempt, method, origin, full);
  const before: Attributes = {};
  const after: Attributes = {};
  let past = false;
  for (const key in attributes) {
    if (key === Attr.urlFull) past = true;
    else (past ? after : before)[key] = attributes[key];
  }
  const made: MadeJson = {
    method,
    callMethod: call.method,
    service: call.service,
    number: attempt.number,
    rule: target.rule,
    lane: target.lane,
    breaker: attempt.breaker,
    api: attempt.api,
    id: target.id,
    revision: target.revision,
    routed: target.spanAttributes,
    before: flat(`${keyValuesJson(before)},`),
    after: flat(`,${keyValuesJson(after)}`),
  };
  madeByInstance.set(target.instance, made);
  return made;
}

/** As the span handle's `end`: what the layers below added, the status or the error, then the metrics. */
function endSampled(
  deps: SpanDeps,
  span: ClientSpanRecord,
  attempt: Attempt,
  start: number,
  status: number | undefined,
  error: unknown,
): void {
  // Started with no shadow note (else the general path): any note now is a late one.
  // Routing's attributes are in those it started with (sampledAttributes).
  addLate(span, attempt, 0, true);
  let errorType: string | undefined;
  if (status !== undefined) {
    span.setAttribute(Attr.httpResponseStatusCode, status);
    errorType = errorTypeOfStatus(status);
  } else if (error !== undefined) errorType = errorTypeOf(error);
  if (errorType !== undefined) {
    span.setAttribute(Attr.errorType, errorType);
    const message = error instanceof Error ? error.message : undefined;
    span.setStatus(message ? { code: SpanStatusCode.ERROR, message } : { code: SpanStatusCode.ERROR });
    // What the error knows of the decision (a refusing breaker's level and state), as the handle's `end` sets it.
    const decided = errorAttributesOf(error);
    if (decided !== undefined) for (const k in decided) span.setAttribute(k, decided[k] as string | number);
  }
  span.end();
  // The record's name is the normalized method (no handle to it leaves the interceptor to
  // rename it); its end is the metrics' end on the system clock (one clock read, not two).
  recordCall(deps, attempt, start, status, errorType, span.name, clockAt(deps, span.endMs));
}

const ORIGIN = performance.timeOrigin;

/**
 * `clock.now()`; the system clock's read here with its own arithmetic (`timeOrigin +
 * performance.now()`, the same number) from perf_hooks' performance: the global one is a
 * getter, a tenth of a read's cost on the attempt's path.
 */
const nowOf = (clock: Clock): number => (clock === systemClock ? ORIGIN + performance.now() : clock.now());

/**
 * The deps' clock at `ms` on the performance clock, as the span record read it: the system
 * clock's own arithmetic (`timeOrigin + performance.now()`), so the same number; any other
 * clock (a test's) is read.
 */
function clockAt(deps: SpanDeps, ms: number): number {
  return deps.clock === systemClock && !Number.isNaN(ms) ? ORIGIN + ms : nowOf(deps.clock);
}

/** What an attempt's span records at its end besides itself: the call metrics and the OpenTelemetry histogram. */
function recordCall(
  deps: SpanDeps,
  attempt: Attempt,
  start: number,
  status: number | undefined,
  errorType: string | undefined,
  method = normalizeMethod(attempt.call.method),
  end = nowOf(deps.clock),
): void {
  const durationMs = end - start;
  const { call } = attempt;
  deps.clientMetrics?.addPath(call.service, method, call.path, durationMs, errorType);
  if (deps.clientDuration) {
    const hostname = originParts(originOf(attempt.target.instance)).hostname;
    deps.clientDuration.record(durationMs / 1000, durationAttributes(method, hostname, call.service, status, errorType));
  }
}
