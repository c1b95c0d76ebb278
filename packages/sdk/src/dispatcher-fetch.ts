import stream, { type Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { AttemptAbort, BodyVerdict } from '@meshlet/breaker';
import type { Dispatcher } from 'undici';

/**
 * One attempt of a governed `fetch`, sent over an undici dispatcher (the mesh's shared
 * keep-alive Agent) instead of through WHATWG fetch's own machinery: no Request object,
 * no fetch controller, no body stream per response unless the application asks for one.
 * What it keeps and what it does not (see README, "mesh.fetch over the dispatcher"):
 *
 * - Resolves with a `Response` (a subclass, so `instanceof Response` holds) at the
 *   response's headers; its body is read from the chunks as the dispatcher hands them
 *   over. `arrayBuffer()`, `text()`, `json()`, `bytes()` and `blob()` read those chunks
 *   directly; `body` makes a byte ReadableStream on first use, fed with backpressure.
 * - Never follows a redirect: a 3xx is returned as it came (`redirect: 'manual'`).
 *   governedFetch follows redirects, or fails a call on one under `redirect: 'error'`.
 * - Errors as fetch throws them: a TypeError `fetch failed` with the dispatcher's error as
 *   its `cause` (so a refused connection classifies as not sent and is retried elsewhere),
 *   or the signal's reason when the signal aborted the attempt.
 * - HEAD, 204, 205 and 304 answers have a null body; a `content-encoding` the server chose
 *   anyway (gzip, deflate, br) is decoded, as fetch decodes it.
 */
export interface TransportRequest {
  /** `http://host:port` of the instance. */
  readonly origin: string;
  /** Path and query, as sent. */
  readonly path: string;
  /** Upper case. */
  readonly method: string;
  /** A WHATWG Headers, or a plain object with lower-case names. Not mutated. */
  readonly headers: Headers | Record<string, string | string[]>;
  readonly body?: BodyInit | null | undefined;
  /** Aborts the attempt: before the answer's headers, and while its body is read. */
  readonly signal?: AbortSignal | undefined;
  /**
   * The executor's abort of a timed attempt, in place of `signal`: hooked (its `onAbort`)
   * rather than listened to, so no AbortSignal is made for it.
   */
  readonly abort?: AttemptAbort | undefined;
  /** A second signal that aborts the body after the attempt's own signal let go (the caller's). */
  readonly bodySignal?: AbortSignal | undefined;
  /** Send on a new connection (the attempt goes again after a stale one: AttemptRecord.freshConnection). */
  readonly fresh?: boolean | undefined;
}

/** Sends one attempt; resolves with the answer as fetch would (unfollowed redirects included). */
export type Transport = (request: TransportRequest) => Promise<Response>;

/** Statuses whose answer never has a body (fetch's null body statuses, less 101). */
const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([204, 205, 304]);
/** Bytes held for a body nobody reads yet before the socket is paused (fetch holds about as much). */
const PAUSE_AT_BYTES = 64 * 1024;

const decoder = new TextDecoder();

type BodyInit = NonNullable<RequestInit['body']>;
// Node's stream.isDisturbed (since 16.8) reads a web stream's disturbed flag; not in the types.
const isDisturbed = (stream as unknown as { isDisturbed(s: unknown): boolean }).isDisturbed;
/**
 * The global Response, typed so that a subclass may replace its getters and methods (the
 * types declare them as properties). At run time it is Response itself.
 */
const ResponseBase = Response as unknown as new (body: null, init: ResponseInit) => { get status(): number; readonly statusText: string };

type RequestBody = string | Uint8Array | AsyncIterable<Uint8Array> | null;

function unusable(): TypeError {
  return new TypeError('Body is unusable: Body has already been read');
}

/**
 * The chunks of one response body as they arrive, and who reads them: nobody yet, a
 * collector (`arrayBuffer()` and kin), or a ReadableStream made on demand.
 */
class BodySource {
  chunks: Uint8Array[] = [];
  size = 0;
  done = false;
  error: unknown;
  /** Resumes a paused socket (undici's `resume` from onHeaders). */
  resume: (() => void) | undefined;
  paused = false;
  /** Aborts the request (undici's `abort` from onConnect). */
  abort: ((reason?: unknown) => void) | undefined;
  controller: ReadableByteStreamController | undefined;
  collector: { resolve: (chunks: Uint8Array[]) => void; reject: (e: unknown) => void } | undefined;
  /** Told once the body ended or failed: lets go of the abort listeners. */
  settle: { unlisten(): void } | undefined;
  /** Told once the body ended, failed or was given up (DispatchedResponse.whenBodyDone). */
  onDone: (() => void) | undefined;
  /** Told whether the body arrived whole or broke (the breakers' verdict on the answer); not when the app gave it up. */
  verdict: BodyVerdict | undefined;

  /** A chunk from the dispatcher; false pauses the socket. */
  push(chunk: Uint8Array): boolean {
    const c = this.controller;
    if (c !== undefined) {
      // A byte stream takes ownership of the chunk's buffer (the dispatcher's is shared),
      // and refuses an empty one. Nothing enqueued, nothing to pause for: the stream's
      // pending read would never pull again.
      if (chunk.byteLength === 0) return true;
      c.enqueue(new Uint8Array(chunk));
      this.paused = (c.desiredSize ?? 1) <= 0;
      return !this.paused;
    }
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
    this.paused = this.collector === undefined && this.size >= PAUSE_AT_BYTES;
    return !this.paused;
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    this.settle?.unlisten();
    this.verdict?.whole();
    this.#told();
    const c = this.controller;
    if (c !== undefined) {
      c.close();
      // A pending BYOB read must be answered after close.
      c.byobRequest?.respond(0);
      return;
    }
    const k = this.collector;
    if (k !== undefined) {
      this.collector = undefined;
      k.resolve(this.chunks);
    }
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    this.settle?.unlisten();
    this.verdict?.broken(error);
    this.#told();
    this.chunks = [];
    const c = this.controller;
    if (c !== undefined) {
      c.error(error);
      return;
    }
    const k = this.collector;
    if (k !== undefined) {
      this.collector = undefined;
      k.reject(error);
    }
  }

  #told(): void {
    const done = this.onDone;
    this.onDone = undefined;
    done?.();
  }

  #wake(): void {
    if (this.paused) {
      this.paused = false;
      this.resume?.();
    }
  }

  /** Every chunk, once the body has ended. */
  collect(): Promise<Uint8Array[]> {
    if (this.done) return this.error === undefined ? Promise.resolve(this.chunks) : Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.collector = { resolve, reject };
      this.#wake();
    });
  }

  /** The body as a byte stream, fed from now on with backpressure. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream(
      {
        type: 'bytes',
        start: (controller) => {
          for (const chunk of this.chunks) if (chunk.byteLength > 0) controller.enqueue(new Uint8Array(chunk));
          this.chunks = [];
          if (this.done) {
            if (this.error !== undefined) controller.error(this.error);
            else controller.close();
            return;
          }
          this.controller = controller;
        },
        pull: () => this.#wake(),
        cancel: (reason) => {
          if (this.done) return;
          // Given up by the app: no verdict on the instance; the body's watchers are told it is over.
          this.done = true;
          this.settle?.unlisten();
          this.abort?.(reason ?? new DOMException('The body was cancelled', 'AbortError'));
          this.#told();
          this.#wake();
        },
      },
      // Some bytes buffered ahead of the reader, so the socket is not paused at every chunk.
      { highWaterMark: PAUSE_AT_BYTES },
    );
  }
}

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (chunks.length === 0) return new Uint8Array(0);
  let size = 0;
  for (const c of chunks) size += c.byteLength;
  // Always a copy, in an ArrayBuffer of its own: the dispatcher's chunks share theirs.
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const BOM0 = 0xef;

function utf8(bytes: Uint8Array): string {
  // As fetch's text(): UTF-8, a leading BOM dropped, bad sequences as U+FFFD.
  if (bytes.byteLength >= 3 && bytes[0] === BOM0 && bytes[1] === 0xbb && bytes[2] === 0xbf) return decoder.decode(bytes.subarray(3));
  if (bytes instanceof Buffer) return bytes.toString('utf8');
  return decoder.decode(bytes);
}

function onlyChunk(chunks: Uint8Array[]): Uint8Array {
  return chunks.length === 1 ? (chunks[0] as Uint8Array) : concat(chunks);
}

/**
 * A Response answered by the dispatcher. Its status is the Response's own; its headers
 * are made into a Headers when first read; its body is read straight from the chunks
 * (see BodySource) unless `body` is asked for, which makes the stream.
 */
export class DispatchedResponse extends ResponseBase {
  readonly #origin: string;
  readonly #path: string;
  /** undici's raw header list: name, value, name, value… */
  readonly #raw: Buffer[] | string[];
  #headers: Headers | undefined;
  #source: BodySource | undefined;
  /** The body's source, kept for whenBodyDone once a stream or a read took it. */
  readonly #whole: BodySource | undefined;
  #stream: ReadableStream<Uint8Array> | null | undefined;
  #used = false;

  /** A status past 599 (undici reads 100-999, as fetch returns them), which Response's constructor refuses. */
  readonly #oddStatus: number | undefined;

  constructor(status: number, statusText: string, raw: Buffer[] | string[], origin: string, path: string, source: BodySource | undefined) {
    super(null, { status: status > 599 ? 599 : status, statusText });
    if (status > 599) this.#oddStatus = status;
    this.#raw = raw;
    this.#origin = origin;
    this.#path = path;
    this.#source = source;
    this.#whole = source;
    if (source === undefined) this.#stream = null;
  }

  /**
   * Tells `verdict` whether the body arrives whole or breaks (at once when it is over
   * already); false when there is no body to watch.
   */
  watchBody(verdict: BodyVerdict): boolean {
    const source = this.#whole;
    if (source === undefined) return false;
    if (!source.done) source.verdict = verdict;
    else if (source.error !== undefined) verdict.broken(source.error);
    else return false; // over already: whole, or given up (nothing to tell the breakers)
    return true;
  }

  /** Calls `done` once the body ended, failed or was given up (at once when there is none, or it is over). */
  whenBodyDone(done: () => void): void {
    const source = this.#whole;
    if (source === undefined || source.done) {
      done();
      return;
    }
    const before = source.onDone;
    source.onDone =
      before === undefined
        ? done
        : () => {
            before();
            done();
          };
  }

  override get status(): number {
    return this.#oddStatus ?? super.status;
  }

  get url(): string {
    return `${this.#origin}${this.#path}`;
  }

  get type(): Response['type'] {
    return 'basic';
  }

  get redirected(): boolean {
    return false;
  }

  get headers(): Headers {
    let h = this.#headers;
    if (h === undefined) {
      h = new Headers();
      const raw = this.#raw;
      for (let i = 0; i + 1 < raw.length; i += 2) h.append(String(raw[i]), latin1(raw[i + 1]));
      this.#headers = h;
    }
    return h;
  }

  get body(): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    if (this.#stream === undefined) {
      const source = this.#source as BodySource;
      this.#source = undefined;
      this.#stream = this.#used ? usedStream() : source.stream();
    }
    return this.#stream as ReadableStream<Uint8Array<ArrayBuffer>> | null;
  }

  get bodyUsed(): boolean {
    if (this.#used) return true;
    const s = this.#stream;
    return s != null && isDisturbed(s);
  }

  /** The body's bytes, each chunk as it came (not copied). */
  #chunks(): Promise<Uint8Array[]> {
    if (this.bodyUsed) return Promise.reject(unusable());
    const s = this.#stream;
    if (s === null) {
      this.#used = true;
      return Promise.resolve([]);
    }
    if (s !== undefined) {
      if (s.locked) return Promise.reject(new TypeError('Body is unusable: the body stream is locked'));
      return readAll(s);
    }
    this.#used = true;
    const source = this.#source as BodySource;
    return source.collect();
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return this.#chunks().then((c) => concat(c).buffer);
  }

  bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return this.#chunks().then(concat);
  }

  text(): Promise<string> {
    return this.#chunks().then((c) => utf8(onlyChunk(c)));
  }

  json(): Promise<unknown> {
    return this.#chunks().then((c) => JSON.parse(utf8(onlyChunk(c))));
  }

  blob(): Promise<Blob> {
    return this.#chunks().then((c) => new Blob(c as Uint8Array<ArrayBuffer>[], { type: this.headers.get('content-type') ?? '' }));
  }

  formData(): Promise<FormData> {
    // Rare: parsed by a plain Response over the same bytes and headers.
    return this.#chunks().then((c) => new Response(concat(c), { headers: this.headers }).formData());
  }

  clone(): DispatchedResponse {
    if (this.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.');
    const copy = new DispatchedResponse(this.status, this.statusText, this.#raw, this.#origin, this.#path, undefined);
    const body = this.body;
    if (body !== null) {
      const [mine, theirs] = body.tee();
      this.#stream = mine;
      copy.#stream = theirs;
    }
    return copy;
  }
}

function latin1(v: Buffer | string | undefined): string {
  // As fetch reads header values: bytes as Latin-1 (isomorphic decode).
  return typeof v === 'string' ? v : v === undefined ? '' : v.toString('latin1');
}

function usedStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.close();
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

/** What undici's dispatch takes as a body, and the content type fetch would add for it. */
/** An async iterable (a Node Readable, a generator): a body that can be read once, sent as it comes. */
export const isAsyncIterable = (body: unknown): body is AsyncIterable<Uint8Array> =>
  typeof body === 'object' && body !== null && typeof (body as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function';

async function requestBody(body: BodyInit | null | undefined): Promise<[RequestBody, string | undefined]> {
  if (body === null || body === undefined) return [null, undefined];
  if (typeof body === 'string') return [body, 'text/plain;charset=UTF-8'];
  if (body instanceof Uint8Array) return [body, undefined];
  if (body instanceof ArrayBuffer) return [new Uint8Array(body), undefined];
  if (ArrayBuffer.isView(body)) return [new Uint8Array(body.buffer, body.byteOffset, body.byteLength), undefined];
  if (body instanceof URLSearchParams) return [body.toString(), 'application/x-www-form-urlencoded;charset=UTF-8'];
  if (body instanceof ReadableStream) return [body as ReadableStream<Uint8Array>, undefined];
  // An async iterable (a Node Readable, a generator), as fetch takes it with duplex 'half': undici sends it as it comes.
  if (isAsyncIterable(body)) return [body, undefined];
  // Blob, FormData, anything else fetch accepts: let a Request encode it (the multipart
  // boundary, a Blob's type), then send its bytes.
  const encoded = new Request('http://body.invalid/', { method: 'POST', body });
  return [new Uint8Array(await encoded.arrayBuffer()), encoded.headers.get('content-type') ?? undefined];
}

/** The attempt's headers as undici's flat list, plus a content type fetch would have set. */
function headerList(headers: Headers | Record<string, string | string[]>, contentType: string | undefined): string[] {
  const out: string[] = [];
  let hasType = false;
  if (headers instanceof Headers) {
    for (const [k, v] of headers) {
      if (k === 'content-type') hasType = true;
      out.push(k, v);
    }
  } else {
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      if (k === 'content-type') hasType = true;
      if (typeof v === 'string') out.push(k, v);
      else for (const x of v) out.push(k, x);
    }
  }
  if (contentType !== undefined && !hasType) out.push('content-type', contentType);
  return out;
}

/** The stream that decodes a content coding fetch decodes, or undefined to leave the bytes as they are. */
function decoderFor(coding: string | undefined): Transform | undefined {
  if (coding === undefined) return undefined;
  const c = coding.trim().toLowerCase();
  // Fetch decodes a single coding; a list (rare) is handed on as it came.
  if (c === 'gzip' || c === 'x-gzip') return createGunzip();
  if (c === 'deflate') return createInflate();
  if (c === 'br') return createBrotliDecompress();
  return undefined;
}

/**
 * The handler of one dispatched attempt, in undici's handler interface (onConnect,
 * onHeaders, onData, onComplete, onError): one object per attempt, no adapter.
 */
class AttemptHandler implements Dispatcher.DispatchHandler {
  readonly #req: TransportRequest;
  readonly #resolve: (r: Response) => void;
  readonly #reject: (e: unknown) => void;
  #source: BodySource | undefined;
  #abort: ((reason?: unknown) => void) | undefined;
  #responded = false;
  #listening = false;
  /** The body after a content decoder, when the server encoded it. */
  #decoder: Transform | undefined;

  constructor(req: TransportRequest, resolve: (r: Response) => void, reject: (e: unknown) => void) {
    this.#req = req;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** The reason of an abort that came before undici handed over its `abort` (onConnect). */
  #abortedEarly: unknown;

  /** A signal aborted (the handler is its own listener: no closure per attempt). */
  handleEvent(event: Event): void {
    this.abortAttempt((event.target as AbortSignal).reason);
  }

  /** The attempt was aborted: by a signal, or by the executor (its AttemptAbort's hook). */
  abortAttempt(reason: unknown): void {
    if (this.#abort !== undefined) this.#abort(reason);
    else {
      this.#abortedEarly = reason ?? new DOMException('This operation was aborted', 'AbortError');
      this.#fail(reason);
    }
  }

  listen(): void {
    const { signal, bodySignal, abort } = this.#req;
    abort?.onAbort(this);
    signal?.addEventListener('abort', this);
    if (bodySignal !== undefined && bodySignal !== signal) bodySignal.addEventListener('abort', this);
    this.#listening = true;
  }

  /** Lets go of the abort listeners (the answer had no body, or its body ended or failed). */
  unlisten(): void {
    if (!this.#listening) return;
    this.#listening = false;
    const { signal, bodySignal, abort } = this.#req;
    abort?.onAbort(undefined);
    signal?.removeEventListener('abort', this);
    bodySignal?.removeEventListener('abort', this);
  }

  onConnect(abort: (reason?: Error) => void): void {
    // Aborted while queued or connecting: the request is not sent at all.
    if (this.#abortedEarly !== undefined) {
      abort(this.#abortedEarly as Error);
      return;
    }
    this.#abort = abort as (reason?: unknown) => void;
  }

  onHeaders(statusCode: number, raw: Buffer[] | string[] | null, resume: () => void, statusText?: string): boolean {
    const req = this.#req;
    if (statusCode < 200) return true; // 1xx (103 Early Hints): fetch ignores them too
    const rawHeaders = raw ?? [];
    let source: BodySource | undefined;
    if (req.method !== 'HEAD' && !NULL_BODY_STATUSES.has(statusCode)) {
      source = new BodySource();
      source.resume = resume;
      source.abort = this.#abort;
      source.settle = this;
      this.#source = source;
    }
    let response: DispatchedResponse;
    try {
      response = new DispatchedResponse(statusCode, statusText ?? '', rawHeaders, req.origin, req.path, source);
    } catch {
      // A reason phrase the Response constructor refuses: fetch would not show it either.
      response = new DispatchedResponse(statusCode, '', rawHeaders, req.origin, req.path, source);
    }
    if (source !== undefined) {
      const dec = decoderFor(codingOf(rawHeaders));
      if (dec !== undefined) this.#decode(dec, source);
    } else this.unlisten();
    this.#responded = true;
    this.#resolve(response as unknown as Response);
    return true;
  }

  #decode(dec: Transform, source: BodySource): void {
    this.#decoder = dec;
    dec.on('data', (chunk: Buffer) => {
      if (!source.push(chunk)) dec.pause();
    });
    const resume = source.resume;
    source.resume = () => {
      dec.resume();
      resume?.();
    };
    // The decoder took all it can hold and undici paused the socket: go on once it drained.
    dec.on('drain', () => resume?.());
    dec.on('end', () => source.end());
    dec.on('error', (e: Error) => source.fail(new TypeError('terminated', { cause: e })));
  }

  onData(chunk: Buffer): boolean {
    const dec = this.#decoder;
    if (dec !== undefined) return dec.write(chunk);
    return this.#source?.push(chunk) ?? true;
  }

  onComplete(): void {
    const dec = this.#decoder;
    if (dec !== undefined) dec.end();
    else this.#source?.end();
    if (this.#source === undefined) this.unlisten();
  }

  onError(err: Error): void {
    this.#fail(err);
  }

  #fail(err: unknown): void {
    const req = this.#req;
    // An aborted signal fails the attempt (and the body) with its reason, as fetch does.
    const aborted = abortedOf(req);
    if (!this.#responded) {
      this.#responded = true;
      this.unlisten();
      this.#reject(aborted ? aborted.reason : err instanceof TypeError ? err : new TypeError('fetch failed', { cause: err }));
      return;
    }
    this.#decoder?.destroy();
    this.#source?.fail(aborted ? aborted.reason : new TypeError('terminated', { cause: err }));
    this.unlisten();
  }
}

/** What aborted the attempt, if anything did: its abort, its signal, then the body's signal. */
function abortedOf(req: TransportRequest): { readonly reason: unknown } | undefined {
  if (req.abort?.aborted) return req.abort;
  if (req.signal?.aborted) return req.signal;
  return req.bodySignal?.aborted ? req.bodySignal : undefined;
}

function codingOf(raw: Buffer[] | string[]): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as Buffer | string;
    // Cheap first: only a name of the right length is compared.
    if (name.length === 16 && String(name).toLowerCase() === 'content-encoding') return latin1(raw[i + 1]);
  }
  return undefined;
}

/**
 * A Transport over `dispatcher` (the mesh's shared Agent): one `dispatch` per attempt,
 * no WHATWG Request, the answer a DispatchedResponse. An attempt to send on a new
 * connection goes to `fresh` (MeshAgents.fresh), with `reset: true`.
 */
export function dispatcherTransport(dispatcher: Dispatcher, fresh: Dispatcher = dispatcher): Transport {
  return function send(req: TransportRequest): Promise<Response> {
    const { signal, bodySignal, abort } = req;
    if (abort?.aborted) return Promise.reject(abort.reason);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (bodySignal?.aborted) return Promise.reject(bodySignal.reason);
    const body = req.body;
    if (body !== null && body !== undefined && (req.method === 'GET' || req.method === 'HEAD'))
      return Promise.reject(new TypeError('Request with GET/HEAD method cannot have body.'));
    const via = req.fresh === true ? fresh : dispatcher;
    // Most bodies need no await: a string, bytes or nothing.
    if (body === null || body === undefined) return dispatchOnce(via, req, null, undefined);
    if (typeof body === 'string') return dispatchOnce(via, req, body, 'text/plain;charset=UTF-8');
    return requestBody(body).then(([b, type]) => dispatchOnce(via, req, b, type));
  };
}

function dispatchOnce(
  dispatcher: Dispatcher,
  req: TransportRequest,
  body: RequestBody,
  contentType: string | undefined,
): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    // Aborted while a Blob or form body was being encoded: the abort event has passed.
    const aborted = abortedOf(req);
    if (aborted !== undefined) {
      reject(aborted.reason);
      return;
    }
    const handler = new AttemptHandler(req, resolve, reject);
    if (req.signal !== undefined || req.bodySignal !== undefined || req.abort !== undefined) handler.listen();
    try {
      dispatcher.dispatch(
        {
          origin: req.origin,
          path: req.path,
          method: req.method as Dispatcher.HttpMethod,
          headers: headerList(req.headers, contentType),
          body: body as NonNullable<Dispatcher.DispatchOptions['body']>,
          // The socket takes no other request and closes after the answer: a new connection for each.
          ...(req.fresh === true ? { reset: true } : {}),
        },
        handler,
      );
    } catch (err) {
      handler.onError(err as Error);
    }
  });
}
