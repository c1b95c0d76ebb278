import { promisify } from 'node:util';
import { gzip, constants as zlibConstants } from 'node:zlib';
import { type Clock, type Logger, MeshletError, systemClock } from '@meshlet/core';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { Agent, type Dispatcher } from 'undici';
import type { LineExporter, SpanLine } from './batch-queue.js';
import { checkOtlpHeaders, type OtlpHeaders, otlpUrlProblem, shownOtlpUrl } from './otlp-headers.js';
import { encodeTraceLineBytes, TraceLineBuilder } from './otlp-json.js';
import { decodeTraceResponseProto, encodeTraceProto, TraceProtoBuilder } from './otlp-proto.js';
import { type OtlpTls, otlpTlsProblem } from './otlp-tls.js';

/** The OTLP/HTTP encodings of a request: protobuf (the OTLP default) or JSON. */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
/** How a request's body is sent: as encoded, or gzipped (`Content-Encoding: gzip`), the two OTLP names. */
export const OTLP_COMPRESSIONS = ['none', 'gzip'] as const;
export type OtlpCompression = (typeof OTLP_COMPRESSIONS)[number];

export interface OtlpHttpOptions {
  /** The collector's traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. */
  readonly url: string;
  /**
   * Sent with every batch; or a function giving them before each attempt (a token that
   * expires), its answer checked as the object's would be, and awaited within the batch's
   * timeout. A function that throws, gives bad headers or does not answer in time fails
   * that attempt's batch (`OtlpExportError`, naming `otlp.headers`, never a value).
   */
  readonly headers?: OtlpHeaders;
  /** One batch's export, its retries included. Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Default `http/protobuf`, as the OTLP exporter specification has it. */
  readonly protocol?: OtlpProtocol;
  /**
   * Default `none`, as the OTLP exporter specification has it. `gzip` compresses each
   * batch once (off the event loop, on libuv's thread pool), before its first attempt.
   */
  readonly compression?: OtlpCompression;
  /**
   * For an `https:` collector: the CA its certificate must chain to (instead of Node's
   * bundle) and a client certificate and key for mutual TLS, in PEM. Checked when the
   * exporter is made (`otlpTlsProblem`); the key is never shown.
   */
  readonly tls?: OtlpTls;
}

/** What the exporter runs on besides its options: injected in tests. */
export interface OtlpHttpDeps {
  readonly clock?: Clock;
  /** Where a collector's partial success is told (its rejected spans). */
  readonly logger?: Logger;
  /** The connection pool to the collector; default one of the exporter's own (closed at shutdown). */
  readonly dispatcher?: Dispatcher;
  /** Jitter of the retry backoff, in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/** The statuses OTLP/HTTP says to retry (the collector is busy or its backend is): the rest fail the batch at once. */
const RETRYABLE = new Set([429, 502, 503, 504]);
/** First wait before a retry, the factor it grows by, and its cap, in ms (before a jitter of ±20%). */
const BACKOFF = { firstMs: 1000, factor: 1.5, maxMs: 5000 } as const;
/** Attempts per batch at most, within its timeout. */
const MAX_ATTEMPTS = 5;
/**
 * gzip's level: the fastest. Spans repeat their attribute names and values, so level 1
 * already takes most of what gzip can (bench trace-encode's compression table).
 */
const GZIP_LEVEL = zlibConstants.Z_BEST_SPEED;
const gzipped = promisify(gzip);
/** A collector's answer read at most: a partial success is a few hundred bytes. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** A batch the collector did not take: the status (or the network error) and the attempts made. */
export class OtlpExportError extends MeshletError {
  static readonly code = 'MESHLET_OTLP_EXPORT_FAILED';

  constructor(
    message: string,
    /** The last answer's HTTP status; undefined when there was none (network, timeout). */
    readonly status: number | undefined,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(OtlpExportError.code, message, options);
  }
}

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
 * at most five attempts. Any other status fails the batch at once (the queue counts it
 * failed and logs it); a redirect is not followed (the headers may carry a credential).
 * A collector's partial success (its rejected spans) is logged as a warning. At most 64
 * KiB of an answer is read. With `compression: 'gzip'` a batch is gzipped once, on the
 * thread pool, and its retries send the same bytes.
 */
export class OtlpHttpExporter implements LineExporter {
  /** The collector's URL as logs show it: origin and path (its query is sent, not shown). */
  readonly url: string;
  readonly protocol: OtlpProtocol;
  readonly compression: OtlpCompression;
  readonly #origin: string;
  readonly #path: string;
  /** The content headers, set over the given ones. */
  readonly #own: Record<string, string>;
  /** The headers sent with every attempt, when given as an object (with #own). */
  readonly #headers: Record<string, string> | undefined;
  readonly #headersOf: (() => Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>) | undefined;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger | undefined;
  readonly #random: () => number;
  readonly #dispatcher: Dispatcher;
  /** The dispatcher is the exporter's own: closed at shutdown. */
  readonly #owned: boolean;
  /** Exports not yet settled. */
  readonly #inFlight = new Set<Promise<void>>();
  #lastLine = 0;
  #closed = false;

  constructor(options: OtlpHttpOptions, deps: OtlpHttpDeps = {}) {
    const problem = otlpUrlProblem(options.url);
    if (problem !== undefined) throw new MeshletError('MESHLET_BAD_OPTION', `otlp.url: ${problem}`);
    const url = new URL(options.url);
    this.url = shownOtlpUrl(url);
    this.#origin = url.origin;
    this.#path = `${url.pathname}${url.search}`;
    this.protocol = options.protocol ?? 'http/protobuf';
    this.compression = options.compression ?? 'none';
    this.#own = {
      'content-type': this.protocol === 'http/protobuf' ? 'application/x-protobuf' : 'application/json',
      ...(this.compression === 'gzip' ? { 'content-encoding': 'gzip' } : {}),
    };
    const given = options.headers;
    this.#headersOf = typeof given === 'function' ? given : undefined;
    this.#headers = typeof given === 'function' ? undefined : { ...given, ...this.#own };
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#clock = deps.clock ?? systemClock;
    this.#logger = deps.logger;
    this.#random = deps.random ?? Math.random;
    const tls = options.tls;
    if (tls !== undefined) {
      const found = otlpTlsProblem(tls, options.url);
      if (found !== undefined)
        throw new MeshletError('MESHLET_BAD_OPTION', `otlp.tls${found.field === undefined ? '' : `.${found.field}`}: ${found.problem}`);
      if (deps.dispatcher !== undefined)
        throw new MeshletError(
          'MESHLET_BAD_OPTION',
          'otlp.tls: a dispatcher given to the exporter brings its own TLS; give one or the other',
        );
    }
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

  lineBuilder(): SpanLine {
    const size = this.#lastLine + (this.#lastLine >> 3);
    return this.protocol === 'http/protobuf' ? new TraceProtoBuilder(size) : new TraceLineBuilder(size);
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    let line: Buffer;
    try {
      line = this.protocol === 'http/protobuf' ? encodeTraceProto(spans) : encodeTraceLineBytes(spans);
    } catch (error) {
      resultCallback({ code: ExportResultCode.FAILED, error: error as Error });
      return;
    }
    this.exportLine(line, resultCallback);
  }

  /** Sends a batch built by `lineBuilder()` (or encoded by `export`). */
  exportLine(line: Buffer, resultCallback: (result: ExportResult) => void): void {
    if (this.#closed) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('OTLP exporter shut down') });
      return;
    }
    this.#lastLine = line.length;
    // The protobuf builder's batch starts with its size (the trace log's framing): not sent.
    const body = this.protocol === 'http/protobuf' ? line.subarray(4) : line;
    const sent = this.#send(body).then(
      () => resultCallback({ code: ExportResultCode.SUCCESS }),
      (error: Error) => resultCallback({ code: ExportResultCode.FAILED, error }),
    );
    this.#inFlight.add(sent);
    void sent.finally(() => this.#inFlight.delete(sent));
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.#inFlight);
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    await this.forceFlush();
    if (this.#owned) await this.#dispatcher.close();
  }

  /** Posts one batch, retrying what may be retried until the batch's deadline. */
  async #send(encoded: Buffer): Promise<void> {
    const deadline = this.#clock.now() + this.#timeoutMs;
    const body = this.compression === 'gzip' ? await gzipped(encoded, { level: GZIP_LEVEL }) : encoded;
    for (let attempt = 1; ; attempt++) {
      let status: number | undefined;
      let wait: number | undefined;
      let failure: unknown;
      try {
        const headers = this.#headers ?? (await this.#headersNow(deadline, attempt));
        const answer = await this.#post(body, headers, deadline - this.#clock.now());
        status = answer.status;
        if (status >= 200 && status < 300) {
          this.#partialSuccess(answer.body);
          return;
        }
        if (RETRYABLE.has(status)) wait = retryAfterMs(answer.retryAfter, this.#clock.now());
        else throw new OtlpExportError(`collector answered ${status}`, status, attempt);
      } catch (err) {
        if (err instanceof OtlpExportError) throw err;
        failure = err;
      }
      const backoff = wait ?? this.#backoff(attempt);
      const what = status !== undefined ? `collector answered ${status}` : `collector not reached: ${(failure as Error)?.message}`;
      if (attempt >= MAX_ATTEMPTS || this.#clock.now() + backoff >= deadline)
        throw new OtlpExportError(`${what} (${attempt} attempt${attempt === 1 ? '' : 's'})`, status, attempt, { cause: failure });
      await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, backoff, { keepAlive: true }));
    }
  }

  /**
   * The headers function's answer, checked, with the content headers over it; awaited until
   * the batch's deadline at most. Anything else fails the batch now (no retry: the function
   * is the app's, and would most likely fail again).
   */
  async #headersNow(deadline: number, attempt: number): Promise<Record<string, string>> {
    const refuse = (why: string, cause?: unknown) =>
      new OtlpExportError(`otlp.headers: ${why}`, undefined, attempt, cause === undefined ? undefined : { cause });
    const headersOf = this.#headersOf;
    if (headersOf === undefined) throw refuse('no headers function');
    let cancel: (() => void) | undefined;
    try {
      const given = await Promise.race([
        Promise.resolve().then(headersOf),
        new Promise<never>((_, reject) => {
          cancel = this.#clock.setTimeout(
            () => reject(refuse(`the headers function gave no headers in ${this.#timeoutMs} ms`)),
            Math.max(0, deadline - this.#clock.now()),
          );
        }),
      ]);
      checkOtlpHeaders(given, 'otlp.headers');
      return { ...given, ...this.#own };
    } catch (err) {
      if (err instanceof OtlpExportError) throw err;
      // A bad header's message names it, never its value (checkOtlpHeaders). A throw's
      // message is the app's own: kept as the cause, not put in the log line.
      if (err instanceof MeshletError) throw new OtlpExportError(err.message, undefined, attempt);
      throw refuse('the headers function failed', err);
    } finally {
      cancel?.();
    }
  }

  #backoff(attempt: number): number {
    const base = Math.min(BACKOFF.maxMs, BACKOFF.firstMs * BACKOFF.factor ** (attempt - 1));
    return base * (0.8 + 0.4 * this.#random());
  }

  /** One POST, aborted when `timeoutMs` passes: its status, its Retry-After, its body (bounded). */
  async #post(
    body: Buffer,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<{ status: number; retryAfter: string | string[] | undefined; body: Buffer }> {
    const controller = new AbortController();
    const cancel = this.#clock.setTimeout(() => controller.abort(new Error(`no answer in ${this.#timeoutMs} ms`)), timeoutMs);
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
        if (size > MAX_RESPONSE_BYTES) {
          res.body.destroy();
          break;
        }
        chunks.push(chunk);
      }
      return { status: res.statusCode, retryAfter: res.headers['retry-after'], body: Buffer.concat(chunks) };
    } finally {
      cancel();
    }
  }

  /** A 2xx answer's partial success, if any, logged: those spans were not taken, and are not sent again. */
  #partialSuccess(body: Buffer): void {
    if (body.length === 0 || this.#logger === undefined) return;
    let rejected = 0;
    let message = '';
    try {
      if (this.protocol === 'http/protobuf') ({ rejectedSpans: rejected, errorMessage: message } = decodeTraceResponseProto(body));
      else {
        const p = (JSON.parse(body.toString('utf8')) as { partialSuccess?: { rejectedSpans?: string | number; errorMessage?: string } })
          .partialSuccess;
        rejected = Number(p?.rejectedSpans ?? 0);
        message = String(p?.errorMessage ?? '');
      }
    } catch {
      return; // An answer that is not an ExportTraceServiceResponse: the batch was taken.
    }
    if (rejected > 0 || message !== '')
      this.#logger.warn('collector rejected spans', {
        code: 'MESHLET_OTLP_PARTIAL_SUCCESS',
        url: this.url,
        rejectedSpans: rejected,
        message: message.slice(0, 256),
      });
  }
}
