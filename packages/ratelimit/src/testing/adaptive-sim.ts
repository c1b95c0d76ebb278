// A service under load on a ManualClock, for the adaptive limit's convergence tests and
// bench/adaptive-convergence (`@meshlet/ratelimit/testing`): no sockets, no timers, every
// instant explicit.
import { ManualClock } from '@meshlet/core';
import { AdaptiveConcurrency } from '../adaptive-concurrency.js';
import { type AdaptiveSection, DEFAULT_ADAPTIVE_SECTION } from '../adaptive-rule.js';

/**
 * A service that runs `parallel` requests at full speed, each `baseMs` long; past that they
 * share the CPU, so a request admitted with n in flight takes baseMs × n / parallel.
 */
export interface ServiceModel {
  baseMs: number;
  parallel: number;
  /** Event-loop delay the service reports now, ms. */
  loopDelayMs?: number;
}

/** One phase of load: `clients` closed-loop clients (a refused one tries again 1 ms later) for `ms`. */
export interface Phase {
  readonly clients: number;
  readonly ms: number;
}

export interface PhaseResult {
  /** The limit at the end of each 100 ms of the phase. */
  readonly limits: number[];
  readonly admitted: number;
  readonly refused: number;
  /** RTTs of the requests that finished in the phase, sorted. */
  readonly rtts: number[];
  /** The first ms of the phase from which the limit stayed within [lo, hi] to the end, or -1. */
  settledFrom(lo: number, hi: number): number;
}

interface InFlightRequest {
  readonly at: number;
  readonly rtt: number;
  readonly release: () => void;
}

/** Runs `phases` against `service` (whose numbers a test may change between phases). */
export class Simulation {
  readonly clock = new ManualClock(0);
  readonly limiter: AdaptiveConcurrency;
  readonly #service: ServiceModel;
  /** Finish times of requests in flight, with their release. */
  #inFlight: InFlightRequest[] = [];
  /** Clients waiting to send (refused, or done and sending again). */
  #ready = 0;
  #clients = 0;

  constructor(service: ServiceModel, section: Partial<AdaptiveSection> = {}) {
    this.#service = service;
    this.limiter = new AdaptiveConcurrency(
      { ...DEFAULT_ADAPTIVE_SECTION, probeJitter: 0, ...section },
      { clock: this.clock, eventLoopDelay: () => service.loopDelayMs ?? 0 },
    );
  }

  run(phase: Phase): PhaseResult {
    // Clients join or leave: joining ones are ready now; leaving ones leave when next ready.
    this.#ready += Math.max(0, phase.clients - this.#clients);
    this.#clients = phase.clients;
    const limits: number[] = [];
    const rtts: number[] = [];
    let admitted = 0;
    let refused = 0;
    for (let t = 0; t < phase.ms; t++) {
      const now = this.clock.now();
      const still: InFlightRequest[] = [];
      for (const r of this.#inFlight) {
        if (r.at <= now) {
          r.release();
          rtts.push(r.rtt);
          this.#ready++;
        } else still.push(r);
      }
      this.#inFlight = still;
      const busy = this.#inFlight.length;
      this.#ready = Math.min(this.#ready, Math.max(0, this.#clients - busy));
      let waiting = this.#ready;
      this.#ready = 0;
      while (waiting > 0) {
        const a = this.limiter.tryAcquire(() => undefined);
        if (!a.admitted) {
          refused += waiting; // every client left this ms is refused and tries again
          this.#ready += waiting;
          break;
        }
        admitted++;
        waiting--;
        const n = this.#inFlight.length + 1;
        const rtt = this.#service.baseMs * Math.max(1, n / this.#service.parallel);
        this.#inFlight.push({ at: now + rtt, rtt, release: a.release });
      }
      this.clock.advance(1);
      if ((t + 1) % 100 === 0) limits.push(this.limiter.limit);
    }
    rtts.sort((a, b) => a - b);
    return {
      limits,
      admitted,
      refused,
      rtts,
      settledFrom(lo, hi) {
        let from = -1;
        limits.forEach((l, i) => {
          if (l < lo || l > hi) from = -1;
          else if (from === -1) from = i * 100;
        });
        return from;
      },
    };
  }
}

export const quantile = (sorted: readonly number[], q: number): number =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number);
