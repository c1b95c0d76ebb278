import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkTag, type Logger } from '@meshlet/core';

/** One finished call (an attempt on the client side, a request on the server side). */
export interface CallRecord {
  /** Client side: the destination service; server side: the calling service ('' if unknown). */
  readonly service: string;
  /** The API: `METHOD route`, e.g. `GET /users/{id}`. */
  readonly api: string;
  readonly durationMs: number;
  /** `error.type` when the call failed; absent on success. */
  readonly errorType?: string | undefined;
}

export interface CallMetricsOptions {
  /** Metric name prefix, e.g. `meshlet_client`. */
  readonly prefix: string;
  /** Histogram bucket upper bounds in seconds. Default: sub-millisecond up to 10 s. */
  readonly buckets?: readonly number[];
  /** Distinct APIs kept per service; more are counted under api="_other" so a path with ids cannot blow up the registry. Default 200. */
  readonly maxApisPerService?: number;
  /**
   * Distinct services kept; calls of more are counted under service="_other". Server side
   * the service is the caller, which without auth is whatever the request claims: this
   * bounds what unauthenticated requests can make the registry hold. Default 256
   * (CALL_METRICS_DEFAULTS).
   */
  readonly maxServices?: number;
  /**
   * Series (service and API pairs) kept in all; past it a new pair is counted under its
   * service's api="_other", or service="_other", api="_other". Default 4096.
   */
  readonly maxSeries?: number;
  /**
   * Told (code `MESHLET_METRICS_OVERFLOW`) of each call counted under `_other` because
   * `maxServices` or `maxSeries` was reached, or its service or API is not a label that
   * core's checkTag allows; give it a throttled logger (createTracing does).
   */
  readonly logger?: Logger;
  /** The HELP texts of the three families, saying what this side counts. Default CLIENT_CALL_METRICS_HELP. */
  readonly help?: CallMetricsHelp;
}

/** The HELP text of each family CallMetrics renders (one line each: no line feed). */
export interface CallMetricsHelp {
  readonly requests: string;
  readonly errors: string;
  readonly duration: string;
}

/** What `meshlet_client_*` count: attempts this service made. */
export const CLIENT_CALL_METRICS_HELP: CallMetricsHelp = Object.freeze({
  requests: 'Calls made (each attempt), by called service and API (METHOD and path, ids folded).',
  errors: 'Failed calls made (each attempt), by called service, API and error.type.',
  duration: 'Latency of calls made (each attempt), by called service and API.',
});

const SERVER_LABELS =
  'by calling service ("" when the caller is not known: an edge request) and API (the route, or the method when the framework gives no route)';

/** What `meshlet_server_*` count: requests this service served. */
export const SERVER_CALL_METRICS_HELP: CallMetricsHelp = Object.freeze({
  requests: `Requests served, ${SERVER_LABELS}.`,
  errors: `Failed requests served, ${SERVER_LABELS}, and error.type.`,
  duration: `Latency of requests served, ${SERVER_LABELS}.`,
});

/** The bounds of CallMetrics when its options leave them out. */
export const CALL_METRICS_DEFAULTS = Object.freeze({ maxApisPerService: 200, maxServices: 256, maxSeries: 4096 });

/**
 * Distinct `error_type`s kept per series; a call with another is counted under
 * `error_type="_other"`. A backstop: the error types the mesh records are a constant set
 * (HTTP's, gRPC's 17 status names), but a series must not grow with what a peer answers.
 */
export const MAX_ERROR_TYPES_PER_SERIES = 64;

/** The label value of the calls past a bound. */
export const OVERFLOW_LABEL = '_other';
/** Logged (throttled by the logger) when a call is counted under `_other` past a bound. */
export const METRICS_OVERFLOW_CODE = 'MESHLET_METRICS_OVERFLOW';
/** Logged when rendering the metrics failed and the scrape was answered 500. */
export const METRICS_RENDER_FAILED_CODE = 'MESHLET_METRICS_RENDER_FAILED';
/** The codes to throttle: both can come once per request or scrape. */
export const METRICS_LOG_CODES: readonly string[] = [METRICS_OVERFLOW_CODE, METRICS_RENDER_FAILED_CODE];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DIGITS = /^\d+$/;
const TOKEN = /^[0-9A-Za-z_-]{16,}$/;
const HAS_DIGIT = /\d/;

/**
 * The API of a call whose route template is not known: `METHOD path`, with segments that
 * look like ids (digits, a UUID, a token of 16+ characters with a digit) as `{id}`, so
 * that `/users/42` and `/users/43` are one series. Paths without a digit are kept whole.
 */
export function apiOfPath(method: string, path: string): string {
  // Remembered by method, then path (no key string built per call); bounded, as paths with
  // ids are many.
  let byPath = API_CACHE.get(method);
  const hit = byPath?.get(path);
  if (hit !== undefined) return hit;
  const api = HAS_DIGIT.test(path) ? `${method} ${foldIds(path)}` : `${method} ${path}`;
  if (apiCacheSize >= API_CACHE_MAX) {
    API_CACHE.clear();
    apiCacheSize = 0;
    byPath = undefined;
  }
  if (!byPath) {
    byPath = new Map();
    API_CACHE.set(method, byPath);
  }
  byPath.set(path, api);
  apiCacheSize++;
  return api;
}

const API_CACHE = new Map<string, Map<string, string>>();
const API_CACHE_MAX = 4096;
let apiCacheSize = 0;

function foldIds(path: string): string {
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    if (DIGITS.test(seg) || UUID.test(seg) || (TOKEN.test(seg) && HAS_DIGIT.test(seg))) segments[i] = '{id}';
  }
  return segments.join('/');
}

export const DEFAULT_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];

interface Series {
  readonly service: string;
  readonly api: string;
  requests: number;
  readonly errors: Map<string, number>;
  readonly buckets: Float64Array;
  sum: number;
}

/** A snapshot of one (service, api) series. */
export interface SeriesSnapshot {
  readonly service: string;
  readonly api: string;
  readonly requests: number;
  readonly errors: Readonly<Record<string, number>>;
  /** Cumulative counts per bucket bound, as Prometheus exposes them (the last is +Inf). */
  readonly buckets: readonly number[];
  readonly sumSeconds: number;
}

/**
 * Request count, error count by `error.type` and a latency histogram per (service, api).
 * Hand-written rather than the OpenTelemetry metrics SDK: recording is a map lookup and a
 * few increments, and the Prometheus text is rendered only when scraped.
 */
export class CallMetrics {
  readonly #prefix: string;
  readonly #help: CallMetricsHelp;
  readonly #bounds: readonly number[];
  readonly #maxApis: number;
  readonly #maxServices: number;
  readonly #maxSeries: number;
  readonly #logger: Logger | undefined;
  // By service, then API: two lookups, and no key string built per call. Insertion order
  // of the series is kept in #order for the snapshot.
  readonly #byService = new Map<string, Map<string, Series>>();
  readonly #order: Series[] = [];
  #overflowed = 0;

  constructor(options: CallMetricsOptions) {
    this.#prefix = options.prefix;
    this.#help = options.help ?? CLIENT_CALL_METRICS_HELP;
    this.#bounds = [...(options.buckets ?? DEFAULT_BUCKETS)].sort((a, b) => a - b);
    this.#maxApis = options.maxApisPerService ?? CALL_METRICS_DEFAULTS.maxApisPerService;
    this.#maxServices = options.maxServices ?? CALL_METRICS_DEFAULTS.maxServices;
    this.#maxSeries = options.maxSeries ?? CALL_METRICS_DEFAULTS.maxSeries;
    this.#logger = options.logger;
  }

  /** Calls counted under `_other` because a bound on services or series was reached, or a label was refused. */
  get overflowed(): number {
    return this.#overflowed;
  }

  record(call: CallRecord): void {
    this.add(call.service, call.api, call.durationMs, call.errorType);
  }

  /** `record` without a record object. */
  add(service: string, api: string, durationMs: number, errorType: string | undefined): void {
    this.#count(this.#seriesFor(service, api), durationMs, errorType);
  }

  // The last call's series by service, method and path: calls in a row to one API (the
  // usual case) find it with three string comparisons instead of four map lookups.
  #lastService = '';
  #lastMethod = '';
  #lastPath = '';
  #lastSeries: Series | undefined;

  /** `add` for a call whose API is `apiOfPath(method, path)`. */
  addPath(service: string, method: string, path: string, durationMs: number, errorType: string | undefined): void {
    let s = this.#lastSeries;
    if (s === undefined || path !== this.#lastPath || method !== this.#lastMethod || service !== this.#lastService) {
      s = this.#seriesFor(service, apiOfPath(method, path));
      this.#lastSeries = s;
      this.#lastService = service;
      this.#lastMethod = method;
      this.#lastPath = path;
    }
    this.#count(s, durationMs, errorType);
  }

  #count(s: Series, durationMs: number, errorType: string | undefined): void {
    s.requests++;
    if (errorType !== undefined) {
      let n = s.errors.get(errorType);
      if (n === undefined && s.errors.size >= MAX_ERROR_TYPES_PER_SERIES && errorType !== OVERFLOW_LABEL) {
        errorType = OVERFLOW_LABEL;
        n = s.errors.get(errorType);
        this.#folded('error types');
      }
      s.errors.set(errorType, (n ?? 0) + 1);
    }
    const seconds = durationMs / 1000;
    s.sum += seconds;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && seconds > (bounds[i] as number)) i++;
    (s.buckets as Float64Array)[i] = ((s.buckets as Float64Array)[i] ?? 0) + 1;
  }

  snapshot(): SeriesSnapshot[] {
    return this.#order.map((s) => {
      let acc = 0;
      const cumulative = Array.from(s.buckets, (n) => (acc += n));
      return {
        service: s.service,
        api: s.api,
        requests: s.requests,
        errors: Object.fromEntries(s.errors),
        buckets: cumulative,
        sumSeconds: s.sum,
      };
    });
  }

  /** The Prometheus text exposition (format 0.0.4) of every series. */
  render(): string {
    const p = this.#prefix;
    const help = this.#help;
    const snap = this.snapshot();
    const out: string[] = [`# HELP ${p}_requests_total ${help.requests}`, `# TYPE ${p}_requests_total counter`];
    for (const s of snap) out.push(`${p}_requests_total{${labels(s)}} ${s.requests}`);
    out.push(`# HELP ${p}_errors_total ${help.errors}`, `# TYPE ${p}_errors_total counter`);
    for (const s of snap) {
      for (const [type, n] of Object.entries(s.errors)) out.push(`${p}_errors_total{${labels(s)},error_type="${escapeLabel(type)}"} ${n}`);
    }
    out.push(`# HELP ${p}_request_duration_seconds ${help.duration}`, `# TYPE ${p}_request_duration_seconds histogram`);
    for (const s of snap) {
      const l = labels(s);
      s.buckets.forEach((n, i) => {
        const le = i < this.#bounds.length ? String(this.#bounds[i]) : '+Inf';
        out.push(`${p}_request_duration_seconds_bucket{${l},le="${le}"} ${n}`);
      });
      out.push(`${p}_request_duration_seconds_sum{${l}} ${s.sumSeconds}`, `${p}_request_duration_seconds_count{${l}} ${s.requests}`);
    }
    if (this.#overflowed > 0)
      out.push(
        `# HELP ${p}_overflow_total Calls counted under "_other" because the bound on services, series or error types was reached, or a label was refused.`,
        `# TYPE ${p}_overflow_total counter`,
        `${p}_overflow_total ${this.#overflowed}`,
      );
    return `${out.join('\n')}\n`;
  }

  #seriesFor(service: string, api: string): Series {
    // Why this call is counted under `_other` when it is (the API bound per service is not
    // one: a path with ids is expected there).
    let folded: 'services' | 'label' | 'series' | undefined;
    let apis = this.#byService.get(service);
    if (apis === undefined && service !== OVERFLOW_LABEL) {
      // A new service: within the bounds, and a label core's checkTag allows (at most 512
      // bytes, no control character), else its calls are counted under service="_other".
      if (this.#byService.size - (this.#byService.has(OVERFLOW_LABEL) ? 1 : 0) >= this.#maxServices) folded = 'services';
      else if (this.#order.length >= this.#maxSeries) folded = 'series';
      else if (checkTag('service', service) !== undefined) folded = 'label';
      if (folded !== undefined) {
        service = OVERFLOW_LABEL;
        apis = this.#byService.get(OVERFLOW_LABEL);
      }
    }
    if (apis === undefined) {
      apis = new Map();
      this.#byService.set(service, apis);
    }
    let s = apis.get(api);
    if (s === undefined && api !== OVERFLOW_LABEL) {
      if (apis.size >= this.#maxApis) api = OVERFLOW_LABEL;
      else if (checkTag('api', api) !== undefined) {
        api = OVERFLOW_LABEL;
        folded ??= 'label';
      } else if (this.#order.length >= this.#maxSeries) {
        api = OVERFLOW_LABEL;
        folded ??= 'series';
      }
      s = apis.get(api);
    }
    if (s === undefined && this.#order.length >= this.#maxSeries && service !== OVERFLOW_LABEL) {
      // Past maxSeries only the one series (_other, _other) is still made.
      folded ??= 'series';
      service = OVERFLOW_LABEL;
      api = OVERFLOW_LABEL;
      apis = this.#byService.get(OVERFLOW_LABEL);
      if (apis === undefined) {
        apis = new Map();
        this.#byService.set(OVERFLOW_LABEL, apis);
      }
      s = apis.get(OVERFLOW_LABEL);
    }
    if (s === undefined) {
      s = { service, api, requests: 0, errors: new Map(), buckets: new Float64Array(this.#bounds.length + 1), sum: 0 };
      apis.set(api, s);
      this.#order.push(s);
    }
    if (folded !== undefined) this.#folded(folded);
    return s;
  }

  /** Counts and tells (through the logger, which throttles) a call counted under `_other` past a bound. */
  #folded(bound: 'services' | 'label' | 'series' | 'error types'): void {
    this.#overflowed++;
    this.#logger?.warn('call metrics: a call counted under _other', {
      code: METRICS_OVERFLOW_CODE,
      metrics: this.#prefix,
      bound,
      maxServices: this.#maxServices,
      maxSeries: this.#maxSeries,
    });
  }
}

// Backslash, double quote and line feed are escaped, as the text format has it; any other
// control character (a carriage return would end the line for some parsers) is replaced.
const LABEL_SPECIAL = /[\\"\u0000-\u001f\u007f-\u009f]/;
const LABEL_SPECIALS = /[\\"\u0000-\u001f\u007f-\u009f]/g;
const escapeChar = (c: string): string => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : c === '\n' ? '\\n' : '\ufffd');

/** A Prometheus label value, escaped as the text format requires; other control characters become U+FFFD. */
export const escapeLabel = (v: string): string => (LABEL_SPECIAL.test(v) ? v.replace(LABEL_SPECIALS, escapeChar) : v);
const labels = (s: { service: string; api: string }) => `service="${escapeLabel(s.service)}",api="${escapeLabel(s.api)}"`;

/**
 * A node:http handler that serves the Prometheus text of `sources` (mount it at `/metrics`).
 * It never throws: a source that fails to render is a 500 with a short body.
 */
export function prometheusHandler(...sources: readonly { render(): string }[]): (req: IncomingMessage, res: ServerResponse) => void {
  return servePrometheus(sources);
}

/** `prometheusHandler`, telling `logger` (code `MESHLET_METRICS_RENDER_FAILED`; give it a throttled one) of a failed scrape. */
export function servePrometheus(
  sources: readonly { render(): string }[],
  logger?: Logger,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    try {
      writePrometheus(res, sources.map((s) => s.render()).join(''), req.method === 'HEAD');
    } catch (err) {
      try {
        logger?.error('metrics scrape failed', {
          code: METRICS_RENDER_FAILED_CODE,
          error: (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(0, 200),
        });
        if (res.headersSent) res.destroy();
        else {
          const body = 'metrics unavailable\n';
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        }
      } catch {
        // A response (or logger) that throws as well: nothing more to do, and nothing thrown.
      }
    }
  };
}

/** Answers 200 with Prometheus text (exposition format 0.0.4). */
export function writePrometheus(res: ServerResponse, text: string, headOnly = false): void {
  res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(headOnly ? undefined : text);
}
