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
  /**
   * The loop had been late at deadline timers for LOOP_LAG_SPAN_MS or more when the timeout
   * was acted on (it lags, not a one-off stall): a late timeout then counts on the service
   * and API breakers, still not on the instance's.
   */
  readonly loopLagging: boolean;
  /** The names are @meshlet/trace's Attr (a sibling, not imported). */
  readonly spanAttributes: Readonly<Record<string, number>>;

  constructor(timeoutMs: number, service?: string, lateMs = 0, loopLagging = false) {
    super(
      TimeoutError.code,
      `${service ?? 'call'}: no answer within ${timeoutMs} ms; the attempt was aborted. Raise the timeout in the breaker rule if the upstream is slow by design.`,
    );
    this.timeoutMs = timeoutMs;
    this.service = service;
    this.lateMs = lateMs;
    this.loopLagging = loopLagging;
    this.spanAttributes = { 'io.meshlet.timeout_ms': timeoutMs };
  }
}
