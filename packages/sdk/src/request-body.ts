import { Readable } from 'node:stream';

/** undici's default for `dump()`: bytes read before the connection is given up instead. */
const DUMP_LIMIT = 128 * 1024;
const EMPTY = Buffer.alloc(0);

function unusable(): TypeError {
  return new TypeError('unusable');
}

/** A body's chunks as one Buffer (the only chunk itself when there is one). */
export function joined(chunks: Buffer[], size: number): Buffer {
  if (chunks.length === 0) return EMPTY;
  if (chunks.length === 1) return chunks[0] as Buffer;
  return Buffer.concat(chunks, size);
}

function utf8(b: Buffer): string {
  // As undici's text(): UTF-8, a leading BOM dropped.
  const start = b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0;
  return b.toString('utf8', start);
}

/**
 * A response body with undici's body mixin (`text()`, `json()`, `arrayBuffer()`, `bytes()`,
 * `blob()`, `dump()`, `bodyUsed`, `body`), as `undici.request` returns it: a Readable, so
 * callers stream it or read it whole as they read undici's own. The mixin reads the chunks
 * as 'data' events, without an async iterator.
 */
export class MixinBody extends Readable {
  #used = false;
  #web: ReadableStream<Uint8Array> | undefined;
  /** The content type, for `blob()`. */
  readonly #type: string;

  constructor(contentType: string | undefined, read?: (this: Readable) => void) {
    super(read === undefined ? {} : { read });
    this.#type = contentType ?? '';
  }

  get bodyUsed(): boolean {
    return this.#used || Readable.isDisturbed(this);
  }

  /** The body as a web ReadableStream, made on first read. */
  get body(): ReadableStream<Uint8Array> {
    this.#web ??= Readable.toWeb(this) as ReadableStream<Uint8Array>;
    return this.#web;
  }

  #collect(): Promise<Buffer> {
    if (this.bodyUsed || this.#web !== undefined) return Promise.reject(unusable());
    this.#used = true;
    if (this.destroyed) return Promise.reject(this.errored ?? new Error('The body was destroyed'));
    return this.collectBytes();
  }

  /** The whole body, read as a stream; a subclass that holds its chunks may answer sooner. */
  protected collectBytes(): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      this.on('data', (c: Buffer) => {
        chunks.push(c);
        size += c.length;
      })
        .once('end', () => resolve(joined(chunks, size)))
        .once('error', reject)
        .once('close', () => {
          if (!this.readableEnded) reject(this.errored ?? new Error('The body was destroyed before its end'));
        });
    });
  }

  text(): Promise<string> {
    return this.#collect().then(utf8);
  }
  json(): Promise<unknown> {
    return this.#collect().then((b) => JSON.parse(utf8(b)));
  }
  arrayBuffer(): Promise<ArrayBuffer> {
    // One copy into an ArrayBuffer of its own (a chunk is a view of the socket's buffer);
    // a typed-array copy costs half of ArrayBuffer.prototype.slice for small bodies.
    return this.#collect().then((b) => new Uint8Array(b).buffer);
  }
  bytes(): Promise<Uint8Array> {
    return this.#collect().then((b) => new Uint8Array(b));
  }
  blob(): Promise<Blob> {
    return this.#collect().then((b) => new Blob([new Uint8Array(b)], { type: this.#type }));
  }
  formData(): Promise<never> {
    return Promise.reject(new TypeError('formData() is not supported by undici request bodies'));
  }
  /** Reads and drops the rest (up to `limit` bytes, then gives the connection up), as undici's. */
  dump(opts?: { limit?: number; signal?: AbortSignal }): Promise<null> {
    const signal = opts?.signal;
    const limit = opts?.limit !== undefined && Number.isFinite(opts.limit) ? opts.limit : DUMP_LIMIT;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.closed) return Promise.resolve(null);
    this.#used = true;
    return new Promise<null>((resolve, reject) => {
      let read = 0;
      const onAbort = () => this.destroy(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.on('error', () => {})
        .on('data', (c: Buffer) => {
          read += c.length;
          if (read > limit) this.destroy();
        })
        .once('close', () => {
          signal?.removeEventListener('abort', onAbort);
          if (signal?.aborted) reject(signal.reason);
          else resolve(null);
        })
        .resume();
    });
  }
}

/**
 * The body of a Response the mesh made itself (an injected fault, a breaker's fallback),
 * read from its web stream.
 */
export function bodyOfResponse(res: Response): MixinBody {
  const reader = res.body?.getReader();
  return new MixinBody(res.headers.get('content-type') ?? undefined, function read(this: Readable) {
    if (!reader) {
      this.push(null);
      return;
    }
    reader.read().then(
      ({ done, value }) => this.push(done ? null : value),
      (err: unknown) => this.destroy(err as Error),
    );
  });
}
