import type { Clock } from '@meshlet/core';
import { REJECTED } from './breaker.js';
import type { FailureClassifier } from './failure-classifier.js';
import type { ServiceInstanceBreakers } from './instance-breakers.js';
import type { RetryBudget } from './retry-budget.js';

/**
 * The executor's governance of a call it does not run itself (`CallExecutor.track`): a gRPC
 * stream, whose messages cannot be replayed once it opened and whose life is its caller's.
 * The caller picks and sends; this records each try's outcome on the instance breakers
 * exactly as the executor records a unary attempt's (the destination's failure classifier:
 * an answer's status, a refused connection as a failure, the caller's own end as nothing),
 * and pays each further try from the destination's retry budget.
 */
export class TrackedCall {
  readonly service: string;
  readonly #instances: ServiceInstanceBreakers | undefined;
  readonly #budget: RetryBudget | undefined;
  readonly #classifier: FailureClassifier;
  readonly #clock: Clock;

  /** @internal made by CallExecutor.track */
  constructor(
    service: string,
    instances: ServiceInstanceBreakers | undefined,
    budget: RetryBudget | undefined,
    classifier: FailureClassifier,
    clock: Clock,
  ) {
    this.service = service;
    this.#instances = instances;
    this.#budget = budget;
    this.#classifier = classifier;
    this.#clock = clock;
  }

  /**
   * A try of `instanceId`: takes its instance breaker's permit, as the executor does for an
   * attempt. Undefined when the breaker refuses it (open, or half-open with every probe
   * permit taken, which routing may not have heard of yet): pick another instance.
   */
  attempt(instanceId: string): TrackedAttempt | undefined {
    const instances = this.#instances;
    if (instances === undefined) return new TrackedAttempt(undefined, instanceId, REJECTED, false, this.#classifier, this.#clock);
    const permit = instances.acquire(instanceId);
    if (permit === REJECTED) return undefined;
    // A permit taken while the breaker is half-open is a probe's.
    const probe = instances.breaker(instanceId).state === 'half-open';
    return new TrackedAttempt(instances, instanceId, permit, probe, this.#classifier, this.#clock);
  }

  /** Takes one further try from the destination's retry budget: false when it is spent (counted in its `denied`). True without a budget. */
  retry(): boolean {
    return this.#budget === undefined || this.#budget.tryRetry();
  }
}

/** One try's permit on its instance breaker; settles once (later calls do nothing). */
export class TrackedAttempt {
  readonly instanceId: string;
  readonly #instances: ServiceInstanceBreakers | undefined;
  readonly #permit: number;
  /** The permit is a half-open breaker's probe: the instance's first answer settles it (`responded`). */
  readonly probe: boolean;
  readonly #classifier: FailureClassifier;
  readonly #clock: Clock;
  readonly #t0: number;
  #settled = false;

  /** @internal */
  constructor(
    instances: ServiceInstanceBreakers | undefined,
    instanceId: string,
    permit: number,
    probe: boolean,
    classifier: FailureClassifier,
    clock: Clock,
  ) {
    this.#instances = instances;
    this.instanceId = instanceId;
    this.#permit = permit;
    this.probe = probe;
    this.#classifier = classifier;
    this.#clock = clock;
    this.#t0 = clock.now();
  }

  /**
   * The instance answered with `status` (an HTTP status; a gRPC status as its HTTP
   * equivalent): a failure when the destination's classifier counts it, as a unary answer.
   * `durationMs`: what the breaker's slow-call check reads (default: since the try began).
   * Returns whether it counted as a failure.
   */
  answered(status: number, durationMs?: number): boolean {
    const failed = this.#classifier.response(status);
    this.#record(failed, durationMs);
    return failed;
  }

  /**
   * The instance began to answer (a stream's response headers): a probe's success now, so
   * that a long-lived probe stream does not keep its instance out of routing for its whole
   * life (the breaker closes once its probes succeed); any other try is settled by how it
   * ends. `durationMs`: the slow-call check's time (default: since the try began).
   */
  responded(durationMs?: number): void {
    if (this.probe) this.#record(false, durationMs);
  }

  /** The try failed with `error` (a refused connection, …): counted as the executor counts an attempt's error; the caller's own abort counts nothing. */
  failed(error: unknown, callerAborted: boolean, durationMs?: number): void {
    const verdict = this.#classifier.error(error, callerAborted);
    if (verdict === 'ignore') this.released();
    else this.#record(verdict === 'failure', durationMs);
  }

  /** The outcome says nothing about the instance (the caller ended it, the mesh made it up): the permit goes back. */
  released(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#instances?.release(this.instanceId, this.#permit);
  }

  #record(failed: boolean, durationMs: number | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#instances === undefined) return;
    const end = this.#clock.now();
    this.#instances.record(this.instanceId, this.#permit, failed, durationMs ?? end - this.#t0, end);
  }
}
