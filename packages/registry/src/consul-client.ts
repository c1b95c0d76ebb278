import {
  AdoptableLogger,
  BodyTooLargeError,
  consoleLogger,
  type Logger,
  MeshletError,
  readBoundedBody,
  readPemFile,
  shownValue,
  type ThrottledLogger,
  throttledLogger,
  wholeNumberOption,
} from '@meshlet/core';
import { Agent, fetch as undiciFetch } from 'undici';
import { AgentProbe } from './agent-probe.js';

/** TLS to the agent's HTTPS port: the CA that signed it, and a client certificate when it verifies incoming. */
export interface ConsulTlsOptions {
  /** PEM of the CA(s) to trust (Consul's `ca_file`). Default: the system's. */
  readonly ca?: string | Buffer;
  /** PEM client certificate and key, for an agent with `verify_incoming`. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** The name the agent's certificate is checked against. Default: the address's host. */
  readonly servername?: string;
}

export interface ConsulClientOptions {
  /** Agent HTTP address. Default `http://127.0.0.1:8500`, or CONSUL_HTTP_ADDR. */
  readonly address?: string;
  /** ACL token, sent as X-Consul-Token. Default CONSUL_HTTP_TOKEN. */
  readonly token?: string;
  /**
   * TLS for an `https://` address. Default, as Consul's CLI: `CONSUL_CACERT`,
   * `CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY` (PEM files), when set.
   */
  readonly tls?: ConsulTlsOptions;
  /** The HTTP client. Default: fetch (with `tls`, on an agent of its own). */
  readonly fetch?: typeof globalThis.fetch;
  /**
   * Per-request timeout for calls that do not block, ms. Default 5 000. A query with
   * `index=0` (a watch's first read, its read after a failure) does not block either: it is
   * held to this, whatever longer timeout its caller gave for a blocking wait.
   */
  readonly timeoutMs?: number;
  /**
   * The most bytes read of one answer's body. Default 64 MiB. Past it the answer is refused
   * (`ConsulAnswerTooLargeError`) and its connection dropped.
   */
  readonly maxBodyBytes?: number;
  /**
   * Where answers this client refused or corrected are logged (codes
   * `MESHLET_CONSUL_BAD_INDEX`, `MESHLET_CONSUL_BAD_ANSWER`, `MESHLET_CONSUL_ANSWER_TOO_LARGE`;
   * each at most once a minute, with a count). Default: warnings to the console, until a
   * mesh given this client's registry or store adopts it: then the mesh's logger, which
   * counts each in `meshlet_conditions_total`.
   */
  readonly logger?: Logger;
}

/** Default `maxBodyBytes`: 64 MiB. A health entry is about 3 KB (node, service, two checks): some 22,000 instances of one service. */
export const CONSUL_MAX_BODY_BYTES = 64 * 2 ** 20;

/** Consul answered with an error status, or could not be reached. */
export class ConsulError extends MeshletError {
  static readonly code: string = 'MESHLET_CONSUL';
  readonly status: number | undefined;
  constructor(message: string, status?: number, cause?: unknown, code: string = ConsulError.code) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.status = status;
  }
}

/**
 * Consul answered, but not with what the call reads: not JSON, or JSON of another shape
 * (an object where a list of entries belongs). The caller's last good state stays.
 */
export class ConsulBadAnswerError extends ConsulError {
  static override readonly code = 'MESHLET_CONSUL_BAD_ANSWER';
  constructor(message: string, status: number) {
    super(message, status, undefined, ConsulBadAnswerError.code);
  }
}

/** An answer's body was longer than the client's `maxBodyBytes`: refused unread past it, its connection dropped. */
export class ConsulAnswerTooLargeError extends ConsulError {
  static override readonly code = 'MESHLET_CONSUL_ANSWER_TOO_LARGE';
  readonly maxBodyBytes: number;
  constructor(message: string, status: number, maxBodyBytes: number) {
    super(message, status, undefined, ConsulAnswerTooLargeError.code);
    this.maxBodyBytes = maxBodyBytes;
  }
}

/** What a call expects Consul's JSON answer to be. */
export type ConsulAnswerShape = 'list' | 'object';

/** The code of an X-Consul-Index that is not an index (read as 0, Consul's reset). */
const BAD_INDEX = 'MESHLET_CONSUL_BAD_INDEX';
const ANSWER_CODES = [BAD_INDEX, ConsulBadAnswerError.code, ConsulAnswerTooLargeError.code];

export interface ConsulResponse<T> {
  readonly body: T;
  /** X-Consul-Index: the blocking-query index of this answer. */
  readonly index: number;
  readonly status: number;
  /**
   * True when Consul left out results the token may not read
   * (`X-Consul-Results-Filtered-By-ACLs`): the answer is what the token sees, not all there is.
   */
  readonly filteredByAcls?: boolean;
}

/**
 * The few Consul HTTP API calls Meshlet needs, typed. No retries here: callers decide
 * (watch loops back off; registration surfaces the error).
 */
export class ConsulClient {
  readonly address: string;
  /**
   * Waits until the agent answers `/v1/status/leader` with a leader: every watch of this
   * client waits here while the agent is down, instead of retrying its own query.
   */
  readonly probe: AgentProbe;
  readonly #token: string | undefined;
  readonly #fetch: typeof globalThis.fetch;
  readonly #timeoutMs: number;
  readonly #maxBodyBytes: number;
  /** Counts every answer refused or corrected (`answerProblems`), and writes each to #logTo. */
  readonly #log: ThrottledLogger;
  /**
   * Where #log writes: `logger`, else the console, each at most once a minute per code;
   * once a mesh's logger is adopted, that, which counts each answer and throttles them itself.
   */
  readonly #logTo: AdoptableLogger;

  constructor(options: ConsulClientOptions = {}) {
    const addr = options.address ?? process.env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500';
    this.address = (addr.includes('://') ? addr : `http://${addr}`).replace(/\/+$/, '');
    this.#token = options.token ?? process.env.CONSUL_HTTP_TOKEN;
    const tls = options.tls ?? tlsFromEnvironment();
    this.#fetch = options.fetch ?? (tls && this.address.startsWith('https:') ? fetchOverTls(tls) : globalThis.fetch);
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#maxBodyBytes = wholeNumberOption(options.maxBodyBytes, 'maxBodyBytes', 1, 2 ** 31, CONSUL_MAX_BODY_BYTES);
    this.#logTo = new AdoptableLogger(options.logger, consoleLogger('warn', 'meshlet-consul'), { codes: ANSWER_CODES });
    this.#log = throttledLogger(this.#logTo, { codes: [] });
    this.probe = new AgentProbe({ check: (signal) => this.checkLeader(signal) });
  }

  /** Logs through `logger` from now on, when this client was built without one (AdoptsLogger). */
  adoptLogger(logger: Logger): void {
    this.#logTo.adoptLogger(logger);
  }

  /** Gives `logger` back (its mesh closed). */
  releaseLogger(logger: Logger): void {
    this.#logTo.releaseLogger(logger);
  }

  /**
   * Answers refused or corrected since start, per code (`MESHLET_CONSUL_BAD_INDEX`,
   * `MESHLET_CONSUL_BAD_ANSWER`, `MESHLET_CONSUL_ANSWER_TOO_LARGE`), logged or not.
   */
  get answerProblems(): ReadonlyMap<string, number> {
    return this.#log.counts;
  }

  /** Resolves when the agent answers and knows a leader (reads can be served); throws otherwise. */
  async checkLeader(signal?: AbortSignal): Promise<void> {
    const res = await this.request<unknown>('GET', '/v1/status/leader', { ...(signal ? { signal } : {}), timeoutMs: 1_000 });
    if (typeof res.body !== 'string' || res.body === '') throw new ConsulError('consul has no leader yet', res.status);
  }

  /**
   * Sends one request. `notFound` lets 404 through (KV reads of absent keys). For a
   * blocking query, pass the caller's signal and a `timeoutMs` over the wait: the wait can
   * be long. `expect` refuses a JSON answer of another shape (`ConsulBadAnswerError`).
   */
  async request<T>(
    method: 'GET' | 'PUT' | 'DELETE',
    path: string,
    opts: {
      body?: string;
      signal?: AbortSignal;
      notFound?: boolean;
      raw?: boolean;
      timeoutMs?: number;
      /** Error statuses answered with their body rather than thrown (a transaction's 409). */
      accept?: readonly number[];
      /** The shape of a successful (or accepted) answer's JSON; another one is refused. */
      expect?: ConsulAnswerShape;
      /**
       * What is wrong inside an answer of the `expect`ed shape, as `the answer is <what>`
       * ends; undefined when nothing is. One that is wrong is refused as one of another shape.
       */
      check?: (body: unknown) => string | undefined;
    } = {},
  ): Promise<ConsulResponse<T>> {
    const headers: Record<string, string> = {};
    if (this.#token) headers['x-consul-token'] = this.#token;
    const what = `consul ${method} ${path.split('?')[0]}`;
    // A query with index 0 does not block: Consul answers it at once. A watch's timeout, given
    // for a blocking wait, would hold its first read 31.6 s on an agent that accepts connections
    // and says nothing.
    const asked = opts.timeoutMs ?? this.#timeoutMs;
    const timeout = AbortSignal.timeout(Math.ceil(queryIndex(path) === 0 ? Math.min(asked, this.#timeoutMs) : asked));
    // Aborted to drop the connection of an answer refused mid-body.
    const drop = new AbortController();
    const signal = AbortSignal.any(opts.signal ? [opts.signal, timeout, drop.signal] : [timeout, drop.signal]);
    let res: Response;
    try {
      res = await this.#fetch(`${this.address}${path}`, {
        method,
        headers,
        signal,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
      });
    } catch (err) {
      throw new ConsulError(`${what}: unreachable at ${this.address} (${(err as Error).message})`, undefined, err);
    }
    const index = this.#index(res, what);
    if (res.status === 404 && opts.notFound) {
      await res.body?.cancel();
      return { body: undefined as T, index, status: 404 };
    }
    const text = await this.#text(res, what, drop);
    if (!res.ok && !opts.accept?.includes(res.status)) {
      throw new ConsulError(`${what}: HTTP ${res.status}: ${text.trim().slice(0, 300)}`, res.status);
    }
    const filtered = res.headers.get('x-consul-results-filtered-by-acls') === 'true' ? { filteredByAcls: true } : {};
    if (opts.raw) return { body: text as T, index, status: res.status, ...filtered };
    let body: unknown;
    try {
      body = text.length ? JSON.parse(text) : undefined;
    } catch (err) {
      throw this.#refused(new ConsulBadAnswerError(`${what}: the answer is not JSON (${(err as Error).message})`, res.status));
    }
    // An accepted error status (a transaction's 409) is read as an answer too.
    const read = res.ok || opts.accept?.includes(res.status) === true;
    const shape = read ? opts.expect : undefined;
    if (shape && !hasShape(body, shape))
      throw this.#refused(
        new ConsulBadAnswerError(`${what}: the answer is ${describe(body)}, not ${shape === 'list' ? 'a list' : 'an object'}`, res.status),
      );
    const problem = read ? opts.check?.(body) : undefined;
    if (problem !== undefined) throw this.#refused(new ConsulBadAnswerError(`${what}: the answer is ${problem}`, res.status));
    return { body: body as T, index, status: res.status, ...filtered };
  }

  /**
   * X-Consul-Index as a number. One that is not a whole number from 0 up (a proxy's
   * rewrite, a broken agent) is read as 0, Consul's reset: sent back as `index=NaN` it
   * would be refused (400 Invalid index) on every query.
   */
  #index(res: Response, what: string): number {
    const header = res.headers.get('x-consul-index');
    if (header === null) return 0;
    const index = /^\d{1,16}$/.test(header) ? Number(header) : Number.NaN;
    if (Number.isSafeInteger(index)) return index;
    this.#log.warn('consul answered an X-Consul-Index that is not an index: read as 0, a reset', {
      code: BAD_INDEX,
      call: what,
      value: shownValue(header),
    });
    return 0;
  }

  /** The body as UTF-8 text, read at most `maxBodyBytes` of (core's readBoundedBody); past it, refused and its connection dropped. */
  async #text(res: Response, what: string, drop: AbortController): Promise<string> {
    try {
      return await readBoundedBody(res, this.#maxBodyBytes);
    } catch (err) {
      if (!(err instanceof BodyTooLargeError))
        throw new ConsulError(`${what}: the answer broke off (${(err as Error).message})`, undefined, err);
      drop.abort();
      throw this.#refused(
        new ConsulAnswerTooLargeError(
          `${what}: the answer is over maxBodyBytes (${err.maxBytes} bytes): refused`,
          res.status,
          err.maxBytes,
        ),
      );
    }
  }

  /** Logs a refused answer under its code (at most once a minute per code), and returns the error. */
  #refused<E extends ConsulError>(err: E): E {
    this.#log.warn('consul answer refused', { code: err.code, status: err.status, error: err.message });
    return err;
  }
}

/** The `index` parameter of a path's query (a blocking query's), or undefined without one. */
function queryIndex(path: string): number | undefined {
  const query = path.indexOf('?');
  const index = query < 0 ? null : new URLSearchParams(path.slice(query + 1)).get('index');
  return index === null ? undefined : Number(index);
}

function hasShape(body: unknown, shape: ConsulAnswerShape): boolean {
  if (shape === 'list') return Array.isArray(body);
  return typeof body === 'object' && body !== null && !Array.isArray(body);
}

/** What a JSON value is, for a refusal (never the value itself: it may be megabytes). */
export function describe(body: unknown): string {
  if (body === undefined) return 'empty';
  if (body === null) return 'null';
  if (Array.isArray(body)) return 'a list';
  return typeof body === 'object' ? 'an object' : `a ${typeof body}`;
}

/** Consul's CLI variables for TLS, read as files; undefined when none is set. */
function tlsFromEnvironment(): ConsulTlsOptions | undefined {
  // Bounded, a regular file, a PEM block (a FIFO or /dev/zero is refused, not read without end).
  const read = (name: string) => {
    const file = process.env[name];
    return file ? readPemFile(file, name) : undefined;
  };
  const ca = read('CONSUL_CACERT');
  const cert = read('CONSUL_CLIENT_CERT');
  const key = read('CONSUL_CLIENT_KEY');
  if (!ca && !cert && !key) return undefined;
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

/** fetch on an undici Agent that trusts `tls.ca` and presents the client certificate. */
function fetchOverTls(tls: ConsulTlsOptions): typeof globalThis.fetch {
  const dispatcher = new Agent({
    connect: {
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert ? { cert: tls.cert } : {}),
      ...(tls.key ? { key: tls.key } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    },
  });
  return ((input: string | URL, init?: RequestInit) =>
    undiciFetch(input, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher })) as unknown as typeof globalThis.fetch;
}
