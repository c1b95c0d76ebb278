import { type Clock, type Logger, MeshletError, systemClock } from '@meshlet/core';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import type { LineExporter, SpanLine } from './batch-queue.js';
import { checkOtlpHeaders, type OtlpHeaders, otlpUrlProblem } from './otlp-headers.js';
import { encodeTraceLineBytes, TraceLineBuilder } from './otlp-json.js';
import { decodeTraceResponseProto, encodeTraceProto, TraceProtoBuilder } from './otlp-proto.js';
import { type OtlpTls, otlpTlsProblem } from './otlp-tls.js';

/**
 * OTLP's encodings of a request: OTLP/HTTP with protobuf (the OTLP default) or JSON, and
 * OTLP/gRPC (protobuf, the collector's `TraceService/Export`).
 */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
/** How a request's body is sent: as encoded, or gzipped, the two OTLP names. */
export const OTLP_COMPRESSIONS = ['none', 'gzip'] as const;
export type OtlpCompression = (typeof OTLP_COMPRESSIONS)[number];

export interface OtlpHttpOptions {
  /**
   * The collector: for OTLP/HTTP its traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`;
   * for `grpc` its address, e.g. `http://127.0.0.1:4317` (`https:` for TLS; a path is not
   * used, as OpenTelemetry's gRPC exporters have it).
   */
  readonly url: string;
  /**
   * Sent with every batch (as gRPC metadata with `grpc`); or a function giving them before
   * each attempt (a token that expires), its answer checked as the object's would be, and
   * awaited within the batch's timeout. A function that throws, gives bad headers or does
   * not answer in time fails that attempt's batch (`OtlpExportError`, naming
   * `otlp.headers`, never a value).
   */
  readonly headers?: OtlpHeaders;
  /** One batch's export, its retries included. Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** Default `http/protobuf`, as the OTLP exporter specification has it. */
  readonly protocol?: OtlpProtocol;
  /**
   * Default `none`, as the OTLP exporter specification has it. `gzip` compresses each
   * batch (OTLP/HTTP: once, off the event loop, before its first attempt; gRPC: as its
   * message compression, `grpc-encoding: gzip`).
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
export interface OtlpExporterDeps {
  readonly clock?: Clock;
  /** Where a collector's partial success is told (its rejected spans). */
  readonly logger?: Logger;
  /** Jitter of the retry backoff, in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/** A batch the collector did not take: the status (or the network error) and the attempts made. */
export class OtlpExportError extends MeshletError {
  static readonly code = 'MESHLET_OTLP_EXPORT_FAILED';

  constructor(
    message: string,
    /** The last answer's HTTP status; undefined when there was none (network, timeout, gRPC). */
    readonly status: number | undefined,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(OtlpExportError.code, message, options);
  }
}

/** One attempt's outcome, whatever carried it: the collector's answer taken, or why not and whether to retry. */
export type AttemptAnswer =
  | { readonly taken: true; readonly body: Buffer }
  | {
      readonly taken: false;
      /** What happened, for the error (`collector answered 503`). */
      readonly what: string;
      readonly retry: boolean;
      /** The collector's own wait before a retry (Retry-After), if it gave one. */
      readonly waitMs?: number | undefined;
      readonly status?: number | undefined;
    };

/** One batch's export, its retries included, unless `timeoutMs` says otherwise. */
export const DEFAULT_OTLP_TIMEOUT_MS = 10_000;

/** A collector's answer read at most, by either transport: a partial success is a few hundred bytes. */
export const MAX_ANSWER_BYTES = 64 * 1024;
/** First wait before a retry, the factor it grows by, and its cap, in ms (before a jitter of ±20%). */
const BACKOFF = { firstMs: 1000, factor: 1.5, maxMs: 5000 } as const;
/** Attempts per batch at most, within its timeout. */
const MAX_ATTEMPTS = 5;

/**
 * What Meshlet's OTLP exporters share, whatever carries the batch: the batches the trace
 * log's encoders build as the spans end (a LineExporter), the headers (given, or from a
 * function checked before each attempt), and the retries: an answer the transport says to
 * retry, or one that did not arrive, is tried again after a growing backoff (1 s, ×1.5, at
 * most 5 s, ±20%) or the collector's own wait, while the batch's timeout allows, five
 * attempts at most. A collector's partial success (its rejected spans) is logged. The
 * transports (`attempt`) are OTLP/HTTP's (OtlpHttpExporter) and OTLP/gRPC's.
 */
export abstract class OtlpExporterBase implements LineExporter {
  readonly protocol: OtlpProtocol;
  readonly compression: OtlpCompression;
  /** The collector as logs show it (no query, no credential). */
  abstract readonly url: string;
  /** Headers the transport sets over the given ones (OTLP/HTTP's content headers). */
  readonly #own: Record<string, string>;
  /** The headers sent with every attempt, when given as an object (with #own). */
  readonly #headers: Record<string, string> | undefined;
  readonly #headersOf: (() => Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>) | undefined;
  protected readonly timeoutMs: number;
  protected readonly clock: Clock;
  readonly #logger: Logger | undefined;
  readonly #random: () => number;
  /** Exports not yet settled. */
  readonly #inFlight = new Set<Promise<void>>();
  #lastLine = 0;
  #closed = false;

  /** Checks `options` (URL, TLS) and keeps what every transport uses; `own` are the transport's headers. */
  constructor(options: OtlpHttpOptions, deps: OtlpExporterDeps, own: Record<string, string>) {
    const problem = otlpUrlProblem(options.url);
    if (problem !== undefined) throw new MeshletError('MESHLET_BAD_OPTION', `otlp.url: ${problem}`);
    if (options.tls !== undefined) {
      const found = otlpTlsProblem(options.tls, options.url);
      if (found !== undefined)
        throw new MeshletError('MESHLET_BAD_OPTION', `otlp.tls${found.field === undefined ? '' : `.${found.field}`}: ${found.problem}`);
    }
    this.protocol = options.protocol ?? 'http/protobuf';
    this.compression = options.compression ?? 'none';
    this.#own = own;
    const given = options.headers;
    // The headers given are checked here too (an exporter may be made without the options
    // check), as the transport will send them; a function's answer before each attempt.
    if (given !== undefined && typeof given !== 'function') checkOtlpHeaders(given, 'otlp.headers', this.protocol);
    this.#headersOf = typeof given === 'function' ? given : undefined;
    this.#headers = typeof given === 'function' ? undefined : { ...given, ...own };
    this.timeoutMs = options.timeoutMs ?? DEFAULT_OTLP_TIMEOUT_MS;
    this.clock = deps.clock ?? systemClock;
    this.#logger = deps.logger;
    this.#random = deps.random ?? Math.random;
  }

  /** Sends `body` once, within `timeoutMs`; throws when the collector was not reached (retried). */
  protected abstract attempt(body: Buffer, headers: Record<string, string>, timeoutMs: number): Promise<AttemptAnswer>;

  /** The batch as sent, from its encoding (OTLP/HTTP gzips it here). */
  protected abstract prepare(encoded: Buffer): Promise<Buffer>;

  /** Closes what the transport holds (its connections), after the last batch. */
  protected abstract close(): Promise<void>;

  lineBuilder(): SpanLine {
    const size = this.#lastLine + (this.#lastLine >> 3);
    return this.protocol === 'http/json' ? new TraceLineBuilder(size) : new TraceProtoBuilder(size);
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    let line: Buffer;
    try {
      line = this.protocol === 'http/json' ? encodeTraceLineBytes(spans) : encodeTraceProto(spans);
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
    const body = this.protocol === 'http/json' ? line : line.subarray(4);
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
    await this.close();
  }

  /** Sends one batch, retrying what may be retried until the batch's deadline. */
  async #send(encoded: Buffer): Promise<void> {
    const deadline = this.clock.now() + this.timeoutMs;
    const body = await this.prepare(encoded);
    for (let attempt = 1; ; attempt++) {
      let answer: AttemptAnswer | undefined;
      let failure: unknown;
      try {
        const headers = this.#headers ?? (await this.#headersNow(deadline, attempt));
        answer = await this.attempt(body, headers, deadline - this.clock.now());
        if (answer.taken) {
          this.#partialSuccess(answer.body);
          return;
        }
        if (!answer.retry) throw new OtlpExportError(answer.what, answer.status, attempt);
      } catch (err) {
        if (err instanceof OtlpExportError) throw err;
        failure = err;
      }
      const wait = answer !== undefined && !answer.taken ? answer.waitMs : undefined;
      const backoff = wait ?? this.#backoff(attempt);
      const what = answer !== undefined && !answer.taken ? answer.what : `collector not reached: ${(failure as Error)?.message}`;
      const status = answer !== undefined && !answer.taken ? answer.status : undefined;
      if (attempt >= MAX_ATTEMPTS || this.clock.now() + backoff >= deadline)
        throw new OtlpExportError(`${what} (${attempt} attempt${attempt === 1 ? '' : 's'})`, status, attempt, { cause: failure });
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, backoff, { keepAlive: true }));
    }
  }

  /**
   * The headers function's answer, checked, with the transport's headers over it; awaited
   * until the batch's deadline at most. Anything else fails the batch now (no retry: the
   * function is the app's, and would most likely fail again).
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
          cancel = this.clock.setTimeout(
            () => reject(refuse(`the headers function gave no headers in ${this.timeoutMs} ms`)),
            Math.max(0, deadline - this.clock.now()),
          );
        }),
      ]);
      checkOtlpHeaders(given, 'otlp.headers', this.protocol);
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

  /** A taken answer's partial success, if any, logged: those spans were not taken, and are not sent again. */
  #partialSuccess(body: Buffer): void {
    if (body.length === 0 || this.#logger === undefined) return;
    let rejected = 0;
    let message = '';
    try {
      if (this.protocol !== 'http/json') ({ rejectedSpans: rejected, errorMessage: message } = decodeTraceResponseProto(body));
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
