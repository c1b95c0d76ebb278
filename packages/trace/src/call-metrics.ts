import type { IncomingMessage, ServerResponse } from 'node:http';

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
}

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
  readonly #bounds: readonly number[];
  readonly #maxApis: number;
  // By service, then API: two lookups, and no key string built per call. Insertion order
  // of the series is kept in #order for the snapshot.
  readonly #byService = new Map<string, Map<string, Series>>();
  readonly #order: Series[] = [];

  constructor(options: CallMetricsOptions) {
    this.#prefix = options.prefix;
    this.#bounds = [...(options.buckets ?? DEFAULT_BUCKETS)].sort((a, b) => a - b);
    this.#maxApis = options.maxApisPerService ?? 200;
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
    if (errorType !== undefined) s.errors.set(errorType, (s.errors.get(errorType) ?? 0) + 1);
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
    const snap = this.snapshot();
    const out: string[] = [`# HELP ${p}_requests_total Calls, by service and API.`, `# TYPE ${p}_requests_total counter`];
    for (const s of snap) out.push(`${p}_requests_total{${labels(s)}} ${s.requests}`);
    out.push(`# HELP ${p}_errors_total Failed calls, by service, API and error.type.`, `# TYPE ${p}_errors_total counter`);
    for (const s of snap) {
      for (const [type, n] of Object.entries(s.errors)) out.push(`${p}_errors_total{${labels(s)},error_type="${escapeLabel(type)}"} ${n}`);
    }
    out.push(`# HELP ${p}_request_duration_seconds Call latency.`, `# TYPE ${p}_request_duration_seconds histogram`);
    for (const s of snap) {
      const l = labels(s);
      s.buckets.forEach((n, i) => {
        const le = i < this.#bounds.length ? String(this.#bounds[i]) : '+Inf';
        out.push(`${p}_request_duration_seconds_bucket{${l},le="${le}"} ${n}`);
      });
      out.push(`${p}_request_duration_seconds_sum{${l}} ${s.sumSeconds}`, `${p}_request_duration_seconds_count{${l}} ${s.requests}`);
    }
    return `${out.join('\n')}\n`;
  }

  #seriesFor(service: string, api: string): Series {
    let apis = this.#byService.get(service);
    if (apis === undefined) {
      apis = new Map();
      this.#byService.set(service, apis);
    }
    let s = apis.get(api);
    if (s) return s;
    if (apis.size >= this.#maxApis && api !== '_other') return this.#seriesFor(service, '_other');
    s = { service, api, requests: 0, errors: new Map(), buckets: new Float64Array(this.#bounds.length + 1), sum: 0 };
    apis.set(api, s);
    this.#order.push(s);
    return s;
  }
}

/** A Prometheus label value, escaped as the text format requires. */
export const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (s: { service: string; api: string }) => `service="${escapeLabel(s.service)}",api="${escapeLabel(s.api)}"`;

/** A node:http handler that serves the Prometheus text of `sources` (mount it at `/metrics`). */
export function prometheusHandler(...sources: readonly { render(): string }[]): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => writePrometheus(res, sources.map((s) => s.render()).join(''), req.method === 'HEAD');
}

/** Answers 200 with Prometheus text (exposition format 0.0.4). */
export function writePrometheus(res: ServerResponse, text: string, headOnly = false): void {
  res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(headOnly ? undefined : text);
}
