import type { CallResult } from '@meshlet/breaker';
import { type Dispatcher, request as undiciRequest } from 'undici';
import type { CallHeaders, GovernedCallPipeline } from './governed-fetch.js';
import { bodyOfResponse } from './request-body.js';
import { type AttemptCancel, dispatchRequest } from './request-dispatch.js';
import type { ServiceDirectory } from './service-directory.js';
import { urlParts } from './service-url.js';

/** undici's `request` options; `dispatcher` replaces the mesh's shared Agent for this call. */
export type RequestOptions = NonNullable<Parameters<typeof undiciRequest>[1]>;
export type ResponseData = Dispatcher.ResponseData;
/** undici's `request` shape, governed: `mesh.request(url, options)`. */
export type MeshRequest = (url: string | URL, options?: RequestOptions) => Promise<ResponseData>;

export interface GovernedRequestDeps {
  readonly directory: ServiceDirectory;
  /** Sends governed attempts: the mesh's shared keep-alive Agent. */
  readonly dispatcher: Dispatcher;
  /** Sends URLs that are not services. Default: undici's `request`, options untouched. */
  readonly passThrough?: typeof undiciRequest;
}

/** One attempt's ResponseData with the `status` the CallExecutor classifies by. */
interface Attempt extends CallResult {
  readonly data: ResponseData;
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

function responseData(res: Response): ResponseData {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of res.headers) if (k !== 'set-cookie') headers[k] = v;
  const cookies = res.headers.getSetCookie();
  if (cookies.length) headers['set-cookie'] = cookies;
  return {
    statusCode: res.status,
    statusText: res.statusText,
    headers,
    body: bodyOfResponse(res) as unknown as ResponseData['body'],
    trailers: {},
    opaque: null,
    context: {},
  };
}

const fromResponse = (res: Response): Attempt => ({ status: res.status, data: responseData(res) });
// A failed attempt dropped for a retry: read what is left (undici caps it) so the connection is reused.
const discard = (a: Attempt): void => void a.data.body.dump().catch(() => {});

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
 * Builds `request` with undici's shape, governed by the same pipeline as the mesh's fetch:
 * a URL whose host is a service in the registry is routed, broken, timed out, retried,
 * traced and tagged, and sent through the mesh's shared keep-alive Agent (or the
 * `dispatcher` option); any other URL goes to undici's `request` untouched. undici's
 * request skips WHATWG fetch's Request/Response/stream machinery, so a governed call
 * costs several times less CPU. A service URL's port, if any, is ignored.
 */
export function governedRequest(deps: GovernedRequestDeps, pipeline: GovernedCallPipeline): MeshRequest {
  const { directory, dispatcher } = deps;
  const passThrough = deps.passThrough ?? undiciRequest;

  return async function request(input: string | URL, options?: RequestOptions): Promise<ResponseData> {
    const url = urlParts(input);
    const service = url.hostname;
    // After its first call a service is known and followed: no await for either.
    if (!directory.isReady(service)) {
      if (!(await directory.isService(service))) return passThrough(input, options) as Promise<ResponseData>;
      await directory.ensure(service);
    }

    const via = options?.dispatcher ?? dispatcher;
    const method = (options?.method ?? 'GET').toUpperCase() as Dispatcher.HttpMethod;
    const path = url.search === '' ? url.pathname : `${url.pathname}${url.search}`;
    const callerSignal = options?.signal instanceof AbortSignal ? options.signal : undefined;
    const body = options?.body;
    const direct = dispatchable(options);
    const attempt = await pipeline<Attempt>({
      service,
      method,
      path: url.pathname,
      search: url.search,
      headers: headerRecord(options?.headers),
      retryable: replayable(body),
      signal: callerSignal,
      send: direct
        ? (origin: string, headers: CallHeaders, cancel: AttemptCancel) =>
            dispatchRequest(
              via,
              {
                origin,
                path,
                method,
                headers: headers as Record<string, string | string[]>,
                body: (body ?? null) as string | Uint8Array | null,
              },
              cancel,
            )
        : async (origin: string, headers: CallHeaders, cancel: AttemptCancel) => {
            const { dispatcher: _own, ...rest } = options ?? {};
            const data = await via.request<null>({
              ...rest,
              origin,
              path,
              method,
              headers: headers as Record<string, string | string[]>,
              // The attempt's signal follows the caller's; an emitter-style signal goes as given.
              signal: signalOf(cancel) ?? rest.signal ?? null,
              opaque: null,
            });
            return { status: data.statusCode, data };
          },
      fromResponse,
      discard,
      takesAbort: true,
    });
    return attempt.data;
  };
}
