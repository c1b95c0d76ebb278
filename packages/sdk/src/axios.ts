import { Readable } from 'node:stream';
import type { CallResult } from '@meshlet/breaker';
import { MeshletError } from '@meshlet/core';
import axios, {
  type AxiosAdapter,
  AxiosError,
  AxiosHeaders,
  type AxiosInstance,
  type AxiosResponse,
  CanceledError,
  type CreateAxiosDefaults,
  type InternalAxiosRequestConfig,
} from 'axios';
/** An adapter, or the name of one of axios's (`'http'`, `'fetch'`, `'xhr'`). */
export type AxiosAdapterConfig = NonNullable<CreateAxiosDefaults['adapter']>;

import type { CallHeaders } from './governed-fetch.js';
import { meshInternals } from './mesh-internals.js';
import type { Mesh } from './mesh-options.js';
import { MAX_REDIRECTS, REDIRECT_STATUSES, redirectStep } from './redirects.js';

export interface AxiosAdapterOptions {
  /**
   * The adapter for URLs that are not services, and the one each governed attempt is sent
   * with. Default: axios's own default (`http` in Node), so calls to other hosts behave
   * exactly as without the mesh.
   */
  readonly adapter?: AxiosAdapterConfig;
}

/** One attempt's outcome: axios's response, or a Response the mesh made (a fault, a fallback). */
interface Attempt extends CallResult {
  readonly response?: AxiosResponse;
  readonly made?: Response;
}

type HeaderValue = string | string[] | number | boolean | null | undefined;

/** The caller's headers as lower-case names the pipeline adds to (axios's values may be numbers). */
function headerRecord(headers: InternalAxiosRequestConfig['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const plain = AxiosHeaders.from(headers).toJSON() as Record<string, HeaderValue>;
  for (const [name, value] of Object.entries(plain)) {
    if (value === undefined || value === null || value === false) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

/** A body axios can send twice: none, a string or bytes. A stream or a form is sent once. */
function replayable(data: unknown): boolean {
  return (
    data === undefined ||
    data === null ||
    typeof data === 'string' ||
    data instanceof Uint8Array ||
    data instanceof ArrayBuffer ||
    data instanceof URLSearchParams
  );
}

/** The caller's cancellation: `signal`, and the deprecated `cancelToken` folded into one. */
function callerSignal(config: InternalAxiosRequestConfig): AbortSignal | undefined {
  const signal = config.signal as AbortSignal | undefined;
  const token = config.cancelToken;
  if (!token) return signal;
  const controller = new AbortController();
  token.promise.then(
    (reason) => controller.abort(reason),
    () => {},
  );
  return signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
}

/** axios's `settle`: the caller's validateStatus decides, with axios's own error and codes. */
function settle(config: InternalAxiosRequestConfig, response: AxiosResponse): AxiosResponse {
  const validate = config.validateStatus;
  const status = response.status;
  if (!status || !validate || validate(status)) return response;
  throw new AxiosError(
    `Request failed with status code ${status}`,
    status >= 400 && status < 500 ? AxiosError.ERR_BAD_REQUEST : AxiosError.ERR_BAD_RESPONSE,
    config,
    response.request,
    response,
  );
}

/** A Response the mesh made itself, as axios would have read it for this responseType. */
async function fromWebResponse(config: InternalAxiosRequestConfig, made: Response): Promise<AxiosResponse> {
  let data: unknown;
  if (config.responseType === 'stream')
    data = made.body ? Readable.fromWeb(made.body as import('node:stream/web').ReadableStream) : Readable.from([]);
  else if (config.responseType === 'arraybuffer') data = Buffer.from(await made.arrayBuffer());
  else data = await made.text();
  return {
    data,
    status: made.status,
    statusText: made.statusText,
    headers: AxiosHeaders.from(Object.fromEntries(made.headers)),
    config,
    request: undefined,
  };
}

/** A Meshlet error as axios users expect it: an AxiosError with its `code`, and it as the `cause`. */
function wrapped(err: MeshletError, config: InternalAxiosRequestConfig): AxiosError {
  const e = new AxiosError(err.message, err.code, config);
  e.cause = err;
  return e;
}

/**
 * The error axios users expect for a call the mesh refused or gave up on: an AxiosError
 * whose `code` is the Meshlet error's (`MESHLET_CIRCUIT_OPEN`, `MESHLET_TIMEOUT`,
 * `MESHLET_NO_INSTANCE`…) and whose `cause` is that error. The caller's own cancellation
 * stays axios's CanceledError (`axios.isCancel`), and an attempt's AxiosError (a refused
 * connection after the last retry) is passed on with the caller's config. `cut`: the
 * call's signal with the inbound deadline's (a gRPC handler's caller's): an attempt it
 * cancelled failed with axios's CanceledError, which is the deadline's error here
 * (MESHLET_DEADLINE), not the caller's cancellation.
 */
function asAxiosError(
  err: unknown,
  config: InternalAxiosRequestConfig,
  signal: AbortSignal | undefined,
  cut: AbortSignal | undefined,
): AxiosError {
  if (signal?.aborted) {
    if (err instanceof CanceledError) {
      err.config = config;
      return err;
    }
    const canceled = new CanceledError(undefined, config);
    if (err instanceof Error) canceled.cause = err;
    return canceled;
  }
  if (cut?.aborted && cut.reason instanceof MeshletError && err instanceof CanceledError) return wrapped(cut.reason, config);
  if (err instanceof AxiosError) {
    err.config = config;
    return err;
  }
  if (err instanceof MeshletError) return wrapped(err, config);
  return AxiosError.from(err instanceof Error ? err : new Error(String(err)), undefined, config);
}

/**
 * The signal axios sends one attempt with. For a `responseType: 'stream'` answer, whose
 * body outlives the attempt, the body follows `body` (the caller's signal, with the inbound
 * deadline's): the stream is cut when it aborts, failing with the deadline's error as an
 * AxiosError (MESHLET_DEADLINE) rather than axios's CanceledError, which says the caller
 * cancelled. Any other answer is read whole within the attempt: `attempt` is enough.
 */
class StreamAttemptSignal {
  readonly #controller = new AbortController();
  readonly #attempt: AbortSignal | undefined;
  readonly #body: AbortSignal | undefined;
  readonly #config: InternalAxiosRequestConfig;
  #stream: Readable | undefined;

  constructor(attempt: AbortSignal | undefined, body: AbortSignal | undefined, config: InternalAxiosRequestConfig) {
    this.#attempt = attempt;
    this.#body = body;
    this.#config = config;
    attempt?.addEventListener('abort', this);
    if (body !== attempt) body?.addEventListener('abort', this);
    if (attempt?.aborted || body?.aborted) this.handleEvent();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The attempt answered with `stream`: from now on only the body's signal ends it. */
  answered(stream: unknown): void {
    if (this.#attempt !== this.#body) this.#attempt?.removeEventListener('abort', this);
    if (stream instanceof Readable && !stream.destroyed) {
      this.#stream = stream;
      stream.once('close', () => this.done());
    } else this.done();
  }

  /** Listeners off: the body ended or was given up. */
  done(): void {
    this.#attempt?.removeEventListener('abort', this);
    this.#body?.removeEventListener('abort', this);
  }

  handleEvent(): void {
    const stream = this.#stream;
    const reason = this.#body?.aborted ? this.#body.reason : undefined;
    // The body cut by the deadline fails with its error, before axios's CanceledError could.
    if (stream !== undefined && !stream.destroyed && reason instanceof MeshletError) stream.destroy(wrapped(reason, this.#config));
    this.#controller.abort();
  }
}

/**
 * An axios adapter that governs calls to services by name exactly as `mesh.fetch` does:
 * `axios.create({ adapter: axiosAdapter(mesh) })`. A URL whose host is a service in the
 * registry is routed (rules, lanes, nearby, balancer), passes the service and API breakers,
 * gets a timeout per attempt and retries to other instances, a CLIENT span per attempt,
 * the request's tags and this service's identity; each attempt is sent by axios's own
 * adapter to the chosen instance, so interceptors, transforms, `responseType` (streams
 * too), `maxContentLength`, progress events and `signal` behave as axios users expect, and
 * the caller's `validateStatus` decides on the final response. Any other URL goes to
 * axios's adapter untouched.
 *
 * Redirects from a service are followed here, as `mesh.fetch` follows them (whatever the
 * adapter: axios's `fetch` adapter would follow them with the mesh headers on): within
 * the mesh, governed again; to any other origin, with the application's headers only,
 * less its credentials and any mesh header, by the adapter from there on (`maxRedirects`,
 * default 20, counts every hop; `beforeRedirect` runs for the hops past the mesh's).
 */
export function axiosAdapter(mesh: Mesh, options: AxiosAdapterOptions = {}): AxiosAdapter {
  const { directory, pipeline } = meshInternals(mesh);
  const send = axios.getAdapter(options.adapter ?? axios.defaults.adapter);

  async function governed(config: InternalAxiosRequestConfig, hops: number): Promise<AxiosResponse> {
    const url = new URL(axios.getUri(config));
    const service = url.hostname;
    // After its first call a service is known and followed: no await for either.
    if (!directory.use(service)) {
      if (!(await directory.governs(service))) return send(config);
      await directory.ensure(service);
    }
    const signal = callerSignal(config);
    const method = (config.method ?? 'get').toUpperCase();
    const streamed = config.responseType === 'stream';
    /** The last attempt's URL, where a relative Location resolves. */
    let sentTo = '';
    /** The call's signal as the pipeline gives it (with the inbound deadline's): see asAxiosError. */
    let cut: AbortSignal | undefined;
    try {
      const attempt = await pipeline<Attempt>({
        service,
        method,
        path: url.pathname,
        search: url.search,
        headers: headerRecord(config.headers),
        retryable: replayable(config.data),
        signal,
        send: async (
          origin: string,
          attemptHeaders: CallHeaders,
          attemptSignal: AbortSignal | undefined,
          bodySignal: AbortSignal | undefined,
        ) => {
          sentTo = `${origin}${url.pathname}${url.search}`;
          cut = bodySignal;
          const stream = streamed ? new StreamAttemptSignal(attemptSignal ?? signal, bodySignal, config) : undefined;
          const response = await send({
            ...config,
            baseURL: undefined,
            url: sentTo,
            params: undefined,
            headers: AxiosHeaders.from(attemptHeaders as Record<string, string>),
            signal: stream?.signal ?? attemptSignal ?? signal,
            cancelToken: undefined,
            // The router chose the instance; a proxy from the environment is not in the way.
            proxy: false,
            // A redirect comes back here: the mesh headers were written for this instance only.
            maxRedirects: 0,
            beforeRedirect: undefined,
            // The executor classifies every status; the caller's validateStatus runs at the end.
            validateStatus: null,
          } as unknown as InternalAxiosRequestConfig).catch((err: unknown) => {
            stream?.done();
            throw err;
          });
          stream?.answered(response.data);
          return { status: response.status, response };
        },
        // A stream's body is read after the call: the inbound deadline's cut stays armed until it closes.
        ...(streamed ? { whenDone: whenStreamDone } : {}),
        fromResponse: (made: Response): Attempt => ({ status: made.status, made }),
        discard,
      });
      if (attempt.response !== undefined && config.maxRedirects !== 0 && REDIRECT_STATUSES.has(attempt.response.status)) {
        const followed = await follow(config, attempt, service, sentTo, hops);
        if (followed !== undefined) return followed;
      }
      const response = attempt.response ?? (await fromWebResponse(config, attempt.made as Response));
      response.config = config;
      return settle(config, response);
    } catch (err) {
      throw asAxiosError(err, config, signal, cut);
    }
  }

  /** Follows a service's redirect as mesh.fetch does (see above); undefined when it is not one to follow. */
  async function follow(
    config: InternalAxiosRequestConfig,
    attempt: Attempt,
    service: string,
    sentTo: string,
    hops: number,
  ): Promise<AxiosResponse | undefined> {
    const response = attempt.response as AxiosResponse;
    const location = AxiosHeaders.from(response.headers as Record<string, string>).get('location');
    if (typeof location !== 'string' || sentTo === '') return undefined;
    const allowed = config.maxRedirects ?? MAX_REDIRECTS;
    const method = (config.method ?? 'get').toUpperCase();
    const step = await redirectStep({
      service,
      sentTo,
      status: response.status,
      location,
      method,
      hops,
      maxHops: allowed,
      sendsOnce: !replayable(config.data),
      governs: (host) => directory.governs(host),
      discard: () => discard(attempt),
    });
    if (step === undefined) return undefined; // as axios would see it: a Location that is not a URL is not followed
    const headers = AxiosHeaders.from(config.headers);
    for (const name of step.dropped(Object.keys(headers.toJSON()))) headers.delete(name);
    const nextConfig = {
      ...config,
      baseURL: undefined,
      params: undefined,
      method: step.toGet ? 'get' : config.method,
      data: step.toGet ? undefined : config.data,
      headers,
    } as unknown as InternalAxiosRequestConfig;
    if (step.governed !== undefined) {
      nextConfig.url = step.governed;
      return governed(nextConfig, hops + 1);
    }
    // Off the mesh: the application's headers only; its adapter follows from there.
    nextConfig.url = step.next.href;
    nextConfig.maxRedirects = allowed - hops - 1;
    return send(nextConfig);
  }

  return function meshletAdapter(config: InternalAxiosRequestConfig): Promise<AxiosResponse> {
    return governed(config, 0);
  };
}

/** Calls `done` once an attempt's streamed body has closed (read, failed or destroyed); at once for any other answer. */
function whenStreamDone(attempt: Attempt, done: () => void): void {
  const data = attempt.response?.data;
  if (data instanceof Readable && !data.closed && !data.destroyed) data.once('close', done);
  else done();
}

/** Frees an attempt's answer that is not returned (a retry's, a redirect's). */
function discard(dropped: Attempt): void {
  const data = dropped.response?.data as { destroy?: () => void } | undefined;
  if (typeof data?.destroy === 'function') data.destroy();
  if (dropped.made) void dropped.made.body?.cancel().catch(() => {});
}

/** `axios.create(defaults)` whose calls to services are governed by `mesh` (see axiosAdapter). */
export function governedAxios(mesh: Mesh, defaults: CreateAxiosDefaults = {}): AxiosInstance {
  const adapter = axiosAdapter(mesh, defaults.adapter ? { adapter: defaults.adapter } : {});
  return axios.create({ ...defaults, adapter });
}
