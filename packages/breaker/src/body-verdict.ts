import type { Clock } from '@meshlet/core';
import { breakerVerdict } from './attempt-signal.js';
import type { Breaker } from './breaker.js';
import type { FailureClassifier } from './failure-classifier.js';
import type { ServiceInstanceBreakers } from './instance-breakers.js';

/**
 * Where the end of a governed answer's body is told (`GovernedCall.watchBody`). The
 * executor records an answer when its headers arrive; an instance that answers 200 and
 * then breaks the connection mid-body failed all the same (Envoy's outlier detection counts
 * it). Given to a front end that can tell how the body ends, the answer's success is
 * recorded without ending a run of consecutive failures, and this settles it: `whole()`
 * ends the run, `broken(error)` counts a failure on the instance, service and API
 * breakers the call passed. The caller's own end (its signal, or the app giving the body
 * up) counts nothing: a front end says nothing then. Told once; later calls do nothing.
 */
export class BodyVerdict {
  readonly #instances: ServiceInstanceBreakers | undefined;
  readonly #instance: string;
  readonly #permit: number;
  readonly #service: Breaker | undefined;
  readonly #sPermit: number;
  readonly #api: Breaker | undefined;
  readonly #aPermit: number;
  readonly #classifier: FailureClassifier;
  readonly #clock: Clock;
  readonly #signal: AbortSignal | undefined;
  #told = false;

  /** @internal made by CallExecutor */
  constructor(
    instances: ServiceInstanceBreakers | undefined,
    instance: string,
    permit: number,
    service: Breaker | undefined,
    sPermit: number,
    api: Breaker | undefined,
    aPermit: number,
    classifier: FailureClassifier,
    clock: Clock,
    signal: AbortSignal | undefined,
  ) {
    this.#instances = instances;
    this.#instance = instance;
    this.#permit = permit;
    this.#service = service;
    this.#sPermit = sPermit;
    this.#api = api;
    this.#aPermit = aPermit;
    this.#classifier = classifier;
    this.#clock = clock;
    this.#signal = signal;
  }

  /** The body arrived whole. */
  whole(): void {
    this.#tell(false);
  }

  /** The body failed with `error` after the headers (a reset, a truncated body); the caller's own abort counts nothing. */
  broken(error: unknown): void {
    const verdict = breakerVerdict(this.#classifier, error, this.#signal?.aborted === true);
    if (verdict === 'ignore') this.#told = true;
    else this.#tell(verdict === 'failure');
  }

  #tell(failed: boolean): void {
    if (this.#told) return;
    this.#told = true;
    // A whole body only ends a run: no clock read for it.
    const now = failed ? this.#clock.now() : undefined;
    this.#instances?.bodyEnded(this.#instance, this.#permit, failed, now);
    this.#service?.bodyEnded(this.#sPermit, failed, now);
    this.#api?.bodyEnded(this.#aPermit, failed, now);
  }
}
