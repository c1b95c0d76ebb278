import type { Readable } from 'node:stream';
import type { BodyVerdict } from '@meshlet/breaker';
import { type Dispatcher, request as undiciRequest } from 'undici';
import type { CallHeaders, GovernedCallPipeline, ServiceCall } from './governed-fetch.js';
import { withoutRedirects } from './redirects.js';
import { bodyOfResponse } from './request-body.js';
import { type AttemptCancel, dispatchRequest, RequestData, watchRequestBody } from './request-dispatch.js';
import type { ServiceDirectory } from './service-directory.js';
import { type UrlParts, urlParts } from './service-url.js';

/** undici's `request` options; `dispatcher` replaces the mesh's shared Agent for this call. */
export type RequestOptions = NonNullable<Parameters<typeof undiciRequest>[1]>;
export type ResponseData = Dispatcher.ResponseData;
/** undici's `request` shape, governed: `mesh.request(url, options)`. */
export type MeshRequest = (url: string | URL, options?: RequestOptions) => Promise<ResponseData>;

export interface GovernedRequestDeps {
  readonly directory: ServiceDirectory;
  /** Sends governed attempts: the mesh's shared keep-alive Agent. */
  readonly dispatcher: Dispatcher;
  /**
   * Sends an attempt that goes again after a stale connection (MeshAgents.fresh), with
   * `reset: true`: each on a new connection. Default: `dispatcher`.
   */
  readonly fresh?: Dispatcher;
  /** Sends URLs that are not services. Default: undici's `request`, options untouched. */
  readonly passThrough?: typeof undiciRequest;
}

type HeaderValue = string | string[] | number | undefined | null;

function addHeader(out: Record<string, string | string[]>, name: string, value: HeaderValue): void {
  if (value === undefined || value === null) return;
  const key = name.toLowerCase();
  const v = typeof value === 'number' ? String(value) : value;
  const had = out[key];
  out[key] = had === undefined ? v : ([] as string[]).concat(had, v);
}

/** The caller's headers (object, flat array or iterable of pairs) as lower-case names the pipeline can add to. */
function headerRecord(headers: RequestOptions['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (headers === undefined || headers === null) return out;
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) addHeader(out, String(headers[i]), headers[i + 1] as HeaderValue);
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of headers as Iterable<[string, HeaderValue]>) addHeader(out, k, v);
  } else {
    for (const [k, v] of Object.entries(headers as Record<string, HeaderValue>)) addHeader(out, k, v);
  }
  return out;
}

/** A body that can be sent twice: absent, a string or bytes (not a stream or iterable). */
function replayable(body: RequestOptions['body']): boolean {
  return body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
}

/** A Response the mesh made (an injected fault, a breaker's fallback) as undici's ResponseData. */
function responseData(res: Response): RequestData {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of res.headers) if (k !== 'set-cookie') headers[k] = v;
  const cookies = res.headers.getSetCookie();
  if (cookies.length) headers['set-cookie'] = cookies;
  return new RequestData(res.status, res.statusText, headers, bodyOfResponse(res) as unknown as ResponseData['body'], {}, null, {});
}

/** The options the dispatched path sends as they are; any other option goes through undici's `request`. */
const DISPATCHED_OPTIONS: ReadonlySet<string> = new Set(['method', 'headers', 'body', 'signal', 'dispatcher']);

/**
 * True when the call can be dispatched with a handler (request-dispatch.ts): only options
 * it sends as `request` would, an AbortSignal (not an emitter) and a string or bytes body.
 */
function dispatchable(options: RequestOptions | undefined): boolean {
  if (options === undefined) return true;
  for (const k in options) {
    if (!DISPATCHED_OPTIONS.has(k)) {
      if ((options as Record<string, unknown>)[k] === undefined) continue;
      return false;
    }
  }
  const signal = options.signal;
  return (signal === undefined || signal === null || signal instanceof AbortSignal) && replayable(options.body);
}

/** The attempt's cancel as a signal, for undici's `request`. */
function signalOf(cancel: AttemptCancel): AbortSignal | undefined {
  return cancel instanceof AbortSignal || cancel === undefined ? cancel : cancel.signal;
}

/**
 * One governed call of `mesh.request`, as the pipeline takes it: the call's parts and its
 * `send` as a method (no closure per call). A dispatchable call (request-dispatch.ts) is
 * one `dispatch` per attempt, which settles by itself when the attempt is aborted; any
 * other goes through the dispatcher's `request` with the caller's options.
 */
class RequestCall implements ServiceCall<RequestData> {
  readonly service: string;
  readonly method: Dispatcher.HttpMethod;
  readonly path: string;
  readonly search: string;
  readonly headers: Record<string, string | string[]>;
  readonly retryable: boolean;
  readonly signal: AbortSignal | undefined;
  readonly takesAbort = true;
  readonly settlesOnAbort: boolean;
  readonly #via: Dispatcher;
  /** Where an attempt goes on a new connection: the mesh's fresh Agent, or the application's own dispatcher. */
  readonly #fresh: Dispatcher;
  /** True when `#fresh` is the mesh's: its requests are sent with `reset: true`. */
  readonly #meshFresh: boolean;
  /** Path and query, as sent. */
  readonly #target: string;
  readonly #body: string | Uint8Array | null;
  /** The caller's options when the call is not dispatchable: sent through `request`. */
  readonly #options: RequestOptions | undefined;

  constructor(url: UrlParts, options: RequestOptions | undefined, dispatcher: Dispatcher, fresh: Dispatcher) {
    this.service = url.hostname;
    this.method = (options?.method ?? 'GET').toUpperCase() as Dispatcher.HttpMethod;
    this.path = url.pathname;
    this.search = url.search;
    this.#target = url.search === '' ? url.pathname : `${url.pathname}${url.search}`;
    this.headers = headerRecord(options?.headers);
    const body = options?.body;
    this.retryable = replayable(body);
    this.signal = options?.signal instanceof AbortSignal ? options.signal : undefined;
    // The application's own dispatcher never follows a redirect for a governed attempt.
    this.#via = options?.dispatcher !== undefined ? withoutRedirects(options.dispatcher) : dispatcher;
    // Only the mesh's own Agent marks a stale connection, so only its attempts go again.
    this.#meshFresh = options?.dispatcher === undefined;
    this.#fresh = this.#meshFresh ? fresh : this.#via;
    const direct = dispatchable(options);
    this.settlesOnAbort = direct;
    this.#body = direct ? ((body ?? null) as string | Uint8Array | null) : null;
    this.#options = direct ? undefined : options;
  }

  send(
    origin: string,
    headers: CallHeaders,
    cancel: AttemptCancel,
    bodySignal: AbortSignal | undefined,
    fresh: boolean,
  ): Promise<RequestData> {
    const options = this.#options;
    const via = fresh ? this.#fresh : this.#via;
    // On the mesh's fresh Agent: the socket takes no other request and closes after the answer.
    const reset = fresh && this.#meshFresh;
    if (options === undefined)
      return dispatchRequest(
        via,
        {
          origin,
          path: this.#target,
          method: this.method,
          headers: headers as Record<string, string | string[]>,
          body: this.#body,
          ...(reset ? { reset: true } : {}),
        },
        cancel,
        bodySignal,
      );
    const { dispatcher: _own, ...rest } = options;
    // The attempt's signal follows the caller's until the headers; the caller's (with an
    // inbound deadline's) ends the body after that, as on the dispatched path. An
    // emitter-style signal goes as given.
    const attemptSignal = signalOf(cancel);
    const signal =
      attemptSignal !== undefined && bodySignal !== undefined && attemptSignal !== bodySignal
        ? AbortSignal.any([attemptSignal, bodySignal])
        : (attemptSignal ?? bodySignal ?? rest.signal ?? null);
    return via
      .request<null>({
        ...rest,
        ...(reset ? { reset: true } : {}),
        origin,
        path: this.#target,
        method: this.method,
        headers: headers as Record<string, string | string[]>,
        signal,
        opaque: null,
      })
      .then(RequestData.of);
  }

  fromResponse(res: Response): RequestData {
    return responseData(res);
  }

  watchBody(data: RequestData, verdict: BodyVerdict): boolean {
    return watchRequestBody(data.body, verdict);
  }

  whenDone(data: RequestData, done: () => void): void {
    // The body closes once read to its end, failed or destroyed (undici's and the mesh's alike).
    const body = data.body as unknown as Readable;
    if (body.closed || body.destroyed) done();
    else body.once('close', done);
  }

  /** A failed attempt dropped for a retry: read what is left (undici caps it) so the connection is reused. */
  discard(a: RequestData): void {
    void a.body.dump().catch(() => {});
  }
}

/**
 * Builds `request` with undici's shape, governed by the same pipeline as the mesh's fetch:
 * a URL whose host is a service in the registry is routed, broken, timed out, retried,
 * traced and tagged, and sent through the mesh's shared keep-alive Agent (or the
 * `dispatcher` option); any other URL goes to undici's `request` untouched. undici's
 * request skips WHATWG fetch's Request/Response/stream machinery, so a governed call
 * costs several times less CPU. A service URL's port, if any, is ignored. Not async: once
 * a service is known, the call is the pipeline's promise, resolved with the attempt's
 * ResponseData itself.
 */
export function governedRequest(deps: GovernedRequestDeps, pipeline: GovernedCallPipeline): MeshRequest {
  const { directory, dispatcher } = deps;
  const fresh = deps.fresh ?? dispatcher;
  const passThrough = deps.passThrough ?? undiciRequest;

  const governed = (url: UrlParts, options: RequestOptions | undefined): Promise<ResponseData> => {
    let call: RequestCall;
    try {
      call = new RequestCall(url, options, dispatcher, fresh);
    } catch (err) {
      return Promise.reject(err);
    }
    return pipeline(call);
  };

  // The first call to a host: is it a service, and its instances and rules followed.
  const first = async (input: string | URL, options: RequestOptions | undefined, url: UrlParts): Promise<ResponseData> => {
    if (!(await directory.governs(url.hostname))) return passThrough(input, options) as Promise<ResponseData>;
    await directory.ensure(url.hostname);
    return governed(url, options);
  };

  return function request(input: string | URL, options?: RequestOptions): Promise<ResponseData> {
    let url: UrlParts;
    try {
      url = urlParts(input);
    } catch (err) {
      return Promise.reject(err);
    }
    // After its first call a service is known and followed: no await for either.
    return directory.use(url.hostname) ? governed(url, options) : first(input, options, url);
  };
}
