import { MeshletError } from '@meshlet/core';

/** An attempt took longer than its timeout and was aborted. */
export class TimeoutError extends MeshletError {
  static readonly code = 'MESHLET_TIMEOUT';
  readonly timeoutMs: number;
  readonly service: string | undefined;

  constructor(timeoutMs: number, service?: string) {
    super(
      TimeoutError.code,
      `${service ?? 'call'}: no answer within ${timeoutMs} ms; the attempt was aborted. Raise the timeout in the breaker rule if the upstream is slow by design.`,
    );
    this.timeoutMs = timeoutMs;
    this.service = service;
  }
}
