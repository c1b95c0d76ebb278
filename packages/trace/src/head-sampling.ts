import { randomFillSync } from 'node:crypto';
import { type Context, isSpanContextValid, ROOT_CONTEXT, type SpanContext, SpanKind, TraceFlags, trace } from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';
import { type IdGenerator, type Sampler, SamplingDecision } from '@opentelemetry/sdk-trace';

// Random bytes drawn from the OS in blocks, hex-encoded a window at a time, and handed out
// as slices of that string: per id only a substring (V8 shares the window's characters)
// instead of an encoding. A draw's cost is mostly fixed (about 5 µs for 4 KiB or 16 KiB
// here): 16 KiB a block. 4 KiB of bytes (8,192 characters) a window. In a busy process a
// window's encoding takes 56 µs (1.2 µs alone): the scavenges its allocation sets off, which
// the profile puts on `hexSlice`. Windows of 256 bytes took a tenth of that there, but the
// governed client's CPU a request did not fall: five pairs of processes at c=50 (unsampled)
// gave 26.7–28.3 µs against 25.4–26.7, and four pairs measured by the main thread alone gave
// the same either way (the collection only moved). So 4 KiB stays.
const POOL_BYTES = 16 * 1024;
const WINDOW_BYTES = 4 * 1024;

/** Trace and span ids from a pooled block of cryptographic random bytes; never all zero. */
export class PooledIdGenerator implements IdGenerator {
  readonly #bytes = Buffer.allocUnsafe(POOL_BYTES);
  readonly #fill: (bytes: Buffer) => void;
  /** The window's hex, the window's first byte, the next window's, and the next character to hand out. */
  #hexPool = '';
  #base = 0;
  #next = POOL_BYTES;
  #at = 0;

  /** @param fill what fills a block with random bytes (default `crypto.randomFillSync`; tests inject a pattern). */
  constructor(fill: (bytes: Buffer) => void = randomFillSync) {
    this.#fill = fill;
  }

  generateTraceId(): string {
    return this.#hex(32);
  }

  generateSpanId(): string {
    return this.#hex(16);
  }

  #hex(chars: number): string {
    for (;;) {
      if (this.#at + chars > this.#hexPool.length) {
        if (this.#next + WINDOW_BYTES > POOL_BYTES) {
          this.#fill(this.#bytes);
          this.#next = 0;
        }
        this.#base = this.#next;
        this.#next += WINDOW_BYTES;
        this.#hexPool = this.#bytes.toString('hex', this.#base, this.#next);
        this.#at = 0;
      }
      const start = this.#at;
      this.#at += chars;
      // An all-zero id is invalid (W3C): one in 2^64 at worst; draw again. Its bytes are
      // looked at (the first one nearly always settles it), not its string.
      const from = this.#base + (start >> 1);
      if (!allZero(this.#bytes, from, from + (chars >> 1))) return this.#hexPool.slice(start, start + chars);
    }
  }
}

function allZero(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A new span's context, and its parent's when it continues a trace. */
export interface HeadDecision {
  readonly context: SpanContext;
  readonly parent: SpanContext | undefined;
}

/**
 * The sampling decision of a span Meshlet records itself (CLIENT, SERVER, INTERNAL), taken
 * before any span is built, as OpenTelemetry's ParentBasedSampler over the root sampler
 * would take it: a valid parent's sampled flag is
 * followed (its trace id and tracestate kept); a new trace draws a trace id and the root
 * sampler (TraceIdRatioBasedSampler, or always on at ratio 1) decides on it. Span and trace
 * ids come from the Tracing's id generator.
 */
export class HeadSampler {
  readonly #ratio: number;
  readonly #root: Sampler;
  readonly #ids: IdGenerator;
  /**
   * Whether every decision's span context is valid by construction: the parent's ids are
   * checked here, and the pooled generator's are valid hex of the right length, never zero.
   * False with another generator (its ids are checked where they are written).
   */
  readonly validIds: boolean;

  constructor(ratio: number, root: Sampler, ids: IdGenerator) {
    this.#ratio = ratio;
    this.#root = root;
    this.#ids = ids;
    this.validIds = ids instanceof PooledIdGenerator;
  }

  /**
   * A SERVER span's context when OpenTelemetry's tracer would make it non-recording and
   * the decision needs no drawn trace id: a valid caller that did not sample (its trace id
   * and tracestate, a new span id, flags 00), or a new trace at ratio 0 (span id drawn
   * first, then the trace id, as the tracer draws them). Undefined otherwise: the tracer
   * decides (a sampled caller, a new trace at a ratio above 0, suppressed tracing).
   */
  unsampledServer(parent: Context): SpanContext | undefined {
    if (isTracingSuppressed(parent)) return undefined;
    const p = trace.getSpanContext(parent);
    if (p !== undefined && isSpanContextValid(p)) {
      if ((p.traceFlags & TraceFlags.SAMPLED) !== 0) return undefined;
      const sc: SpanContext = { traceId: p.traceId, spanId: this.#ids.generateSpanId(), traceFlags: TraceFlags.NONE };
      if (p.traceState) sc.traceState = p.traceState;
      return sc;
    }
    if (this.#ratio !== 0) return undefined;
    const spanId = this.#ids.generateSpanId();
    return { traceId: this.#ids.generateTraceId(), spanId, traceFlags: TraceFlags.NONE };
  }

  /**
   * The new span's context under `parent`; undefined when tracing is suppressed there
   * (OpenTelemetry's tracer handles that). The ids are drawn in the tracer's order (span id,
   * then a new trace's id), so that a seeded generator gives this path and the tracer's the
   * same ids. `checked`: `parent` is known not to suppress tracing, and its span context (if
   * any) known valid (a SERVER span's caller, read from its headers and checked there).
   */
  decide(parent: Context, kind: SpanKind = SpanKind.CLIENT, checked = false): HeadDecision | undefined {
    // The usual client call of a service that has no inbound span: the root context, which
    // holds nothing (neither suppression nor a span): no lookups in it.
    const root = parent === ROOT_CONTEXT;
    if (!checked && !root && isTracingSuppressed(parent)) return undefined;
    const spanId = this.#ids.generateSpanId();
    const p = root ? undefined : trace.getSpanContext(parent);
    if (p !== undefined && (checked || isSpanContextValid(p))) {
      const sc: SpanContext = {
        traceId: p.traceId,
        spanId,
        traceFlags: (p.traceFlags & TraceFlags.SAMPLED) !== 0 ? TraceFlags.SAMPLED : TraceFlags.NONE,
      };
      if (p.traceState) sc.traceState = p.traceState;
      return { context: sc, parent: p };
    }
    const traceId = this.#ids.generateTraceId();
    const sampled =
      this.#ratio === 1 ||
      (this.#ratio > 0 &&
        this.#root.shouldSample(ROOT_CONTEXT, traceId, '', kind, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED);
    return { context: { traceId, spanId, traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE }, parent: undefined };
  }
}
