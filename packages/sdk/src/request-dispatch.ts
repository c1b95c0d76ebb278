import type { AttemptAbort, BodyVerdict } from '@meshlet/breaker';
import { type Dispatcher, util as undiciUtil } from 'undici';
import { joined, MixinBody } from './request-body.js';

/**
 * One attempt of `mesh.request`, dispatched straight to undici's dispatcher with a handler
 * (as `dispatcherTransport` does for fetch) rather than through `dispatcher.request`, which
 * makes a request handler, an abort-signal listener and a Readable wrapper per request.
 * The answer has undici's ResponseData shape, its body a Readable with the body mixin.
 *
 * The attempt is cancelled through the executor's AttemptAbort hook (undici's `abort`
 * callback), so no AbortSignal is made for a timed attempt; a caller's AbortSignal (a call
 * without a timeout) is listened to directly.
 */

/**
 * One answered attempt of `mesh.request`: undici's ResponseData itself (its own fields, as
 * `undici.request` gives them), with the `status` the executor classifies by as a getter
 * on the prototype (not an own field: not in `Object.keys`, a spread or JSON). The pipeline
 * resolves with it and `mesh.request` returns it as it is: no wrapper, no step to unwrap.
 */
export class RequestData implements Dispatcher.ResponseData {
  readonly statusCode: number;
  readonly statusText: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Dispatcher.ResponseData['body'];
  readonly trailers: Record<string, string>;
  readonly opaque: null;
  readonly context: object;

  constructor(
    statusCode: number,
    statusText: string,
    headers: Record<string, string | string[]>,
    body: Dispatcher.ResponseData['body'],
    trailers: Record<string, string>,
    opaque: null,
    context: object,
  ) {
    this.statusCode = statusCode;
    this.statusText = statusText;
    this.headers = headers;
    this.body = body;
    this.trailers = trailers;
    this.opaque = opaque;
    this.context = context;
  }

  /** The status, for the executor's classifier. */
  get status(): number {
    return this.statusCode;
  }

  /** undici's own ResponseData (another option, another dispatcher) with the status getter. */
  static of(data: Dispatcher.ResponseData): RequestData {
    return new RequestData(
      data.statusCode,
      data.statusText,
      data.headers as Record<string, string | string[]>,
      data.body,
      data.trailers,
      data.opaque as null,
      data.context,
    );
  }
}

/**
 * Tells `verdict` whether a mesh.request answer's body (the mesh's own dispatch) arrives
 * whole or breaks; false for another body (undici's own request), or one already over.
 */
export function watchRequestBody(body: unknown, verdict: BodyVerdict): boolean {
  return body instanceof DispatchedBody && body.watch(verdict);
}

/** What cancels an attempt: the executor's abort, a signal, or nothing. */
export type AttemptCancel = AttemptAbort | AbortSignal | undefined;

type RawHeaders = Buffer[] | string[] | null;

/**
 * undici's raw header list as `undici.request` gives it: lower-case names, values as
 * Latin-1, a repeated name's values in an array in order (set-cookie too). undici's own
 * parser, from its public `util`, so the shape is the same by construction.
 */
export function headerObject(raw: RawHeaders): Record<string, string | string[]> {
  return raw === null ? {} : (undiciUtil.parseHeaders(raw as Buffer[]) as Record<string, string | string[]>);
}

function contentTypeOf(headers: Record<string, string | string[]>): string | undefined {
  const t = headers['content-type'];
  return typeof t === 'string' ? t : t?.[0];
}

/** Bytes held for a body nobody reads yet before the socket is paused (as undici's highWaterMark). */
const HOLD_BYTES = 64 * 1024;

/**
 * A dispatched response body. Until someone reads it as a stream (`_read`), its chunks are
 * held here rather than pushed through the Readable, so `text()`, `json()`,
 * `arrayBuffer()`… take them without the stream's events; the first stream read pushes
 * what is held and the rest flows through the Readable. A full hold pauses the socket.
 * A body read whole by the mixin is then ended as a stream, as undici's is: 'end' before
 * the read resolves, then 'close' (so `stream.finished` and listeners for either return).
 */
class DispatchedBody extends MixinBody {
  resumeSocket: (() => void) | undefined;
  /** Told whether the body arrives whole or breaks (the breakers' verdict); not when the app destroys it. */
  verdict: BodyVerdict | undefined;
  /** undici's abort of the request: a body destroyed before its end gives the request up. */
  abortRequest: ((reason?: Error) => void) | undefined;
  paused = false;
  /** Chunks held while nobody streams the body; undefined once it is streamed. */
  #held: Buffer[] | undefined = [];
  #size = 0;
  #ended = false;
  #error: Error | undefined;
  #collector: { resolve: (b: Buffer) => void; reject: (e: unknown) => void } | undefined;

  /** A chunk from the dispatcher; false pauses the socket. */
  holdChunk(chunk: Buffer): boolean {
    const held = this.#held;
    if (held === undefined) {
      if (this.push(chunk)) return true;
      this.paused = true;
      return false;
    }
    held.push(chunk);
    this.#size += chunk.length;
    if (this.#collector === undefined && this.#size >= HOLD_BYTES) {
      this.paused = true;
      return false;
    }
    return true;
  }

  /** Tells `verdict` how the body ends (at once if it broke already); false when it is over (whole, or destroyed by the app). */
  watch(verdict: BodyVerdict): boolean {
    if (this.#error !== undefined) {
      verdict.broken(this.#error);
      return true;
    }
    if (this.#ended || this.destroyed) return false;
    this.verdict = verdict;
    return true;
  }

  /** The dispatcher's end of the body. */
  endBody(): void {
    this.abortRequest = undefined;
    this.#ended = true;
    const verdict = this.verdict;
    this.verdict = undefined;
    verdict?.whole();
    const held = this.#held;
    if (held === undefined) {
      this.push(null);
      return;
    }
    const k = this.#collector;
    if (k !== undefined) {
      this.#collector = undefined;
      this.#handOver(k.resolve);
    }
  }

  /**
   * The whole body to the mixin's read, and the stream ended as undici's is: 'end' (on
   * the next tick, then 'close'), and the read resolved after 'end', not before it.
   */
  #handOver(resolve: (b: Buffer) => void): void {
    const bytes = joined(this.#held ?? [], this.#size);
    this.#held = undefined;
    this.push(null);
    this.read();
    process.nextTick(resolve, bytes);
  }

  /** The request failed after its headers. */
  failBody(err: Error): void {
    const verdict = this.verdict;
    this.verdict = undefined;
    verdict?.broken(err);
    if (this.#held === undefined) {
      if (!this.destroyed && !this.readableEnded) this.destroy(err);
      return;
    }
    this.#error = err;
    this.#held = [];
    const k = this.#collector;
    if (k !== undefined) {
      // The read fails with the error; the stream closes (without an 'error' event nobody
      // may be listening for: the read's rejection is the error's one report).
      this.#collector = undefined;
      this.abortRequest = undefined;
      k.reject(err);
      this.destroy();
    }
  }

  protected override collectBytes(): Promise<Buffer> {
    const held = this.#held;
    if (held === undefined) return super.collectBytes();
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return new Promise<Buffer>((resolve, reject) => {
      if (this.#ended) this.#handOver(resolve);
      else {
        this.#collector = { resolve, reject };
        this.#wake();
      }
    });
  }

  #wake(): void {
    if (this.paused) {
      this.paused = false;
      this.resumeSocket?.();
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Given up by the app before its end: nothing to tell the breakers.
    this.verdict = undefined;
    if (!this.readableEnded) this.abortRequest?.(err ?? (new DOMException('The body was destroyed', 'AbortError') as unknown as Error));
    cb(err);
  }

  override _read(): void {
    const held = this.#held;
    if (held !== undefined) {
      // The first stream read: what was held goes through the Readable, then everything.
      this.#held = undefined;
      for (const c of held) this.push(c);
      if (this.#error !== undefined) {
        this.destroy(this.#error);
        return;
      }
      if (this.#ended) {
        this.push(null);
        return;
      }
    }
    this.#wake();
  }
}

class RequestAttemptHandler implements Dispatcher.DispatchHandler {
  readonly #resolve: (r: RequestData) => void;
  readonly #reject: (e: unknown) => void;
  readonly #signal: AbortSignal | undefined;
  /** The caller's signal, listened to until the body ends when the attempt's own is not it (a timed attempt's). */
  readonly #bodySignal: AbortSignal | undefined;
  #abort: ((reason?: Error) => void) | undefined;
  /** The reason of an abort that came before undici handed over its `abort`. */
  #early: unknown;
  #aborted = false;
  #responded = false;
  #body: DispatchedBody | undefined;
  #trailers: Record<string, string | string[]> | undefined;
  #context: object = {};

  constructor(resolve: (r: RequestData) => void, reject: (e: unknown) => void, cancel: AttemptCancel, bodySignal: AbortSignal | undefined) {
    this.#resolve = resolve;
    this.#reject = reject;
    if (cancel instanceof AbortSignal) {
      this.#signal = cancel;
      cancel.addEventListener('abort', this);
    } else if (cancel !== undefined) cancel.onAbort(this);
    // A timed attempt's abort lets go once the answer's headers are in: the caller's signal
    // still ends the body while it is read, as undici's `request` signal does.
    if (bodySignal !== undefined && bodySignal !== cancel) {
      this.#bodySignal = bodySignal;
      bodySignal.addEventListener('abort', this);
    }
  }

  /** The executor aborted the attempt (its AttemptAbort's hook). */
  abortAttempt(reason: unknown): void {
    this.cancel(reason);
  }

  /** The caller's signal (or the attempt's) aborted. */
  handleEvent(event: Event): void {
    this.cancel((event.target as AbortSignal).reason);
  }

  /** Aborts the request: before the answer, it rejects; after, the body fails. */
  cancel(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const err = reason ?? new DOMException('This operation was aborted', 'AbortError');
    if (this.#abort !== undefined) this.#abort(err as Error);
    else this.#early = err;
    this.#fail(err);
  }

  #unlisten(): void {
    this.#signal?.removeEventListener('abort', this);
    this.#bodySignal?.removeEventListener('abort', this);
  }

  onConnect(abort: (reason?: Error) => void, context?: object): void {
    // Aborted while queued or connecting: not sent at all.
    if (this.#early !== undefined) {
      abort(this.#early as Error);
      return;
    }
    this.#abort = abort;
    if (context !== undefined) this.#context = context;
  }

  onHeaders(statusCode: number, raw: RawHeaders, resume: () => void, statusText?: string): boolean {
    if (statusCode < 200) return true; // 1xx: undici's request hands them to onInfo, if given; none is here
    if (this.#responded) return true;
    const headers = headerObject(raw);
    const body = new DispatchedBody(contentTypeOf(headers));
    body.resumeSocket = resume;
    body.abortRequest = this.#abort;
    this.#body = body;
    this.#trailers = {};
    this.#responded = true;
    this.#resolve(
      new RequestData(
        statusCode,
        statusText ?? '',
        headers,
        body as unknown as Dispatcher.ResponseData['body'],
        this.#trailers as Record<string, string>,
        null,
        this.#context,
      ),
    );
    return true;
  }

  onData(chunk: Buffer): boolean {
    const body = this.#body;
    if (body === undefined || body.destroyed) return true;
    return body.holdChunk(chunk);
  }

  onComplete(trailers: RawHeaders): void {
    this.#unlisten();
    if (trailers !== null && this.#trailers !== undefined) Object.assign(this.#trailers, headerObject(trailers));
    this.#body?.endBody();
  }

  onError(err: Error): void {
    this.#fail(err);
  }

  #fail(err: unknown): void {
    this.#unlisten();
    if (!this.#responded) {
      this.#responded = true;
      this.#reject(err);
      return;
    }
    this.#body?.failBody(err as Error);
  }
}

/**
 * Sends one attempt of `mesh.request` on `dispatcher`; resolves at the answer's headers.
 * `bodySignal` (the caller's, with the inbound deadline's when there is one) also ends the
 * body while it is read.
 */
export function dispatchRequest(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  cancel: AttemptCancel,
  bodySignal?: AbortSignal,
): Promise<RequestData> {
  if (cancel?.aborted) return Promise.reject(cancel.reason);
  if (bodySignal?.aborted) return Promise.reject(bodySignal.reason);
  return new Promise<RequestData>((resolve, reject) => {
    const handler = new RequestAttemptHandler(resolve, reject, cancel, bodySignal);
    try {
      dispatcher.dispatch(options, handler);
    } catch (err) {
      handler.onError(err as Error);
    }
  });
}
