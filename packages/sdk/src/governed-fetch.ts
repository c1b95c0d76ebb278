import type { AttemptAbort, AttemptRecord, BodyVerdict, CallExecutor, CallResult, CircuitOpenError, GovernedCall } from '@meshlet/breaker';
import {
  type Attempt,
  type AttemptChain,
  type AttemptResult,
  CALLER_HEADER,
  type CancelTimer,
  type Clock,
  currentContext,
  DeadlineExceededError,
  getTag,
  inboundDeadline,
  type Logger,
  type MeshContext,
  type OutboundCall,
  originOf,
  SystemTag,
  type TagLookup,
} from '@meshlet/core';
import type { ServiceFaults } from '@meshlet/fault';
import { requestTagsOf, type TagPropagation } from '@meshlet/propagation';
import type { RouteDecision, RoutePicker, Router } from '@meshlet/route';
import { Attr, appSpanActive, type ClientSpan, clientSpanInterceptor, errorAttributesOf, type Tracing } from '@meshlet/trace';
import type { Dispatcher } from 'undici';
import { meshAttemptChain } from './attempt-stages.js';
import type { DestinationGuard } from './destination-guard.js';
import { DispatchedResponse, isAsyncIterable, type Transport } from './dispatcher-fetch.js';
import { MAX_REDIRECTS, REDIRECT_STATUSES, redirectStep, withoutRedirects } from './redirects.js';
import type { ServiceDirectory } from './service-directory.js';
import { type UrlParts, urlParts } from './service-url.js';

export type Fetch = typeof globalThis.fetch;
type FetchInput = Parameters<Fetch>[0];

/** What the governed pipeline needs from the mesh; shared by `fetch` and `request`. */
export interface GovernedCallDeps {
  readonly directory: ServiceDirectory;
  readonly router: Router;
  readonly executor: CallExecutor;
  readonly tracing: Tracing | undefined;
  /**
   * The destination's bulkhead and adaptive limit (`ratelimit.bulkheads`,
   * `ratelimit.outboundAdaptive`), composed once per mesh (`destination-guard.ts`) and run
   * around HTTP's and gRPC's unary calls alike; undefined when the mesh has neither.
   */
  readonly guard: DestinationGuard | undefined;
  /** Writes the request's tags in the configured dialects, by scope. */
  readonly propagation: TagPropagation;
  /** Fault rules of a destination, if it has any. */
  readonly faults: (service: string) => ServiceFaults | undefined;
  /** The encoded identity of this service, sent as the caller header on every governed call. */
  readonly callerHeader: () => string;
  /** The signed identity for a destination (the audience), when auth is on. */
  readonly identityHeader: ((service: string) => [name: string, value: string]) | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface GovernedFetchDeps extends GovernedCallDeps {
  /** The client that sends the request; global fetch by default. */
  readonly send: Fetch;
  /**
   * Sends each governed attempt instead of `send` (the mesh's dispatcher transport when
   * the application gave no fetch of its own); never follows redirects. Calls that are
   * not governed, and off-mesh redirects, still go to `send`.
   */
  readonly transport?: Transport;
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
 * The outbound headers of one call: a WHATWG Headers, or a plain object with lower-case
 * names (what undici takes, and what fetch reads as well as a Headers). The pipeline only
 * adds to them.
 */
export type CallHeaders = Headers | Record<string, string | string[]>;

// A plain object's names are lower case, as a Headers' are: a dialect's mixed-case name
// replaces the same header in another case rather than sitting beside it.
function hasHeader(headers: CallHeaders, name: string): boolean {
  return headers instanceof Headers ? headers.has(name) : headers[name.toLowerCase()] !== undefined;
}

function setHeader(headers: CallHeaders, name: string, value: string): void {
  if (headers instanceof Headers) headers.set(name, value);
  else headers[name.toLowerCase()] = value;
}

/** One call to a service, as a front end (fetch, request) describes it to the pipeline. */
export interface ServiceCall<R extends CallResult> {
  readonly service: string;
  /** Upper case. */
  readonly method: string;
  readonly path: string;
  /** `?…`, or empty. */
  readonly search: string;
  /** Mutated: tags, identity and trace headers are added. */
  readonly headers: CallHeaders;
  /** False when the body can be read once (a stream): never retried. */
  readonly retryable: boolean;
  readonly signal: AbortSignal | undefined;
  /**
   * True when `send` takes the executor's AttemptAbort for a timed attempt (and hooks its
   * own cancel on it, or reads its `signal`): no AbortSignal is made for the attempt.
   * Otherwise `send` is given an AbortSignal, as before.
   */
  readonly takesAbort?: boolean;
  /**
   * With `takesAbort`: true when the promise `send` returns settles by itself once the
   * AttemptAbort aborts (the mesh's own undici dispatch rejects with its reason). A timed
   * attempt then runs without the executor's racing promise (see GovernedCall).
   */
  readonly settlesOnAbort?: boolean;
  /**
   * Sends one attempt to the instance at `origin` (`http://host:port`; the front end adds
   * the path and query) with `headers`, cancelled by `cancel`: the attempt's signal (its
   * timeout and the caller's), or with `takesAbort`, the executor's AttemptAbort when the
   * attempt is timed. `bodySignal` is the caller's (with the inbound deadline's when there
   * is one): it also ends the answer's body while it is read, after `cancel` let go.
   * `fresh`: the attempt goes again to an instance whose kept-alive connection went stale
   * (AttemptRecord.freshConnection): send it on a new connection when the client can.
   */
  send(
    origin: string,
    headers: CallHeaders,
    cancel: AttemptAbort | AbortSignal | undefined,
    bodySignal: AbortSignal | undefined,
    fresh: boolean,
  ): Promise<R>;
  /**
   * Calls `done` once `result`'s body ended, failed or was given up (at once when it has
   * none; never when the front end cannot tell, and the cut then stays armed to the
   * deadline): how long an inbound deadline's cut stays armed over the body. Absent: at once.
   */
  whenDone?(result: R, done: () => void): void;
  /**
   * Tells `verdict` whether `result`'s body arrives whole or breaks (the mesh's own
   * transports can tell): true when it will. Absent, or false: the answer is settled at
   * its headers. See GovernedCall.watchBody.
   */
  watchBody?(result: R, verdict: BodyVerdict): boolean;
  /** A Response made by the mesh (an injected fault, a breaker fallback) as the front end's result. */
  fromResponse(response: Response): R;
  /** Frees an attempt's result dropped for a retry. Default: cancels a Response's body. */
  discard?(result: R): void;
}

/**
 * The governance pipeline behind every front end: routing (rules, lanes, nearby,
 * balancer, open instance breakers left out), service and API breakers, per-attempt
 * timeouts and retries to other instances, bulkheads, fault injection, a span per
 * attempt, and the request's tags, this service's identity and trace context on the
 * headers. Resolves with the front end's result type.
 */
export type GovernedCallPipeline = <R extends CallResult>(call: ServiceCall<R>) => Promise<R>;

/**
 * One call, as the executor and the attempt chain see it: built once per call, it holds
 * the call's own state (tags, headers, the front end's client) and nothing else. It does
 * not drive the attempts: the executor takes instances from routing's picker through
 * `pick` and hands each attempt down as a record (`send`) to the chain composed once per
 * mesh (span, in-flight count, fault), whose last step is `transport`, the front end's
 * client.
 */
class PipelineCall<R extends CallResult> implements GovernedCall<RouteDecision, R>, OutboundCall<R> {
  readonly service: string;
  readonly method: string;
  readonly path: string;
  readonly search: string;
  readonly headers: CallHeaders;
  readonly retryable: boolean;
  readonly signal?: AbortSignal;
  readonly discard?: (result: R) => void;
  readonly tags: TagLookup;
  /** `send` reads the abort from the record: the executor makes no AbortSignal for it. */
  readonly abortsOnRecord = true;
  readonly settlesOnAbort: boolean;
  readonly #call: ServiceCall<R>;
  readonly #picker: RoutePicker;
  readonly #pipeline: Pipeline;
  /** Attempts started so far. */
  attempts = 0;
  #refusalSpan = false;

  /** `signal`: the caller's, or the caller's and the inbound deadline's (InboundDeadlineCut). */
  constructor(pipeline: Pipeline, call: ServiceCall<R>, tags: TagLookup, signal: AbortSignal | undefined) {
    this.service = call.service;
    this.method = call.method;
    this.path = call.path;
    this.search = call.search;
    this.headers = call.headers;
    this.retryable = call.retryable;
    if (signal) this.signal = signal;
    if (call.discard) this.discard = call.discard;
    this.tags = tags;
    this.settlesOnAbort = call.takesAbort === true && call.settlesOnAbort === true;
    this.#call = call;
    this.#pipeline = pipeline;
    this.#picker = pipeline.router.picker(call.service);
  }

  pick(tried: ReadonlySet<string>): RouteDecision | undefined {
    // The first pick throws NoInstanceError with routing's explanation; a retry or hedge
    // takes an instance not yet tried, nearest locality first (an empty `tried` after an
    // attempt: any instance, for one that goes again after a stale connection).
    return tried.size === 0 && this.attempts === 0 ? this.#picker.first(this.tags) : this.#picker.next(this.tags, tried);
  }

  watchBody(result: R, verdict: BodyVerdict): boolean {
    return this.#call.watchBody?.(result, verdict) === true;
  }

  send(_target: RouteDecision, _signal: AbortSignal | undefined, attempt: AttemptRecord<RouteDecision>): Promise<R> {
    this.attempts++;
    // The record's call is this object: the chain reads everything it needs from it.
    return this.#pipeline.chain.send(attempt as Attempt<R>);
  }

  settled(attempt: AttemptRecord<RouteDecision>, result: R | undefined, error: unknown): void {
    // The executor's await settled the attempt: the chain's observers end (span, in-flight count).
    this.#pipeline.chain.settle(attempt as Attempt<R>, result as AttemptResult | undefined, error);
  }

  transport(attempt: Attempt<R>): Promise<R> {
    // A timed attempt's abort, without reading its signal (which would make one); a hedge's
    // racing attempt, or an untimed one, has its signal only.
    const rec = attempt as unknown as AttemptRecord<RouteDecision>;
    const abort = this.#call.takesAbort === true ? rec.abort : undefined;
    return this.#call.send(
      originOf(attempt.target.instance),
      this.headers,
      abort ?? attempt.signal,
      this.signal,
      rec.freshConnection === true,
    );
  }

  fromResponse(response: Response): R {
    return this.#call.fromResponse(response);
  }

  /**
   * The call failed without an answer (told by the executor, or by the bulkhead or the
   * adaptive limit's refusal): when nothing was sent (a breaker, no instance, a full
   * bulkhead), a span for the logical call, once, so traces and metrics show the rejection.
   */
  rejected(error: unknown): void {
    this.#logicalSpan()?.end({ error });
  }

  /**
   * A breaker refused the call and its fallback answered: the span of the logical call, once,
   * with the refusing breaker (its io.meshlet.circuit.*) and the fallback's status.
   */
  fellBack(refusal: CircuitOpenError, response: Response): void {
    const span = this.#logicalSpan();
    if (span === undefined) return;
    const decided = errorAttributesOf(refusal);
    if (decided !== undefined) for (const k in decided) span.setAttribute(k, decided[k] as string | number);
    span.setAttribute(Attr.meshletFallback, 'breaker');
    span.end(response.status);
  }

  /** The span of the logical call when nothing was sent: once, and only with tracing. */
  #logicalSpan(): ClientSpan | undefined {
    const tracing = this.#pipeline.tracing;
    if (tracing === undefined || this.attempts !== 0 || this.#refusalSpan) return undefined;
    this.#refusalSpan = true;
    const url = `http://${this.service}${this.path}${this.search}`;
    return tracing.startClientSpan(undefined, { method: this.method, url, service: this.service });
  }

  unreachable(target: RouteDecision): void {
    // A refused connection: a departed instance routing still trusted is gone for good.
    this.#pipeline.router.reportUnreachable(target.instance);
  }
}

/** What every call of one pipeline shares, made once. */
interface Pipeline {
  readonly router: Router;
  readonly chain: AttemptChain;
  readonly tracing: Tracing | undefined;
}

/** Writes the request's tags, this service's identity and (tracing off) the caller's trace context. */
function writeHeaders(deps: GovernedCallDeps, ctx: MeshContext, service: string, headers: CallHeaders): void {
  const scoped = requestTagsOf(ctx);
  if (ctx.tags.size > 0 || scoped?.passThrough.size || deps.propagation.emitsWithoutTags) {
    const out = deps.propagation.emit(ctx.tags, scoped?.scopes, scoped?.passThrough);
    for (const d of out.dropped)
      deps.logger.warn('tag not sent', { code: 'MESHLET_TAG_DROPPED', key: d.key.slice(0, 128), reason: d.reason, service });
    // Never overwrite what the application set itself.
    const emitted = out.headers;
    for (const k in emitted) if (!hasHeader(headers, k)) setHeader(headers, k, emitted[k] as string);
  }
  setHeader(headers, CALLER_HEADER, deps.callerHeader());
  if (deps.identityHeader) {
    const [name, value] = deps.identityHeader(service);
    setHeader(headers, name, value);
  }
  if (!deps.tracing && ctx.trace && !hasHeader(headers, 'traceparent') && !appSpanActive()) {
    // No tracing configured: pass the caller's trace context on as it came (a context keeps
    // it only as valid W3C trace context: core's keptTraceContext). Not when the app's own
    // OpenTelemetry has a span active: its client instrumentation writes a traceparent, and
    // two (this one and its own) would make the callee drop both.
    setHeader(headers, 'traceparent', ctx.trace.traceparent);
    if (ctx.trace.tracestate) setHeader(headers, 'tracestate', ctx.trace.tracestate);
  }
}

/**
 * The deadline of the inbound call being served (a gRPC handler's caller's), applied to an
 * HTTP call made while serving it: an abort at the deadline, with the caller's own signal,
 * handed to the executor as the call's signal. An abort of that signal is the caller's, so
 * it ends the attempt in flight, the bulkhead wait, the retry backoff and the answer's body
 * while it is read, is not retried and counts against no breaker; its reason
 * (DeadlineExceededError, sent) is the call's error. One timer a call, only for calls made
 * under a deadline; ended when the call fails, or once its answer's body is done.
 */
class InboundDeadlineCut {
  readonly signal: AbortSignal;
  readonly #cancel: CancelTimer;

  constructor(clock: Clock, left: number, service: string, caller: AbortSignal | undefined) {
    const controller = new AbortController();
    this.#cancel = clock.setTimeout(() => controller.abort(new DeadlineExceededError(service, true, `after ${left} ms`)), left);
    this.signal = caller === undefined ? controller.signal : AbortSignal.any([caller, controller.signal]);
  }

  end(): void {
    this.#cancel();
  }

  /** Ends once `result`'s body is done (the front end tells), so that the deadline cuts the body too. */
  endWhenDone<R extends CallResult>(call: ServiceCall<R>, result: R): void {
    if (call.whenDone === undefined) this.end();
    else call.whenDone(result, () => this.end());
  }
}

export function governedCall(deps: GovernedCallDeps): GovernedCallPipeline {
  const { executor, tracing, guard } = deps;
  // The attempt chain (span, in-flight count, fault), composed once: attempt-stages.ts.
  const pipeline: Pipeline = { router: deps.router, chain: meshAttemptChain(deps, clientSpanInterceptor), tracing };

  // Not async: the executor's promise is the call's. A fallback's Response is converted
  // there (the call's fromResponse), and a call rejected before anything was sent gets its
  // span through the call's `rejected`, which the executor calls: no step on the promise.
  return function run<R extends CallResult>(call: ServiceCall<R>): Promise<R> {
    const { service, path, method } = call;
    let signal = call.signal;
    let governed: PipelineCall<R> | undefined;
    let cut: InboundDeadlineCut | undefined;
    let out: Promise<R>;
    try {
      const ctx = currentContext();
      // Inside a handler whose caller gave a deadline (gRPC's): the call ends by then.
      const deadline = inboundDeadline(ctx);
      if (deadline !== undefined) {
        const left = deadline - Date.now();
        if (left <= 0) {
          // Passed already: refused before anything is sent (with the span of the refused call).
          governed = new PipelineCall(pipeline, call, routingTags(ctx, service, path, method), signal);
          throw new DeadlineExceededError(service, false);
        }
        cut = new InboundDeadlineCut(deps.clock, left, service, signal);
        signal = cut.signal;
      }
      writeHeaders(deps, ctx, service, call.headers);
      const g = new PipelineCall(pipeline, call, routingTags(ctx, service, path, method), signal);
      if (guard === undefined) out = executor.call<RouteDecision, R>(g) as Promise<R>;
      else {
        governed = g;
        // The destination's bulkhead and adaptive limit around the executor: a call over either
        // is refused before routing (its span made here), and the limit samples the call's whole time.
        out = guard(service, () => executor.call<RouteDecision, R>(g) as Promise<R>, signal);
      }
    } catch (error) {
      cut?.end();
      governed?.rejected(error);
      return Promise.reject(error);
    }
    if (cut !== undefined) {
      const c = cut;
      out = out.then(
        (r) => {
          // Armed until the answer's body is done: a body still arriving at the deadline is cut.
          c.endWhenDone(call, r);
          return r;
        },
        (error: unknown) => {
          c.end();
          throw error;
        },
      );
    }
    if (tracing === undefined || governed === undefined) return out;
    const g = governed;
    return out.catch((error: unknown) => {
      g.rejected(error);
      throw error;
    });
  };
}

/** A body that can be read once: a ReadableStream, or an async iterable (a Node Readable, a generator). */
const sentOnce = (body: unknown): boolean => body instanceof ReadableStream || isAsyncIterable(body);

/** How much of a Request's body `mesh.fetch` holds to send it again (a retry, a redirect); past it, the body is sent once. */
export const HELD_BODY_BYTES = 64 * 1024;

/**
 * A Request's body read into bytes when it ends within HELD_BODY_BYTES; else what was read,
 * then the rest, as one stream (sent once, as before).
 */
async function heldBody(stream: ReadableStream<Uint8Array>): Promise<Uint8Array | ReadableStream<Uint8Array>> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks, size);
    chunks.push(value);
    size += value.byteLength;
    if (size > HELD_BODY_BYTES)
      return new ReadableStream<Uint8Array>({
        start(controller) {
          for (const chunk of chunks) controller.enqueue(chunk);
        },
        async pull(controller) {
          const next = await reader.read();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        },
        cancel: (reason) => reader.cancel(reason),
      });
  }
}

/**
 * One governed call of `mesh.fetch`, as the pipeline takes it: the call's parts and its
 * `send` as a method (no closure per call). Each attempt goes to the mesh's dispatcher
 * transport, or to the application's fetch (its own `fetch` option, or an undici
 * `dispatcher` in init, which fetch honours); `sentTo` is the last attempt's URL, where a
 * relative redirect resolves.
 */
class FetchCall implements ServiceCall<Response> {
  readonly service: string;
  readonly method: string;
  readonly path: string;
  readonly search: string;
  readonly headers: CallHeaders;
  readonly retryable: boolean;
  readonly signal: AbortSignal | undefined;
  readonly takesAbort = true;
  readonly settlesOnAbort: boolean;
  sentTo = '';
  readonly #body: RequestInit['body'];
  /** fetch's `redirect`: `follow` and `error` are the front end's (governedFetch), so each attempt is sent `manual`. */
  readonly #request: Request | undefined;
  readonly #init: RequestInit | undefined;
  /** The mesh's transport, when this call's attempts go to it. */
  readonly #transport: Transport | undefined;
  readonly #fetch: Fetch;

  constructor(
    url: UrlParts,
    method: string,
    body: RequestInit['body'],
    given: RequestInit['headers'],
    request: Request | undefined,
    init: RequestInit | undefined,
    transport: Transport | undefined,
    fetch: Fetch,
  ) {
    this.service = url.hostname;
    this.method = method;
    this.path = url.pathname;
    this.search = url.search;
    // No headers given: a plain object, which fetch reads as it reads a Headers, without
    // a Headers' validation of every name and value when the pipeline adds its own.
    this.headers = given === undefined ? {} : new Headers(given);
    // A stream can be read once: such a request is never retried.
    this.retryable = !sentOnce(body);
    this.signal = init?.signal ?? request?.signal ?? undefined;
    this.#body = body;
    this.#request = request;
    this.#init = init;
    this.#fetch = fetch;
    // An undici `dispatcher` in init (a proxy, mTLS) is the application's choice: fetch honours it.
    this.#transport = transport !== undefined && (init === undefined || !('dispatcher' in init)) ? transport : undefined;
    // The mesh's dispatch rejects by itself when the attempt is aborted (a body to encode
    // first, a Blob or a form, is not hooked until encoded: raced as before).
    this.settlesOnAbort = this.#transport !== undefined && (body === null || typeof body === 'string');
  }

  send(
    origin: string,
    headers: CallHeaders,
    cancel: AttemptAbort | AbortSignal | undefined,
    bodySignal: AbortSignal | undefined,
    fresh: boolean,
  ): Promise<Response> {
    const pathAndQuery = `${this.path}${this.search}`;
    const target = `${origin}${pathAndQuery}`;
    this.sentTo = target;
    const init = this.#init;
    const request = this.#request;
    const transport = this.#transport;
    if (transport !== undefined) {
      // A timed attempt's abort is hooked by the transport: no AbortSignal is made for it.
      const timed = cancel instanceof AbortSignal ? undefined : cancel;
      return transport({
        origin,
        path: pathAndQuery,
        method: this.method,
        headers,
        body: this.#body,
        signal: timed !== undefined ? undefined : ((cancel as AbortSignal | undefined) ?? this.signal),
        abort: timed,
        bodySignal,
        fresh,
      });
    }
    const attemptSignal = cancel instanceof AbortSignal || cancel === undefined ? cancel : cancel.signal;
    // The attempt's signal lets go at the headers; the caller's (with the inbound deadline's)
    // goes on over the body, as on the mesh's transport: a fetch that honours its signal, as
    // Node's does, fails the body with that signal's reason (MESHLET_DEADLINE at the deadline).
    const signal =
      attemptSignal !== undefined && bodySignal !== undefined && attemptSignal !== bodySignal
        ? AbortSignal.any([attemptSignal, bodySignal])
        : (attemptSignal ?? bodySignal);
    // A Headers, or the plain object of string values made above.
    const options: RequestInit = { ...init, method: this.method, headers: headers as Headers | Record<string, string> };
    // The application's undici dispatcher (fetch honours it) may not follow a redirect either.
    // (undici's Dispatcher type, which RequestInit's global one is not assignable to.)
    const withDispatcher = options as unknown as { dispatcher?: Dispatcher };
    if (withDispatcher.dispatcher !== undefined) withDispatcher.dispatcher = withoutRedirects(withDispatcher.dispatcher);
    if (signal) options.signal = signal;
    // Followed (or refused) by the front end, where the mesh headers can be left behind.
    options.redirect = 'manual';
    return this.#fetch(request ? new Request(target, request) : target, options);
  }

  fromResponse(response: Response): Response {
    return response;
  }

  watchBody(response: Response, verdict: BodyVerdict): boolean {
    return response instanceof DispatchedResponse && response.watchBody(verdict);
  }

  whenDone(response: Response, done: () => void): void {
    // The mesh's own transport tells when its body is done. Another fetch's Response cannot:
    // its deadline timer (unref'd) runs to the deadline, when the abort of the signal that
    // fetch was given cuts a body still arriving and does nothing to one read already. One
    // pending timer a call until its deadline, rather than a wrapped Response over a copied body.
    if (response instanceof DispatchedResponse) response.whenBodyDone(done);
  }
}

/**
 * Builds a fetch with the WHATWG signature that governs calls to services through the
 * shared pipeline (see governedCall). A URL whose host is a service in the registry is
 * governed; any other URL is passed to `send` untouched. A service URL's port, if any,
 * is ignored.
 *
 * Redirects (`redirect: 'follow'`, fetch's default) are followed here, not by the client,
 * because the mesh headers (identity, caller, tags, trace context) were written for the
 * routed instance only: a redirect to a service name (`http://orders/…`) or to the
 * instance's own origin (a relative `Location`) is governed again, with headers made for
 * that call; a redirect to any other origin is sent with the application's own headers
 * only, less any mesh header it set itself and the credentials fetch drops across origins,
 * and followed from there by the client. `redirect: 'manual'` and `'error'` go to the client as given.
 */
export function governedFetch(deps: GovernedFetchDeps, pipeline: GovernedCallPipeline = governedCall(deps)): Fetch {
  const { directory, send, transport } = deps;

  const fetch = (input: FetchInput, init?: RequestInit): Promise<Response> => governed(input, init, 0);

  async function governed(input: FetchInput, init: RequestInit | undefined, hops: number): Promise<Response> {
    let request = input instanceof Request ? input : undefined;
    // `http://service/path` split without a WHATWG URL (service-url.ts); anything else through one.
    const url = urlParts(request ? request.url : input instanceof URL ? input : String(input));
    const service = url.hostname;
    // After its first call a service is known and followed: no await for either.
    if (!directory.use(service)) {
      if (!(await directory.governs(service))) return send(input, init);
      await directory.ensure(service);
    }

    if (request !== undefined && request.body !== null && init?.body === undefined) {
      // A Request's body is always a stream, which could be sent once: held (up to
      // HELD_BODY_BYTES) so that the call is retried and redirected as with the string or
      // bytes it was most likely made from (ky sends every call as a Request). The Request's
      // parts the front end reads become the init.
      const held = await heldBody(request.body);
      const own: RequestInit = init ?? {};
      init = {
        ...own,
        method: own.method ?? request.method,
        headers: own.headers ?? request.headers,
        signal: own.signal ?? request.signal,
        redirect: own.redirect ?? request.redirect,
        body: held as NonNullable<RequestInit['body']>,
      };
      if (!(held instanceof Uint8Array)) (init as { duplex?: string }).duplex = 'half';
      request = undefined;
    }
    const method = (init?.method ?? request?.method ?? 'GET').toUpperCase();
    const body = init?.body ?? request?.body ?? null;
    // As in fetch itself, init.headers replace a Request's headers rather than merge.
    const given = init?.headers ?? request?.headers;
    const redirect = init?.redirect ?? request?.redirect ?? 'follow';
    const follow = redirect === 'follow';
    const call = new FetchCall(url, method, body, given, request, init, transport, send);
    const res = await pipeline(call);
    if (redirect === 'error' && REDIRECT_STATUSES.has(res.status)) {
      // As fetch fails it; the instance answered, so its breaker counted an answer, not a failure.
      void res.body?.cancel().catch(() => {});
      throw new TypeError('fetch failed', { cause: new Error('unexpected redirect') });
    }
    const sentTo = call.sentTo;
    if (!follow || !REDIRECT_STATUSES.has(res.status) || sentTo === '') return res;
    const location = res.headers.get('location');
    if (location === null) return res;
    const step = await redirectStep({
      service,
      sentTo,
      status: res.status,
      location,
      method,
      hops,
      maxHops: MAX_REDIRECTS,
      sendsOnce: sentOnce(body),
      governs: (host) => directory.governs(host),
      discard: () => void res.body?.cancel().catch(() => {}),
    });
    if (step === undefined) return res; // as the client would see it: a Location that is not a URL is not followed
    const headers = new Headers(given);
    for (const name of step.dropped([...headers.keys()])) headers.delete(name);
    const nextInit: RequestInit = {
      ...init,
      method: step.toGet ? 'GET' : method,
      headers,
      body: step.toGet ? null : body,
      redirect: 'follow',
    };
    const signal = init?.signal ?? request?.signal;
    if (signal) nextInit.signal = signal;
    // Back into the mesh: governed again, its headers written for that call. Off the mesh:
    // the app's headers only (step.dropped); the client follows any further redirect itself.
    return step.governed !== undefined ? governed(step.governed, nextInit, hops + 1) : send(step.next.href, nextInit);
  }

  return fetch;
}
