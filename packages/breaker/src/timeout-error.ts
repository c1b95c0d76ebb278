import { MeshletError } from '@meshlet/core';

/**
 * An attempt took longer than its timeout and was aborted. Traces record it as
 * `error.type=timeout`, and the span takes `spanAttributes`: `io.meshlet.timeout_ms`, which
 * says the mesh timed the attempt (a caller's AbortSignal.timeout is a `timeout` too), so
 * `meshlet explain` blames the breaker rule's timeoutMs only then.
 */
export class TimeoutError extends MeshletError {
  static readonly code = 'MESHLET_TIMEOUT';
  readonly timeoutMs: number;
  readonly service: string | undefined;
  /**
   * How long after the deadline the timeout was acted on (ms): LOOP_LATE_MS or more, the
   * event loop was held up (blocked, stalled) and the time is the loop's, not the upstream's.
   */
  readonly lateMs: number;
  /** The names are @meshlet/trace's Attr (a sibling, not imported). */
  readonly spanAttributes: Readonly<Record<string, number>>;

  constructor(timeoutMs: number, service?: string, lateMs = 0) {
    super(
      TimeoutError.code,
      `${service ?? 'call'}: no answer within ${timeoutMs} ms; the attempt was aborted. Raise the timeout in the breaker rule if the upstream is slow by design.`,
    );
    this.timeoutMs = timeoutMs;
    this.service = service;
    this.lateMs = lateMs;
    this.spanAttributes = { 'io.meshlet.timeout_ms': timeoutMs };
  }
}
