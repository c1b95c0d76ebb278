import { type CancelTimer, type Clock, type Logger, systemClock } from '@meshlet/core';
import { type Context, TraceFlags } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';

export interface BatchOptions {
  /** Spans held waiting for export; past it, ended spans are dropped and counted. Default 8192. */
  readonly maxQueueSize?: number;
  /** Spans per export call (one trace-log line). Default 512. */
  readonly maxBatchSize?: number;
  /** How long a partial batch waits before it is exported. Default 1000 ms. */
  readonly delayMs?: number;
  /**
   * How long `shutdown` waits in all for the queue to drain and the exporter to close
   * (an OTLP exporter's `timeoutMs`); what is left then is dropped and counted. Default 10 000 ms.
   */
  readonly shutdownTimeoutMs?: number;
  readonly clock?: Clock;
  /** Where a failed export is told (`MESHLET_TRACE_EXPORT_FAILED`); nowhere when absent. */
  readonly logger?: Logger;
}

/** The codes of what exporting spans can log, once per batch at most: throttled per interval by Tracing's logger. */
export const EXPORT_LOG_CODES: readonly string[] = ['MESHLET_TRACE_EXPORT_FAILED', 'MESHLET_OTLP_PARTIAL_SUCCESS'];
/** Logged once by a shutdown that dropped spans (its deadline passed, or a batch failed): not throttled. */
export const SHUTDOWN_DROPPED_CODE = 'MESHLET_TRACE_SHUTDOWN_DROPPED';
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

/** An exporter as named in a log line: the trace log's path, the collector's URL, or its class. */
function exporterName(e: SpanExporter): string {
  const named = e as { readonly path?: unknown; readonly url?: unknown };
  if (typeof named.url === 'string') return named.url;
  if (typeof named.path === 'string') return named.path;
  return e.constructor?.name ?? 'exporter';
}

/** What a batch queue has done so far. */
export interface BatchStats {
  readonly exported: number;
  readonly dropped: number;
  readonly failed: number;
  readonly queued: number;
}

/** A line of encoded spans under construction (otlp-json's TraceLineBuilder). */
export interface SpanLine {
  readonly count: number;
  add(span: ReadableSpan): void;
  take(): Buffer;
}

/**
 * An exporter that takes its batches as lines built while the spans end (the trace log):
 * the queue encodes each ended span into the current line at once and holds bytes, not
 * spans, until the line is written.
 */
export interface LineExporter extends SpanExporter {
  lineBuilder(): SpanLine;
  exportLine(line: Buffer, resultCallback: (result: ExportResult) => void): void;
}

const isLineExporter = (e: SpanExporter): e is LineExporter =>
  typeof (e as Partial<LineExporter>).lineBuilder === 'function' && typeof (e as Partial<LineExporter>).exportLine === 'function';

/** A batch waiting to be exported: spans, or (for a LineExporter) a built line and its span count. */
type Batch = { readonly spans: ReadableSpan[] } | { readonly line: Buffer; readonly count: number };

/**
 * A span processor that batches ended spans for one exporter, off the request path.
 * Ending a span costs an array push; the export runs from a timer or once a batch is full.
 * Unlike OpenTelemetry's BatchSpanProcessor it counts what it drops (readable in `stats`),
 * takes an injectable clock, and drains everything on shutdown, within one deadline in all
 * (`shutdownTimeoutMs`): once it passes, or a batch fails during shutdown (the exporter
 * would most likely fail the next ones too, each after its own timeout), the rest is
 * dropped, counted and logged once (`MESHLET_TRACE_SHUTDOWN_DROPPED`).
 */
export class BatchQueue implements SpanProcessor {
  readonly #exporter: SpanExporter;
  /** The exporter, when it takes lines built as spans end. */
  readonly #lines: LineExporter | undefined;
  /** Its line under construction, and the lines full or due, oldest first. */
  #building: SpanLine | undefined;
  #built: { line: Buffer; count: number }[] = [];
  /** Spans in #building and #built, and the line in flight. */
  #encoded = 0;
  readonly #maxQueue: number;
  readonly #maxBatch: number;
  readonly #delayMs: number;
  readonly #shutdownTimeoutMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger | undefined;
  #queue: ReadableSpan[] = [];
  #cancelTimer: CancelTimer | undefined;
  #exporting: Promise<void> | undefined;
  #exported = 0;
  #dropped = 0;
  #failed = 0;
  #shutdown = false;
  /** Shutdown has begun: a failed batch drops the rest. */
  #closing = false;
  /** The one shutdown: every caller of shutdown() waits for it, not only the first. */
  #closed: Promise<void> | undefined;
  /** Shutdown gave up on what was left: the batch in flight's result is no longer counted. */
  #abandoned = false;
  /** Spans of the batch of spans (not a line: those are in #encoded) being exported. */
  #inFlight = 0;

  constructor(exporter: SpanExporter, options: BatchOptions = {}) {
    this.#exporter = exporter;
    this.#maxQueue = options.maxQueueSize ?? 8192;
    this.#maxBatch = Math.min(options.maxBatchSize ?? 512, this.#maxQueue);
    this.#delayMs = options.delayMs ?? 1000;
    this.#shutdownTimeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger;
    this.#lines = isLineExporter(exporter) ? exporter : undefined;
  }

  get stats(): BatchStats {
    return { exported: this.#exported, dropped: this.#dropped, failed: this.#failed, queued: this.#pending() };
  }

  #pending(): number {
    return this.#queue.length + this.#encoded;
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#shutdown || this.#pending() >= this.#maxQueue) {
      this.#dropped++;
      return;
    }
    let full: boolean;
    if (this.#lines !== undefined) {
      this.#building ??= this.#lines.lineBuilder();
      try {
        this.#building.add(span);
      } catch {
        // Never on the span's path: a span that cannot be encoded is counted as failed.
        this.#failed++;
        return;
      }
      this.#encoded++;
      full = this.#building.count >= this.#maxBatch;
      if (full) this.#seal();
    } else {
      this.#queue.push(span);
      full = this.#queue.length >= this.#maxBatch;
    }
    if (full) {
      if (!this.#exporting) this.#kick();
    } else if (!this.#cancelTimer && !this.#exporting) {
      this.#cancelTimer = this.#clock.setTimeout(() => {
        this.#cancelTimer = undefined;
        this.#kick();
      }, this.#delayMs);
    }
  }

  /** Moves the line under construction to the lines to write. */
  #seal(): void {
    const building = this.#building;
    if (building === undefined || building.count === 0) return;
    this.#building = undefined;
    this.#built.push({ line: building.take(), count: building.count });
  }

  /** Exports everything queued now, in batches; resolves when the exporter has it. */
  async forceFlush(): Promise<void> {
    while (this.#exporting || this.#pending() > 0) {
      if (!this.#exporting) this.#kick(true);
      await this.#exporting;
    }
    await this.#exporter.forceFlush?.();
  }

  /**
   * Drains the queue and shuts the exporter down, within `shutdownTimeoutMs` in all: what
   * is not exported by then is dropped and counted, and the exporter's own shutdown is not
   * waited for past it (its batch in flight ends by its own timeout, unwaited).
   */
  shutdown(): Promise<void> {
    this.#closed ??= this.#shutdownOnce();
    return this.#closed;
  }

  async #shutdownOnce(): Promise<void> {
    this.#closing = true;
    let cancel: CancelTimer | undefined;
    const late = new Promise<'late'>((resolve) => {
      cancel = this.#clock.setTimeout(() => resolve('late'), this.#shutdownTimeoutMs, { keepAlive: true });
    });
    try {
      if ((await Promise.race([this.forceFlush().then(() => 'drained' as const), late])) === 'late')
        this.#abandon(`not exported within the shutdown's ${this.#shutdownTimeoutMs} ms`);
      this.#shutdown = true;
      this.#cancelTimer?.();
      this.#cancelTimer = undefined;
      await Promise.race([this.#exporter.shutdown(), late]);
    } finally {
      this.#shutdown = true;
      cancel?.();
    }
  }

  /** Drops what is queued and the batch in flight (shutdown gave up on them): counted, and logged once. */
  #abandon(why: string): void {
    if (this.#abandoned) return;
    this.#abandoned = true;
    const n = this.#pending() + this.#inFlight;
    this.#dropped += n;
    this.#queue = [];
    this.#built = [];
    this.#building = undefined;
    this.#encoded = 0;
    this.#inFlight = 0;
    if (n > 0)
      this.#logger?.warn('spans dropped at shutdown', {
        code: SHUTDOWN_DROPPED_CODE,
        exporter: exporterName(this.#exporter),
        spans: n,
        reason: why,
      });
  }

  // Exports batches until fewer than a full batch is left (all of them when `all`: the
  // timer fired, or a flush), then arms the timer for the rest.
  #kick(all = true): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    if (all) this.#seal();
    this.#exporting = this.#drain().finally(() => {
      this.#exporting = undefined;
      if (this.#pending() > 0 && !this.#shutdown) {
        if (this.#built.length > 0 || this.#queue.length >= this.#maxBatch) this.#kick(false);
        else
          this.#cancelTimer ??= this.#clock.setTimeout(() => {
            this.#cancelTimer = undefined;
            this.#kick();
          }, this.#delayMs);
      }
    });
  }

  /** The next batch to export: a built line, else up to a batch of queued spans (only a full one unless `partial`). */
  #next(partial: boolean): Batch | undefined {
    const line = this.#built.shift();
    if (line !== undefined) return line;
    if (this.#queue.length === 0 || (!partial && this.#queue.length < this.#maxBatch)) return undefined;
    const spans = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch);
    this.#queue = spans === this.#queue ? [] : this.#queue.slice(this.#maxBatch);
    return { spans };
  }

  async #drain(): Promise<void> {
    let batch = this.#next(true);
    while (batch !== undefined) {
      const b = batch;
      const n = 'line' in b ? b.count : b.spans.length;
      if (!('line' in b)) this.#inFlight = n;
      const result = await new Promise<ExportResult>((resolve) => {
        try {
          if ('line' in b) (this.#lines as LineExporter).exportLine(b.line, resolve);
          else this.#exporter.export(b.spans, resolve);
        } catch (error) {
          resolve({ code: ExportResultCode.FAILED, error: error as Error });
        }
      });
      // Counted as dropped when shutdown gave up on it.
      if (this.#abandoned) return;
      this.#inFlight = 0;
      if ('line' in b) this.#encoded -= n;
      if (result.code === ExportResultCode.SUCCESS) this.#exported += n;
      else {
        this.#failed += n;
        this.#logger?.warn('spans not exported', {
          code: 'MESHLET_TRACE_EXPORT_FAILED',
          exporter: exporterName(this.#exporter),
          spans: n,
          error: String(result.error?.message ?? 'failed').slice(0, 512),
        });
        if (this.#closing) {
          this.#abandon('a batch failed during shutdown');
          return;
        }
      }
      batch = this.#next(false);
    }
  }
}
