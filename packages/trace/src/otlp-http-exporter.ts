import { promisify } from 'node:util';
import { gzip, constants as zlibConstants } from 'node:zlib';
import { MeshletError } from '@meshlet/core';
import { Agent, type Dispatcher } from 'undici';
import {
  type AttemptAnswer,
  MAX_ANSWER_BYTES,
  OtlpExporterBase,
  type OtlpExporterDeps,
  type OtlpHttpOptions,
} from './otlp-exporter-base.js';
import { shownOtlpUrl } from './otlp-headers.js';

/** What the OTLP/HTTP exporter runs on besides its options: injected in tests. */
export interface OtlpHttpDeps extends OtlpExporterDeps {
  /** The connection pool to the collector; default one of the exporter's own (closed at shutdown). */
  readonly dispatcher?: Dispatcher;
}

/** The statuses OTLP/HTTP says to retry (the collector is busy or its backend is): the rest fail the batch at once. */
const RETRYABLE = new Set([429, 502, 503, 504]);
/**
 * gzip's level: the fastest. Spans repeat their attribute names and values, so level 1
 * already takes most of what gzip can (bench trace-encode's compression table).
 */
const GZIP_LEVEL = zlibConstants.Z_BEST_SPEED;
const gzipped = promisify(gzip);

const HTTP_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** A Retry-After header's wait in ms (seconds or an HTTP date); undefined when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now: number): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === '') return undefined;
  const t = v.trim();
  if (/^\d{1,9}$/.test(t)) return Number(t) * 1000;
  // An HTTP date (IMF-fixdate) only: Date.parse alone reads "-1" or "1.5" as years.
  if (!HTTP_DATE.test(t)) return undefined;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The OTLP/HTTP trace exporter: each batch one ExportTraceServiceRequest POSTed to the
 * collector, encoded by the same encoders as the trace log (protobuf, the default, or
 * JSON), as the batch queue builds it while its spans end (a LineExporter): no span is
 * held until its batch is sent, and no OTLP transformer is loaded.
 *
 * An answer the OTLP specification says to retry (429, 502, 503, 504) or a network error
 * is retried with a growing backoff (1 s, ×1.5, at most 5 s, ±20%), or after the
 * collector's Retry-After, while the batch's timeout (`timeoutMs`, default 10 s) allows,
 * at most five attempts (OtlpExporterBase). Any other status fails the batch at once (the
 * queue counts it failed and logs it); a redirect is not followed (the headers may carry a
 * credential). A collector's partial success (its rejected spans) is logged as a warning.
 * At most 64 KiB of an answer is read. With `compression: 'gzip'` a batch is gzipped once,
 * on the thread pool, and its retries send the same bytes.
 */
export class OtlpHttpExporter extends OtlpExporterBase {
  /** The collector's URL as logs show it: origin and path (its query is sent, not shown). */
  readonly url: string;
  readonly #origin: string;
  readonly #path: string;
  readonly #dispatcher: Dispatcher;
  /** The dispatcher is the exporter's own: closed at shutdown. */
  readonly #owned: boolean;

  constructor(options: OtlpHttpOptions, deps: OtlpHttpDeps = {}) {
    const protocol = options.protocol ?? 'http/protobuf';
    const compression = options.compression ?? 'none';
    super(options, deps, {
      'content-type': protocol === 'http/json' ? 'application/json' : 'application/x-protobuf',
      ...(compression === 'gzip' ? { 'content-encoding': 'gzip' } : {}),
    });
    if (protocol === 'grpc') throw new MeshletError('MESHLET_BAD_OPTION', "otlp.protocol: 'grpc' is OtlpGrpcExporter's, not OTLP/HTTP's");
    const url = new URL(options.url);
    this.url = shownOtlpUrl(url);
    this.#origin = url.origin;
    this.#path = `${url.pathname}${url.search}`;
    const tls = options.tls;
    if (tls !== undefined && deps.dispatcher !== undefined)
      throw new MeshletError(
        'MESHLET_BAD_OPTION',
        'otlp.tls: a dispatcher given to the exporter brings its own TLS; give one or the other',
      );
    this.#owned = deps.dispatcher === undefined;
    this.#dispatcher =
      deps.dispatcher ??
      new Agent({
        connections: 2,
        keepAliveTimeout: 30_000,
        ...(tls !== undefined
          ? { connect: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) } }
          : {}),
      });
  }

  protected async prepare(encoded: Buffer): Promise<Buffer> {
    return this.compression === 'gzip' ? await gzipped(encoded, { level: GZIP_LEVEL }) : encoded;
  }

  protected async close(): Promise<void> {
    if (this.#owned) await this.#dispatcher.close();
  }

  /** One POST, aborted when `timeoutMs` passes: a 2xx taken with its body (bounded), a retryable status retried. */
  protected async attempt(body: Buffer, headers: Record<string, string>, timeoutMs: number): Promise<AttemptAnswer> {
    const controller = new AbortController();
    const cancel = this.clock.setTimeout(() => controller.abort(new Error(`no answer in ${this.timeoutMs} ms`)), timeoutMs);
    try {
      const res = await this.#dispatcher.request({
        origin: this.#origin,
        path: this.#path,
        method: 'POST',
        headers,
        body,
        signal: controller.signal,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          res.body.destroy();
          break;
        }
        chunks.push(chunk);
      }
      const status = res.statusCode;
      if (status >= 200 && status < 300) return { taken: true, body: Buffer.concat(chunks) };
      const retry = RETRYABLE.has(status);
      return {
        taken: false,
        what: `collector answered ${status}`,
        status,
        retry,
        waitMs: retry ? retryAfterMs(res.headers['retry-after'], this.clock.wallNow()) : undefined,
      };
    } finally {
      cancel();
    }
  }
}
