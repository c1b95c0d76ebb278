import type { ExportResult } from '@opentelemetry/core';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';

export interface OtlpHttpOptions {
  /** The collector's traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. */
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Per export. Default 10 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * OpenTelemetry's OTLP/HTTP (JSON) trace exporter, loaded on first use: it pulls in the
 * whole OTLP transformer, which a service that only writes the local log should not pay for.
 */
export class OtlpHttpExporter implements SpanExporter {
  readonly #options: OtlpHttpOptions;
  #inner: Promise<SpanExporter> | undefined;

  constructor(options: OtlpHttpOptions) {
    this.#options = options;
  }

  #load(): Promise<SpanExporter> {
    this.#inner ??= import('@opentelemetry/exporter-trace-otlp-http').then(
      ({ OTLPTraceExporter }) =>
        new OTLPTraceExporter({
          url: this.#options.url,
          headers: { ...this.#options.headers },
          timeoutMillis: this.#options.timeoutMs ?? 10_000,
        }),
    );
    return this.#inner;
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.#load().then(
      (inner) => inner.export(spans, resultCallback),
      (error: Error) => resultCallback({ code: ExportResultCode.FAILED, error }),
    );
  }

  async forceFlush(): Promise<void> {
    if (this.#inner) await (await this.#inner).forceFlush?.();
  }

  async shutdown(): Promise<void> {
    if (this.#inner) await (await this.#inner).shutdown();
  }
}
