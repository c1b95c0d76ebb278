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
