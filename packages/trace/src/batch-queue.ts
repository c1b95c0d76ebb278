import { type CancelTimer, type Clock, systemClock } from '@meshlet/core';
import { type Context, TraceFlags } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';

export interface BatchOptions {
  /** Spans held waiting for export; past it, ended spans are dropped and counted. Default 8192. */
  readonly maxQueueSize?: number;
  /** Spans per export call (one trace-log line). Default 512. */
  readonly maxBatchSize?: number;
  /** How long a partial batch waits before it is exported. Default 1000 ms. */
  readonly delayMs?: number;
  readonly clock?: Clock;
}

/** What a batch queue has done so far. */
export interface BatchStats {
  readonly exported: number;
  readonly dropped: number;
  readonly failed: number;
  readonly queued: number;
}

/**
 * A span processor that batches ended spans for one exporter, off the request path.
 * Ending a span costs an array push; the export runs from a timer or once a batch is full.
 * Unlike OpenTelemetry's BatchSpanProcessor it counts what it drops (readable in `stats`),
 * takes an injectable clock, and drains everything on shutdown.
 */
export class BatchQueue implements SpanProcessor {
  readonly #exporter: SpanExporter;
  readonly #maxQueue: number;
  readonly #maxBatch: number;
  readonly #delayMs: number;
  readonly #clock: Clock;
  #queue: ReadableSpan[] = [];
  #cancelTimer: CancelTimer | undefined;
  #exporting: Promise<void> | undefined;
  #exported = 0;
  #dropped = 0;
  #failed = 0;
  #shutdown = false;

  constructor(exporter: SpanExporter, options: BatchOptions = {}) {
    this.#exporter = exporter;
    this.#maxQueue = options.maxQueueSize ?? 8192;
    this.#maxBatch = Math.min(options.maxBatchSize ?? 512, this.#maxQueue);
    this.#delayMs = options.delayMs ?? 1000;
    this.#clock = options.clock ?? systemClock;
  }

  get stats(): BatchStats {
    return { exported: this.#exported, dropped: this.#dropped, failed: this.#failed, queued: this.#queue.length };
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#shutdown || this.#queue.length >= this.#maxQueue) {
      this.#dropped++;
      return;
    }
    this.#queue.push(span);
    if (this.#queue.length >= this.#maxBatch) {
      if (!this.#exporting) this.#kick();
    } else if (!this.#cancelTimer && !this.#exporting) {
      this.#cancelTimer = this.#clock.setTimeout(() => {
        this.#cancelTimer = undefined;
        this.#kick();
      }, this.#delayMs);
    }
  }

  /** Exports everything queued now, in batches; resolves when the exporter has it. */
  async forceFlush(): Promise<void> {
    while (this.#exporting || this.#queue.length > 0) {
      if (!this.#exporting) this.#kick();
      await this.#exporting;
    }
    await this.#exporter.forceFlush?.();
  }

  async shutdown(): Promise<void> {
    if (this.#shutdown) return;
    await this.forceFlush();
    this.#shutdown = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    await this.#exporter.shutdown();
  }

  // Exports batches until fewer than a full batch is left, then arms the timer for the rest.
  #kick(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#exporting = this.#drain().finally(() => {
      this.#exporting = undefined;
      if (this.#queue.length > 0 && !this.#shutdown) {
        if (this.#queue.length >= this.#maxBatch) this.#kick();
        else
          this.#cancelTimer ??= this.#clock.setTimeout(() => {
            this.#cancelTimer = undefined;
            this.#kick();
          }, this.#delayMs);
      }
    });
  }

  async #drain(): Promise<void> {
    do {
      if (this.#queue.length === 0) return;
      const batch = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch);
      this.#queue = batch === this.#queue ? [] : this.#queue.slice(this.#maxBatch);
      const ok = await new Promise<boolean>((resolve) => {
        try {
          this.#exporter.export(batch, (r) => resolve(r.code === ExportResultCode.SUCCESS));
        } catch {
          resolve(false);
        }
      });
      if (ok) this.#exported += batch.length;
      else this.#failed += batch.length;
    } while (this.#queue.length >= this.#maxBatch);
  }
}
