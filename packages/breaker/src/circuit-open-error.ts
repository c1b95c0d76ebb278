import { type BreakerStateName, MeshletError } from '@meshlet/core';
import type { BreakerLevel } from './breaker-events.js';

/** What the call executor adds to a refusal for the span that records it. */
export interface CircuitOpenDetails {
  /** The refusing breaker's state: `open`, or `half_open` with all its probes out. */
  readonly state?: BreakerStateName;
  /** The state of the service breaker (the span's io.meshlet.breaker, as on an attempt). */
  readonly serviceState?: BreakerStateName;
  /** Store revision of the rule document whose breaker section refused (0 or absent: unknown). */
  readonly revision?: number;
}

/**
 * A breaker rejected the call without sending it. `retryAfter` is in milliseconds: the rest
 * of the sleep window, or 0 while probes are in flight. Traces record it as
 * `error.type=circuit_open`, and the span takes `spanAttributes`: which breaker refused
 * (`io.meshlet.circuit.level`, `.api`, `.state`) and the rules revision, so `meshlet
 * explain` names the breaker rule instead of guessing it from the method and path.
 */
export class CircuitOpenError extends MeshletError {
  static readonly code = 'MESHLET_CIRCUIT_OPEN';
  readonly level: BreakerLevel;
  readonly service: string;
  readonly api: string | undefined;
  readonly retryAfter: number;
  /**
   * `io.meshlet.*` attributes for the span of the refused call (@meshlet/trace's
   * errorAttributesOf reads them), from the state at the refusal. An own field, made with
   * the error: a public error's fields are seen by a structured logger (JSON, a spread,
   * for…in), and the object costs a few percent of what the Error and its stack do.
   */
  readonly spanAttributes: Readonly<Record<string, string | number>>;

  constructor(level: BreakerLevel, service: string, api: string | undefined, retryAfter: number, details?: CircuitOpenDetails) {
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
    this.spanAttributes = spanAttributesOf(level, api, details);
  }
}

function spanAttributesOf(
  level: BreakerLevel,
  api: string | undefined,
  details: CircuitOpenDetails | undefined,
): Record<string, string | number> {
  // The names are @meshlet/trace's Attr (a sibling, not imported: core's rule).
  const attributes: Record<string, string | number> = { 'io.meshlet.circuit.level': level };
  if (api !== undefined) attributes['io.meshlet.circuit.api'] = api;
  if (details?.state !== undefined) attributes['io.meshlet.circuit.state'] = details.state;
  if (details?.serviceState !== undefined) attributes['io.meshlet.breaker'] = details.serviceState;
  if (details?.revision) attributes['io.meshlet.rules.revision'] = details.revision;
  return attributes;
}
