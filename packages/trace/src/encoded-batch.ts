import type { ReadableSpan } from '@opentelemetry/sdk-trace';

/** Buffer's own string writers (no encoding switch, no argument checks): on every Buffer, untyped. */
export interface RawWrites {
  utf8Write(s: string, at: number): number;
  latin1Write(s: string, at: number): number;
  hexWrite(s: string, at: number, length: number): number;
}

/**
 * A buffer appended to, growing as needed: what the trace log's two encoders write into
 * (OTLP/JSON's ByteWriter, OTLP protobuf's ProtoWriter), each adding its own writes.
 */
export class GrowingBuffer {
  buf: Buffer;
  at = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  /** A buffer of `size` bytes to grow into (a subclass may take it from elsewhere). */
  protected allocate(size: number): Buffer {
    return Buffer.allocUnsafe(size);
  }

  /** Room for `n` more bytes. */
  room(n: number): void {
    const need = this.at + n;
    if (need > this.buf.length) {
      const bigger = this.allocate(Math.max(need, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.at);
      this.buf = bigger;
    }
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.at++] = c;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.put(b);
  }

  /** `b`, room already made: short pieces by a loop (a native copy costs more than it saves for them). */
  put(b: Uint8Array): void {
    const n = b.length;
    const at = this.at;
    if (n > 16) this.buf.set(b, at);
    else {
      const buf = this.buf;
      for (let i = 0; i < n; i++) buf[at + i] = b[i] as number;
    }
    this.at = at + n;
  }
}

/** A batch's group of spans: one resource and instrumentation scope, its spans encoded into `out`. */
export interface SpanGroup {
  readonly scope: ReadableSpan['instrumentationScope'];
  readonly out: GrowingBuffer;
}

/**
 * A batch of spans encoded as they are added, grouped by resource then scope in the order
 * first seen (what both trace-log formats write); runs of spans from one tracer share
 * the resource and scope objects, so they find their group without a lookup. A subclass
 * makes a group's buffer (`makeGroup`) and encodes a span into it (`write`); a span that
 * cannot be encoded leaves the batch as it was.
 */
export abstract class SpanBatch<G extends SpanGroup> {
  protected readonly byResource = new Map<ReadableSpan['resource'], Map<string, G>>();
  /** Groups made so far. */
  protected groups = 0;
  #count = 0;
  #lastResource: ReadableSpan['resource'] | undefined;
  #lastScope: ReadableSpan['instrumentationScope'] | undefined;
  /** The group the last span went to. */
  protected last: G | undefined;

  /** Spans added. */
  get count(): number {
    return this.#count;
  }

  /** A new group for `span`'s resource and scope; `first`: the batch's first group. */
  protected abstract makeGroup(span: ReadableSpan, first: boolean): G;

  /** Encodes `span` into `group` (on a throw, the caller puts the buffer back as it was). */
  protected abstract write(group: G, span: ReadableSpan): void;

  #group(span: ReadableSpan): G {
    const scope = span.instrumentationScope;
    let scopes = this.byResource.get(span.resource);
    if (scopes === undefined) {
      scopes = new Map();
      this.byResource.set(span.resource, scopes);
    }
    const key = `${scope.name}@${scope.version ?? ''}`;
    let group = scopes.get(key);
    if (group === undefined) {
      group = this.makeGroup(span, this.groups === 0);
      scopes.set(key, group);
      this.groups++;
    }
    this.#lastResource = span.resource;
    this.#lastScope = scope;
    this.last = group;
    return group;
  }

  /** Encodes `span` into the batch (an encoding error leaves the batch as it was). */
  add(span: ReadableSpan): void {
    const group =
      span.resource === this.#lastResource && span.instrumentationScope === this.#lastScope && this.last !== undefined
        ? this.last
        : this.#group(span);
    const out = group.out;
    const at = out.at;
    try {
      this.write(group, span);
    } catch (error) {
      out.at = at;
      throw error;
    }
    this.#count++;
  }
}
