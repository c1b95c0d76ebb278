import { Listeners } from './listeners.js';

export type CircuitState = 'closed' | 'open' | 'half-open';
export type BreakerLevel = 'service' | 'api' | 'instance';

/** Which breaker: a service's, one of its APIs' (`GET /users/{id}`), or one of its instances'. */
export interface BreakerId {
  readonly level: BreakerLevel;
  readonly service: string;
  readonly api?: string;
  readonly instance?: string;
}

export type TripReason = 'failure-rate' | 'slow-call-rate' | 'consecutive-failures' | 'probe-failed' | 'probe-timeout';

interface Transition {
  readonly breaker: BreakerId;
  readonly from: CircuitState;
  /** Clock time of the transition (ms). */
  readonly at: number;
}

export interface OpenEvent extends Transition {
  readonly reason: TripReason;
  /** Percent of failed calls in the window when it tripped. */
  readonly failureRate: number;
  readonly slowCallRate: number;
  readonly calls: number;
  readonly consecutiveFailures: number;
  /** Clock time from which probes are let through. */
  readonly retryAt: number;
}

export interface HalfOpenEvent extends Transition {
  readonly probes: number;
}

export interface CloseEvent extends Transition {
  readonly probesSucceeded: number;
}

/**
 * Transition events of one breaker or of a group of them (all instance breakers share one
 * set, so 10 000 breakers do not carry 30 000 listener sets; the payload names the breaker).
 */
export class BreakerEvents {
  readonly onOpen = new Listeners<OpenEvent>();
  readonly onHalfOpen = new Listeners<HalfOpenEvent>();
  readonly onClose = new Listeners<CloseEvent>();
}
