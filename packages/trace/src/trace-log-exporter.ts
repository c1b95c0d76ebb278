import { constants } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MeshletError } from '@meshlet/core';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import type { SpanLine } from './batch-queue.js';
import { encodeTraceLineBytes, reusableLine, TraceLineBuilder } from './otlp-json.js';
import { encodeTraceProto, TraceProtoBuilder } from './otlp-proto.js';

export interface TraceLogOptions {
  /** The file spans are appended to; rotated files are `<path>.1` (newest) to `<path>.<maxFiles>`. */
  readonly path: string;
  /** Rotate before a write would take the file past this size. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Rotated files kept besides the live one. Default 3. */
  readonly maxFiles?: number;
  /**
   * `json` (the default): JSON Lines, one OTLP/JSON ExportTraceServiceRequest a line.
   * `proto`: each batch an OTLP protobuf ExportTraceServiceRequest preceded by its size as a
   * 4-byte big-endian unsigned integer, as the OpenTelemetry Collector's file exporter
   * writes with `format: proto`; about a quarter of the bytes, and cheaper to write.
   * `readTraceLog` (and so `meshlet explain` and `meshlet-topology`) reads both.
   */
  readonly format?: TraceLogFormat;
}

/**
 * How the log is opened: for appending, made when missing, never waiting (a FIFO without a
 * reader fails at once, ENXIO, instead of blocking a thread of libuv's pool and so
 * `shutdown` and even `process.exit` for good), and not through a symbolic link as its last
 * component (ELOOP): rotation renames the path, which for a link would rename the link and
 * leave a regular file where it was (`/dev/stdout` became one, beside `/dev/stdout.1`).
 */
const LOG_OPEN_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK | (constants.O_NOFOLLOW ?? 0);

/** What the trace log runs on besides its options: injected in tests. */
export interface TraceLogDeps {
  /** Opens the log for appending (a file handle that may write short, in tests). Default node:fs/promises' `open`. */
  readonly open?: (path: string, flags: string | number) => Promise<FileHandle>;
}

/** The trace log's formats. */
export const TRACE_LOG_FORMATS = ['json', 'proto'] as const;
export type TraceLogFormat = (typeof TRACE_LOG_FORMATS)[number];

/**
 * The local trace log: JSON Lines, one OTLP/JSON ExportTraceServiceRequest per line, as
 * the OpenTelemetry file exporter specification describes (or, with `format: 'proto'`,
 * size-prefixed OTLP protobuf requests), with size-based rotation.
 * Called by the batch queue only (one batch per line); writes are serialized. The batch
 * queue builds each line while its spans end (`lineBuilder`, `exportLine`), so that spans
 * are not held until their batch is written; `export` encodes a batch of spans at once.
 */
export class TraceLogExporter implements SpanExporter {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  readonly format: TraceLogFormat;
  readonly #openFile: (path: string, flags: string | number) => Promise<FileHandle>;
  #file: FileHandle | undefined;
  /** The open file's identity, to tell when the path names another file (or none). */
  #dev = 0;
  #ino = 0;
  #size = 0;
  #tail: Promise<void> = Promise.resolve();
  #closed = false;
  /** Bytes of the last line written. */
  #lastLine = 0;
  /** A written line's buffer, for the next line builder (one line's worth of memory, not one per line). */
  #spare: Buffer | undefined;
  /** Files rotated so far. */
  rotations = 0;

  constructor(options: TraceLogOptions, deps: TraceLogDeps = {}) {
    this.path = options.path;
    this.#openFile = deps.open ?? open;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#maxFiles = Math.max(1, options.maxFiles ?? 3);
    this.format = options.format ?? 'json';
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.exportLine(this.format === 'proto' ? encodeTraceProto(spans) : encodeTraceLineBytes(spans), resultCallback);
  }

  /** A line (a batch, in `proto`) to build as spans end (the batch queue's way: see `LineExporter`). */
  lineBuilder(): SpanLine {
    if (this.format === 'proto') return new TraceProtoBuilder(this.#lastLine + (this.#lastLine >> 3));
    // Sized after the last line (and a margin), so that its buffer seldom grows; in the
    // buffer of a line already written when there is one.
    // A spare smaller than the last line would only grow again: left to the collector.
    const spare = this.#spare !== undefined && this.#spare.length >= this.#lastLine ? this.#spare : undefined;
    this.#spare = undefined;
    return new TraceLineBuilder(this.#lastLine + (this.#lastLine >> 3), spare);
  }

  /**
   * Appends a line built by `lineBuilder()` (or `encodeTraceLineBytes`), its newline
   * included. The line is the exporter's from then on: once written, a builder's buffer
   * starts the next builder's line.
   */
  exportLine(line: Buffer, resultCallback: (result: ExportResult) => void): void {
    if (this.#closed) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('trace log closed') });
      return;
    }
    this.#lastLine = line.length;
    this.#tail = this.#tail.then(
      () =>
        this.#write(line).then(
          () => resultCallback({ code: ExportResultCode.SUCCESS }),
          (error: Error) => resultCallback({ code: ExportResultCode.FAILED, error }),
        ),
      () => undefined,
    );
  }

  async forceFlush(): Promise<void> {
    await this.#tail;
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    await this.#tail;
    await this.#file?.close();
    this.#file = undefined;
  }

  async #write(line: Buffer): Promise<void> {
    if (this.#file === undefined || (await this.#replaced())) await this.#open();
    if (this.#size > 0 && this.#size + line.length > this.#maxBytes) await this.#rotate();
    const file = this.#file as FileHandle;
    try {
      for (let at = 0; at < line.length; ) {
        const { bytesWritten } = await file.write(line, at, line.length - at);
        if (bytesWritten <= 0) throw new Error(`trace log ${this.path}: nothing written`);
        at += bytesWritten;
      }
    } catch (error) {
      // Part of a line (a full disk, a file-size limit) would misalign every line or frame
      // after it: the file is cut back to its last whole one, and the batch fails.
      // (Shrinking a file open for writing does not fail short of an I/O error: the write's error is the one told.)
      await file.truncate(this.#size).catch(() => undefined);
      throw error;
    }
    this.#size += line.length;
    this.#spare = reusableLine(line) ?? this.#spare;
  }

  /**
   * Whether the path no longer names the open file: removed, or moved away (logrotate) and
   * perhaps replaced. Written on, the old file's lines would go where no reader looks.
   */
  async #replaced(): Promise<boolean> {
    try {
      const now = await lstat(this.path);
      return now.ino !== this.#ino || now.dev !== this.#dev;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
  }

  /**
   * Opens the path (`LOG_OPEN_FLAGS`), closing the file open before; anything but a regular
   * file is refused, closed at once: a FIFO, a device, a directory (as core's
   * readBoundedFile refuses them for reads). Each batch tries again.
   */
  async #open(): Promise<void> {
    const before = this.#file;
    this.#file = undefined;
    await before?.close().catch(() => undefined);
    await mkdir(dirname(this.path), { recursive: true });
    const refused = (why: string, cause?: unknown) =>
      new MeshletError(
        'MESHLET_TRACE_EXPORT_FAILED',
        `tracing.log.path: ${JSON.stringify(this.path)} ${why}`,
        cause === undefined ? undefined : { cause },
      );
    let file: FileHandle;
    try {
      file = await this.#openFile(this.path, LOG_OPEN_FLAGS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw refused('is a symbolic link: the trace log writes (and rotates) a regular file only', err);
      if (code === 'ENXIO') throw refused('is a FIFO or socket without a reader: the trace log writes a regular file only', err);
      throw refused(`cannot be opened (${code ?? 'error'})`, err);
    }
    const stats = await file.stat().catch(async (err: unknown) => {
      await file.close().catch(() => undefined);
      throw refused(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, err);
    });
    if (!stats.isFile()) {
      await file.close().catch(() => undefined);
      throw refused('is not a regular file: the trace log writes a regular file only');
    }
    this.#file = file;
    this.#dev = stats.dev;
    this.#ino = stats.ino;
    this.#size = stats.size;
  }

  async #rotate(): Promise<void> {
    const before = this.#file;
    this.#file = undefined;
    await before?.close();
    await rm(`${this.path}.${this.#maxFiles}`, { force: true });
    for (let i = this.#maxFiles - 1; i >= 1; i--) {
      await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    await rename(this.path, `${this.path}.1`);
    this.rotations++;
    await this.#open();
  }
}
