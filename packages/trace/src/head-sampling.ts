import { randomFillSync } from 'node:crypto';
import { type Context, isSpanContextValid, ROOT_CONTEXT, type SpanContext, SpanKind, TraceFlags, trace } from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';
import { type IdGenerator, type Sampler, SamplingDecision } from '@opentelemetry/sdk-trace';

// Random bytes drawn from the OS in blocks and handed out in slices: one randomFillSync per
// 512 ids instead of four Math.random calls, a buffer write and a hex encoding per id.
const POOL_BYTES = 4096;

/** Trace and span ids from a pooled block of cryptographic random bytes; never all zero. */
export class PooledIdGenerator implements IdGenerator {
  readonly #pool = Buffer.allocUnsafe(POOL_BYTES);
  #at = POOL_BYTES;

  generateTraceId(): string {
    return this.#hex(16);
  }

  generateSpanId(): string {
    return this.#hex(8);
  }

  #hex(bytes: number): string {
    for (;;) {
      if (this.#at + bytes > POOL_BYTES) {
        randomFillSync(this.#pool);
        this.#at = 0;
      }
      const start = this.#at;
      this.#at += bytes;
      const id = this.#pool.toString('hex', start, start + bytes);
      // An all-zero id is invalid (W3C): one in 2^64 at worst; draw again.
      if (!/^0+$/.test(id)) return id;
    }
  }
}

/**
 * The id generator the TracerProvider uses: the given one, except that a trace id the head
 * sampler already drew and sampled is handed to the next root span, so that OpenTelemetry's
 * sampler sees (and samples) the same id.
 */
export class HandoverIdGenerator implements IdGenerator {
  readonly #ids: IdGenerator;
  pending: string | undefined;

  constructor(ids: IdGenerator) {
    this.#ids = ids;
  }

  generateTraceId(): string {
    const id = this.pending;
    if (id !== undefined) {
      this.pending = undefined;
      return id;
    }
    return this.#ids.generateTraceId();
  }

  generateSpanId(): string {
    return this.#ids.generateSpanId();
  }
}

/**
 * The sampling decision of a CLIENT span, taken before any span is built: parent-based
 * (a valid parent's sampled flag is followed) and, for a new trace, the root sampler on
 * the trace id. An unsampled attempt gets only a span context to propagate (the parent's
 * trace id, or a new one; a new span id; flags 00), without OpenTelemetry's span, sampler
 * call, attribute objects or context; a sampled one is left to OpenTelemetry, which
 * decides the same (same parent, same trace id, same root sampler).
 */
export class HeadSampler {
  readonly #ratio: number;
  readonly #root: Sampler;
  readonly #ids: HandoverIdGenerator;

  constructor(ratio: number, root: Sampler, ids: HandoverIdGenerator) {
    this.#ratio = ratio;
    this.#root = root;
    this.#ids = ids;
  }

  /** The span context of an unsampled span child of `parent`, or undefined when the span is to be recorded. */
  unsampled(parent: Context): SpanContext | undefined {
    const p = trace.getSpanContext(parent);
    if (p !== undefined && isSpanContextValid(p)) {
      if ((p.traceFlags & TraceFlags.SAMPLED) !== 0 || isTracingSuppressed(parent)) return undefined;
      const sc: SpanContext = { traceId: p.traceId, spanId: this.#ids.generateSpanId(), traceFlags: TraceFlags.NONE };
      if (p.traceState) sc.traceState = p.traceState;
      return sc;
    }
    if (this.#ratio === 1 || isTracingSuppressed(parent)) return undefined;
    const traceId = this.#ids.generateTraceId();
    if (this.#ratio > 0) {
      const { decision } = this.#root.shouldSample(ROOT_CONTEXT, traceId, '', SpanKind.CLIENT, {}, []);
      if (decision === SamplingDecision.RECORD_AND_SAMPLED) {
        this.#ids.pending = traceId;
        return undefined;
      }
    }
    return { traceId, spanId: this.#ids.generateSpanId(), traceFlags: TraceFlags.NONE };
  }

  /** Drops a handed-over trace id OpenTelemetry did not take (it always does for a root span). */
  settle(): void {
    this.#ids.pending = undefined;
  }
}
