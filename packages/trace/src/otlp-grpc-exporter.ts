import type * as GrpcJs from '@grpc/grpc-js';
import { MeshletError } from '@meshlet/core';
import {
  type AttemptAnswer,
  MAX_ANSWER_BYTES,
  OtlpExporterBase,
  type OtlpExporterDeps,
  type OtlpHttpOptions,
} from './otlp-exporter-base.js';
import { retryDelayOfStatusDetails } from './otlp-proto.js';
import type { OtlpTls } from './otlp-tls.js';

/** grpc-js is an optional peer of @meshlet/trace (loaded with the first batch): its absence says what to install. */
function grpcJsMissing(err: unknown): never {
  if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
  throw new MeshletError(
    'MESHLET_GRPC_NOT_INSTALLED',
    "otlp.protocol 'grpc' needs @grpc/grpc-js, an optional peer dependency of @meshlet/trace: npm install @grpc/grpc-js",
    { cause: err },
  );
}

/** The collector's trace service method (opentelemetry-proto's collector/trace/v1). */
const EXPORT_METHOD = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/**
 * The gRPC statuses the OTLP specification says to retry, by grpc-js's names; and
 * RESOURCE_EXHAUSTED when the server says when to (a RetryInfo in its status details).
 */
const RETRYABLE = new Set(['CANCELLED', 'DEADLINE_EXCEEDED', 'ABORTED', 'OUT_OF_RANGE', 'UNAVAILABLE', 'DATA_LOSS']);

/**
 * The OTLP/gRPC trace exporter: each batch one ExportTraceServiceRequest sent to the
 * collector's `TraceService/Export`, the bytes the protobuf trace log's encoder builds as
 * the spans end (no protobuf library, no OTLP transformer), over `@grpc/grpc-js`, loaded
 * when the first batch goes. `url` is the collector's address (`http://host:4317`;
 * `https:` for TLS, with `tls` for a CA of your own or mutual TLS). The headers go as
 * metadata. The statuses OTLP says to retry (UNAVAILABLE, DEADLINE_EXCEEDED…, and
 * RESOURCE_EXHAUSTED with the server's RetryInfo) are retried as OtlpExporterBase retries,
 * after the server's RetryInfo delay when it gives one, within the batch's timeout; any
 * other fails the batch.
 * `compression: 'gzip'` is gRPC's message compression. At most 64 KiB of an answer is read.
 */
export class OtlpGrpcExporter extends OtlpExporterBase {
  /** The collector's origin, as logs show it. */
  readonly url: string;
  readonly #target: string;
  readonly #secure: boolean;
  readonly #tls: OtlpTls | undefined;
  #client: Promise<{ grpc: typeof GrpcJs; client: GrpcJs.Client }> | undefined;

  constructor(options: OtlpHttpOptions, deps: OtlpExporterDeps = {}) {
    super(options, deps, {});
    if (this.protocol !== 'grpc') throw new MeshletError('MESHLET_BAD_OPTION', "otlp.protocol: OtlpGrpcExporter speaks 'grpc' only");
    const url = new URL(options.url);
    this.url = url.origin;
    this.#secure = url.protocol === 'https:';
    this.#target = `${url.hostname}:${url.port || (this.#secure ? '443' : '80')}`;
    this.#tls = options.tls;
  }

  protected async prepare(encoded: Buffer): Promise<Buffer> {
    return encoded; // gRPC compresses the message itself (grpc-encoding)
  }

  protected async close(): Promise<void> {
    const made = this.#client;
    this.#client = undefined;
    // A channel that was never made (grpc-js failed to load) has nothing to close.
    if (made !== undefined)
      await made.then(
        ({ client }) => client.close(),
        () => undefined,
      );
  }

  /** The channel to the collector, made with the first batch. */
  #clientNow(): Promise<{ grpc: typeof GrpcJs; client: GrpcJs.Client }> {
    this.#client ??= import('@grpc/grpc-js').catch(grpcJsMissing).then((grpc) => {
      const tls = this.#tls;
      const pem = (text: string | undefined) => (text === undefined ? null : Buffer.from(text));
      const credentials = this.#secure
        ? grpc.credentials.createSsl(pem(tls?.ca), pem(tls?.key), pem(tls?.cert))
        : grpc.credentials.createInsecure();
      const client = new grpc.Client(this.#target, credentials, {
        'grpc.max_receive_message_length': MAX_ANSWER_BYTES,
        // 2: gzip, as grpc-js numbers its algorithms.
        ...(this.compression === 'gzip' ? { 'grpc.default_compression_algorithm': 2 } : {}),
        // The retries are the exporter's own, within the batch's timeout.
        'grpc.enable_retries': 0,
      });
      return { grpc, client };
    });
    return this.#client;
  }

  protected async attempt(body: Buffer, headers: Record<string, string>, timeoutMs: number): Promise<AttemptAnswer> {
    const { grpc, client } = await this.#clientNow();
    // Checked as gRPC metadata already (otlpHeadersProblem for protocol grpc): given, when
    // the exporter was made; from a function, before this attempt.
    const metadata = new grpc.Metadata();
    for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
    return new Promise<AttemptAnswer>((resolve) => {
      // The attempt's time is kept on the exporter's clock (injected in tests), as the
      // OTLP/HTTP exporter keeps its own: when it passes, the call is cancelled. No gRPC
      // deadline beside it, which would be read off the wall clock.
      let timedOut = false;
      let cancel: () => void = () => undefined;
      const call = client.makeUnaryRequest<Buffer, Buffer>(
        EXPORT_METHOD,
        (b) => b,
        (b) => b,
        body,
        metadata,
        (err, answer) => {
          cancel();
          if (err === null) {
            resolve({ taken: true, body: answer ?? Buffer.alloc(0) });
            return;
          }
          if (timedOut) {
            // As the collector's DEADLINE_EXCEEDED: retried if the batch has time left.
            resolve({ taken: false, what: `no answer in ${this.timeoutMs} ms`, retry: true, waitMs: undefined });
            return;
          }
          const code = err.code;
          const name = grpc.status[code] ?? String(code);
          // The server's own wait (RetryInfo), as OTLP/HTTP's Retry-After.
          const details = err.metadata?.get('grpc-status-details-bin')[0];
          const waitMs = Buffer.isBuffer(details) ? retryDelayOfStatusDetails(details) : undefined;
          resolve({
            taken: false,
            what: `collector answered gRPC ${name} (${code}): ${String(err.details ?? '').slice(0, 200)}`,
            retry: RETRYABLE.has(name) || (code === grpc.status.RESOURCE_EXHAUSTED && waitMs !== undefined),
            waitMs,
          });
        },
      );
      cancel = this.clock.setTimeout(
        () => {
          timedOut = true;
          call.cancel();
        },
        Math.max(1, timeoutMs),
      );
    });
  }
}
