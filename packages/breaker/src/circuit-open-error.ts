import { MeshletError } from '@meshlet/core';
import type { BreakerLevel } from './breaker-events.js';

/**
 * A breaker rejected the call without sending it. `retryAfter` is in milliseconds: the rest
 * of the sleep window, or 0 while probes are in flight. Traces record it as
 * `error.type=circuit_open`.
 */
export class CircuitOpenError extends MeshletError {
  static readonly code = 'MESHLET_CIRCUIT_OPEN';
  readonly level: BreakerLevel;
  readonly service: string;
  readonly api: string | undefined;
  readonly retryAfter: number;

  constructor(level: BreakerLevel, service: string, api: string | undefined, retryAfter: number) {
    const what = api === undefined ? service : `${service} ${api}`;
    super(
      CircuitOpenError.code,
      `${what}: ${level} circuit breaker is open; retry after ${Math.ceil(retryAfter)} ms, or give the call a fallback. ` +
        'Check the health of the upstream; the breaker closes once its probes succeed.',
    );
    this.level = level;
    this.service = service;
    this.api = api;
    this.retryAfter = retryAfter;
  }
}
